// Finite-time gradient flow (SPEC section 2) against an independent fixed-step RK4 and its limits.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/dynamics.hpp"
#include "ntk/errors.hpp"
#include "test_data.hpp"

namespace {

using ntk::Matrix;
using ntk::testing::max_abs_diff;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

ntk::KernelSpec spec() {
  ntk::KernelSpec s;
  s.depth = 2;
  s.w_std = 1.3;
  s.b_std = 0.2;
  return s;
}

// The flow written out plainly (no library code but the kernel) and integrated by classic RK4.
Matrix<double> rk4_logits(const Matrix<double>& theta, const Matrix<double>& y, const Matrix<double>& f0,
                          double eta, double lambda, double t_end, int steps) {
  const std::int64_t n = y.rows(), c = y.cols();
  auto rhs = [&](const std::vector<double>& f) {
    std::vector<double> g(static_cast<std::size_t>(n * c)), out(g.size());
    for (std::int64_t i = 0; i < n; ++i) {
      double mx = -1e300, sum = 0;
      for (std::int64_t a = 0; a < c; ++a) mx = std::max(mx, f[i * c + a]);
      for (std::int64_t a = 0; a < c; ++a) sum += std::exp(f[i * c + a] - mx);
      for (std::int64_t a = 0; a < c; ++a) g[i * c + a] = std::exp(f[i * c + a] - mx) / sum - y(i, a);
    }
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t a = 0; a < c; ++a) {
        double s = 0;
        for (std::int64_t j = 0; j < n; ++j) s += theta(i, j) * g[j * c + a];
        out[i * c + a] = -eta * (s / double(n) + lambda * (f[i * c + a] - f0(i, a)));
      }
    return out;
  };
  std::vector<double> f(f0.storage());
  const double h = t_end / steps;
  for (int s = 0; s < steps; ++s) {
    auto k1 = rhs(f);
    std::vector<double> tmp(f.size());
    for (std::size_t q = 0; q < f.size(); ++q) tmp[q] = f[q] + 0.5 * h * k1[q];
    auto k2 = rhs(tmp);
    for (std::size_t q = 0; q < f.size(); ++q) tmp[q] = f[q] + 0.5 * h * k2[q];
    auto k3 = rhs(tmp);
    for (std::size_t q = 0; q < f.size(); ++q) tmp[q] = f[q] + h * k3[q];
    auto k4 = rhs(tmp);
    for (std::size_t q = 0; q < f.size(); ++q) f[q] += h / 6 * (k1[q] + 2 * k2[q] + 2 * k3[q] + k4[q]);
  }
  Matrix<double> out(n, c);
  std::copy(f.begin(), f.end(), out.data());
  return out;
}

class DynamicsTest : public ::testing::Test {
 protected:
  ntk::CpuBackend cpu_;
};

TEST_F(DynamicsTest, MatchesIndependentRk4AtFiniteTime) {
  const auto x = random_inputs(12, 4, 1);
  const auto t = ntk::targets_from_labels(random_labels(12, 3, 2), 3, 0.0);
  Matrix<double> f0 = random_inputs(12, 3, 3);
  ntk::FitSettings s;
  s.lambda = 0.05;
  s.learning_rate = 0.7;
  s.tolerance = 1e-11;
  const auto models = ntk::fit_dynamics(cpu_, spec(), x.view(), t, s, {0.5, 2.0}, {}, f0.view());
  Matrix<double> theta(12, 12);
  cpu_.kernel(spec(), x.view(), nullptr, {{}, theta.view()}, {});
  for (std::size_t k = 0; k < 2; ++k) {
    const double time = k == 0 ? 0.5 : 2.0;
    const auto ref = rk4_logits(theta, t.probabilities, f0, 0.7, 0.05, time, 4000);
    EXPECT_LE(max_abs_diff(models[k].train_logits, ref), 1e-9) << time;
    // The predictor at the training points is f0 - Theta B / N: the same logits.
    const auto p = ntk::predict(cpu_, models[k], x.view(), 0, f0.view());
    EXPECT_LE(max_abs_diff(p.logits, ref), 1e-6)
        << time;  // general-path diagonal noise, see classifier tests
  }
}

TEST_F(DynamicsTest, LongTimeReachesTheFixedPoint) {
  const auto x = random_inputs(15, 4, 4), xt = random_inputs(6, 4, 5);
  const auto t = ntk::targets_from_labels(random_labels(15, 3, 6), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 0.2;
  s.learning_rate = 1.0;
  const auto fixed = ntk::fit_classifier(cpu_, spec(), x.view(), t, s);
  s.tolerance = 1e-10;
  // The slowest rate is eta * lambda = 0.2: t = 200 leaves e^-40 of the start.
  const auto flow = ntk::fit_dynamics(cpu_, spec(), x.view(), t, s, {200.0});
  EXPECT_LE(max_abs_diff(flow[0].train_logits, fixed.train_logits), 1e-7);
  EXPECT_LE(max_abs_diff(ntk::predict(cpu_, flow[0], xt.view()).logits,
                         ntk::predict(cpu_, fixed, xt.view()).logits),
            1e-7);
}

TEST_F(DynamicsTest, UnregularizedLongTimeReachesTheClosedForm) {
  const auto x = random_inputs(8, 3, 7), xt = random_inputs(5, 3, 8);
  const auto t = ntk::targets_from_labels(random_labels(8, 2, 9), 2, 0.2);
  ntk::FitSettings s;
  s.lambda = 0;
  const auto closed = ntk::fit_classifier(cpu_, spec(), x.view(), t, s);
  s.learning_rate = 1.0;
  s.tolerance = 1e-10;
  const auto flow = ntk::fit_dynamics(cpu_, spec(), x.view(), t, s, {5e3});
  EXPECT_LE(
      max_abs_diff(ntk::predict(cpu_, flow[0], xt.view()).probs, ntk::predict(cpu_, closed, xt.view()).probs),
      1e-5);
}

TEST_F(DynamicsTest, TimeThroughFitClassifierAndBadInputs) {
  const auto x = random_inputs(6, 3, 10);
  const auto t = ntk::targets_from_labels(random_labels(6, 2, 11), 2, 0.0);
  ntk::FitSettings s;
  s.lambda = 0;  // one-hot targets and lambda = 0 are fine at a finite time
  s.time = 3.0;
  const auto m = ntk::fit_classifier(cpu_, spec(), x.view(), t, s);
  EXPECT_EQ(m.diagnostics.solver_used, ntk::SolverKind::dynamics);
  EXPECT_EQ(m.settings.time, 3.0);
  EXPECT_THROW(ntk::fit_dynamics(cpu_, spec(), x.view(), t, s, {2.0, 1.0}), ntk::InvalidArgument);
  EXPECT_THROW(ntk::fit_dynamics(cpu_, spec(), x.view(), t, s, {}), ntk::InvalidArgument);
  s.learning_rate = 0;
  EXPECT_THROW(ntk::fit_dynamics(cpu_, spec(), x.view(), t, s, {1.0}), ntk::InvalidArgument);
  s.learning_rate = 1;
  EXPECT_THROW(
      ntk::fit_dynamics(cpu_, spec(), x.view(), t, s, {1.0}, [](const ntk::StepRecord&) { return false; }),
      ntk::Cancelled);
}

}  // namespace
