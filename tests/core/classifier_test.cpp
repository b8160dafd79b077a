// The cross-entropy NTK classifier against plain dense references written in the test.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "test_data.hpp"

namespace {

using ntk::Matrix;
using ntk::testing::max_abs_diff;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

ntk::KernelSpec relu_spec(int depth = 2) {
  ntk::KernelSpec s;
  s.depth = depth;
  s.w_std = 1.5;
  s.b_std = 0.1;
  return s;
}

Matrix<double> ntk_matrix(ntk::Backend& be, const ntk::KernelSpec& spec, const Matrix<double>& a,
                          const Matrix<double>* b = nullptr) {
  const ntk::ConstMatrixView<double> bv = b ? b->view() : a.view();
  Matrix<double> k(a.rows(), b ? b->rows() : a.rows());
  be.kernel(spec, a.view(), b ? &bv : nullptr, {{}, k.view()}, {});
  return k;
}

// Plain Gaussian elimination with partial pivoting: solves A x = b (A copied).
std::vector<double> dense_solve(std::vector<double> a, std::vector<double> b, std::size_t n) {
  for (std::size_t col = 0; col < n; ++col) {
    std::size_t piv = col;
    for (std::size_t r = col + 1; r < n; ++r)
      if (std::abs(a[r * n + col]) > std::abs(a[piv * n + col])) piv = r;
    for (std::size_t k = 0; k < n; ++k) std::swap(a[col * n + k], a[piv * n + k]);
    std::swap(b[col], b[piv]);
    for (std::size_t r = col + 1; r < n; ++r) {
      const double f = a[r * n + col] / a[col * n + col];
      for (std::size_t k = col; k < n; ++k) a[r * n + k] -= f * a[col * n + k];
      b[r] -= f * b[col];
    }
  }
  std::vector<double> x(n);
  for (std::size_t i = n; i-- > 0;) {
    double s = b[i];
    for (std::size_t k = i + 1; k < n; ++k) s -= a[i * n + k] * x[k];
    x[i] = s / a[i * n + i];
  }
  return x;
}

// Newton on the full N C unknowns: minimize sum_i [lse(h_i) - y_i.h_i] + 1/2 h^T (K^-1 (x) I) h with
// K = k Theta, written with explicit dense matrices: gradient (p - y) + (K^-1 (x) I) h, Hessian
// W + K^-1 (x) I. Returns h (N x C).
Matrix<double> dense_reference(const Matrix<double>& theta, double k, const Matrix<double>& y) {
  const std::size_t n = theta.rows(), c = y.cols(), m = n * c;
  // K^-1 column by column.
  std::vector<double> kmat(n * n), kinv(n * n);
  for (std::size_t i = 0; i < n * n; ++i) kmat[i] = k * theta.data()[i];
  for (std::size_t j = 0; j < n; ++j) {
    std::vector<double> e(n, 0.0);
    e[j] = 1;
    const auto col = dense_solve(kmat, e, n);
    for (std::size_t i = 0; i < n; ++i) kinv[i * n + j] = col[i];
  }
  std::vector<double> h(m, 0.0);
  for (int it = 0; it < 100; ++it) {
    std::vector<double> grad(m), hess(m * m, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      double mx = -1e300, sum = 0;
      for (std::size_t a = 0; a < c; ++a) mx = std::max(mx, h[i * c + a]);
      std::vector<double> p(c);
      for (std::size_t a = 0; a < c; ++a) sum += p[a] = std::exp(h[i * c + a] - mx);
      for (auto& v : p) v /= sum;
      for (std::size_t a = 0; a < c; ++a) {
        grad[i * c + a] = p[a] - y(i, a);
        for (std::size_t b = 0; b < c; ++b)
          hess[(i * c + a) * m + i * c + b] = (a == b ? p[a] : 0.0) - p[a] * p[b];
      }
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t a = 0; a < c; ++a) {
          grad[i * c + a] += kinv[i * n + j] * h[j * c + a];
          hess[(i * c + a) * m + j * c + a] += kinv[i * n + j];
        }
    const auto step = dense_solve(hess, grad, m);
    double biggest = 0;
    for (std::size_t i = 0; i < m; ++i) {
      h[i] -= step[i];
      biggest = std::max(biggest, std::abs(step[i]));
    }
    if (biggest < 1e-15) break;
  }
  Matrix<double> out(n, c);
  std::copy(h.begin(), h.end(), out.data());
  return out;
}

// max |h + k Theta (softmax(h) - Y)|, computed here independently of the library.
double independent_residual(const Matrix<double>& theta, double k, const Matrix<double>& y,
                            const Matrix<double>& h) {
  const std::int64_t n = h.rows(), c = h.cols();
  Matrix<double> g(n, c);
  for (std::int64_t i = 0; i < n; ++i) {
    double mx = -1e300, sum = 0;
    for (std::int64_t a = 0; a < c; ++a) mx = std::max(mx, h(i, a));
    for (std::int64_t a = 0; a < c; ++a) sum += std::exp(h(i, a) - mx);
    for (std::int64_t a = 0; a < c; ++a) g(i, a) = std::exp(h(i, a) - mx) / sum - y(i, a);
  }
  double r = 0;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t a = 0; a < c; ++a) {
      double s = h(i, a);
      for (std::int64_t j = 0; j < n; ++j) s += k * theta(i, j) * g(j, a);
      r = std::max(r, std::abs(s));
    }
  return r;
}

class ClassifierTest : public ::testing::Test {
 protected:
  ntk::CpuBackend cpu_;
};

TEST_F(ClassifierTest, DirectNewtonMatchesDenseNewton) {
  const auto x = random_inputs(18, 5, 1);
  const auto targets = ntk::targets_from_labels(random_labels(18, 3, 2), 3, 0.0);
  for (double lambda : {1e-1, 1e-2, 1e-3}) {
    ntk::FitSettings s;
    s.lambda = lambda;
    s.solver = ntk::SolverKind::direct;
    const ntk::Model m = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
    ASSERT_TRUE(m.diagnostics.converged) << m.diagnostics.message;
    const auto theta = ntk_matrix(cpu_, relu_spec(), x);
    const auto ref = dense_reference(theta, 1.0 / (18 * lambda), targets.probabilities);
    EXPECT_LE(max_abs_diff(m.train_logits, ref), 1e-10) << "lambda " << lambda;
    EXPECT_LE(independent_residual(theta, 1.0 / (18 * lambda), targets.probabilities, m.train_logits), 1e-10);
  }
}

TEST_F(ClassifierTest, MatrixFreeMatchesDirect) {
  const auto x = random_inputs(60, 7, 3);
  const auto targets = ntk::targets_from_labels(random_labels(60, 4, 4), 4, 0.0);
  for (double lambda : {1e-1, 1e-3}) {
    ntk::FitSettings s;
    s.lambda = lambda;
    s.solver = ntk::SolverKind::direct;
    const ntk::Model direct = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
    s.solver = ntk::SolverKind::matrix_free;
    const ntk::Model cg = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
    ASSERT_TRUE(direct.diagnostics.converged && cg.diagnostics.converged) << cg.diagnostics.message;
    EXPECT_GT(cg.diagnostics.cg_iterations, 0);
    // Both satisfy the fixed point to 1e-10, so they agree to that order (the fixed point is unique).
    EXPECT_LE(max_abs_diff(direct.train_logits, cg.train_logits), 1e-8) << lambda;
  }
}

TEST_F(ClassifierTest, ObjectiveDecreasesMonotonically) {
  const auto x = random_inputs(40, 6, 5);
  const auto targets = ntk::targets_from_labels(random_labels(40, 3, 6), 3, 0.1);
  for (auto solver : {ntk::SolverKind::direct, ntk::SolverKind::matrix_free}) {
    ntk::FitSettings s;
    s.lambda = 1e-4;
    s.solver = solver;
    std::vector<ntk::StepRecord> seen;
    const ntk::Model m =
        ntk::fit_classifier(cpu_, relu_spec(3), x.view(), targets, s, [&](const ntk::StepRecord& r) {
          seen.push_back(r);
          return true;
        });
    ASSERT_TRUE(m.diagnostics.converged) << ntk::solver_name(solver) << ": " << m.diagnostics.message;
    ASSERT_EQ(seen.size(), m.diagnostics.history.size());
    ASSERT_GE(seen.size(), 2u);
    for (std::size_t i = 1; i < seen.size(); ++i)
      EXPECT_LE(seen[i].objective, seen[i - 1].objective + 1e-12 * std::abs(seen[i - 1].objective)) << i;
  }
}

TEST_F(ClassifierTest, PredictionIsThetaTimesCoefficients) {
  const auto x = random_inputs(30, 4, 7), xt = random_inputs(11, 4, 8);
  const auto targets = ntk::targets_from_labels(random_labels(30, 3, 9), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 0.05;
  const ntk::Model m = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
  // SPEC: f(x*) = -Theta(x*, X) A with A = k (softmax f(X) - Y).
  const auto theta_tx = ntk_matrix(cpu_, relu_spec(), xt, &x);
  const double k = 1.0 / (30 * 0.05);
  const auto p = ntk::predict(cpu_, m, xt.view(), 4);  // several row tiles
  for (std::int64_t i = 0; i < 11; ++i)
    for (std::int64_t c = 0; c < 3; ++c) {
      double f = 0;
      for (std::int64_t j = 0; j < 30; ++j) {
        double mx = -1e300, sum = 0;
        for (std::int64_t a = 0; a < 3; ++a) mx = std::max(mx, m.train_logits(j, a));
        for (std::int64_t a = 0; a < 3; ++a) sum += std::exp(m.train_logits(j, a) - mx);
        f -= theta_tx(i, j) * k * (std::exp(m.train_logits(j, c) - mx) / sum - targets.probabilities(j, c));
      }
      EXPECT_NEAR(p.logits(i, c), f, 1e-10 * (1 + std::abs(f)));
    }
  for (std::int64_t i = 0; i < 11; ++i) {
    double sum = 0;
    for (std::int64_t c = 0; c < 3; ++c) sum += p.probs(i, c);
    EXPECT_NEAR(sum, 1.0, 1e-14);
  }
  // Predicting the training points reproduces the fitted train logits. Not to 1e-10: predict() forms
  // Theta(X_test, X) by the general path, whose diagonal (x = x') carries the ~1e-8 angle noise of
  // P - q12^2 (the fit's symmetric path uses the exact |x|^2/d there).
  const auto train = ntk::predict(cpu_, m, x.view());
  EXPECT_LE(max_abs_diff(train.logits, m.train_logits), 1e-7);
}

TEST_F(ClassifierTest, ClosedFormInterpolatesLogTargets) {
  const auto x = random_inputs(25, 6, 10);
  const auto targets = ntk::targets_from_labels(random_labels(25, 4, 11), 4, 0.2);
  ntk::FitSettings s;
  s.lambda = 0;
  const ntk::Model m = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
  EXPECT_EQ(m.diagnostics.solver_used, ntk::SolverKind::closed_form);
  const auto p = ntk::predict(cpu_, m, x.view());
  for (std::int64_t i = 0; i < 25; ++i) {
    double mean = 0;
    for (std::int64_t c = 0; c < 4; ++c) mean += std::log(targets.probabilities(i, c)) / 4;
    for (std::int64_t c = 0; c < 4; ++c) {
      // Theta^-1 amplifies the ~1e-8 diagonal noise of the general path (see above) by its condition.
      EXPECT_NEAR(p.logits(i, c), std::log(targets.probabilities(i, c)) - mean, 1e-6);
      EXPECT_NEAR(p.probs(i, c), targets.probabilities(i, c), 1e-6);
    }
  }
}

TEST_F(ClassifierTest, SmallLambdaApproachesClosedForm) {
  const auto x = random_inputs(20, 5, 12), xt = random_inputs(9, 5, 13);
  const auto targets = ntk::targets_from_labels(random_labels(20, 3, 14), 3, 0.3);
  ntk::FitSettings s;
  s.lambda = 0;
  const auto limit =
      ntk::predict(cpu_, ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s), xt.view());
  double previous = 1e300;
  for (double lambda : {1e-2, 1e-4, 1e-6}) {
    s.lambda = lambda;
    s.solver = ntk::SolverKind::direct;
    // At lambda = 1e-6 the residual's rounding floor eps * ||k Theta|| is ~4e-10.
    s.tolerance = lambda < 1e-5 ? 1e-8 : 1e-10;
    const auto m = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
    ASSERT_TRUE(m.diagnostics.converged) << m.diagnostics.message;
    // Compare class-centred logits: the regularized fit leaves the class mean at 0 too (f0 = 0).
    const auto p = ntk::predict(cpu_, m, xt.view());
    const double gap = max_abs_diff(p.probs, limit.probs);
    EXPECT_LT(gap, previous) << lambda;
    previous = gap;
  }
  EXPECT_LT(previous, 1e-3);
}

TEST_F(ClassifierTest, StepLimitIsNeverReportedAsConverged) {
  const auto x = random_inputs(30, 4, 15);
  const auto targets = ntk::targets_from_labels(random_labels(30, 3, 16), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 1e-4;
  s.max_newton_steps = 1;
  const auto m = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
  EXPECT_FALSE(m.diagnostics.converged);
  EXPECT_NE(m.diagnostics.message.find("NOT converged"), std::string::npos) << m.diagnostics.message;
  EXPECT_EQ(m.diagnostics.steps, 1);
}

TEST_F(ClassifierTest, MatrixFreeConvergesForTinyLambdaOnSeparableData) {
  // Well-separated classes and lambda = 1e-7 make k Theta large and the logits big; an inexact CG
  // tolerance relative to the residual once left the matrix-free path stuck at residual ~1e6 here.
  const std::int64_t n = 120, d = 40, c = 4;
  auto x = random_inputs(n, d, 30);
  const auto labels = random_labels(n, c, 31);
  const auto means = random_inputs(c, d, 32);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < d; ++k) x(i, k) += 3 * means(labels[static_cast<std::size_t>(i)], k);
  const auto targets = ntk::targets_from_labels(labels, c, 0.0);
  for (auto solver : {ntk::SolverKind::direct, ntk::SolverKind::matrix_free}) {
    ntk::FitSettings s;
    s.lambda = 1e-7;
    s.solver = solver;
    s.max_cg_iterations = 5000;
    const auto m = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
    // Converged, or stopped at the rounding floor eps * ||k Theta|| (~1e-8 here): either way close.
    EXPECT_LT(m.diagnostics.residual, 1e-6) << ntk::solver_name(solver) << ": " << m.diagnostics.message;
  }
}

TEST_F(ClassifierTest, Float32KernelAgreesWithFloat64) {
  const auto x = random_inputs(40, 6, 33), xt = random_inputs(10, 6, 34);
  const auto targets = ntk::targets_from_labels(random_labels(40, 3, 35), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 1e-2;
  const auto m64 = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
  s.dtype = ntk::ComputeType::float32;  // kernels in float32, the solve in float64
  const auto m32 = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
  ASSERT_TRUE(m32.diagnostics.converged) << m32.diagnostics.message;
  EXPECT_LE(max_abs_diff(ntk::predict(cpu_, m32, xt.view()).probs, ntk::predict(cpu_, m64, xt.view()).probs),
            1e-4);
}

TEST_F(ClassifierTest, StagnationAtTheRoundingFloorIsReported) {
  const auto x = random_inputs(20, 5, 12);
  const auto targets = ntk::targets_from_labels(random_labels(20, 3, 14), 3, 0.3);
  ntk::FitSettings s;
  s.lambda = 1e-8;
  s.tolerance = 1e-14;
  const auto m = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
  EXPECT_FALSE(m.diagnostics.converged);
  EXPECT_NE(m.diagnostics.message.find("rounding floor"), std::string::npos) << m.diagnostics.message;
  EXPECT_LT(m.diagnostics.steps, 100);
}

TEST_F(ClassifierTest, ProgressCanCancel) {
  const auto x = random_inputs(30, 4, 17);
  const auto targets = ntk::targets_from_labels(random_labels(30, 3, 18), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 1e-3;
  EXPECT_THROW(ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s,
                                   [](const ntk::StepRecord&) { return false; }),
               ntk::Cancelled);
}

TEST_F(ClassifierTest, SingularKernelNeedsDiagReg) {
  auto x = random_inputs(12, 3, 19);
  for (std::int64_t k = 0; k < 3; ++k) x(5, k) = x(2, k);  // a duplicated training point
  const auto targets = ntk::targets_from_labels(random_labels(12, 2, 20), 2, 0.1);
  ntk::FitSettings s;
  s.lambda = 0;
  try {
    ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
    FAIL() << "a singular kernel was factored";
  } catch (const ntk::NumericalError& e) {
    EXPECT_NE(std::string(e.what()).find("diag_reg"), std::string::npos) << e.what();
  }
  s.diag_reg = 1e-6;
  EXPECT_NO_THROW(ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s));
}

TEST_F(ClassifierTest, RejectsBadInputs) {
  const auto x = random_inputs(10, 3, 21);
  const auto labels = random_labels(10, 3, 22);
  const auto targets = ntk::targets_from_labels(labels, 3, 0.0);
  ntk::FitSettings s;
  s.lambda = -1;
  EXPECT_THROW(ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s), ntk::InvalidArgument);
  s.lambda = 0;
  try {
    ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
    FAIL();
  } catch (const ntk::FailedPrecondition& e) {
    EXPECT_NE(std::string(e.what()).find("set lambda > 0 or label smoothing eps > 0"), std::string::npos);
  }
  s.lambda = 0.1;
  auto bad = x;
  bad(4, 1) = std::nan("");
  EXPECT_THROW(ntk::fit_classifier(cpu_, relu_spec(), bad.view(), targets, s), ntk::InvalidArgument);
  const auto fewer = ntk::targets_from_labels(std::vector<std::int64_t>(9, 1), 3, 0.0);
  EXPECT_THROW(ntk::fit_classifier(cpu_, relu_spec(), x.view(), fewer, s), ntk::InvalidArgument);
  const auto model = ntk::fit_classifier(cpu_, relu_spec(), x.view(), targets, s);
  const auto wrong_d = random_inputs(4, 5, 23);
  EXPECT_THROW(ntk::predict(cpu_, model, wrong_d.view()), ntk::InvalidArgument);
}

TEST(Targets, LabelsSmoothingAndSoftTargets) {
  const std::vector<std::int64_t> labels = {0, 2, 1, 2};
  const auto t = ntk::targets_from_labels(labels, 0, 0.3);
  EXPECT_EQ(t.num_classes, 3);
  EXPECT_FALSE(t.degenerate);
  EXPECT_DOUBLE_EQ(t.probabilities(1, 2), 0.7 + 0.1);
  EXPECT_DOUBLE_EQ(t.probabilities(1, 0), 0.1);
  EXPECT_TRUE(ntk::targets_from_labels(labels, 0, 0.0).degenerate);
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const ntk::InvalidArgument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(
      message([&] { ntk::targets_from_labels(labels, 2, 0.0); }).find("label 2 at index 1 is outside [0, 2)"),
      std::string::npos);
  EXPECT_NE(message([&] {
              ntk::targets_from_labels(std::vector<std::int64_t>{0, 0}, 0, 0.0);
            }).find("at least 2"),
            std::string::npos);
  EXPECT_NE(message([&] { ntk::targets_from_labels({}, 3, 0.0); }).find("no training points"),
            std::string::npos);
  EXPECT_NE(message([&] { ntk::targets_from_labels(labels, 3, 1.0); }).find("label smoothing"),
            std::string::npos);
  Matrix<double> soft(2, 2, 0.5);
  EXPECT_EQ(ntk::targets_from_probabilities(soft.view()).num_classes, 2);
  soft(1, 0) = 0.6;
  EXPECT_NE(message([&] { ntk::targets_from_probabilities(soft.view()); }).find("target row 1"),
            std::string::npos);
  soft(1, 0) = -0.5;
  soft(1, 1) = 1.5;
  EXPECT_NE(message([&] { ntk::targets_from_probabilities(soft.view()); }).find("entry 0 is -0.5"),
            std::string::npos);
  soft(1, 0) = std::nan("");
  soft(1, 1) = 0.5;
  EXPECT_NE(message([&] { ntk::targets_from_probabilities(soft.view()); }).find("entry 0 is nan"),
            std::string::npos);
}

}  // namespace
