// Uncertainty over initialization: the Gaussian modes against Monte Carlo over f0.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/uncertainty.hpp"
#include "test_data.hpp"

namespace {

using ntk::Matrix;
using ntk::testing::max_abs_diff;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

// A small readout std scales f0's law down (NNGP ~ w_out^2) and Theta with it; lambda is scaled the
// same way so the training strength k Theta stays O(1). The linearization is then accurate.
ntk::KernelSpec small_init_spec(double w_out) {
  ntk::KernelSpec s;
  s.depth = 2;
  s.w_std = 1.4;
  s.b_std = 0.1;
  s.w_std_out = w_out;
  s.b_std_out = 0.0;
  return s;
}

class UncertaintyTest : public ::testing::Test {
 protected:
  ntk::CpuBackend cpu_;
};

TEST_F(UncertaintyTest, LinearizedMatchesMonteCarloAtSmallInitScale) {
  const auto x = random_inputs(24, 5, 1), xt = random_inputs(6, 5, 2);
  const auto targets = ntk::targets_from_labels(random_labels(24, 3, 3), 3, 0.0);
  const double w_out = 0.05;
  ntk::FitSettings s;
  s.lambda = 0.02 * w_out * w_out;
  const auto model = ntk::fit_classifier(cpu_, small_init_spec(w_out), x.view(), targets, s);
  ASSERT_TRUE(model.diagnostics.converged);
  ntk::UncertaintyOptions lin;
  lin.mode = ntk::UncertaintyMode::linearized;
  const auto g = ntk::predict_uncertainty(cpu_, model, xt.view(), lin);
  ntk::UncertaintyOptions mc;
  mc.mode = ntk::UncertaintyMode::monte_carlo;
  mc.samples = 600;
  mc.seed = 7;
  const auto m = ntk::predict_uncertainty(cpu_, model, xt.view(), mc);
  for (std::int64_t i = 0; i < 6; ++i)
    for (std::int64_t c = 0; c < 3; ++c) {
      const double var = g.logit_var(i, c);
      ASSERT_GT(var, 0);
      // Sample variance of 600 draws: relative standard error sqrt(2/599) = 5.8%; allow 4 of them
      // plus the linearization's own O(w_out) error.
      EXPECT_NEAR(m.logit_var(i, c) / var, 1.0, 0.25) << i << "," << c;
      EXPECT_NEAR(m.mean_logits(i, c), g.mean_logits(i, c), 4 * std::sqrt(var / 600) + 0.05 * std::sqrt(var));
    }
}

TEST_F(UncertaintyTest, ExactGaussianMatchesSampling) {
  const auto x = random_inputs(20, 4, 4), xt = random_inputs(5, 4, 5);
  const auto targets = ntk::targets_from_labels(random_labels(20, 3, 6), 3, 0.2);
  ntk::FitSettings s;
  s.lambda = 0;
  ntk::KernelSpec spec = small_init_spec(1.0);
  const auto model = ntk::fit_classifier(cpu_, spec, x.view(), targets, s);
  ntk::UncertaintyOptions exact;
  exact.mode = ntk::UncertaintyMode::exact;
  const auto e = ntk::predict_uncertainty(cpu_, model, xt.view(), exact);
  ntk::UncertaintyOptions mc;
  mc.mode = ntk::UncertaintyMode::monte_carlo;
  mc.samples = 2000;
  const auto m = ntk::predict_uncertainty(cpu_, model, xt.view(), mc);
  for (std::int64_t i = 0; i < 5; ++i) {
    for (std::int64_t c = 0; c < 3; ++c) {
      const double var = e.logit_var(i, c);
      ASSERT_GT(var, 0);
      EXPECT_NEAR(m.logit_var(i, c) / var, 1.0, 0.15) << i << "," << c;  // rel. s.e. 3.2%
      EXPECT_NEAR(m.mean_logits(i, c), e.mean_logits(i, c), 4 * std::sqrt(var / 2000));
      EXPECT_NEAR(m.mean_probs(i, c), e.mean_probs(i, c), 0.03);
    }
    // Class-centred covariance: each row of the C x C block sums to zero.
    double row = 0;
    for (std::int64_t c = 0; c < 3; ++c) row += e.covariance(i, c);
    EXPECT_NEAR(row, 0.0, 1e-10 * (1 + e.logit_var(i, 0)));
    EXPECT_NEAR(e.mutual_info(i, 0), e.predictive_entropy(i, 0) - e.expected_entropy(i, 0), 1e-12);
    EXPECT_GE(e.mutual_info(i, 0), 0.0);
  }
}

TEST_F(UncertaintyTest, SeededAndReproducible) {
  const auto x = random_inputs(15, 3, 8), xt = random_inputs(7, 3, 9);
  const auto targets = ntk::targets_from_labels(random_labels(15, 2, 10), 2, 0.0);
  ntk::FitSettings s;
  s.lambda = 0.1;
  const auto model = ntk::fit_classifier(cpu_, small_init_spec(1.0), x.view(), targets, s);
  ntk::UncertaintyOptions mc;
  mc.mode = ntk::UncertaintyMode::monte_carlo;
  mc.samples = 20;
  mc.seed = 42;
  const auto a = ntk::predict_uncertainty(cpu_, model, xt.view(), mc);
  mc.tile_rows = 2;  // batching does not change the draws
  const auto b = ntk::predict_uncertainty(cpu_, model, xt.view(), mc);
  EXPECT_EQ(a.mean_logits.storage(), b.mean_logits.storage());
  EXPECT_EQ(a.logit_var.storage(), b.logit_var.storage());
  mc.seed = 43;
  const auto c = ntk::predict_uncertainty(cpu_, model, xt.view(), mc);
  EXPECT_NE(a.mean_logits.storage(), c.mean_logits.storage());
  // A caller's own batches (rows 3..6 as a call of their own, with first_row = 3) draw the same samples
  // as the whole call; equal to rounding (the products have other shapes).
  mc.seed = 42;
  mc.tile_rows = 0;
  mc.first_row = 3;
  const auto tail = ntk::predict_uncertainty(cpu_, model, xt.view().block(3, 0, 4, 3), mc);
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 0; j < 2; ++j) {
      EXPECT_NEAR(tail.mean_logits(i, j), a.mean_logits(3 + i, j), 1e-10);
      EXPECT_NEAR(tail.logit_var(i, j), a.logit_var(3 + i, j), 1e-10);
    }
}

TEST_F(UncertaintyTest, GaussianSoftmaxStatisticsAreCorrectForZeroCovariance) {
  const double mean[3] = {0.5, -1.0, 2.0};
  const double cov[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
  double probs[3], expected = 0;
  ntk::gaussian_softmax_statistics(mean, cov, 3, 16, 1, probs, expected);
  const double z = std::exp(0.5) + std::exp(-1.0) + std::exp(2.0);
  EXPECT_NEAR(probs[2], std::exp(2.0) / z, 1e-15);
  double h = 0;
  for (double p : probs) h -= p * std::log(p);
  EXPECT_NEAR(expected, h, 1e-14);
}

TEST_F(UncertaintyTest, ModesMustFitTheModel) {
  const auto x = random_inputs(10, 3, 11);
  const auto targets = ntk::targets_from_labels(random_labels(10, 2, 12), 2, 0.1);
  ntk::FitSettings s;
  s.lambda = 0.1;
  const auto reg = ntk::fit_classifier(cpu_, small_init_spec(1.0), x.view(), targets, s);
  ntk::UncertaintyOptions o;
  o.mode = ntk::UncertaintyMode::exact;
  EXPECT_THROW(ntk::predict_uncertainty(cpu_, reg, x.view(), o), ntk::InvalidArgument);
  s.lambda = 0;
  const auto unreg = ntk::fit_classifier(cpu_, small_init_spec(1.0), x.view(), targets, s);
  o.mode = ntk::UncertaintyMode::linearized;
  EXPECT_THROW(ntk::predict_uncertainty(cpu_, unreg, x.view(), o), ntk::InvalidArgument);
  EXPECT_THROW(ntk::parse_uncertainty_mode("bayes"), ntk::InvalidArgument);
}

}  // namespace
