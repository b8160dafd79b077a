#include "newton_preconditioner.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "ntk/errors.hpp"

namespace ntk::detail {
namespace {

// Standard normal draws by Box-Muller from raw 64-bit words: std::normal_distribution differs between
// standard libraries, and the sketch (hence the CG iteration counts) should not.
Matrix<double> gaussian_sketch(std::int64_t rows, std::int64_t cols) {
  std::mt19937_64 engine(0x6e746b73657276ULL);  // fixed: reproducible fits
  auto uniform = [&] { return (static_cast<double>(engine() >> 11) + 0.5) * 0x1.0p-53; };
  Matrix<double> m(rows, cols);
  for (std::size_t i = 0; i < m.size(); i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = 2.0 * M_PI * uniform();
    m.data()[i] = r * std::cos(t);
    if (i + 1 < m.size()) m.data()[i + 1] = r * std::sin(t);
  }
  return m;
}

// The columns of y (N x l) orthonormalized by classical Gram-Schmidt applied twice (accurate to rounding
// for any conditioning), returned as rows (l' x N). A column left with under 1e-10 of its norm lies in the
// span of the earlier ones (Theta annihilates part of the sketch) and is dropped.
Matrix<double> orthonormal_rows(const Matrix<double>& y) {
  const std::int64_t n = y.rows(), l = y.cols();
  Matrix<double> q(l, n);
  std::int64_t kept = 0;
  std::vector<double> v(static_cast<std::size_t>(n)), coef(static_cast<std::size_t>(l));
  for (std::int64_t j = 0; j < l; ++j) {
    double norm0 = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      v[i] = y(i, j);
      norm0 += v[i] * v[i];
    }
    for (int pass = 0; pass < 2; ++pass) {
      for (std::int64_t a = 0; a < kept; ++a) {
        const double* qa = q.row_data(a);
        double d = 0;
        for (std::int64_t i = 0; i < n; ++i) d += qa[i] * v[i];
        coef[a] = d;
      }
      for (std::int64_t a = 0; a < kept; ++a) {
        const double* qa = q.row_data(a);
        for (std::int64_t i = 0; i < n; ++i) v[i] -= coef[a] * qa[i];
      }
    }
    double norm = 0;
    for (std::int64_t i = 0; i < n; ++i) norm += v[i] * v[i];
    if (!(norm > 1e-20 * norm0) || norm == 0) continue;
    const double inv = 1.0 / std::sqrt(norm);
    double* out = q.row_data(kept++);
    for (std::int64_t i = 0; i < n; ++i) out[i] = v[i] * inv;
  }
  Matrix<double> rows(kept, n);
  std::copy(q.data(), q.data() + kept * n, rows.data());
  return rows;
}

Matrix<double> transpose(ConstMatrixView<double> a) {
  Matrix<double> t(a.cols, a.rows);
  for (std::int64_t i = 0; i < a.rows; ++i)
    for (std::int64_t j = 0; j < a.cols; ++j) t(j, i) = a(i, j);
  return t;
}

}  // namespace

int automatic_preconditioner_rank(std::int64_t n, std::int64_t classes) {
  const std::int64_t by_classes = std::clamp<std::int64_t>(160 / std::max<std::int64_t>(classes, 1), 1, 64);
  return static_cast<int>(std::min(n, by_classes));
}

Matrix<double> nystrom_basis(Backend& be, ResidentMatrix& theta, double k, int rank) {
  const std::int64_t n = theta.rows();
  const std::int64_t l = std::min<std::int64_t>(rank, n);
  if (l <= 0) return Matrix<double>(n, 0);
  // One subspace iteration: Omega spans Theta times a Gaussian sketch, which aligns it with the top
  // eigenvectors far better than the raw sketch does for a slowly decaying spectrum.
  const Matrix<double> sketch = gaussian_sketch(n, l);
  Matrix<double> y0(n, l);
  theta.multiply(1.0, sketch.view(), 0.0, y0.view());
  const Matrix<double> omega_t = orthonormal_rows(y0);  // l' x N
  const std::int64_t lk = omega_t.rows();
  if (lk == 0) return Matrix<double>(n, 0);
  Matrix<double> y(n, lk);
  theta.multiply(1.0, transpose(omega_t.view()).view(), 0.0, y.view());
  // Shift by nu (Tropp et al. 2017's stable Nystrom): Omega^T Theta Omega may be numerically singular.
  double fro = 0;
  for (std::size_t i = 0; i < y.size(); ++i) fro += y.data()[i] * y.data()[i];
  const double nu = 2.2e-16 * std::sqrt(static_cast<double>(n)) * std::sqrt(fro);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t a = 0; a < lk; ++a) y(i, a) += nu * omega_t(a, i);
  Matrix<double> core(lk, lk);
  be.gemm(false, false, 1.0, omega_t.view(), y.view(), 0.0, core.view());
  for (std::int64_t a = 0; a < lk; ++a)
    for (std::int64_t b = 0; b < a; ++b) core(a, b) = core(b, a) = 0.5 * (core(a, b) + core(b, a));
  be.cholesky(core.view(), "Nystrom core Omega^T Theta Omega");
  Matrix<double> bt = transpose(y.view());  // l' x N
  be.triangular_solve(core.view(), bt.view(), false);
  Matrix<double> basis = transpose(bt.view());
  const double root_k = std::sqrt(k);
  for (std::size_t i = 0; i < basis.size(); ++i) basis.data()[i] *= root_k;
  return basis;
}

Matrix<double> nystrom_g_factor(Backend& be, const Matrix<double>& basis, const Matrix<double>& p) {
  const std::int64_t n = p.rows(), c = p.cols(), l = basis.cols(), m = l * c;
  Matrix<double> z(n, m);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t a = 0; a < l; ++a)
      for (std::int64_t j = 0; j < c; ++j) z(i, a * c + j) = basis(i, a) * p(i, j);
  Matrix<double> g(m, m);
  be.gemm(true, false, -1.0, z.view(), z.view(), 0.0, g.view());
  Matrix<double> scaled(n, l), block(l, l);
  for (std::int64_t j = 0; j < c; ++j) {
    for (std::int64_t i = 0; i < n; ++i) {
      const double w = std::sqrt(p(i, j));
      for (std::int64_t a = 0; a < l; ++a) scaled(i, a) = basis(i, a) * w;
    }
    be.gemm(true, false, 1.0, scaled.view(), scaled.view(), 0.0, block.view());
    for (std::int64_t a = 0; a < l; ++a)
      for (std::int64_t b = 0; b < l; ++b) g(a * c + j, b * c + j) += block(a, b);
  }
  for (std::int64_t i = 0; i < m; ++i) g(i, i) += 1.0;
  be.cholesky(g.view(), "Newton-CG preconditioner I + V^T V");
  return g;
}

}  // namespace ntk::detail
