#include "ntk/targets.hpp"

#include <cmath>
#include <sstream>

#include "ntk/errors.hpp"

namespace ntk {

Targets targets_from_labels(std::span<const std::int64_t> labels, std::int64_t num_classes, double eps) {
  if (labels.empty()) throw InvalidArgument("no training points (labels are empty)");
  if (!std::isfinite(eps) || eps < 0 || eps >= 1)
    throw InvalidArgument("label smoothing must be in [0, 1), got " + std::to_string(eps));
  if (num_classes < 0)
    throw InvalidArgument("number of classes must be >= 2, got " + std::to_string(num_classes));
  std::int64_t max_label = -1;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || (num_classes > 0 && labels[i] >= num_classes)) {
      std::ostringstream os;
      os << "label " << labels[i] << " at index " << i << " is outside [0, "
         << (num_classes > 0 ? std::to_string(num_classes) : std::string("number of classes")) << ")";
      throw InvalidArgument(os.str());
    }
    max_label = std::max(max_label, labels[i]);
  }
  const std::int64_t c = num_classes > 0 ? num_classes : max_label + 1;
  if (c < 2)
    throw InvalidArgument("classification needs at least 2 classes, the labels have " + std::to_string(c));
  Targets t;
  t.num_classes = c;
  t.probabilities = Matrix<double>(static_cast<std::int64_t>(labels.size()), c, eps / static_cast<double>(c));
  for (std::size_t i = 0; i < labels.size(); ++i)
    t.probabilities(static_cast<std::int64_t>(i), labels[i]) += 1 - eps;
  t.degenerate = eps == 0;
  return t;
}

Targets targets_from_probabilities(ConstMatrixView<double> p) {
  if (p.rows == 0) throw InvalidArgument("no training points (targets are empty)");
  if (p.cols < 2)
    throw InvalidArgument("classification needs at least 2 classes, the targets have " +
                          std::to_string(p.cols) + " column(s)");
  Targets t;
  t.num_classes = p.cols;
  t.probabilities = Matrix<double>(p.rows, p.cols);
  for (std::int64_t i = 0; i < p.rows; ++i) {
    double sum = 0;
    for (std::int64_t c = 0; c < p.cols; ++c) {
      const double v = p(i, c);
      if (!std::isfinite(v) || v < 0) {
        std::ostringstream os;
        os << "target row " << i << " is not a probability vector: entry " << c << " is " << v;
        throw InvalidArgument(os.str());
      }
      sum += v;
      t.degenerate = t.degenerate || v == 0;
    }
    if (std::abs(sum - 1) > 1e-6) {
      std::ostringstream os;
      os.precision(10);
      os << "target row " << i << " is not a probability vector: it sums to " << sum;
      throw InvalidArgument(os.str());
    }
    for (std::int64_t c = 0; c < p.cols; ++c) t.probabilities(i, c) = p(i, c) / sum;
  }
  return t;
}

}  // namespace ntk
