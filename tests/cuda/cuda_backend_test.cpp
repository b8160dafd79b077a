// Differential tests: the CUDA backend against the CPU backend on fresh random inputs. Without a device
// every test is skipped (GTEST_SKIP), so CI without a GPU reports them as such.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/cuda/cuda_backend.hpp"
#include "ntk/errors.hpp"

namespace {

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (ntk::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: " << ntk::cuda::unavailable_reason();
    gpu_ = ntk::cuda::make_cuda_backend(0, {});
  }
  std::unique_ptr<ntk::Backend> gpu_;
  ntk::CpuBackend cpu_;
};

template <class T>
ntk::Matrix<T> random_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  ntk::Matrix<T> m(rows, cols);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (auto& v : m.storage()) v = static_cast<T>(normal(rng));
  return m;
}

template <class T>
double max_relative_difference(const ntk::Matrix<T>& a, const ntk::Matrix<T>& b) {
  double scale = 0, diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(double(b.data()[i])));
    diff = std::max(diff, std::abs(double(a.data()[i]) - double(b.data()[i])));
    if (std::isnan(double(a.data()[i]))) return std::numeric_limits<double>::infinity();
  }
  return diff / scale;
}

std::vector<ntk::KernelSpec> architectures() {
  std::vector<ntk::KernelSpec> specs;
  const ntk::Activation acts[] = {ntk::Activation::relu, ntk::Activation::leaky_relu, ntk::Activation::erf,
                                  ntk::Activation::gelu, ntk::Activation::abs,        ntk::Activation::tanh};
  int depth = 0;
  for (auto a : acts) {
    ntk::KernelSpec s;
    s.depth = depth++ % 4 + 1;
    s.w_std = 1.4;
    s.b_std = 0.2;
    s.activation.kind = a;
    specs.push_back(s);
  }
  return specs;
}

template <class T>
void compare_backends(ntk::Backend& gpu, ntk::Backend& cpu, double tolerance) {
  std::uint64_t seed = 11;
  for (const auto& spec : architectures()) {
    for (bool symmetric : {false, true}) {
      // Sizes that are not multiples of any tile or warp.
      const auto x1 = random_matrix<T>(301, 47, seed++);
      const auto x2 = random_matrix<T>(173, 47, seed++);
      const ntk::ConstMatrixView<T> v2 = x2.view();
      const std::int64_t n2 = symmetric ? x1.rows() : x2.rows();
      ntk::Matrix<T> g_nngp(x1.rows(), n2, std::numeric_limits<T>::quiet_NaN());
      ntk::Matrix<T> g_ntk(x1.rows(), n2,
                           std::numeric_limits<T>::quiet_NaN());  // poisoned: all must be written
      ntk::Matrix<T> c_nngp(x1.rows(), n2), c_ntk(x1.rows(), n2);
      ntk::AssemblyOptions small_tiles;
      small_tiles.tile_rows = small_tiles.tile_cols = 128;
      gpu.kernel(spec, x1.view(), symmetric ? nullptr : &v2, {g_nngp.view(), g_ntk.view()}, small_tiles);
      cpu.kernel(spec, x1.view(), symmetric ? nullptr : &v2, {c_nngp.view(), c_ntk.view()}, {});
      EXPECT_LE(max_relative_difference(g_nngp, c_nngp), tolerance)
          << spec.describe() << " sym " << symmetric;
      EXPECT_LE(max_relative_difference(g_ntk, c_ntk), tolerance) << spec.describe() << " sym " << symmetric;
    }
  }
}

TEST_F(CudaBackendTest, KernelMatchesCpuFloat64) {
  compare_backends<double>(*gpu_, cpu_, 1e-10);
}
TEST_F(CudaBackendTest, KernelMatchesCpuFloat32) {
  compare_backends<float>(*gpu_, cpu_, 1e-4);
}

// Near-duplicate inputs (x' = x (1 + 1e-7 noise), and exact copies through the general path, also inside
// one symmetric kernel): P - q12^2 is rounding noise there and the ReLU-like angles move by ~sqrt(eps), so
// SPEC section 1 asks float64 for 1e-6 of max|K| (core's AssemblyProperties test holds the CPU to that
// against a long-double reference); the device, whose GEMM rounds differently, must stay as close.
TEST_F(CudaBackendTest, NearDuplicateInputsStayWithinTheCpusAccuracy) {
  const auto x = random_matrix<double>(40, 10, 31);
  std::mt19937_64 rng(33);
  std::normal_distribution<double> normal;
  for (const double noise : {1e-7, 0.0}) {
    ntk::Matrix<double> y(40, 10), stacked(80, 10);
    for (std::size_t i = 0; i < y.size(); ++i) y.storage()[i] = x.storage()[i] * (1 + noise * normal(rng));
    for (std::size_t i = 0; i < x.size(); ++i) {
      stacked.storage()[i] = x.storage()[i];
      stacked.storage()[x.size() + i] = y.storage()[i];
    }
    for (const auto& spec : architectures()) {
      for (const bool symmetric : {false, true}) {
        const ntk::Matrix<double>& a = symmetric ? stacked : x;
        const ntk::ConstMatrixView<double> b = y.view();
        const std::int64_t cols = symmetric ? 80 : 40;
        ntk::Matrix<double> g_nngp(a.rows(), cols, std::nan("")), g_ntk(a.rows(), cols, std::nan(""));
        ntk::Matrix<double> c_nngp(a.rows(), cols), c_ntk(a.rows(), cols);
        gpu_->kernel(spec, a.view(), symmetric ? nullptr : &b, {g_nngp.view(), g_ntk.view()}, {});
        cpu_.kernel(spec, a.view(), symmetric ? nullptr : &b, {c_nngp.view(), c_ntk.view()}, {});
        const double err =
            std::max(max_relative_difference(g_nngp, c_nngp), max_relative_difference(g_ntk, c_ntk));
        EXPECT_LE(err, 2e-6) << spec.describe() << " noise " << noise << (symmetric ? " symmetric" : "");
      }
    }
  }
}

TEST_F(CudaBackendTest, DiagonalMatchesCpu) {
  ntk::KernelSpec spec;
  spec.depth = 3;
  spec.activation.kind = ntk::Activation::gelu;
  const auto x = random_matrix<double>(1000, 31, 3);
  std::vector<double> g(1000, std::nan("")), c(1000);
  gpu_->kernel_diagonal(spec, x.view(), {{}, std::span<double>(g)}, {});
  cpu_.kernel_diagonal(spec, x.view(), {{}, std::span<double>(c)}, {});
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], c[i], 1e-10 * std::abs(c[i])) << i;
}

TEST_F(CudaBackendTest, RejectsBadInputsLikeTheCpu) {
  ntk::KernelSpec spec;
  auto x = random_matrix<double>(10, 4, 1);
  x(3, 2) = std::nan("");
  ntk::Matrix<double> k(10, 10);
  try {
    gpu_->kernel(spec, x.view(), nullptr, {{}, k.view()}, {});
    FAIL();
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("row 3, column 2"), std::string::npos);
  }
}

TEST_F(CudaBackendTest, MemoryAccountingReturnsToZero) {
  ntk::KernelSpec spec;
  const auto x = random_matrix<float>(500, 20, 2);
  ntk::Matrix<float> k(500, 500);
  gpu_->kernel(spec, x.view(), nullptr, {{}, k.view()}, {});
  const auto stats = gpu_->device_memory();
  EXPECT_EQ(stats.in_use, 0u);
  EXPECT_GT(stats.peak, 0u);
}

// Backend instances on one device with one budget (the server's workers and predict slots) share its
// pool: what one holds counts against the others, and blocks one freed serve the others.
TEST_F(CudaBackendTest, InstancesWithOneBudgetShareTheirPool) {
  ntk::BackendOptions options;
  options.device_memory_budget = std::size_t(64) << 20;
  auto first = ntk::cuda::make_cuda_backend(0, options), second = ntk::cuda::make_cuda_backend(0, options);
  options.device_memory_budget = std::size_t(48) << 20;
  auto other = ntk::cuda::make_cuda_backend(0, options);
  const auto a = random_matrix<double>(1024, 1024, 9);  // 8 MiB resident
  const auto resident = first->make_resident(a.view(), "shared test matrix");
  EXPECT_GE(second->device_memory().in_use, std::size_t(8) << 20);
  EXPECT_EQ(second->device_memory().in_use, first->device_memory().in_use);
  EXPECT_EQ(other->device_memory().in_use, 0u);
  // Eight more such matrices do not fit in the shared 64 MiB beside the first one.
  std::vector<std::unique_ptr<ntk::ResidentMatrix>> more;
  EXPECT_THROW(
      {
        for (int i = 0; i < 8; ++i) more.push_back(second->make_resident(a.view(), "shared test matrix"));
      },
      ntk::ResourceExhausted);
  more.clear();
  EXPECT_EQ(second->device_memory().in_use, first->device_memory().in_use);
}

// A pool short of room asks the backend's reclaimer (the server's idle cached work) before it refuses;
// the pool's logic itself is core's CachingPool tests.
TEST_F(CudaBackendTest, AShortPoolAsksTheReclaimerBeforeRefusing) {
  std::vector<std::unique_ptr<ntk::ResidentMatrix>> idle;
  std::vector<std::uint64_t> asked;
  ntk::BackendOptions options;
  options.device_memory_budget = std::size_t(20) << 20;  // a budget no other test uses: a pool of its own
  options.reclaim_device_memory = [&](std::uint64_t missing) -> std::uint64_t {
    asked.push_back(missing);
    if (idle.empty()) return 0;
    idle.erase(idle.begin());
    return std::uint64_t(8) << 20;
  };
  auto gpu = ntk::cuda::make_cuda_backend(0, options);
  const auto a = random_matrix<double>(1024, 1024, 9);  // 8 MiB resident
  idle.push_back(gpu->make_resident(a.view(), "idle matrix"));
  idle.push_back(gpu->make_resident(a.view(), "idle matrix"));
  const auto needed = gpu->make_resident(a.view(), "matrix that needs room");  // 24 MiB > 20
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0], std::uint64_t(4) << 20);
  EXPECT_EQ(idle.size(), 1u);
  EXPECT_EQ(gpu->device_memory().in_use, std::size_t(16) << 20);
  const auto v = random_matrix<double>(1024, 3, 10);
  ntk::Matrix<double> got(1024, 3, std::nan("")), want(1024, 3);
  needed->multiply(1.0, v.view(), 0.0, got.view());
  cpu_.gemm(false, false, 1.0, a.view(), v.view(), 0.0, want.view());
  EXPECT_LE(max_relative_difference(got, want), 1e-13);
  // Nothing idle left after the last one goes: refused, naming what.
  const std::size_t before_big = gpu->device_memory().in_use;  // the product kept its operand buffers
  const auto big = random_matrix<double>(1400, 1400, 11);      // 15 MiB
  try {
    (void)gpu->make_resident(big.view(), "the big matrix");
    ADD_FAILURE() << "not refused";
  } catch (const ntk::ResourceExhausted& e) {
    EXPECT_NE(std::string(e.what()).find("the big matrix"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(idle.empty());
  EXPECT_EQ(gpu->device_memory().in_use, before_big - (std::size_t(8) << 20));
}

TEST_F(CudaBackendTest, OverBudgetIsResourceExhausted) {
  ntk::BackendOptions tiny;
  tiny.device_memory_budget = 1 << 16;
  auto small = ntk::cuda::make_cuda_backend(0, tiny);
  const auto x = random_matrix<double>(2000, 64, 4);
  ntk::Matrix<double> k(2000, 2000);
  EXPECT_THROW(small->kernel(ntk::KernelSpec{}, x.view(), nullptr, {{}, k.view()}, {}),
               ntk::ResourceExhausted);
}

TEST_F(CudaBackendTest, LinearAlgebraMatchesCpu) {
  const auto a = random_matrix<double>(67, 41, 5), b = random_matrix<double>(53, 41, 6);
  ntk::Matrix<double> g(67, 53, std::nan("")), c(67, 53);
  gpu_->gemm(false, true, 0.5, a.view(), b.view(), 0.0, g.view());
  cpu_.gemm(false, true, 0.5, a.view(), b.view(), 0.0, c.view());
  EXPECT_LE(max_relative_difference(g, c), 1e-13);
  // SPD matrix a a^T + I, its factor and both triangular solves.
  ntk::Matrix<double> spd(67, 67);
  cpu_.gemm(false, true, 1.0, a.view(), a.view(), 0.0, spd.view());
  for (int i = 0; i < 67; ++i) spd(i, i) += 1;
  ntk::Matrix<double> lg = spd, lc = spd;
  gpu_->cholesky(lg.view(), "spd");
  cpu_.cholesky(lc.view(), "spd");
  for (int i = 0; i < 67; ++i)
    for (int j = 0; j <= i; ++j) EXPECT_NEAR(lg(i, j), lc(i, j), 1e-12 * std::abs(lc(i, i)));
  for (bool transpose : {false, true}) {
    auto rhs_g = random_matrix<double>(67, 9, 7), rhs_c = rhs_g;
    gpu_->triangular_solve(lc.view(), rhs_g.view(), transpose);
    cpu_.triangular_solve(lc.view(), rhs_c.view(), transpose);
    EXPECT_LE(max_relative_difference(rhs_g, rhs_c), 1e-12) << transpose;
  }
  // Both solves at once (cusolverDnXpotrs; several columns go through transposes, one does not), into a
  // strided block of a poisoned-free wider matrix whose other columns must stay as they were.
  for (const std::int64_t m : {1, 9}) {
    auto wide_g = random_matrix<double>(67, m + 3, 8), wide_c = wide_g;
    gpu_->cholesky_solve(lc.view(), wide_g.view().block(0, 1, 67, m));
    cpu_.cholesky_solve(lc.view(), wide_c.view().block(0, 1, 67, m));
    EXPECT_LE(max_relative_difference(wide_g, wide_c), 1e-12) << m << " columns";
  }
  // syrk (lower triangle) and the product with a lower factor (its upper triangle holds spd's values,
  // which must not be read).
  {
    ntk::Matrix<double> sg = spd, sc = spd;
    gpu_->syrk_lower(0.5, a.view(), 2.0, sg.view());
    cpu_.syrk_lower(0.5, a.view(), 2.0, sc.view());
    for (int i = 0; i < 67; ++i)
      for (int j = 0; j <= i; ++j)
        EXPECT_NEAR(sg(i, j), sc(i, j), 1e-12 * (1 + std::abs(sc(i, j)))) << i << j;
    auto bg = random_matrix<double>(13, 67, 9), bc = bg;
    gpu_->multiply_by_lower(bg.view(), lc.view());
    cpu_.multiply_by_lower(bc.view(), lc.view());
    EXPECT_LE(max_relative_difference(bg, bc), 1e-12);
  }
  ntk::Matrix<double> ig = spd, ic = spd;
  gpu_->spd_inverse(ig.view(), "spd");
  cpu_.spd_inverse(ic.view(), "spd");
  EXPECT_LE(max_relative_difference(ig, ic), 1e-11);
  ntk::Matrix<double> indefinite(3, 3, 1.0);
  EXPECT_THROW(gpu_->cholesky(indefinite.view(), "ones"), ntk::NumericalError);
}

}  // namespace
