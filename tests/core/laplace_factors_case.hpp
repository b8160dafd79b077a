#pragma once
// ResidentMatrix::laplace_factors against the definitions, shared by the core test of the host
// implementation and the CUDA differential test: E_c = D_c^1/2 (I + D_c^1/2 K D_c^1/2)^-1 D_c^1/2 with
// the inverse by Gauss-Jordan elimination in long double, M = sum_c E_c.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/errors.hpp"
#include "test_data.hpp"

namespace ntk::testing {

using LongMatrix = std::vector<std::vector<long double>>;

// a^-1 by Gauss-Jordan with partial pivoting.
inline LongMatrix gauss_jordan_inverse(LongMatrix a) {
  const std::size_t n = a.size();
  LongMatrix inv(n, std::vector<long double>(n, 0.0L));
  for (std::size_t i = 0; i < n; ++i) inv[i][i] = 1.0L;
  for (std::size_t col = 0; col < n; ++col) {
    std::size_t pivot = col;
    for (std::size_t r = col + 1; r < n; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[pivot][col])) pivot = r;
    std::swap(a[col], a[pivot]);
    std::swap(inv[col], inv[pivot]);
    const long double d = a[col][col];
    for (std::size_t j = 0; j < n; ++j) {
      a[col][j] /= d;
      inv[col][j] /= d;
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (r == col || a[r][col] == 0.0L) continue;
      const long double f = a[r][col];
      for (std::size_t j = 0; j < n; ++j) {
        a[r][j] -= f * a[col][j];
        inv[r][j] -= f * inv[col][j];
      }
    }
  }
  return inv;
}

// Probabilities of n samples over c classes, rows of softmax(2 z), z standard normal.
inline Matrix<double> random_probabilities(std::int64_t n, std::int64_t c, std::uint64_t seed) {
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

// The factors `resident` (holding theta) forms with `backend` apply E_c and M^-1 as the definitions do:
// E_c v within `tolerance` of max |E_c v|, and M (M^-1 v) within `tolerance` ||M||_inf max |M^-1 v| of v.
inline void expect_laplace_factors_match_definition(Backend& backend, ResidentMatrix& resident,
                                                    const Matrix<double>& theta, double k,
                                                    const Matrix<double>& p, double tolerance) {
  const std::int64_t n = theta.rows(), classes = p.cols();
  const auto factors = resident.laplace_factors(backend, theta.view(), k, p);
  LongMatrix m(n, std::vector<long double>(n, 0.0L));
  const Matrix<double> v = random_inputs(n, 3, 77);
  for (std::int64_t c = 0; c < classes; ++c) {
    LongMatrix b(n, std::vector<long double>(n));
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < n; ++q)
        b[i][q] = (i == q ? 1.0L : 0.0L) +
                  std::sqrt((long double)p(i, c)) * k * theta(i, q) * std::sqrt((long double)p(q, c));
    const LongMatrix b_inverse = gauss_jordan_inverse(std::move(b));
    Matrix<double> got = v;
    factors->apply_e(c, got.view());
    double worst = 0, scale = 0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < v.cols(); ++j) {
        long double want = 0;
        for (std::int64_t q = 0; q < n; ++q) {
          const long double e =
              std::sqrt((long double)p(i, c)) * b_inverse[i][q] * std::sqrt((long double)p(q, c));
          if (j == 0) m[i][q] += e;
          want += e * v(q, j);
        }
        worst = std::max(worst, double(std::fabs(want - got(i, j))));
        scale = std::max(scale, double(std::fabs(want)));
      }
    EXPECT_LE(worst, tolerance * scale) << "E_" << c << " v";
  }
  Matrix<double> w = v;
  factors->apply_m_inverse(w.view());
  long double m_norm = 0, w_max = 0, residual = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    long double row = 0;
    for (std::int64_t q = 0; q < n; ++q) row += std::fabs(m[i][q]);
    m_norm = std::max(m_norm, row);
    for (std::int64_t j = 0; j < v.cols(); ++j) w_max = std::max(w_max, (long double)std::fabs(w(i, j)));
  }
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < v.cols(); ++j) {
      long double mw = 0;
      for (std::int64_t q = 0; q < n; ++q) mw += m[i][q] * w(q, j);
      residual = std::max(residual, std::fabs(mw - v(i, j)));
    }
  EXPECT_LE(double(residual), tolerance * double(m_norm * w_max)) << "M (M^-1 v) - v";
  EXPECT_GT(double(w_max), 0.0);
  // Bad operands are errors that name them, not out-of-range reads.
  Matrix<double> short_v(n - 1, 1);
  EXPECT_THROW(factors->apply_e(0, short_v.view()), InvalidArgument);
  EXPECT_THROW(factors->apply_m_inverse(short_v.view()), InvalidArgument);
  Matrix<double> column(n, 1);
  EXPECT_THROW(factors->apply_e(classes, column.view()), InvalidArgument);
  EXPECT_THROW(factors->apply_e(-1, column.view()), InvalidArgument);
}

}  // namespace ntk::testing
