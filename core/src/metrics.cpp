#include "ntk/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "ntk/errors.hpp"

namespace ntk {
namespace {

double bin_edge(int k, int num_bins) {
  return static_cast<double>(k) / static_cast<double>(num_bins);
}

std::string index_text(std::int64_t i, std::int64_t j) {
  return "(" + std::to_string(i) + ", " + std::to_string(j) + ")";
}

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

int calibration_bin(double confidence, int num_bins) {
  // floor(c * B) can be off by one next to an edge (c * B rounds), so it is corrected against the
  // edges themselves: the bins reported in the table are then exactly the ones points are counted in.
  if (num_bins <= 1 || !(confidence > 0)) return 0;  // also NaN, which has no bin
  if (confidence >= 1) return num_bins - 1;
  int b = std::min(static_cast<int>(confidence * num_bins), num_bins - 1);
  if (b > 0 && confidence < bin_edge(b, num_bins)) --b;
  if (b < num_bins - 1 && confidence >= bin_edge(b + 1, num_bins)) ++b;
  return b;
}

ClassificationMetrics evaluate_probabilities(ConstMatrixView<double> probs,
                                             std::span<const std::int64_t> labels, int num_bins) {
  const std::int64_t t = probs.rows;
  const std::int64_t c = probs.cols;
  if (num_bins < 1) throw InvalidArgument("num_bins is " + std::to_string(num_bins) + ", expected >= 1");
  if (t == 0) throw InvalidArgument("probs has no rows: metrics need at least one point");
  if (c == 0) throw InvalidArgument("probs has no columns: metrics need at least one class");
  if (static_cast<std::int64_t>(labels.size()) != t)
    throw InvalidArgument("probs has " + std::to_string(t) + " rows but there are " +
                          std::to_string(labels.size()) + " labels");

  // Validate everything before computing anything, so a bad input never yields partial results.
  for (std::int64_t i = 0; i < t; ++i) {
    const double* row = probs.row(i);
    double sum = 0;
    for (std::int64_t j = 0; j < c; ++j) {
      if (!std::isfinite(row[j]))
        throw InvalidArgument("probs" + index_text(i, j) + " is " +
                              (std::isnan(row[j]) ? "NaN" : "infinite"));
      if (row[j] < 0)
        throw InvalidArgument("probs" + index_text(i, j) + " = " + number_text(row[j]) + " is negative");
      sum += row[j];
    }
    if (std::abs(sum - 1.0) > kRowSumTolerance)
      throw InvalidArgument("probs row " + std::to_string(i) + " sums to " + number_text(sum) +
                            ", expected 1 (within 1e-6)");
    if (labels[i] < 0 || labels[i] >= c)
      throw InvalidArgument("labels[" + std::to_string(i) + "] = " + std::to_string(labels[i]) +
                            " is out of range [0, " + std::to_string(c) + ")");
  }

  ClassificationMetrics m;
  m.count = t;
  m.reliability.resize(static_cast<std::size_t>(num_bins));
  std::vector<double> confidence_sum(static_cast<std::size_t>(num_bins), 0.0);
  std::vector<std::int64_t> correct_in_bin(static_cast<std::size_t>(num_bins), 0);
  std::int64_t correct = 0;
  double nll_sum = 0, brier_sum = 0;
  for (std::int64_t i = 0; i < t; ++i) {
    const double* row = probs.row(i);
    const std::int64_t label = labels[i];
    std::int64_t predicted = 0;
    double brier = 0;
    for (std::int64_t j = 0; j < c; ++j) {
      if (row[j] > row[predicted]) predicted = j;  // strict: ties go to the first index
      const double d = row[j] - (j == label ? 1.0 : 0.0);
      brier += d * d;
    }
    brier_sum += brier;
    nll_sum -= std::log(std::max(row[label], kNllProbabilityFloor));
    const bool hit = predicted == label;
    correct += hit;
    const double confidence = row[predicted];
    const auto b = static_cast<std::size_t>(calibration_bin(confidence, num_bins));
    ++m.reliability[b].count;
    confidence_sum[b] += confidence;
    correct_in_bin[b] += hit;
  }
  const auto td = static_cast<double>(t);
  m.accuracy = static_cast<double>(correct) / td;
  m.nll = nll_sum / td;
  m.brier = brier_sum / td;
  for (int k = 0; k < num_bins; ++k) {
    auto& bin = m.reliability[static_cast<std::size_t>(k)];
    bin.lower = bin_edge(k, num_bins);
    bin.upper = bin_edge(k + 1, num_bins);
    if (bin.count == 0) continue;
    const auto n = static_cast<double>(bin.count);
    bin.mean_confidence = confidence_sum[static_cast<std::size_t>(k)] / n;
    bin.accuracy = static_cast<double>(correct_in_bin[static_cast<std::size_t>(k)]) / n;
    m.ece += n / td * std::abs(bin.accuracy - bin.mean_confidence);
  }
  return m;
}

}  // namespace ntk
