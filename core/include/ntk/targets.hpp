#pragma once
// Training targets: rows of probabilities (SPEC section 2).
#include <cstdint>
#include <span>

#include "ntk/matrix.hpp"

namespace ntk {

struct Targets {
  Matrix<double> probabilities;  // N x C, rows >= 0 summing to 1
  std::int64_t num_classes = 0;
  // Some target probability is 0 (e.g. one-hot labels): then lambda = 0 training diverges.
  bool degenerate = false;
};

// Integer labels in [0, num_classes) (num_classes = 0: inferred as max + 1), optionally smoothed:
// y = (1 - eps) e_label + eps / C. Throws InvalidArgument naming the offending index and value.
Targets targets_from_labels(std::span<const std::int64_t> labels, std::int64_t num_classes,
                            double label_smoothing);

// Soft targets: every row >= 0 and summing to 1 within 1e-6 (renormalized exactly to 1).
Targets targets_from_probabilities(ConstMatrixView<double> probabilities);

}  // namespace ntk
