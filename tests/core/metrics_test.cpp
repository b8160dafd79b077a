#include "ntk/metrics.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "ntk/errors.hpp"

namespace {

ntk::Matrix<double> matrix(std::int64_t rows, std::int64_t cols, const std::vector<double>& values) {
  ntk::Matrix<double> m(rows, cols);
  std::copy(values.begin(), values.end(), m.data());
  return m;
}

std::string error_of(const ntk::Matrix<double>& probs, const std::vector<std::int64_t>& labels,
                     int bins = 15) {
  try {
    ntk::evaluate_probabilities(probs, labels, bins);
  } catch (const ntk::InvalidArgument& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

TEST(Metrics, HandComputedExample) {
  // Row 1 and 2 have confidence 0.6 = 9/15 exactly (an edge: bin 9); row 3 is a confident mistake
  // with p_label = 0, which the 1e-300 floor turns into -log(1e-300) = 300 ln 10.
  const auto probs = matrix(4, 3, {0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.2, 0.2, 0.6, 1.0, 0.0, 0.0});
  const std::vector<std::int64_t> labels = {0, 2, 2, 1};
  const auto m = ntk::evaluate_probabilities(probs, labels);
  EXPECT_EQ(m.count, 4);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.5);
  EXPECT_NEAR(m.nll, (-std::log(0.7) - std::log(0.3) - std::log(0.6) + 300 * std::log(10.0)) / 4, 1e-12);
  // (0.09 + 0.04 + 0.01) + (0.01 + 0.36 + 0.49) + (0.04 + 0.04 + 0.16) + (1 + 1 + 0) = 3.24
  EXPECT_NEAR(m.brier, 3.24 / 4, 1e-15);
  // Bin 9: two points, confidence 0.6, accuracy 0.5; bin 10: 0.7 right; bin 14: 1.0 wrong.
  EXPECT_NEAR(m.ece, 2.0 / 4 * 0.1 + 1.0 / 4 * 0.3 + 1.0 / 4 * 1.0, 1e-15);
  ASSERT_EQ(m.reliability.size(), 15u);
  for (int k = 0; k < 15; ++k) {
    const auto& b = m.reliability[static_cast<std::size_t>(k)];
    EXPECT_EQ(b.lower, k / 15.0);
    EXPECT_EQ(b.upper, (k + 1) / 15.0);
    const std::int64_t expected = k == 9 ? 2 : (k == 10 || k == 14) ? 1 : 0;
    EXPECT_EQ(b.count, expected) << "bin " << k;
    if (expected == 0) {
      EXPECT_EQ(b.mean_confidence, 0.0);
      EXPECT_EQ(b.accuracy, 0.0);
    }
  }
  EXPECT_EQ(m.reliability[14].upper, 1.0);
  EXPECT_NEAR(m.reliability[9].mean_confidence, 0.6, 1e-15);
  EXPECT_EQ(m.reliability[9].accuracy, 0.5);
  EXPECT_EQ(m.reliability[10].accuracy, 1.0);
  EXPECT_EQ(m.reliability[14].mean_confidence, 1.0);
  EXPECT_EQ(m.reliability[14].accuracy, 0.0);
}

TEST(Metrics, PerfectPredictionsAreCalibrated) {
  const auto probs = matrix(3, 2, {1, 0, 0, 1, 1, 0});
  const auto m = ntk::evaluate_probabilities(probs, std::vector<std::int64_t>{0, 1, 0});
  EXPECT_EQ(m.accuracy, 1.0);
  EXPECT_EQ(m.nll, 0.0);
  EXPECT_EQ(m.brier, 0.0);
  EXPECT_EQ(m.ece, 0.0);
  EXPECT_EQ(m.reliability[14].count, 3);  // confidence exactly 1 is in the closed top bin
}

TEST(Metrics, TiesPredictTheFirstClass) {
  const auto probs = matrix(2, 2, {0.5, 0.5, 0.5, 0.5});
  const auto m = ntk::evaluate_probabilities(probs, std::vector<std::int64_t>{0, 1});
  EXPECT_EQ(m.accuracy, 0.5);
  EXPECT_EQ(m.reliability[7].count, 2);  // 0.5 * 15 = 7.5
  EXPECT_EQ(m.ece, 0.0);
}

TEST(Metrics, BinBoundaries) {
  // Every edge k/15 opens bin k; the largest double below it is still in bin k - 1.
  for (int k = 1; k < 15; ++k) {
    const double edge = k / 15.0;
    EXPECT_EQ(ntk::calibration_bin(edge), k) << k;
    EXPECT_EQ(ntk::calibration_bin(std::nextafter(edge, 0.0)), k - 1) << k;
    EXPECT_EQ(ntk::calibration_bin(std::nextafter(edge, 1.0)), k) << k;
  }
  EXPECT_EQ(ntk::calibration_bin(0.0), 0);
  EXPECT_EQ(ntk::calibration_bin(1.0), 14);
  EXPECT_EQ(ntk::calibration_bin(std::nextafter(1.0, 0.0)), 14);
  // For other bin counts floor(c * B) is sometimes off next to an edge (fl(fl(1/49) * 49) < 1); the
  // edges still decide.
  for (int bins = 1; bins <= 100; ++bins)
    for (int k = 1; k < bins; ++k) {
      const double edge = static_cast<double>(k) / bins;
      ASSERT_EQ(ntk::calibration_bin(edge, bins), k) << k << "/" << bins;
      ASSERT_EQ(ntk::calibration_bin(std::nextafter(edge, 0.0), bins), k - 1) << k << "/" << bins;
    }
  EXPECT_EQ(ntk::calibration_bin(1.0, 1), 0);
  EXPECT_EQ(ntk::calibration_bin(0.5, 2), 1);

  // Confidence exactly 1/15: 15 equal classes. The point is in bin 1 [1/15, 2/15), not bin 0.
  ntk::Matrix<double> uniform(1, 15, 1.0 / 15);
  auto m = ntk::evaluate_probabilities(uniform, std::vector<std::int64_t>{3});
  EXPECT_EQ(m.reliability[0].count, 0);
  EXPECT_EQ(m.reliability[1].count, 1);
  EXPECT_EQ(m.reliability[1].mean_confidence, 1.0 / 15);
  EXPECT_EQ(m.accuracy, 0.0);  // ties go to class 0
  EXPECT_NEAR(m.ece, 1.0 / 15, 1e-17);
  // Confidence exactly 1.0, right and wrong.
  m = ntk::evaluate_probabilities(matrix(2, 2, {0, 1, 0, 1}), std::vector<std::int64_t>{1, 0});
  EXPECT_EQ(m.reliability[14].count, 2);
  EXPECT_EQ(m.reliability[14].accuracy, 0.5);
  EXPECT_EQ(m.ece, 0.5);
}

TEST(Metrics, AcceptsStridedViews) {
  // A 2 x 2 block of a 2 x 3 buffer whose third column is garbage.
  std::vector<double> buffer = {0.25, 0.75, NAN, 0.9, 0.1, NAN};
  const ntk::ConstMatrixView<double> view{buffer.data(), 2, 2, 3};
  const auto m = ntk::evaluate_probabilities(view, std::vector<std::int64_t>{1, 1});
  EXPECT_EQ(m.accuracy, 0.5);
  EXPECT_NEAR(m.brier, (2 * 0.0625 + 2 * 0.81) / 2, 1e-15);
}

// Written differently on purpose: points sorted by confidence and swept bin by bin, log-likelihoods
// and Brier terms in long double, Brier through sum p^2 - 2 p_y + 1.
struct Reference {
  double accuracy = 0, nll = 0, brier = 0, ece = 0;
  std::vector<std::int64_t> counts;
};

Reference reference(const ntk::Matrix<double>& p, const std::vector<std::int64_t>& y) {
  const auto t = static_cast<std::size_t>(p.rows());
  const auto c = static_cast<std::size_t>(p.cols());
  struct Point {
    double confidence;
    bool correct;
  };
  std::vector<Point> points;
  long double nll = 0, brier = 0;
  std::size_t correct = 0;
  for (std::size_t i = 0; i < t; ++i) {
    const double* row = p.data() + i * c;
    const auto best = static_cast<std::int64_t>(std::max_element(row, row + c) - row);  // first maximum
    points.push_back({row[best], best == y[i]});
    correct += best == y[i];
    nll += -std::log(static_cast<long double>(std::max(row[y[i]], 1e-300)));
    long double sq = 0;
    for (std::size_t j = 0; j < c; ++j) sq += static_cast<long double>(row[j]) * row[j];
    brier += sq - 2.0L * row[y[i]] + 1.0L;
  }
  std::sort(points.begin(), points.end(),
            [](const Point& a, const Point& b) { return a.confidence < b.confidence; });
  Reference r;
  r.accuracy = static_cast<double>(correct) / static_cast<double>(t);
  r.nll = static_cast<double>(nll / t);
  r.brier = static_cast<double>(brier / t);
  std::size_t next = 0;
  long double ece = 0;
  for (int k = 0; k < 15; ++k) {
    const double upper = (k + 1) / 15.0;
    long double conf = 0, hits = 0;
    std::int64_t n = 0;
    while (next < points.size() && (k == 14 || points[next].confidence < upper)) {
      conf += points[next].confidence;
      hits += points[next].correct;
      ++n;
      ++next;
    }
    r.counts.push_back(n);
    if (n > 0) ece += std::fabs(hits / n - conf / n) * n / static_cast<long double>(t);
  }
  r.ece = static_cast<double>(ece);
  return r;
}

TEST(Metrics, AgreesWithAnIndependentComputationOnRandomData) {
  std::mt19937_64 rng(2024);
  for (int trial = 0; trial < 20; ++trial) {
    const std::int64_t t = 1 + static_cast<std::int64_t>(rng() % 2000);
    const std::int64_t c = 2 + static_cast<std::int64_t>(rng() % 9);
    std::normal_distribution<double> normal(0, 1.0 + trial);  // from flat to very confident
    ntk::Matrix<double> p(t, c);
    std::vector<std::int64_t> y(static_cast<std::size_t>(t));
    for (std::int64_t i = 0; i < t; ++i) {
      double sum = 0;
      for (std::int64_t j = 0; j < c; ++j) sum += p(i, j) = std::exp(normal(rng));
      for (std::int64_t j = 0; j < c; ++j) p(i, j) /= sum;
      y[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c));
      // Some rows sit exactly on a bin edge, some are one-hot, some underflow to p = 0.
      if (rng() % 10 == 0) {
        const int k = 8 + static_cast<int>(rng() % 7);
        for (std::int64_t j = 0; j < c; ++j) p(i, j) = 0;
        p(i, 0) = k / 15.0;
        p(i, 1) = 1 - k / 15.0;
      } else if (rng() % 20 == 0) {
        for (std::int64_t j = 0; j < c; ++j) p(i, j) = j == 1;
      }
    }
    const auto m = ntk::evaluate_probabilities(p, y);
    const auto r = reference(p, y);
    EXPECT_EQ(m.accuracy, r.accuracy) << trial;
    EXPECT_NEAR(m.nll, r.nll, 1e-12 * std::max(1.0, r.nll)) << trial;
    EXPECT_NEAR(m.brier, r.brier, 1e-12) << trial;
    EXPECT_NEAR(m.ece, r.ece, 1e-12) << trial;
    std::int64_t total = 0;
    for (int k = 0; k < 15; ++k) {
      EXPECT_EQ(m.reliability[static_cast<std::size_t>(k)].count, r.counts[static_cast<std::size_t>(k)])
          << trial << " bin " << k;
      total += m.reliability[static_cast<std::size_t>(k)].count;
    }
    EXPECT_EQ(total, t);
  }
}

TEST(Metrics, RejectsBadInputByName) {
  const auto good = matrix(3, 2, {0.5, 0.5, 0.2, 0.8, 1.0, 0.0});
  EXPECT_EQ(error_of(good, {0, 1, 0}), "");
  EXPECT_CONTAINS(error_of(good, {0, 1}), "probs has 3 rows but there are 2 labels");
  EXPECT_CONTAINS(error_of(good, {0, 1, 2}), "labels[2] = 2 is out of range [0, 2)");
  EXPECT_CONTAINS(error_of(good, {0, -1, 0}), "labels[1] = -1 is out of range");
  EXPECT_CONTAINS(error_of(ntk::Matrix<double>(0, 2), {}), "no rows");
  EXPECT_CONTAINS(error_of(ntk::Matrix<double>(2, 0), {0, 0}), "no columns");
  EXPECT_CONTAINS(error_of(good, {0, 1, 0}, 0), "num_bins is 0");

  auto bad = good;
  bad(1, 1) = 0.3;
  EXPECT_CONTAINS(error_of(bad, {0, 1, 0}), "probs row 1 sums to 0.5, expected 1");
  bad = good;
  bad(2, 1) = 5e-7;  // within the tolerance
  EXPECT_EQ(error_of(bad, {0, 1, 0}), "");
  bad(2, 1) = 2e-6;
  EXPECT_CONTAINS(error_of(bad, {0, 1, 0}), "probs row 2 sums to");
  bad = good;
  bad(0, 1) = std::nan("");
  EXPECT_CONTAINS(error_of(bad, {0, 1, 0}), "probs(0, 1) is NaN");
  bad = good;
  bad(2, 0) = INFINITY;
  EXPECT_CONTAINS(error_of(bad, {0, 1, 0}), "probs(2, 0) is infinite");
  bad = good;
  bad(1, 0) = -0.25;
  bad(1, 1) = 1.25;
  EXPECT_CONTAINS(error_of(bad, {0, 1, 0}), "probs(1, 0) = -0.25 is negative");
}

}  // namespace
