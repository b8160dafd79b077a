// The Dormand-Prince 5(4) integrator against analytic solutions and an independently computed matrix
// exponential; its order, dense output, step counts on a stiff-ish spectrum, cancellation and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ntk/errors.hpp"
#include "ntk/ode.hpp"

namespace {

using Vec = std::vector<double>;

// A dense square matrix, row-major.
struct Mat {
  explicit Mat(std::size_t size) : n(size), d(size * size, 0.0) {}
  double& operator()(std::size_t i, std::size_t j) { return d[i * n + j]; }
  double operator()(std::size_t i, std::size_t j) const { return d[i * n + j]; }
  std::size_t n;
  Vec d;
};

// Reports a measured number in the test log (and the XML report) so step counts and errors stay visible.
void report(const std::string& key, double value) {
  std::printf("[ measured ] %s = %.4g\n", key.c_str(), value);
  ::testing::Test::RecordProperty(key, std::to_string(value));
}

// y' = y cos t, y(0) = 1: y = exp(sin t). Nonlinear in t, non-monotone, no decay to hide errors in.
const ntk::OdeRhs cos_rhs = [](double t, std::span<const double> y, std::span<double> dy) {
  dy[0] = y[0] * std::cos(t);
};

// Cyclic Jacobi eigenvalue iteration for a symmetric matrix: s = V diag(w) V^T. Slow but simple and
// independent of the integrator; rotations are applied until the off-diagonal mass is at rounding level.
void jacobi_eigen(Mat s, Vec& w, Mat& v) {
  const std::size_t n = s.n;
  v = Mat(n);
  for (std::size_t i = 0; i < n; ++i) v(i, i) = 1;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, diag = 0;
    for (std::size_t p = 0; p < n; ++p) {
      diag += s(p, p) * s(p, p);
      for (std::size_t q = p + 1; q < n; ++q) off += s(p, q) * s(p, q);
    }
    if (off <= 1e-34 * diag) break;
    for (std::size_t p = 0; p < n; ++p) {
      for (std::size_t q = p + 1; q < n; ++q) {
        if (s(p, q) == 0) continue;
        // The rotation angle that zeroes s(p, q), with the smaller root for stability.
        const double theta = (s(q, q) - s(p, p)) / (2 * s(p, q));
        const double t = (theta >= 0 ? 1 : -1) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), sn = t * c;
        for (std::size_t k = 0; k < n; ++k) {
          const double skp = s(k, p), skq = s(k, q);
          s(k, p) = c * skp - sn * skq;
          s(k, q) = sn * skp + c * skq;
        }
        for (std::size_t k = 0; k < n; ++k) {
          const double spk = s(p, k), sqk = s(q, k);
          s(p, k) = c * spk - sn * sqk;
          s(q, k) = sn * spk + c * sqk;
        }
        for (std::size_t k = 0; k < n; ++k) {
          const double vkp = v(k, p), vkq = v(k, q);
          v(k, p) = c * vkp - sn * vkq;
          v(k, q) = sn * vkp + c * vkq;
        }
      }
    }
  }
  w.resize(n);
  for (std::size_t i = 0; i < n; ++i) w[i] = s(i, i);
}

// A = -M M^T with M = Q diag(sqrt(lambda)), Q a random orthogonal matrix: symmetric negative definite with
// eigenvalues -lambda, like the linearized NTK flow -eta Theta / N.
Mat negative_definite(const Vec& lambda, std::uint64_t seed) {
  const std::size_t n = lambda.size();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Mat q(n);
  for (auto& x : q.d) x = normal(rng);
  // Modified Gram-Schmidt on the columns, twice for orthogonality at rounding level.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t j = 0; j < n; ++j) {
      for (std::size_t k = 0; k < j; ++k) {
        double dot = 0;
        for (std::size_t i = 0; i < n; ++i) dot += q(i, j) * q(i, k);
        for (std::size_t i = 0; i < n; ++i) q(i, j) -= dot * q(i, k);
      }
      double norm = 0;
      for (std::size_t i = 0; i < n; ++i) norm += q(i, j) * q(i, j);
      for (std::size_t i = 0; i < n; ++i) q(i, j) /= std::sqrt(norm);
    }
  }
  Mat m(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) m(i, j) = q(i, j) * std::sqrt(lambda[j]);
  Mat a(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t k = 0; k < n; ++k) a(i, j) -= m(i, k) * m(j, k);
  return a;
}

TEST(Ode, ExponentialDecayAcrossRates) {
  double worst = 0;
  for (double k = 1e-3; k <= 1.001e3; k *= 10) {
    const ntk::OdeRhs rhs = [k](double, std::span<const double> y, std::span<double> dy) {
      dy[0] = -k * y[0];
    };
    const Vec times = {0.1 / k, 1 / k, 5 / k};
    ntk::OdeStats stats;
    const auto ys = ntk::integrate_dopri5(rhs, 0, Vec{1.0}, times, {}, {}, &stats);
    ASSERT_EQ(ys.size(), times.size());
    for (std::size_t i = 0; i < times.size(); ++i) {
      const double want = std::exp(-k * times[i]);
      const double rel = std::abs(ys[i][0] - want) / want;
      worst = std::max(worst, rel);
      EXPECT_LT(rel, 1e-9) << "k = " << k << ", t = " << times[i];
    }
    // The problem is the same in the time unit 1/k, so step-size control must make the cost scale-free.
    EXPECT_LT(stats.steps_accepted, 200) << "k = " << k;
    EXPECT_FALSE(stats.stiffness_detected);
  }
  report("decay_worst_relative_error", worst);
}

TEST(Ode, LinearSystemMatchesMatrixExponentialAcrossFiveDecades) {
  const std::size_t n = 24;
  Vec lambda(n);
  for (std::size_t i = 0; i < n; ++i) lambda[i] = std::pow(10.0, -5.0 + 5.0 * double(i) / double(n - 1));
  const Mat a = negative_definite(lambda, 11);

  // The reference: exp(A t) y0 = V exp(-mu t) V^T y0 from the test's own eigen-decomposition of -A.
  Mat minus_a(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) minus_a(i, j) = -a(i, j);
  Vec mu;
  Mat v(n);
  jacobi_eigen(minus_a, mu, v);
  std::sort(mu.begin(), mu.end());  // only for the check below; v is used with the unsorted order
  for (std::size_t i = 0; i < n; ++i) EXPECT_NEAR(mu[i], lambda[i], 1e-14) << i;
  jacobi_eigen(minus_a, mu, v);

  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  Vec y0(n);
  for (auto& x : y0) x = normal(rng);
  auto exact = [&](double t) {
    Vec c(n, 0.0), y(n, 0.0);
    for (std::size_t k = 0; k < n; ++k) {
      for (std::size_t i = 0; i < n; ++i) c[k] += v(i, k) * y0[i];
      c[k] *= std::exp(-mu[k] * t);
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t k = 0; k < n; ++k) y[i] += v(i, k) * c[k];
    return y;
  };

  const ntk::OdeRhs rhs = [&](double, std::span<const double> y, std::span<double> dy) {
    for (std::size_t i = 0; i < n; ++i) {
      double s = 0;
      for (std::size_t j = 0; j < n; ++j) s += a(i, j) * y[j];
      dy[i] = s;
    }
  };
  const Vec times = {1e-2, 1e-1, 1, 1e1, 1e2, 1e3, 1e4, 1e5};
  ntk::OdeOptions opt;  // rtol 1e-10, atol 1e-12
  ntk::OdeStats stats;
  std::vector<std::int64_t> steps_at;
  const ntk::OdeObserver count = [&](double t, std::span<const double>, const ntk::OdeStats& s) {
    while (steps_at.size() < times.size() && t >= times[steps_at.size()])
      steps_at.push_back(s.steps_accepted);
    return true;
  };
  const auto ys = ntk::integrate_dopri5(rhs, 0, y0, times, opt, count, &stats);
  for (std::size_t j = 0; j < times.size(); ++j) {
    const Vec want = exact(times[j]);
    double scale = 0, err = 0;
    for (std::size_t i = 0; i < n; ++i) {
      scale = std::max(scale, std::abs(want[i]));
      err = std::max(err, std::abs(ys[j][i] - want[i]));
    }
    // Error in units of the tolerance at the solution's scale.
    const double in_tol = err / (opt.rtol * scale + opt.atol);
    report("linear_t" + std::to_string(int(std::log10(times[j]))) + "_error_in_tolerances", in_tol);
    report("linear_t" + std::to_string(int(std::log10(times[j]))) + "_steps", double(steps_at[j]));
    EXPECT_LT(in_tol, 10) << "t = " << times[j];
  }
  report("linear_steps_accepted", double(stats.steps_accepted));
  report("linear_steps_rejected", double(stats.steps_rejected));
  report("linear_rhs_evaluations", double(stats.rhs_evaluations));
  EXPECT_LT(stats.steps_accepted + stats.steps_rejected, 200000);
  // Past the fast transients the step sits at DOPRI5's stability boundary h * lambda_max ~ 3.3; being
  // flagged there is what stiffness detection is for.
  EXPECT_TRUE(stats.stiffness_detected);
  EXPECT_GT(stats.last_step * lambda.back(), 2.0);
  EXPECT_LT(stats.last_step * lambda.back(), 3.5);
}

TEST(Ode, HarmonicOscillatorConservesEnergyOverHundredPeriods) {
  const ntk::OdeRhs rhs = [](double, std::span<const double> y, std::span<double> dy) {
    dy[0] = y[1];
    dy[1] = -y[0];
  };
  const double pi = std::acos(-1.0);
  Vec times;
  for (int p = 1; p <= 100; ++p) times.push_back(2 * pi * p);
  ntk::OdeOptions opt;
  ntk::OdeStats stats;
  const auto ys = ntk::integrate_dopri5(rhs, 0, Vec{1.0, 0.0}, times, opt, {}, &stats);
  double energy_err = 0, state_err = 0;
  for (const auto& y : ys) {
    energy_err = std::max(energy_err, std::abs(y[0] * y[0] + y[1] * y[1] - 1));
    state_err = std::max({state_err, std::abs(y[0] - 1), std::abs(y[1])});  // back to (1, 0) each period
  }
  report("oscillator_energy_error", energy_err);
  report("oscillator_state_error", state_err);
  report("oscillator_steps", double(stats.steps_accepted));
  // DOPRI5 is not symplectic: the energy drifts linearly, by about the tolerance per period.
  const double periods = double(times.size());
  EXPECT_LT(energy_err, 2 * periods * opt.rtol);
  EXPECT_LT(state_err, 2 * periods * opt.rtol);
  EXPECT_FALSE(stats.stiffness_detected);
}

TEST(Ode, MaxNormHoldsEveryComponentToTolerance) {
  // Components of very different size: the max norm controls each, so it takes at least as many steps as
  // the RMS norm and its error is no larger.
  const ntk::OdeRhs rhs = [](double t, std::span<const double> y, std::span<double> dy) {
    dy[0] = y[0] * std::cos(t);
    dy[1] = -y[1];
    dy[2] = 1e-3 * std::cos(t);
  };
  auto run = [&](ntk::OdeNorm norm, ntk::OdeStats& stats) {
    ntk::OdeOptions opt;
    opt.norm = norm;
    opt.rtol = opt.atol = 1e-9;
    const auto y = ntk::integrate_dopri5(rhs, 0, Vec{1.0, 1.0, 0.0}, Vec{10.0}, opt, {}, &stats)[0];
    return std::max({std::abs(y[0] - std::exp(std::sin(10.0))), std::abs(y[1] - std::exp(-10.0)),
                     std::abs(y[2] - 1e-3 * std::sin(10.0))});
  };
  ntk::OdeStats rms, max;
  const double err_rms = run(ntk::OdeNorm::rms, rms), err_max = run(ntk::OdeNorm::max, max);
  report("rms_norm_steps", double(rms.steps_accepted));
  report("max_norm_steps", double(max.steps_accepted));
  report("rms_norm_error", err_rms);
  report("max_norm_error", err_max);
  EXPECT_GE(max.steps_accepted, rms.steps_accepted);
  EXPECT_LE(err_max, err_rms);
  EXPECT_LT(err_max, 20 * 1e-9);
}

TEST(Ode, FixedStepsConvergeAtFifthOrder) {
  // Huge tolerances accept every step and max_step pins h: the plain method, whose global error is O(h^5).
  auto error_with_step = [](double h) {
    ntk::OdeOptions opt;
    opt.rtol = opt.atol = 1e6;
    opt.initial_step = opt.max_step = h;
    ntk::OdeStats stats;
    const auto y = ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, Vec{4.0}, opt, {}, &stats);
    EXPECT_EQ(stats.steps_rejected, 0);
    EXPECT_NEAR(double(stats.steps_accepted), 4 / h, 1.0);
    return std::abs(y[0][0] - std::exp(std::sin(4.0)));
  };
  // Observed order log2(e(h) / e(h/2)), between h = 0.4 (not yet asymptotic: order 1.7) and h = 0.0125
  // (errors ~4e-14, rounding starts to show).
  double prev = error_with_step(0.1);
  for (double h = 0.05; h >= 0.025; h /= 2) {
    const double err = error_with_step(h);
    const double order = std::log2(prev / err);
    report("fixed_step_h" + std::to_string(h) + "_error", err);
    report("fixed_step_h" + std::to_string(h) + "_observed_order", order);
    EXPECT_NEAR(order, 5.0, 0.3) << "h = " << h;
    prev = err;
  }
}

TEST(Ode, ErrorIsProportionalToTolerance) {
  // With step-size control the global error of DOPRI5 (local extrapolation) scales like the tolerance and
  // the step count like tol^(-1/5). Least-squares slopes over 8 decades of tolerance.
  std::vector<double> log_tol, log_err, log_steps;
  for (double tol = 1e-4; tol >= 0.99e-12; tol /= 10) {
    ntk::OdeOptions opt;
    opt.rtol = opt.atol = tol;
    ntk::OdeStats stats;
    Vec times;
    for (int i = 1; i <= 40; ++i) times.push_back(0.5 * i);
    const auto ys = ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, times, opt, {}, &stats);
    double err = 0;
    for (std::size_t i = 0; i < times.size(); ++i)
      err = std::max(err, std::abs(ys[i][0] - std::exp(std::sin(times[i]))));
    report("tol" + std::to_string(int(std::round(-std::log10(tol)))) + "_error", err);
    report("tol" + std::to_string(int(std::round(-std::log10(tol)))) + "_steps",
           double(stats.steps_accepted));
    log_tol.push_back(std::log(tol));
    log_err.push_back(std::log(err));
    log_steps.push_back(std::log(double(stats.steps_accepted)));
  }
  auto slope = [&](const std::vector<double>& ys) {
    double mx = 0, my = 0;
    for (std::size_t i = 0; i < ys.size(); ++i) mx += log_tol[i], my += ys[i];
    mx /= double(ys.size());
    my /= double(ys.size());
    double sxy = 0, sxx = 0;
    for (std::size_t i = 0; i < ys.size(); ++i) {
      sxy += (log_tol[i] - mx) * (ys[i] - my);
      sxx += (log_tol[i] - mx) * (log_tol[i] - mx);
    }
    return sxy / sxx;
  };
  report("error_vs_tol_slope", slope(log_err));
  report("steps_vs_tol_slope", slope(log_steps));
  EXPECT_NEAR(slope(log_err), 1.0, 0.2);
  EXPECT_NEAR(slope(log_steps), -0.2, 0.05);
}

TEST(Ode, DenseOutputMatchesBetweenStepsWithoutShorteningThem) {
  ntk::OdeOptions opt;
  opt.rtol = opt.atol = 1e-10;
  ntk::OdeStats only_end, dense;
  const auto end = ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, Vec{20.0}, opt, {}, &only_end);
  Vec times;
  for (int i = 0; i <= 2000; ++i) times.push_back(0.01 * i);
  times.back() = 20.0;
  const auto ys = ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, times, opt, {}, &dense);
  double worst = 0;
  for (std::size_t i = 0; i < times.size(); ++i) {
    worst = std::max(worst, std::abs(ys[i][0] - std::exp(std::sin(times[i]))) / std::exp(std::sin(times[i])));
  }
  report("dense_output_worst_relative_error", worst);
  report("dense_output_steps", double(dense.steps_accepted));
  EXPECT_LT(worst, 50 * opt.rtol);
  EXPECT_EQ(ys[0][0], 1.0);  // t0 is returned as given
  // 2001 outputs over ~100 steps, yet the very same steps and the same final value.
  EXPECT_EQ(dense.steps_accepted, only_end.steps_accepted);
  EXPECT_EQ(dense.rhs_evaluations, only_end.rhs_evaluations);
  EXPECT_EQ(ys.back()[0], end[0][0]);
  EXPECT_LT(dense.steps_accepted, int(times.size()) / 5);
}

TEST(Ode, OutputTimesMayRepeatAndIncludeT0) {
  const auto ys = ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, Vec{0, 0, 1, 1, 2}, {});
  ASSERT_EQ(ys.size(), 5u);
  EXPECT_EQ(ys[0][0], 1.0);
  EXPECT_EQ(ys[1][0], 1.0);
  EXPECT_EQ(ys[2][0], ys[3][0]);
  EXPECT_NEAR(ys[4][0], std::exp(std::sin(2.0)), 1e-9);
  ntk::OdeStats stats;
  EXPECT_TRUE(ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, Vec{}, {}, {}, &stats).empty());
  EXPECT_EQ(stats.rhs_evaluations, 0);
}

TEST(Ode, ObserverSeesEveryAcceptedStepAndCanCancel) {
  std::int64_t calls = 0;
  double last_t = 0;
  ntk::OdeStats stats;
  const ntk::OdeObserver watch = [&](double t, std::span<const double> y, const ntk::OdeStats& s) {
    ++calls;
    EXPECT_GT(t, last_t);
    EXPECT_EQ(s.steps_accepted, calls);
    EXPECT_NEAR(y[0], std::exp(std::sin(t)), 1e-8);
    last_t = t;
    return true;
  };
  ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, Vec{10.0}, {}, watch, &stats);
  EXPECT_EQ(calls, stats.steps_accepted);
  EXPECT_EQ(last_t, 10.0);

  calls = 0;
  const ntk::OdeObserver cancel = [&](double, std::span<const double>, const ntk::OdeStats&) {
    return ++calls < 5;
  };
  try {
    ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0}, Vec{10.0}, {}, cancel, &stats);
    FAIL() << "not cancelled";
  } catch (const ntk::Cancelled& e) {
    EXPECT_NE(std::string(e.what()).find("cancelled by the observer at t = "), std::string::npos) << e.what();
  }
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(stats.steps_accepted, 5);  // stats are published even when the run throws
}

TEST(Ode, RejectsBadInputs) {
  const Vec y0 = {1.0};
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, y0, Vec{2, 1}), ntk::InvalidArgument);
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 1, y0, Vec{0.5, 2}), ntk::InvalidArgument);
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, y0, Vec{1, nan}), ntk::InvalidArgument);
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, nan, y0, Vec{1}), ntk::InvalidArgument);
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, Vec{nan}, Vec{1}), ntk::InvalidArgument);
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, Vec{1.0, inf}, Vec{1}), ntk::InvalidArgument);
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, Vec{}, Vec{1}), ntk::InvalidArgument);
  for (double bad : {0.0, -1e-8, nan}) {
    ntk::OdeOptions opt;
    opt.rtol = bad;
    EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, y0, Vec{1}, opt), ntk::InvalidArgument);
    opt = {};
    opt.atol = bad;
    EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, y0, Vec{1}, opt), ntk::InvalidArgument);
    opt = {};
    opt.max_step = bad;
    EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, y0, Vec{1}, opt), ntk::InvalidArgument);
  }
  ntk::OdeOptions opt;
  opt.max_steps = 0;
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, y0, Vec{1}, opt), ntk::InvalidArgument);
  opt = {};
  opt.initial_step = -1;
  EXPECT_THROW(ntk::integrate_dopri5(cos_rhs, 0, y0, Vec{1}, opt), ntk::InvalidArgument);
}

// Runs the integration expecting NumericalError and returns its message.
std::string numerical_error(const ntk::OdeRhs& rhs, const Vec& y0, const Vec& times,
                            const ntk::OdeOptions& opt, ntk::OdeStats* stats = nullptr) {
  try {
    ntk::integrate_dopri5(rhs, 0, y0, times, opt, {}, stats);
  } catch (const ntk::NumericalError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no NumericalError";
  return {};
}

TEST(Ode, MaxStepsIsANumericalErrorNamingTheTime) {
  ntk::OdeOptions opt;
  opt.max_steps = 10;
  ntk::OdeStats stats;
  const std::string m = numerical_error(cos_rhs, Vec{1.0}, Vec{1000.0}, opt, &stats);
  EXPECT_NE(m.find("max_steps = 10 exhausted at t = "), std::string::npos) << m;
  EXPECT_EQ(stats.steps_accepted + stats.steps_rejected, 10);
}

TEST(Ode, SingularityIsAStepSizeUnderflow) {
  // y' = y^2, y(0) = 1: y = 1 / (1 - t) blows up at t = 1.
  const ntk::OdeRhs blow_up = [](double, std::span<const double> y, std::span<double> dy) {
    dy[0] = y[0] * y[0];
  };
  ntk::OdeStats stats;
  const std::string m = numerical_error(blow_up, Vec{1.0}, Vec{2.0}, {}, &stats);
  EXPECT_NE(m.find("step size underflow at t = 0.99999"), std::string::npos) << m;
  EXPECT_LT(stats.steps_accepted + stats.steps_rejected, 10000);
}

TEST(Ode, NonFiniteRightHandSideIsANumericalErrorNamingTheTime) {
  // Fine up to t = 1.5, NaN beyond: the integrator retries shorter steps and then gives up near 1.5.
  const ntk::OdeRhs nan_after = [](double t, std::span<const double> y, std::span<double> dy) {
    dy[0] = t > 1.5 ? std::numeric_limits<double>::quiet_NaN() : -y[0];
  };
  ntk::OdeStats stats;
  std::string m = numerical_error(nan_after, Vec{1.0}, Vec{3.0}, {}, &stats);
  EXPECT_NE(m.find("step size underflow at t = 1.4999"), std::string::npos) << m;
  EXPECT_NE(m.find("non-finite values"), std::string::npos) << m;
  EXPECT_LT(stats.steps_rejected, 200);

  const ntk::OdeRhs always_nan = [](double, std::span<const double>, std::span<double> dy) {
    dy[0] = std::numeric_limits<double>::infinity();
  };
  m = numerical_error(always_nan, Vec{1.0}, Vec{3.0}, {});
  EXPECT_NE(m.find("non-finite values at t = 0"), std::string::npos) << m;
}

TEST(Ode, RecoversFromNonFiniteTrialSteps) {
  // y' = -sqrt(y) has no real value for y < 0; the first trial steps overshoot there (the rhs returns NaN)
  // and must just be retried shorter. y = (1 - t/2)^2 until t = 2.
  int nan_returned = 0;
  const ntk::OdeRhs sqrt_rhs = [&](double, std::span<const double> y, std::span<double> dy) {
    dy[0] = -std::sqrt(y[0]);
    nan_returned += std::isnan(dy[0]);
  };
  ntk::OdeOptions opt;
  opt.initial_step = 1.9;
  ntk::OdeStats stats;
  const auto ys = ntk::integrate_dopri5(sqrt_rhs, 0, Vec{1.0}, Vec{1.9}, opt, {}, &stats);
  EXPECT_GT(nan_returned, 0);
  EXPECT_GT(stats.steps_rejected, 0);
  EXPECT_NEAR(ys[0][0], 0.05 * 0.05, 1e-9);
}

}  // namespace
