// Backend selection, with or without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/detail/transpose.hpp"
#include "ntk/errors.hpp"

namespace {

TEST(BackendSelection, CpuAlwaysWorks) {
  auto b = ntk::make_backend("cpu");
  EXPECT_EQ(b->name(), "cpu");
  EXPECT_NE(b->description().find("BLAS"), std::string::npos);
}

TEST(BackendSelection, AutoPicksCudaOnlyWithADevice) {
  auto b = ntk::make_backend("auto");
  if (ntk::cuda_device_count() > 0)
    EXPECT_EQ(b->name(), "cuda:0");
  else
    EXPECT_EQ(b->name(), "cpu");
}

TEST(BackendSelection, CudaWithoutDeviceIsAClearError) {
  if (ntk::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    ntk::make_backend("cuda:0");
    FAIL();
  } catch (const ntk::Unavailable& e) {
    const std::string m = e.what();
    EXPECT_TRUE(m.find("no CUDA") != std::string::npos || m.find("no CUDA backend") != std::string::npos)
        << m;
  }
}

TEST(BackendSelection, RejectsUnknownNames) {
  EXPECT_THROW(ntk::make_backend("tpu"), ntk::InvalidArgument);
  EXPECT_THROW(ntk::make_backend("cuda:x"), ntk::InvalidArgument);
  EXPECT_THROW(ntk::make_backend("cuda:-1"), ntk::InvalidArgument);
}

}  // namespace

namespace {

TEST(CpuLinearAlgebra, SpdInverseTimesMatrixIsIdentity) {
  ntk::CpuBackend cpu;
  const std::int64_t n = 45;
  ntk::Matrix<double> g(n, n), a(n, n);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) g(i, j) = std::sin(0.7 * double(i * n + j));
  cpu.gemm(false, true, 1.0, g.view(), g.view(), 0.0, a.view());
  for (std::int64_t i = 0; i < n; ++i) a(i, i) += 0.5;
  ntk::Matrix<double> inv = a, prod(n, n);
  cpu.spd_inverse(inv.view(), "test matrix");
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) EXPECT_EQ(inv(i, j), inv(j, i));
  cpu.gemm(false, false, 1.0, a.view(), inv.view(), 0.0, prod.view());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) EXPECT_NEAR(prod(i, j), i == j ? 1.0 : 0.0, 1e-10);
  ntk::Matrix<double> singular(3, 3, 1.0);
  EXPECT_THROW(cpu.spd_inverse(singular.view(), "ones"), ntk::NumericalError);
  // cholesky_solve: A x = b through the factor, checked by multiplying back.
  ntk::Matrix<double> l = a, b(n, 4), x(n, 4), back(n, 4);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < 4; ++j) b(i, j) = std::cos(double(i + 3 * j));
  cpu.cholesky(l.view(), "test matrix");
  x = b;
  cpu.cholesky_solve(l.view(), x.view());
  cpu.gemm(false, false, 1.0, a.view(), x.view(), 0.0, back.view());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < 4; ++j) EXPECT_NEAR(back(i, j), b(i, j), 1e-10);
}

}  // namespace

// The CPU backend's syrk and triangular product (OpenBLAS) against the Backend defaults (through gemm).
TEST(CpuLinearAlgebra, SyrkAndTriangularProductMatchTheirGemmDefinitions) {
  ntk::CpuBackend cpu;
  const std::int64_t n = 37, k = 23;
  ntk::Matrix<double> a(n, k), c(n, n), want(n, n), l(n, n), b(11, n);
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = std::sin(1.3 * double(i));
  for (std::size_t i = 0; i < c.size(); ++i) c.data()[i] = std::cos(0.7 * double(i));
  for (std::size_t i = 0; i < l.size(); ++i) l.data()[i] = std::sin(0.3 * double(i) + 1);
  for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = std::cos(0.9 * double(i) + 2);
  want = c;
  cpu.syrk_lower(0.5, a.view(), 2.0, c.view());
  cpu.Backend::syrk_lower(0.5, a.view(), 2.0, want.view());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j) EXPECT_NEAR(c(i, j), want(i, j), 1e-12) << i << ", " << j;
  // l's strict upper triangle holds values that must not be read.
  ntk::Matrix<double> got = b, expected = b;
  cpu.multiply_by_lower(got.view(), l.view());
  cpu.Backend::multiply_by_lower(expected.view(), l.view());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got.data()[i], expected.data()[i], 1e-12) << i;
  double upper_weight = 0;  // the check above would miss an upper triangle of zeros
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = i + 1; j < n; ++j) upper_weight += std::abs(l(i, j));
  EXPECT_GT(upper_weight, 1.0);
  ntk::Matrix<double> wrong(11, n - 1);
  EXPECT_THROW(cpu.multiply_by_lower(wrong.view(), l.view()), ntk::InvalidArgument);
  // An empty sum (a with no columns) leaves beta c, as gemm does.
  ntk::Matrix<double> no_columns(n, 0), scaled = want;
  cpu.syrk_lower(0.5, no_columns.view(), 2.0, scaled.view());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j <= i; ++j) EXPECT_EQ(scaled(i, j), 2.0 * want(i, j)) << i << ", " << j;
}

// The blocked mirrors (the CUDA backend's inverse and symmetric tiles use them): every off-diagonal entry
// copied from the other triangle, the source triangle and the padding untouched, at sizes that are no
// multiple of the 8-element blocks.
TEST(Transpose, MirrorsCopyOneTriangleOntoTheOther) {
  for (const std::int64_t n : {1, 7, 8, 9, 150}) {
    const std::int64_t ld = n + 3;
    std::vector<double> original(static_cast<std::size_t>(n * ld));
    for (std::size_t i = 0; i < original.size(); ++i) original[i] = std::sin(1.0 + double(i));
    for (const bool lower_to_upper : {true, false}) {
      std::vector<double> a = original;
      if (lower_to_upper)
        ntk::detail::mirror_lower_to_upper(a.data(), n, ld);
      else
        ntk::detail::mirror_upper_to_lower(a.data(), n, ld);
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < ld; ++j) {
          const std::size_t at = static_cast<std::size_t>(i * ld + j);
          const bool source = j >= n || i == j || (lower_to_upper ? j < i : j > i);
          const double want = source ? original[at] : original[static_cast<std::size_t>(j * ld + i)];
          ASSERT_EQ(a[at], want) << "n " << n << " (" << i << ", " << j << ")"
                                 << (lower_to_upper ? " lower to upper" : " upper to lower");
        }
    }
  }
}
