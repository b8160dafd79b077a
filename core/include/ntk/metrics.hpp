#pragma once
// Evaluation of predicted class probabilities against integer labels: accuracy, negative
// log-likelihood, Brier score, expected calibration error and the reliability-diagram table.
#include <cstdint>
#include <span>
#include <vector>

#include "ntk/matrix.hpp"

namespace ntk {

inline constexpr int kCalibrationBins = 15;
// Probabilities are clipped to at least this before the log, so that a confident wrong prediction
// (p = 0 for the true class) gives a large finite NLL (about 690.8) instead of infinity.
inline constexpr double kNllProbabilityFloor = 1e-300;
// How far a row of probabilities may sum from 1.
inline constexpr double kRowSumTolerance = 1e-6;

// One bin of the reliability diagram: the points whose confidence (max probability) c satisfies
// lower <= c < upper, the last bin also taking c == 1.
struct ReliabilityBin {
  double lower = 0;
  double upper = 0;
  std::int64_t count = 0;
  double mean_confidence = 0;  // 0 for an empty bin
  double accuracy = 0;         // fraction of the bin's points predicted correctly; 0 for an empty bin
};

struct ClassificationMetrics {
  std::int64_t count = 0;  // T, the number of points
  // Fraction of points whose predicted class (the first index of the row's maximum) is the label.
  double accuracy = 0;
  // Mean over points of -log(max(p_label, kNllProbabilityFloor)).
  double nll = 0;
  // Mean over points of sum_c (p_c - [c == label])^2; in [0, 2].
  double brier = 0;
  // sum_b (n_b / T) |accuracy_b - mean_confidence_b| over equal-width bins of the confidence.
  double ece = 0;
  std::vector<ReliabilityBin> reliability;  // num_bins bins, in order of confidence
};

// probs: T x C, each row non-negative and summing to 1 within kRowSumTolerance; labels: T values in
// [0, C). Bins: [k/B, (k+1)/B) for k < B - 1 and [(B-1)/B, 1], with the edges k/B computed as
// double(k) / B, so a confidence equal to an edge lands in the bin that edge opens.
// Throws InvalidArgument naming the problem: T = 0, C = 0, a shape mismatch, a non-finite or negative
// probability (with its index), a row that does not sum to 1 (with the row and its sum), a label out of
// range (with its index and value), num_bins < 1.
ClassificationMetrics evaluate_probabilities(ConstMatrixView<double> probs,
                                             std::span<const std::int64_t> labels,
                                             int num_bins = kCalibrationBins);
inline ClassificationMetrics evaluate_probabilities(const Matrix<double>& probs,
                                                    std::span<const std::int64_t> labels,
                                                    int num_bins = kCalibrationBins) {
  return evaluate_probabilities(probs.view(), labels, num_bins);
}

// The bin of a confidence in [0, 1] under the convention above.
int calibration_bin(double confidence, int num_bins = kCalibrationBins);

}  // namespace ntk
