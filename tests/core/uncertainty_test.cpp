// Uncertainty over initialization: the Gaussian modes against Monte Carlo over f0.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>

#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/sample_math.hpp"
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

// Solves a x = b in place (b: n x m, row-major) by Gaussian elimination with partial pivoting.
void dense_solve(std::vector<double> a, std::vector<double>& b, int n, int m) {
  for (int col = 0; col < n; ++col) {
    int pivot = col;
    for (int r = col + 1; r < n; ++r)
      if (std::abs(a[r * n + col]) > std::abs(a[pivot * n + col])) pivot = r;
    for (int k = 0; k < n; ++k) std::swap(a[col * n + k], a[pivot * n + k]);
    for (int k = 0; k < m; ++k) std::swap(b[col * m + k], b[pivot * m + k]);
    for (int r = col + 1; r < n; ++r) {
      const double f = a[r * n + col] / a[col * n + col];
      for (int k = col; k < n; ++k) a[r * n + k] -= f * a[col * n + k];
      for (int k = 0; k < m; ++k) b[r * m + k] -= f * b[col * m + k];
    }
  }
  for (int col = n - 1; col >= 0; --col)
    for (int k = 0; k < m; ++k) {
      double v = b[col * m + k];
      for (int j = col + 1; j < n; ++j) v -= a[col * n + j] * b[j * m + k];
      b[col * m + k] = v / a[col * n + col];
    }
}

TEST_F(UncertaintyTest, LinearizedCovarianceIsTheDeltaMethodOfTheFixedPoint) {
  // Independent dense reference (index (i, c) -> i C + c): at the fixed point a = Y - softmax(K a) with
  // K = k Theta (x) I, a perturbation df0 of f0(X) moves a by -(I + W K)^-1 W df0, so
  // df(x*) = df0(x*) - G df0(X), G = k (Theta(x*, X) (x) I) (I + W K)^-1 W, and with f0 ~ GP(0, NNGP (x) I)
  // Cov f(x*) = k(x*, x*) I - G k_X* - k_*X G^T + G (K_XX (x) I) G^T.
  // Also with a duplicated training input: K_XX is then singular, and Q = sum_c E_c K E_c cannot go
  // through K's Cholesky factor.
  for (const bool duplicate : {false, true}) {
    const int n = 18, c = 3, t = 4, nc = n * c;
    auto x = random_inputs(n, 5, 31);
    const auto xt = random_inputs(t, 5, 32);
    if (duplicate)
      for (int j = 0; j < 5; ++j) x(7, j) = x(3, j);
    const auto targets = ntk::targets_from_labels(random_labels(n, c, 33), c, 0.0);
    ntk::FitSettings s;
    s.lambda = 0.05;
    s.tolerance = 1e-13;
    const ntk::KernelSpec spec = small_init_spec(1.0);
    const auto model = ntk::fit_classifier(cpu_, spec, x.view(), targets, s);
    ASSERT_TRUE(model.diagnostics.converged) << model.diagnostics.message;
    ntk::UncertaintyOptions lin;
    lin.mode = ntk::UncertaintyMode::linearized;
    const auto got = ntk::predict_uncertainty(cpu_, model, xt.view(), lin);

    Matrix<double> theta(n, n), k_xx(n, n), theta_sx(t, n), k_sx(t, n);
    cpu_.kernel(spec, x.view(), nullptr, {k_xx.view(), theta.view()}, {});
    const ntk::ConstMatrixView<double> xv = x.view();
    cpu_.kernel(spec, xt.view(), &xv, {k_sx.view(), theta_sx.view()}, {});
    std::vector<double> k_ss(t);
    cpu_.kernel_diagonal(spec, xt.view(), {std::span<double>(k_ss), {}}, {});
    const double k = 1.0 / (n * s.lambda);
    std::vector<double> w(nc * nc, 0.0), system(nc * nc, 0.0);
    for (int i = 0; i < n; ++i) {
      std::vector<double> p(c);
      ntk::sample::softmax(model.train_logits.row_data(i), c, p.data());
      for (int a = 0; a < c; ++a)
        for (int b = 0; b < c; ++b) w[(i * c + a) * nc + i * c + b] = (a == b ? p[a] : 0.0) - p[a] * p[b];
    }
    for (int r = 0; r < nc; ++r)  // I + W K
      for (int q = 0; q < nc; ++q) {
        double v = r == q ? 1.0 : 0.0;
        for (int j = 0; j < n; ++j) v += w[r * nc + j * c + q % c] * k * theta(j, q / c);
        system[r * nc + q] = v;
      }
    std::vector<double> sol = w;  // (I + W K)^-1 W
    dense_solve(system, sol, nc, nc);
    for (int sidx = 0; sidx < t; ++sidx) {
      std::vector<double> g(c * nc, 0.0);  // G for this test point
      for (int a = 0; a < c; ++a)
        for (int q = 0; q < nc; ++q)
          for (int j = 0; j < n; ++j) g[a * nc + q] += k * theta_sx(sidx, j) * sol[(j * c + a) * nc + q];
      for (int a = 0; a < c; ++a)
        for (int b = 0; b < c; ++b) {
          double v = a == b ? k_ss[sidx] : 0.0;
          for (int j = 0; j < n; ++j)
            v -= g[a * nc + j * c + b] * k_sx(sidx, j) + g[b * nc + j * c + a] * k_sx(sidx, j);
          for (int d = 0; d < c; ++d)
            for (int j = 0; j < n; ++j)
              for (int r = 0; r < n; ++r) v += g[a * nc + j * c + d] * k_xx(j, r) * g[b * nc + r * c + d];
          EXPECT_NEAR(got.covariance(sidx, a * c + b), v, 1e-10 * (1 + std::abs(v)))
              << sidx << " " << a << b << (duplicate ? " (duplicated input)" : "");
        }
    }
  }
}

TEST_F(UncertaintyTest, AContextIsReusedAcrossBlocksAndFollowsTheOptions) {
  const auto x = random_inputs(40, 5, 41), xt = random_inputs(10, 5, 42);
  const auto targets = ntk::targets_from_labels(random_labels(40, 3, 43), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 0.01;
  const auto model = ntk::fit_classifier(cpu_, small_init_spec(1.0), x.view(), targets, s);
  for (auto mode : {ntk::UncertaintyMode::linearized, ntk::UncertaintyMode::monte_carlo}) {
    ntk::UncertaintyOptions o;
    o.mode = mode;
    o.samples = 20;
    o.seed = 5;
    const auto whole = ntk::predict_uncertainty(cpu_, model, xt.view(), o);
    auto context = ntk::make_uncertainty_context();
    Matrix<double> var(10, 3);
    for (std::int64_t r0 = 0; r0 < 10; r0 += 4) {
      const std::int64_t rows = std::min<std::int64_t>(4, 10 - r0);
      o.first_row = r0;
      const auto part =
          ntk::predict_uncertainty(cpu_, model, xt.view().block(r0, 0, rows, 5), o, context.get());
      for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t q = 0; q < 3; ++q) var(r0 + i, q) = part.logit_var(i, q);
    }
    EXPECT_LE(max_abs_diff(var, whole.logit_var), 1e-12) << ntk::uncertainty_mode_name(mode);
    // Another seed must not reuse the first seed's samples.
    o.first_row = 0;
    o.seed = 6;
    const auto reseeded = ntk::predict_uncertainty(cpu_, model, xt.view(), o, context.get());
    const auto fresh = ntk::predict_uncertainty(cpu_, model, xt.view(), o);
    EXPECT_LE(max_abs_diff(reseeded.logit_var, fresh.logit_var), 1e-12) << ntk::uncertainty_mode_name(mode);
  }
}

// The CPU backend, except that make_resident() finds no room after `room` matrices (as a full GPU pool
// would): the uncertainty context must then keep none of its matrices resident and give the same
// numbers through the host fallback.
class NoRoomBackend final : public ntk::Backend {
 public:
  explicit NoRoomBackend(int room) : room_(room) {}
  int refused = 0;
  std::string name() const override { return "cpu (no room)"; }
  std::string description() const override { return cpu_.description(); }
  void kernel(const ntk::KernelSpec& spec, ntk::ConstMatrixView<float> x1,
              const ntk::ConstMatrixView<float>* x2, ntk::KernelOutputs<float> out,
              const ntk::AssemblyOptions& o) override {
    cpu_.kernel(spec, x1, x2, out, o);
  }
  void kernel(const ntk::KernelSpec& spec, ntk::ConstMatrixView<double> x1,
              const ntk::ConstMatrixView<double>* x2, ntk::KernelOutputs<double> out,
              const ntk::AssemblyOptions& o) override {
    cpu_.kernel(spec, x1, x2, out, o);
  }
  void kernel_diagonal(const ntk::KernelSpec& spec, ntk::ConstMatrixView<float> x,
                       ntk::KernelDiagonal<float> out, const ntk::AssemblyOptions& o) override {
    cpu_.kernel_diagonal(spec, x, out, o);
  }
  void kernel_diagonal(const ntk::KernelSpec& spec, ntk::ConstMatrixView<double> x,
                       ntk::KernelDiagonal<double> out, const ntk::AssemblyOptions& o) override {
    cpu_.kernel_diagonal(spec, x, out, o);
  }
  void gemm(bool ta, bool tb, double alpha, ntk::ConstMatrixView<double> a, ntk::ConstMatrixView<double> b,
            double beta, ntk::MatrixView<double> c) override {
    cpu_.gemm(ta, tb, alpha, a, b, beta, c);
  }
  void cholesky(ntk::MatrixView<double> a, const char* what) override { cpu_.cholesky(a, what); }
  void spd_inverse(ntk::MatrixView<double> a, const char* what) override { cpu_.spd_inverse(a, what); }
  void triangular_solve(ntk::ConstMatrixView<double> l, ntk::MatrixView<double> b, bool transpose) override {
    cpu_.triangular_solve(l, b, transpose);
  }
  std::unique_ptr<ntk::KernelProduct> make_kernel_product(const ntk::KernelSpec& spec, bool float32,
                                                          ntk::ConstMatrixView<double> x_train,
                                                          ntk::ConstMatrixView<double> b) override {
    return cpu_.make_kernel_product(spec, float32, x_train, b);
  }
  std::unique_ptr<ntk::ResidentMatrix> make_resident(ntk::ConstMatrixView<double> a,
                                                     const char* what) override {
    if (room_-- <= 0) {
      ++refused;
      throw ntk::ResourceExhausted(std::string(what) + " needs room there is not");
    }
    return cpu_.make_resident(a, what);
  }

 private:
  ntk::CpuBackend cpu_;
  int room_;
};

TEST_F(UncertaintyTest, WithoutRoomForTheContextsMatricesTheyStayOnTheHost) {
  const auto x = random_inputs(40, 5, 51), xt = random_inputs(10, 5, 52);
  const auto targets = ntk::targets_from_labels(random_labels(40, 3, 53), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 0.01;
  const auto model = ntk::fit_classifier(cpu_, small_init_spec(1.0), x.view(), targets, s);
  ntk::UncertaintyOptions o;
  o.mode = ntk::UncertaintyMode::linearized;
  const auto want = ntk::predict_uncertainty(cpu_, model, xt.view(), o);
  for (const int room : {0, 2}) {  // none fits; two of the five (3 E_c, Q, K_XX) fit
    NoRoomBackend tight(room);
    const auto got = ntk::predict_uncertainty(tight, model, xt.view(), o);
    EXPECT_EQ(tight.refused, 1) << "room " << room;
    EXPECT_LE(max_abs_diff(got.covariance, want.covariance), 1e-12) << "room " << room;
    EXPECT_LE(max_abs_diff(got.mean_probs, want.mean_probs), 1e-12) << "room " << room;
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
