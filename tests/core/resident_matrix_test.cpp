// The CPU backend's resident matrix (cpu_resident_matrix.cpp, thin_product_impl.inc) against a plain
// triple loop in long double: every instruction-set variant this CPU runs, thin and wide operands,
// strided views, beta = 0 over a poisoned output and beta != 0, row splits; the float32 products within
// float32's error bound (and visibly not float64's).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "ntk/cpu_backend.hpp"
#include "ntk/cpu_features.hpp"
#include "ntk/errors.hpp"
#include "test_data.hpp"
#include "tile_recursion.hpp"

namespace {

using ntk::Matrix;

Matrix<double> random_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  return ntk::testing::random_inputs(rows, cols, seed);
}

// alpha a v + beta c, accumulated in long double.
Matrix<double> reference(ntk::ConstMatrixView<double> a, ntk::ConstMatrixView<double> v, double alpha,
                         double beta, const Matrix<double>& c) {
  Matrix<double> out(a.rows, v.cols);
  for (std::int64_t i = 0; i < a.rows; ++i)
    for (std::int64_t q = 0; q < v.cols; ++q) {
      long double s = 0;
      for (std::int64_t j = 0; j < a.cols; ++j) s += static_cast<long double>(a(i, j)) * v(j, q);
      out(i, q) =
          static_cast<double>(alpha * s + (beta == 0 ? 0.0L : static_cast<long double>(beta) * c(i, q)));
    }
  return out;
}

double max_error(const Matrix<double>& got, const Matrix<double>& want) {
  double e = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got.data()[i])) return INFINITY;
    e = std::max(e, std::abs(got.data()[i] - want.data()[i]));
  }
  return e;
}

TEST(ResidentMatrix, CpuProductsMatchTheReference) {
  ntk::CpuBackend cpu(ntk::testing::with_threads(2));
  for (std::int64_t n : {1, 5, 67, 300}) {
    const Matrix<double> big = random_matrix(n + 3, n + 9, 10 + std::uint64_t(n));
    const ntk::ConstMatrixView<double> a = big.view().block(2, 5, n, n);  // strided
    const auto resident = cpu.make_resident(a, "a");
    ASSERT_EQ(resident->rows(), n);
    for (std::int64_t m : {1, 7, 10, 32, 33, 40}) {  // 33 and 40 take the BLAS path
      const Matrix<double> v_full = random_matrix(n, m + 2, 20 + std::uint64_t(m));
      const ntk::ConstMatrixView<double> v = v_full.view().block(0, 1, n, m);
      for (double beta : {0.0, -0.75}) {
        Matrix<double> out = random_matrix(n, m, 30);
        const Matrix<double> want = reference(a, v, 1.5, beta, out);
        if (beta == 0)
          for (auto& x : out.storage()) x = std::nan("");
        resident->multiply(1.5, v, beta, out.view());
        EXPECT_LE(max_error(out, want), 1e-13 * std::sqrt(double(n)) * 4)
            << n << " x " << m << " beta " << beta;
      }
    }
  }
  Matrix<double> a(4, 4), v(3, 2), out(4, 2);
  EXPECT_THROW(cpu.make_resident(a.view().block(0, 0, 4, 3), "rectangle"), ntk::InvalidArgument);
  EXPECT_THROW(cpu.make_resident(a.view(), "a")->multiply(1, v.view(), 0, out.view()), ntk::InvalidArgument);
}

// The server shares a model's uncertainty context, and with it resident matrices, between concurrent
// requests: products from several threads at once (thin float64 and float32, which share the workers and
// scratch buffers, and wide ones) must each give the single-threaded result, bit for bit.
TEST(ResidentMatrix, ConcurrentProductsGiveTheSingleThreadedResults) {
  ntk::CpuBackend cpu(ntk::testing::with_threads(2));
  const std::int64_t n = 700;
  const Matrix<double> a = random_matrix(n, n, 61);
  const auto resident = cpu.make_resident(a.view(), "a");
  const std::int64_t widths[] = {8, 3, 40};
  std::vector<Matrix<double>> operands, expected;
  for (int t = 0; t < 6; ++t) {
    const std::int64_t m = widths[t % 3];
    operands.push_back(random_matrix(n, m, 70 + std::uint64_t(t)));
    expected.emplace_back(n, m);
    if (t % 2)
      resident->multiply_float32(1.0, operands.back().view(), 0.0, expected.back().view());
    else
      resident->multiply(1.0, operands.back().view(), 0.0, expected.back().view());
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(6, 0);
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      Matrix<double> out(operands[t].rows(), operands[t].cols());
      for (int rep = 0; rep < 20; ++rep) {
        if (t % 2)
          resident->multiply_float32(1.0, operands[t].view(), 0.0, out.view());
        else
          resident->multiply(1.0, operands[t].view(), 0.0, out.view());
        if (out.storage() != expected[t].storage()) ++mismatches[t];
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 6; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t << " width " << widths[t % 3];
}

TEST(ResidentMatrix, EveryInstructionSetVariantIsAccurateAndDeterministic) {
  // Variants differ by rounding only (FMA where the instruction set has it); each is deterministic and
  // independent of how rows are split between threads.
  const std::int64_t n = 203, m = 10;
  const Matrix<double> a = random_matrix(n, n, 1), vt = random_matrix(m, n, 2);
  Matrix<double> v(n, m);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t q = 0; q < m; ++q) v(i, q) = vt(q, i);
  const Matrix<double> want = reference(a.view(), v.view(), 1.0, 0.0, Matrix<double>(n, m));
  std::vector<ntk::detail::TileRecursionKernels> variants{ntk::detail::isa_generic::kernels()};
  if (ntk::x86_level() >= 3) variants.push_back(ntk::detail::isa_v3::kernels());
  if (ntk::x86_level() >= 4) variants.push_back(ntk::detail::isa_v4::kernels());
  for (const auto& k : variants) {
    Matrix<double> whole(n, m), split(n, m);
    k.thin_product(a.data(), n, n, n, vt.data(), m, whole.data());
    k.thin_product(a.data(), n, 77, n, vt.data(), m, split.data());
    k.thin_product(a.data() + 77 * n, n, n - 77, n, vt.data(), m, split.data() + 77 * m);
    EXPECT_LE(max_error(whole, want), 1e-12) << k.isa;
    EXPECT_EQ(max_error(split, whole), 0.0) << k.isa;
  }
}

// Entry-wise bound sum_j |a_ij| |v_jq| |alpha|, which float32 rounding errors are measured against.
Matrix<double> absolute_products(ntk::ConstMatrixView<double> a, ntk::ConstMatrixView<double> v,
                                 double alpha) {
  Matrix<double> out(a.rows, v.cols);
  for (std::int64_t i = 0; i < a.rows; ++i)
    for (std::int64_t q = 0; q < v.cols; ++q)
      for (std::int64_t j = 0; j < a.cols; ++j) out(i, q) += std::abs(alpha * a(i, j) * v(j, q));
  return out;
}

TEST(ResidentMatrix, Float32ProductsAreWithinFloat32Rounding) {
  ntk::CpuBackend cpu(ntk::testing::with_threads(2));
  for (std::int64_t n : {1, 5, 67, 300, 1031}) {
    const Matrix<double> big = random_matrix(n + 3, n + 9, 40 + std::uint64_t(n));
    const ntk::ConstMatrixView<double> a = big.view().block(2, 5, n, n);
    const auto resident = cpu.make_resident(a, "a");
    for (std::int64_t m : {1, 10, 32, 33}) {  // 33: wider than the thin path, computed exactly
      const Matrix<double> v = random_matrix(n, m, 50 + std::uint64_t(m));
      for (double beta : {0.0, 0.5}) {
        Matrix<double> out = random_matrix(n, m, 60);
        const Matrix<double> want = reference(a, v.view(), -2.0, beta, out);
        const Matrix<double> scale = absolute_products(a, v.view(), -2.0);
        if (beta == 0)
          for (auto& x : out.storage()) x = std::nan("");
        resident->multiply_float32(-2.0, v.view(), beta, out.view());
        double worst = 0, largest = 0;
        for (std::size_t i = 0; i < out.size(); ++i) {
          ASSERT_TRUE(std::isfinite(out.data()[i])) << n << " x " << m << " entry " << i;
          const double err = std::abs(out.data()[i] - want.data()[i]);
          worst = std::max(worst, err / scale.data()[i]);
          largest = std::max(largest, err);
        }
        // Inputs rounded to float32 (2 x 2^-24) plus float32 sums of n / 16 terms per lane.
        EXPECT_LE(worst, 0x1p-24 * (4 + double(n) / 16)) << n << " x " << m << " beta " << beta;
        if (m <= 32 && n >= 67) {
          EXPECT_GT(largest, 1e-12) << "the float32 path was not taken: " << n << " x " << m;
        }
      }
    }
  }
}

TEST(ResidentMatrix, Float32VariantsAreDeterministicUnderRowSplits) {
  const std::int64_t n = 203, m = 10;
  const Matrix<double> a64 = random_matrix(n, n, 3), vt64 = random_matrix(m, n, 4);
  std::vector<float> a(a64.size()), vt(vt64.size());
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(a64.data()[i]);
  for (std::size_t i = 0; i < vt.size(); ++i) vt[i] = static_cast<float>(vt64.data()[i]);
  std::vector<ntk::detail::TileRecursionKernels> variants{ntk::detail::isa_generic::kernels()};
  if (ntk::x86_level() >= 3) variants.push_back(ntk::detail::isa_v3::kernels());
  if (ntk::x86_level() >= 4) variants.push_back(ntk::detail::isa_v4::kernels());
  for (const auto& k : variants) {
    std::vector<float> whole(n * m), split(n * m);
    k.thin_product_f32(a.data(), n, n, n, vt.data(), m, whole.data());
    k.thin_product_f32(a.data(), n, 77, n, vt.data(), m, split.data());
    k.thin_product_f32(a.data() + 77 * n, n, n - 77, n, vt.data(), m, split.data() + 77 * m);
    EXPECT_EQ(whole, split) << k.isa;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < m; ++q) {
        long double s = 0, bound = 0;
        for (std::int64_t j = 0; j < n; ++j) {
          s += static_cast<long double>(a[i * n + j]) * vt[q * n + j];
          bound += std::abs(static_cast<long double>(a[i * n + j]) * vt[q * n + j]);
        }
        EXPECT_LE(std::abs(whole[i * m + q] - s), 0x1p-24 * (2 + double(n) / 16) * bound) << k.isa;
      }
  }
}

}  // namespace
