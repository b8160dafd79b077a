// End-to-end differential tests: every algorithm (fit direct and matrix-free, closed form, dynamics,
// prediction, every uncertainty mode) on the CUDA backend against the CPU backend, plus the resident
// training kernel the solvers multiply with. Skipped (GTEST_SKIP) without a device.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <thread>

#include "../core/laplace_factors_case.hpp"
#include "../core/newton_system_case.hpp"
#include "../core/test_data.hpp"
#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/cuda/cuda_backend.hpp"
#include "ntk/dynamics.hpp"
#include "ntk/errors.hpp"
#include "ntk/targets.hpp"
#include "ntk/uncertainty.hpp"

namespace {

using ntk::Matrix;

using ntk::testing::max_abs_diff;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

ntk::KernelSpec relu3() {
  return ntk::testing::relu_spec(3);
}

class CudaAlgorithmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (ntk::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: " << ntk::cuda::unavailable_reason();
    gpu_ = ntk::cuda::make_cuda_backend(0, {});
  }
  std::unique_ptr<ntk::Backend> gpu_;
  ntk::CpuBackend cpu_;
};

TEST_F(CudaAlgorithmsTest, ResidentProductMatchesCpuAndIsAccounted) {
  const std::int64_t n = 301;
  const Matrix<double> a = random_inputs(n, n, 1);
  const Matrix<double> v_full = random_inputs(n, 12, 2);
  const ntk::ConstMatrixView<double> v = v_full.view().block(0, 1, n, 7);  // strided operand
  const std::size_t before = gpu_->device_memory().in_use;
  {
    auto resident = gpu_->make_resident(a.view(), "test matrix");
    EXPECT_GE(gpu_->device_memory().in_use, before + std::size_t(n * n) * sizeof(double));
    for (double beta : {0.0, 0.5}) {
      Matrix<double> out_gpu = random_inputs(n, 7, 3), out_cpu = out_gpu;
      if (beta == 0)
        for (auto& x : out_gpu.storage()) x = std::nan("");  // poisoned: every element must be written
      resident->multiply(1.25, v, beta, out_gpu.view());
      cpu_.gemm(false, false, 1.25, a.view(), v, beta, out_cpu.view());
      EXPECT_LE(max_abs_diff(out_gpu, out_cpu), 1e-12 * n) << "beta " << beta;
    }
    Matrix<double> wrong(n - 1, 7);
    EXPECT_THROW(resident->multiply(1.0, v, 0.0, wrong.view()), ntk::InvalidArgument);
  }
  EXPECT_EQ(gpu_->device_memory().in_use, before);
}

// The direct Newton step's Laplace factors formed on the device from the resident Theta (nothing of
// Theta read from the host) apply the definitions, on a default pool and through the host fallback when
// the pool has no room for the C + 1 factors; the pool is back to its baseline after.
TEST_F(CudaAlgorithmsTest, LaplaceFactorsOnTheDeviceApplyTheDefinitions) {
  for (const auto& [n, classes, k] :
       {std::tuple{97, 4, 3.0}, std::tuple{160, 3, 800.0}, std::tuple{1, 2, 1.0}}) {
    const auto x = random_inputs(n, 6, 31 + n);
    Matrix<double> theta(n, n);
    cpu_.kernel(ntk::testing::relu_spec(2), x.view(), nullptr, {{}, theta.view()}, {});
    const Matrix<double> p = ntk::testing::random_probabilities(n, classes, 37 + n);
    const std::size_t before = gpu_->device_memory().in_use;
    {
      auto resident = gpu_->make_resident(theta.view(), "Theta");
      ntk::testing::expect_laplace_factors_match_definition(*gpu_, *resident, theta, k, p, 1e-11);
      // Formed from the device copy alone: no host Theta needed.
      auto factors = resident->laplace_factors(*gpu_, {}, k, p);
      EXPECT_GE(gpu_->device_memory().in_use, before + std::size_t(classes + 2) * std::size_t(n * n) * 8);
    }
    EXPECT_EQ(gpu_->device_memory().in_use, before) << "n " << n;
  }
  // A pool with room for Theta but not for the factors: the host forms them from the host Theta.
  const std::int64_t n = 128;
  const auto x = random_inputs(n, 6, 39);
  Matrix<double> theta(n, n);
  cpu_.kernel(ntk::testing::relu_spec(2), x.view(), nullptr, {{}, theta.view()}, {});
  const Matrix<double> p = ntk::testing::random_probabilities(n, 5, 40);
  ntk::BackendOptions small;
  small.device_memory_budget =
      std::size_t(4) * n * n * 8;  // Theta and the host fallback's uploads, not 6 factors
  auto tight = ntk::cuda::make_cuda_backend(0, small);
  auto resident = tight->make_resident(theta.view(), "Theta");
  ntk::testing::expect_laplace_factors_match_definition(*tight, *resident, theta, 2.0, p, 1e-11);
  EXPECT_THROW(resident->laplace_factors(*tight, {}, 2.0, p),
               ntk::ResourceExhausted);  // nothing to fall back on
}

// The closed form's solve on the device: Theta factored in place (shift added on the device as the host
// adds it). Judged by backward errors, which a stable factorization keeps near rounding whatever Theta's
// condition: |L L^T - (A + shift I)| and |(A + shift I) x - b| against |A|. The device memory is back at
// once, and the spent resident refuses further use.
TEST_F(CudaAlgorithmsTest, FactorAndSolveInPlaceHasRoundingBackwardErrors) {
  const std::int64_t n = 257, m = 5;
  const auto x = random_inputs(n, 9, 51);
  Matrix<double> theta(n, n);
  cpu_.kernel(ntk::testing::relu_spec(3), x.view(), nullptr, {{}, theta.view()}, {});
  const Matrix<double> b = random_inputs(n, m, 52);
  long double a_max = 0;
  for (const double v : theta.storage()) a_max = std::max(a_max, std::fabs((long double)v));
  for (const double shift : {0.0, 1e-4}) {
    const std::size_t before = gpu_->device_memory().in_use;
    auto resident = gpu_->make_resident(theta.view(), "Theta");
    Matrix<double> got = b;
    const Matrix<double> l = resident->factor_and_solve(*gpu_, shift, got.view(), "Theta");
    EXPECT_EQ(gpu_->device_memory().in_use, before);  // consumed: its memory is back before it goes
    long double factor_error = 0, solve_error = 0, x_max = 0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j) {
        long double llt = 0;
        for (std::int64_t q = 0; q <= j; ++q) llt += (long double)l(i, q) * l(j, q);
        const long double a = (long double)theta(i, j) + (i == j ? shift : 0.0);
        factor_error = std::max(factor_error, std::fabs(llt - a));
      }
    for (const double v : got.storage()) x_max = std::max(x_max, std::fabs((long double)v));
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < m; ++c) {
        long double ax = (long double)shift * got(i, c);
        for (std::int64_t q = 0; q < n; ++q) ax += (long double)theta(i, q) * got(q, c);
        solve_error = std::max(solve_error, std::fabs(ax - b(i, c)));
      }
    EXPECT_LE(double(factor_error), 1e-15 * n * double(a_max)) << "shift " << shift;
    EXPECT_LE(double(solve_error), 1e-15 * n * double(a_max * x_max)) << "shift " << shift;
    Matrix<double> out(n, 1);
    EXPECT_THROW(resident->multiply(1.0, b.view().block(0, 0, n, 1), 0.0, out.view()),
                 ntk::FailedPrecondition);
  }
}

// The uncertainty modes' per-block solves: a factor uploaded once, solved against from two threads at
// once as the server's shared contexts are, equal to the CPU's cholesky_solve to rounding.
TEST_F(CudaAlgorithmsTest, ResidentFactorSolvesMatchCpu) {
  const std::int64_t n = 300;
  const auto x = random_inputs(n, 8, 61);
  Matrix<double> l(n, n);
  cpu_.kernel(ntk::testing::relu_spec(2), x.view(), nullptr, {{}, l.view()}, {});
  for (std::int64_t i = 0; i < n; ++i) l(i, i) += 1e-3;
  cpu_.cholesky(l.view(), "Theta");
  const Matrix<double> b = random_inputs(n, 7, 62);
  Matrix<double> want = b;
  cpu_.cholesky_solve(l.view(), want.view());
  const std::size_t before = gpu_->device_memory().in_use;
  {
    auto factor = gpu_->make_resident_factor(l.view(), "Theta's factor");
    EXPECT_GE(gpu_->device_memory().in_use, before + std::size_t(n * n) * sizeof(double));
    std::vector<Matrix<double>> got(2, b);
    std::thread other([&] { factor->solve(got[1].view()); });
    factor->solve(got[0].view());
    other.join();
    for (const auto& g : got)
      EXPECT_LE(max_abs_diff(g, want), 1e-10 * max_abs_diff(want, Matrix<double>(n, 7, 0.0)));
    Matrix<double> one_column(n, 1, 1.0);
    Matrix<double> want_column = one_column;
    factor->solve(one_column.view());  // a single column takes potrs without the transposes
    cpu_.cholesky_solve(l.view(), want_column.view());
    EXPECT_LE(max_abs_diff(one_column, want_column),
              1e-10 * max_abs_diff(want_column, Matrix<double>(n, 1, 0.0)));
  }
  EXPECT_EQ(gpu_->device_memory().in_use, before);
}

TEST_F(CudaAlgorithmsTest, Float32ResidentProductIsWithinFloat32Rounding) {
  const std::int64_t n = 517;
  const Matrix<double> a = random_inputs(n, n, 11);
  const Matrix<double> v = random_inputs(n, 10, 12);
  auto resident = gpu_->make_resident(a.view(), "test matrix");
  for (double beta : {0.0, -0.5}) {
    Matrix<double> out_gpu = random_inputs(n, 10, 13), out_cpu = out_gpu;
    if (beta == 0)
      for (auto& x : out_gpu.storage()) x = std::nan("");
    resident->multiply_float32(2.0, v.view(), beta, out_gpu.view());
    cpu_.gemm(false, false, 2.0, a.view(), v.view(), beta, out_cpu.view());
    double worst = 0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < 10; ++q) {
        double bound = 0;
        for (std::int64_t j = 0; j < n; ++j) bound += std::abs(2.0 * a(i, j) * v(j, q));
        ASSERT_TRUE(std::isfinite(out_gpu(i, q))) << i << ", " << q;
        worst = std::max(worst, std::abs(out_gpu(i, q) - out_cpu(i, q)) / bound);
      }
    EXPECT_LE(worst, 0x1p-24 * (4 + double(n) / 16)) << "beta " << beta;
    EXPECT_GT(max_abs_diff(out_gpu, out_cpu), 1e-12) << "the float32 path was not taken";
  }
}

// Newton-CG's inner solve on the device (ResidentMatrix::solve_newton_system) against the CPU's and the
// dense solve: Nystrom and Jacobi preconditioners, float64 and float32 products, a poisoned output, and
// the pool back to its baseline afterwards.
TEST_F(CudaAlgorithmsTest, NewtonSystemSolveMatchesCpu) {
  const std::int64_t n = 203, c = 5;
  for (const int rank : {6, 0}) {
    // k = 4: Jacobi converges in ~180 iterations (at k = 40 it needed ~620, beyond the cap).
    const auto t = ntk::testing::make_newton_system_case(cpu_, n, c, rank, 4.0, 41 + rank);
    const Matrix<double> dense = t.dense_solution(cpu_);
    const auto cpu_theta = cpu_.make_resident(t.theta.view(), "theta");
    const std::size_t before = gpu_->device_memory().in_use;
    {
      const auto gpu_theta = gpu_->make_resident(t.theta.view(), "theta");
      for (const bool float32 : {false, true}) {
        Matrix<double> z_cpu(n, c), z_gpu(n, c, std::nan(""));
        const int it_cpu =
            cpu_theta->solve_newton_system(cpu_, t.system(float32), t.rhs.view(), z_cpu.view(), 1e-12, 500);
        const int it_gpu =
            gpu_theta->solve_newton_system(*gpu_, t.system(float32), t.rhs.view(), z_gpu.view(), 1e-12, 500);
        const std::string what = "rank " + std::to_string(rank) + (float32 ? ", float32" : ", float64");
        // float32 products round differently in cuBLAS and on the CPU: only float64 pins the count.
        if (!float32) {
          EXPECT_LE(std::abs(it_gpu - it_cpu), std::max(2, it_cpu / 50))
              << what << ": " << it_gpu << " vs " << it_cpu;
        }
        EXPECT_LE(max_abs_diff(z_gpu, dense), float32 ? 1e-4 : 1e-9) << what;
        if (!float32) {
          EXPECT_LE(max_abs_diff(z_gpu, z_cpu), 1e-9) << what;
        }
      }
      Matrix<double> wrong(n - 1, c);
      EXPECT_THROW(gpu_theta->solve_newton_system(*gpu_, t.system(), t.rhs.view(), wrong.view(), 1e-8, 10),
                   ntk::InvalidArgument);
    }
    EXPECT_EQ(gpu_->device_memory().in_use, before) << "rank " << rank;
  }
}

TEST_F(CudaAlgorithmsTest, ResidentKernelIsAssembledOnTheDeviceLikeTheCpuKernel) {
  // Sizes that are no multiple of the tiles (128 here) nor of the store kernel's 32 x 32 blocks.
  const std::int64_t n = 301;
  const Matrix<double> x = random_inputs(n, 29, 21);
  Matrix<double> identity(n, n);
  for (std::int64_t i = 0; i < n; ++i) identity(i, i) = 1;
  ntk::AssemblyOptions small_tiles;
  small_tiles.tile_rows = small_tiles.tile_cols = 128;
  const std::size_t before = gpu_->device_memory().in_use;
  for (bool float32 : {false, true}) {
    Matrix<double> want(n, n);
    std::unique_ptr<ntk::ResidentMatrix> resident;
    if (float32) {
      const Matrix<float> x32 = ntk::convert_matrix<float>(x.view());
      Matrix<float> k32(n, n);
      cpu_.kernel(relu3(), x32.view(), nullptr, {{}, k32.view()}, {});
      for (std::size_t i = 0; i < k32.size(); ++i) want.data()[i] = k32.data()[i];
      resident = gpu_->resident_kernel(relu3(), x32.view(), small_tiles, "Theta");
    } else {
      cpu_.kernel(relu3(), x.view(), nullptr, {{}, want.view()}, {});
      resident = gpu_->resident_kernel(relu3(), x.view(), small_tiles, "Theta");
    }
    EXPECT_GE(gpu_->device_memory().in_use, before + std::size_t(n * n) * sizeof(double));
    Matrix<double> got(n, n, std::nan(""));
    resident->multiply(1.0, identity.view(), 0.0, got.view());  // every column of Theta
    double scale = 0;
    for (double v : want.storage()) scale = std::max(scale, std::abs(v));
    const double tolerance = float32 ? 1e-4 : 1e-10;
    EXPECT_LE(max_abs_diff(got, want), tolerance * scale) << "float32 " << float32;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < i; ++j) ASSERT_EQ(got(i, j), got(j, i)) << i << ", " << j;  // mirrored
    const std::vector<double> diag = resident->diagonal();
    double norm = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(diag[std::size_t(i)], want(i, i), tolerance * scale) << i;
      double row = 0;
      for (std::int64_t j = 0; j < n; ++j) row += std::abs(got(i, j));
      norm = std::max(norm, row);
    }
    EXPECT_NEAR(resident->max_abs_row_sum(), norm, 1e-12 * norm);
  }
  EXPECT_EQ(gpu_->device_memory().in_use, before);
}

TEST_F(CudaAlgorithmsTest, KernelProductMatchesCpuAcrossTiles) {
  // A 2 MiB budget forces tiles of about 300 x 188 on the 600 x 3000 product: two row blocks (the per-block
  // beta upload) and 16 column tiles accumulating into each.
  ntk::BackendOptions small;
  small.device_memory_budget = std::size_t(2) << 20;
  auto gpu = ntk::cuda::make_cuda_backend(0, small);
  const Matrix<double> train = random_inputs(3000, 17, 22), b = random_inputs(3000, 7, 23);
  const Matrix<double> x = random_inputs(600, 17, 24);
  for (bool float32 : {false, true}) {
    const auto on_gpu = gpu->make_kernel_product(relu3(), float32, train.view(), b.view());
    const auto on_cpu = cpu_.make_kernel_product(relu3(), float32, train.view(), b.view());
    for (double beta : {0.0, -1.5}) {
      Matrix<double> want = random_inputs(600, 7, 25), got = want;
      if (beta == 0)
        for (auto& v : got.storage()) v = std::nan("");
      on_gpu->apply(x.view(), beta, got.view());
      on_cpu->apply(x.view(), beta, want.view());
      double scale = 0;
      for (double v : want.storage()) scale = std::max(scale, std::abs(v));
      EXPECT_LE(max_abs_diff(got, want), (float32 ? 1e-4 : 1e-10) * scale) << "float32 " << float32;
    }
    Matrix<double> wrong(600, 6);
    EXPECT_THROW(on_gpu->apply(x.view(), 0.0, wrong.view()), ntk::InvalidArgument);
  }
  EXPECT_EQ(gpu->device_memory().in_use, 0u);
}

TEST_F(CudaAlgorithmsTest, OverBudgetResidentIsResourceExhausted) {
  ntk::BackendOptions tiny;
  tiny.device_memory_budget = 1 << 20;  // 1 MiB: a 512 x 512 float64 matrix (2 MiB) does not fit
  auto small = ntk::cuda::make_cuda_backend(0, tiny);
  const Matrix<double> a = random_inputs(512, 512, 4);
  try {
    (void)small->make_resident(a.view(), "training kernel Theta");
    ADD_FAILURE() << "no ResourceExhausted";
  } catch (const ntk::ResourceExhausted& e) {
    EXPECT_NE(std::string(e.what()).find("training kernel Theta"), std::string::npos) << e.what();
  }
  EXPECT_EQ(small->device_memory().in_use, 0u);
}

TEST_F(CudaAlgorithmsTest, FitsMatchCpu) {
  const auto x = random_inputs(240, 9, 6);
  const auto targets = ntk::targets_from_labels(random_labels(240, 4, 7), 4, 0.0);
  for (auto solver : {ntk::SolverKind::direct, ntk::SolverKind::matrix_free}) {
    ntk::FitSettings s;
    s.lambda = 1e-3;
    s.solver = solver;
    const ntk::Model g = ntk::fit_classifier(*gpu_, relu3(), x.view(), targets, s);
    const ntk::Model c = ntk::fit_classifier(cpu_, relu3(), x.view(), targets, s);
    ASSERT_TRUE(g.diagnostics.converged) << g.diagnostics.message;
    ASSERT_TRUE(c.diagnostics.converged) << c.diagnostics.message;
    // Both satisfy the fixed point to 1e-10; the fixed point is unique.
    EXPECT_LE(max_abs_diff(g.train_logits, c.train_logits), 1e-8) << ntk::solver_name(solver);
    EXPECT_LE(max_abs_diff(g.coefficients, c.coefficients), 1e-8) << ntk::solver_name(solver);
  }
  ntk::FitSettings closed;
  closed.lambda = 0;
  const auto smooth = ntk::targets_from_labels(random_labels(240, 4, 7), 4, 0.1);
  const ntk::Model g = ntk::fit_classifier(*gpu_, relu3(), x.view(), smooth, closed);
  const ntk::Model c = ntk::fit_classifier(cpu_, relu3(), x.view(), smooth, closed);
  const auto xt = random_inputs(57, 9, 8);
  const auto pg = ntk::predict(*gpu_, g, xt.view(), 16), pc = ntk::predict(cpu_, c, xt.view(), 16);
  EXPECT_LE(max_abs_diff(pg.logits, pc.logits), 1e-7 * (1 + max_abs_diff(pc.logits, Matrix<double>(57, 4))));
  EXPECT_EQ(pg.classes, pc.classes);
}

TEST_F(CudaAlgorithmsTest, DynamicsMatchCpu) {
  const auto x = random_inputs(120, 6, 9);
  const auto targets = ntk::targets_from_labels(random_labels(120, 3, 10), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 1e-2;
  s.tolerance = 1e-9;
  const auto g = ntk::fit_dynamics(*gpu_, relu3(), x.view(), targets, s, {1.0, 10.0});
  const auto c = ntk::fit_dynamics(cpu_, relu3(), x.view(), targets, s, {1.0, 10.0});
  ASSERT_EQ(g.size(), 2u);
  for (std::size_t t = 0; t < 2; ++t)
    EXPECT_LE(max_abs_diff(g[t].train_logits, c[t].train_logits), 1e-7) << t;
}

TEST_F(CudaAlgorithmsTest, UncertaintyModesMatchCpu) {
  const auto x = random_inputs(100, 7, 11), xt = random_inputs(33, 7, 12);
  const auto labels = random_labels(100, 3, 13);
  ntk::FitSettings reg;
  reg.lambda = 1e-2;
  const auto hard = ntk::targets_from_labels(labels, 3, 0.0);
  const ntk::Model mg = ntk::fit_classifier(*gpu_, relu3(), x.view(), hard, reg);
  const ntk::Model mc = ntk::fit_classifier(cpu_, relu3(), x.view(), hard, reg);
  ntk::FitSettings closed;
  const auto smooth = ntk::targets_from_labels(labels, 3, 0.1);
  const ntk::Model eg = ntk::fit_classifier(*gpu_, relu3(), x.view(), smooth, closed);
  const ntk::Model ec = ntk::fit_classifier(cpu_, relu3(), x.view(), smooth, closed);
  struct Case {
    ntk::UncertaintyMode mode;
    const ntk::Model *g, *c;
  };
  for (const Case& k :
       {Case{ntk::UncertaintyMode::linearized, &mg, &mc}, Case{ntk::UncertaintyMode::exact, &eg, &ec}}) {
    ntk::UncertaintyOptions o;
    o.mode = k.mode;
    o.seed = 5;
    o.tile_rows = 10;
    const auto ug = ntk::predict_uncertainty(*gpu_, *k.g, xt.view(), o);
    const auto uc = ntk::predict_uncertainty(cpu_, *k.c, xt.view(), o);
    const char* name = ntk::uncertainty_mode_name(k.mode);
    // The Gaussian modes' probability draws are the host's on both backends: agreement to the solves.
    EXPECT_LE(max_abs_diff(ug.mean_logits, uc.mean_logits), 1e-6) << name;
    EXPECT_LE(max_abs_diff(ug.logit_var, uc.logit_var), 1e-6) << name;
    EXPECT_LE(max_abs_diff(ug.mean_probs, uc.mean_probs), 1e-6) << name;
    EXPECT_LE(max_abs_diff(ug.mutual_info, uc.mutual_info), 1e-6) << name;
  }
  // Monte Carlo: f0 is drawn by cuRAND on the GPU and by mt19937_64 on the CPU, so the two agree within
  // Monte Carlo error: means within 5 standard errors, variances by their log ratio, whose standard
  // deviation for two independent estimates from S samples is sqrt(4 / (S - 1)) (0.116 at S = 300): within
  // 5 of those (a ratio in [0.56, 1.78]), so that 99 entries do not fail by chance.
  ntk::UncertaintyOptions o;
  o.mode = ntk::UncertaintyMode::monte_carlo;
  o.samples = 300;
  o.seed = 9;
  const auto ug = ntk::predict_uncertainty(*gpu_, mg, xt.view(), o);
  const auto uc = ntk::predict_uncertainty(cpu_, mc, xt.view(), o);
  for (std::int64_t i = 0; i < xt.rows(); ++i)
    for (std::int64_t q = 0; q < 3; ++q) {
      const double se = std::sqrt((ug.logit_var(i, q) + uc.logit_var(i, q)) / o.samples);
      EXPECT_LE(std::abs(ug.mean_logits(i, q) - uc.mean_logits(i, q)), 5 * se + 1e-12) << i << "," << q;
      EXPECT_LE(std::abs(std::log(ug.logit_var(i, q) / uc.logit_var(i, q))),
                5 * std::sqrt(4.0 / (o.samples - 1)))
          << i << "," << q << ": " << ug.logit_var(i, q) << " vs " << uc.logit_var(i, q);
    }
}

TEST_F(CudaAlgorithmsTest, NormalDrawsAreReproducibleStandardNormals) {
  Matrix<double> a(301, 333, std::nan("")), b(301, 333, std::nan("")), other(301, 333);  // odd count
  gpu_->normal_draws(42, a.view());
  gpu_->normal_draws(42, b.view());
  gpu_->normal_draws(43, other.view());
  EXPECT_EQ(max_abs_diff(a, b), 0.0) << "same seed, same numbers";
  EXPECT_GT(max_abs_diff(a, other), 0.1);
  double mean = 0, sq = 0;
  for (double v : a.storage()) {
    ASSERT_TRUE(std::isfinite(v));
    mean += v;
    sq += v * v;
  }
  const double n = double(a.size());
  mean /= n;
  EXPECT_LE(std::abs(mean), 5 / std::sqrt(n));
  EXPECT_NEAR(sq / n - mean * mean, 1.0, 5 * std::sqrt(2 / n));
  // A strided destination: only the viewed block is written.
  Matrix<double> wide(10, 9, -7.0);
  gpu_->normal_draws(1, wide.view().block(0, 2, 10, 5));
  for (std::int64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(wide(i, 0), -7.0);
    EXPECT_EQ(wide(i, 8), -7.0);
    EXPECT_NE(wide(i, 3), -7.0);
  }
}

}  // namespace
