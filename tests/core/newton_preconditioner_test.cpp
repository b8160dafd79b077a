// The Nystrom preconditioner of Newton-CG (core/src/newton_preconditioner.hpp) against dense references:
// B B^T never exceeds k Theta and equals it at full rank, P^-1 is the inverse of the explicitly formed
// P = I + S (B B^T (x) I) S^T, and the fit it accelerates lands on the same fixed point, with CG's
// products in float64 or in float32.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "newton_preconditioner.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/newton.hpp"
#include "ntk/targets.hpp"
#include "test_data.hpp"

namespace {

using ntk::Matrix;

Matrix<double> relu_kernel(ntk::Backend& be, const Matrix<double>& x) {
  ntk::KernelSpec spec;
  spec.depth = 2;
  spec.w_std = 1.5;
  spec.b_std = 0.1;
  Matrix<double> k(x.rows(), x.rows());
  be.kernel(spec, x.view(), nullptr, {{}, k.view()}, {});
  return k;
}

Matrix<double> gram(const Matrix<double>& b) {  // B B^T
  Matrix<double> g(b.rows(), b.rows());
  for (std::int64_t i = 0; i < b.rows(); ++i)
    for (std::int64_t j = 0; j < b.rows(); ++j)
      for (std::int64_t a = 0; a < b.cols(); ++a) g(i, j) += b(i, a) * b(j, a);
  return g;
}

Matrix<double> random_probabilities(std::int64_t n, std::int64_t c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 2.0);
  Matrix<double> p(n, c);
  for (std::int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (std::int64_t j = 0; j < c; ++j) sum += p(i, j) = std::exp(normal(rng));
    for (std::int64_t j = 0; j < c; ++j) p(i, j) /= sum;
  }
  return p;
}

class NystromTest : public ::testing::Test {
 protected:
  ntk::CpuBackend cpu_{ntk::BackendOptions{}};
};

TEST_F(NystromTest, BelowTheKernelAndExactAtFullRank) {
  const auto x = ntk::testing::random_inputs(40, 5, 11);
  const Matrix<double> theta = relu_kernel(cpu_, x);
  const double k = 0.7;
  double scale = 0;
  for (std::int64_t i = 0; i < 40; ++i) scale = std::max(scale, k * theta(i, i));
  double previous_trace_rest = 0;
  for (int rank : {4, 12}) {
    const Matrix<double> b =
        ntk::detail::nystrom_basis(cpu_, *cpu_.make_resident(theta.view(), "theta"), k, rank);
    ASSERT_EQ(b.rows(), 40);
    ASSERT_EQ(b.cols(), rank);
    // k Theta - B B^T is positive semi-definite: with a shift of 1e-10 of the scale it factors.
    Matrix<double> rest = gram(b);
    double trace_rest = 0, trace = 0;
    for (std::int64_t i = 0; i < 40; ++i)
      for (std::int64_t j = 0; j < 40; ++j)
        rest(i, j) = k * theta(i, j) - rest(i, j) + (i == j ? 1e-10 * scale : 0);
    for (std::int64_t i = 0; i < 40; ++i) {
      trace_rest += rest(i, i);
      trace += k * theta(i, i);
    }
    EXPECT_NO_THROW(cpu_.cholesky(rest.view(), "k Theta - B B^T")) << "rank " << rank;
    // A larger rank leaves less of the trace behind.
    EXPECT_LT(trace_rest, rank == 4 ? 0.9 * trace : 0.9 * previous_trace_rest) << "rank " << rank;
    previous_trace_rest = trace_rest;
  }
  const Matrix<double> full =
      ntk::detail::nystrom_basis(cpu_, *cpu_.make_resident(theta.view(), "theta"), k, 40);
  ASSERT_EQ(full.cols(), 40);
  const Matrix<double> g = gram(full);
  for (std::int64_t i = 0; i < 40; ++i)
    for (std::int64_t j = 0; j < 40; ++j)
      EXPECT_NEAR(g(i, j), k * theta(i, j), 1e-9 * scale) << i << "," << j;
}

TEST_F(NystromTest, ColumnsThetaAnnihilatesAreDropped) {
  // Rank-3 kernel (3 distinct inputs, repeated): no more than 3 directions survive.
  Matrix<double> theta(12, 12);
  const auto x = ntk::testing::random_inputs(3, 4, 5);
  const Matrix<double> small = relu_kernel(cpu_, x);
  for (std::int64_t i = 0; i < 12; ++i)
    for (std::int64_t j = 0; j < 12; ++j) theta(i, j) = small(i % 3, j % 3);
  const Matrix<double> b =
      ntk::detail::nystrom_basis(cpu_, *cpu_.make_resident(theta.view(), "theta"), 1.0, 8);
  EXPECT_LE(b.cols(), 3);
  EXPECT_GE(b.cols(), 1);
  const Matrix<double> g = gram(b);
  for (std::int64_t i = 0; i < 12; ++i)
    for (std::int64_t j = 0; j < 12; ++j) EXPECT_NEAR(g(i, j), theta(i, j), 1e-8 * theta(0, 0));
}

TEST_F(NystromTest, ApplyIsTheInverseOfTheDenseP) {
  const std::int64_t n = 25, c = 3;
  const auto x = ntk::testing::random_inputs(n, 6, 21);
  const Matrix<double> theta = relu_kernel(cpu_, x);
  const Matrix<double> b =
      ntk::detail::nystrom_basis(cpu_, *cpu_.make_resident(theta.view(), "theta"), 2.5, 6);
  const Matrix<double> p = random_probabilities(n, c, 22);
  // P = I + S (B B^T (x) I_C) S^T over the index i C + c, S_i = (I - u u^T) diag(u), u = sqrt(p_i).
  const std::int64_t m = n * c;
  Matrix<double> s(m, m);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t r = 0; r < c; ++r)
      for (std::int64_t q = 0; q < c; ++q) {
        const double ur = std::sqrt(p(i, r)), uq = std::sqrt(p(i, q));
        s(i * c + r, i * c + q) = ((r == q ? 1.0 : 0.0) - ur * uq) * uq;
      }
  const Matrix<double> bb = gram(b);
  Matrix<double> kron(m, m);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t r = 0; r < c; ++r) kron(i * c + r, j * c + r) = bb(i, j);
  Matrix<double> dense(m, m), sk(m, m);
  cpu_.gemm(false, false, 1.0, s.view(), kron.view(), 0.0, sk.view());
  cpu_.gemm(false, true, 1.0, sk.view(), s.view(), 0.0, dense.view());
  for (std::int64_t i = 0; i < m; ++i) dense(i, i) += 1.0;

  ntk::detail::NystromPreconditioner pre(cpu_, b, p);
  std::mt19937_64 rng(23);
  std::normal_distribution<double> normal;
  Matrix<double> r(n, c), out;
  for (auto& v : r.storage()) v = normal(rng);
  pre.apply(r, out);
  // P out must give r back.
  for (std::int64_t row = 0; row < m; ++row) {
    double back = 0;
    for (std::int64_t col = 0; col < m; ++col) back += dense(row, col) * out.data()[col];
    EXPECT_NEAR(back, r.data()[row], 1e-12 * (1 + std::abs(r.data()[row]))) << row;
  }
}

TEST_F(NystromTest, NewtonCgReachesTheSameFixedPointInFewerIterations) {
  const std::int64_t n = 400, c = 5;
  const auto x = ntk::testing::random_inputs(n, 20, 31);
  const Matrix<double> theta = relu_kernel(cpu_, x);
  const auto targets = ntk::targets_from_labels(ntk::testing::random_labels(n, c, 32), c, 0.0);
  ntk::FixedPointProblem problem;
  problem.theta = theta.view();
  problem.k = 1.0 / (static_cast<double>(n) * 1e-4);
  problem.y = targets.probabilities.view();
  ntk::NewtonOptions options;
  options.solver = ntk::SolverKind::matrix_free;
  options.max_cg_iterations = 5000;
  options.preconditioner_rank = 0;
  const auto jacobi = ntk::solve_fixed_point(cpu_, problem, options);
  options.preconditioner_rank = -1;
  const auto nystrom = ntk::solve_fixed_point(cpu_, problem, options);
  options.solver = ntk::SolverKind::direct;
  const auto direct = ntk::solve_fixed_point(cpu_, problem, options);
  ASSERT_TRUE(jacobi.diagnostics.converged) << jacobi.diagnostics.message;
  ASSERT_TRUE(nystrom.diagnostics.converged) << nystrom.diagnostics.message;
  ASSERT_TRUE(direct.diagnostics.converged) << direct.diagnostics.message;
  EXPECT_LE(ntk::testing::max_abs_diff(nystrom.h, direct.h), 1e-8);
  EXPECT_LE(ntk::testing::max_abs_diff(jacobi.h, direct.h), 1e-8);
  EXPECT_LT(2 * nystrom.diagnostics.cg_iterations, jacobi.diagnostics.cg_iterations)
      << "Nystrom " << nystrom.diagnostics.cg_iterations << " vs Jacobi " << jacobi.diagnostics.cg_iterations;
}

TEST_F(NystromTest, Float32InnerProductsReachTheFloat64FixedPoint) {
  // Mixed precision changes the path, never the destination: residuals are float64's, so the fixed point
  // agrees with the all-float64 run and the direct solver to the tolerance's scale.
  const std::int64_t n = 400, c = 5;
  const auto x = ntk::testing::random_inputs(n, 20, 41);
  const Matrix<double> theta = relu_kernel(cpu_, x);
  const auto targets = ntk::targets_from_labels(ntk::testing::random_labels(n, c, 42), c, 0.0);
  for (double lambda : {1e-2, 1e-4, 1e-6}) {
    ntk::FixedPointProblem problem;
    problem.theta = theta.view();
    problem.k = 1.0 / (static_cast<double>(n) * lambda);
    problem.y = targets.probabilities.view();
    ntk::NewtonOptions options;
    options.solver = ntk::SolverKind::matrix_free;
    options.float32_inner_products = true;
    options.float32_inner_limit = 1e9;  // whatever the amplification, to exercise the fallback too
    const auto mixed = ntk::solve_fixed_point(cpu_, problem, options);
    options.float32_inner_products = false;
    const auto float64 = ntk::solve_fixed_point(cpu_, problem, options);
    options.solver = ntk::SolverKind::direct;
    const auto direct = ntk::solve_fixed_point(cpu_, problem, options);
    ASSERT_TRUE(mixed.diagnostics.converged) << lambda << ": " << mixed.diagnostics.message;
    ASSERT_TRUE(float64.diagnostics.converged) << lambda << ": " << float64.diagnostics.message;
    ASSERT_TRUE(direct.diagnostics.converged) << lambda << ": " << direct.diagnostics.message;
    EXPECT_NE(mixed.diagnostics.message.find("CG products in float32"), std::string::npos)
        << mixed.diagnostics.message;
    EXPECT_EQ(float64.diagnostics.message.find("float32"), std::string::npos) << float64.diagnostics.message;
    const double scale = 1 + problem.k * 1e-10;
    EXPECT_LE(ntk::testing::max_abs_diff(mixed.h, direct.h), 1e-8 * scale) << lambda;
    EXPECT_LE(ntk::testing::max_abs_diff(mixed.a, float64.a), 1e-8 * scale) << lambda;
    EXPECT_LE(mixed.diagnostics.steps, float64.diagnostics.steps + 2) << lambda;
  }
}

TEST_F(NystromTest, Float32InnerProductsOnlyWhereTheirErrorIsSmall) {
  // 2^-24 k ||Theta||_inf above the limit keeps every product in float64.
  const std::int64_t n = 200, c = 3;
  const auto x = ntk::testing::random_inputs(n, 10, 43);
  const Matrix<double> theta = relu_kernel(cpu_, x);
  const auto targets = ntk::targets_from_labels(ntk::testing::random_labels(n, c, 44), c, 0.0);
  ntk::FixedPointProblem problem;
  problem.theta = theta.view();
  problem.k = 1.0 / (static_cast<double>(n) * 1e-3);
  problem.y = targets.probabilities.view();
  ntk::NewtonOptions options;
  options.solver = ntk::SolverKind::matrix_free;
  options.float32_inner_limit = 1e-12;
  const auto strict = ntk::solve_fixed_point(cpu_, problem, options);
  ASSERT_TRUE(strict.diagnostics.converged);
  EXPECT_EQ(strict.diagnostics.message.find("float32"), std::string::npos) << strict.diagnostics.message;
  options.float32_inner_limit = 1.0;
  const auto loose = ntk::solve_fixed_point(cpu_, problem, options);
  ASSERT_TRUE(loose.diagnostics.converged);
  EXPECT_NE(loose.diagnostics.message.find("float32"), std::string::npos) << loose.diagnostics.message;
}

}  // namespace
