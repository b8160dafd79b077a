// The Nystrom preconditioner of Newton-CG (core/src/newton_preconditioner.hpp) against dense references:
// B B^T never exceeds k Theta and equals it at full rank, P^-1 is the system's inverse at full rank, the
// Newton-CG solve (ResidentMatrix::solve_newton_system) matches a dense solve, and the fit it accelerates
// lands on the same fixed point, with CG's products in float64 or in float32.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "newton_preconditioner.hpp"
#include "newton_system_case.hpp"
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

// At full rank B B^T = k Theta, so P is the system's A itself and CG is done after one iteration: this
// checks P^-1 (Woodbury through G) against the dense A without exposing it.
TEST_F(NystromTest, FullRankPreconditionerIsTheSystemsInverse) {
  const auto t = ntk::testing::make_newton_system_case(cpu_, 12, 3, 12, 2.5, 21);
  ASSERT_EQ(t.basis.cols(), 12);
  const auto theta = cpu_.make_resident(t.theta.view(), "theta");
  Matrix<double> z(12, 3, std::nan(""));
  const int iterations = theta->solve_newton_system(cpu_, t.system(), t.rhs.view(), z.view(), 1e-6, 50);
  EXPECT_EQ(iterations, 1);
  EXPECT_LE(ntk::testing::max_abs_diff(z, t.dense_solution(cpu_)), 1e-6);
}

// The host Newton-CG solve against the dense solve, with a low-rank Nystrom and with the Jacobi
// preconditioner, products in float64 and in float32 (the latter to float32's accuracy).
TEST_F(NystromTest, NewtonSystemSolveMatchesTheDenseSolve) {
  for (const int rank : {4, 0}) {
    const auto t = ntk::testing::make_newton_system_case(cpu_, 30, 4, rank, 40.0, 22);
    const Matrix<double> reference = t.dense_solution(cpu_);
    const auto theta = cpu_.make_resident(t.theta.view(), "theta");
    for (const bool float32 : {false, true}) {
      Matrix<double> z(30, 4, std::nan(""));
      const int iterations =
          theta->solve_newton_system(cpu_, t.system(float32), t.rhs.view(), z.view(), 1e-12, 500);
      EXPECT_GT(iterations, 1) << "rank " << rank;
      EXPECT_LE(ntk::testing::max_abs_diff(z, reference), float32 ? 1e-4 : 1e-9)
          << "rank " << rank << (float32 ? ", float32" : ", float64");
    }
  }
}

TEST_F(NystromTest, NewtonSystemShapesAreChecked) {
  const auto t = ntk::testing::make_newton_system_case(cpu_, 10, 3, 2, 1.0, 23);
  const auto theta = cpu_.make_resident(t.theta.view(), "theta");
  Matrix<double> z(10, 3), short_z(9, 3);
  EXPECT_THROW(theta->solve_newton_system(cpu_, t.system(), t.rhs.view(), short_z.view(), 1e-8, 10),
               ntk::InvalidArgument);
  auto no_factor = t.system();
  no_factor.g_factor = {};
  try {
    theta->solve_newton_system(cpu_, no_factor, t.rhs.view(), z.view(), 1e-8, 10);
    ADD_FAILURE() << "a missing preconditioner factor was accepted";
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("preconditioner factor G"), std::string::npos) << e.what();
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
