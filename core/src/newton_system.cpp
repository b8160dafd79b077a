// The host implementation of ResidentMatrix::solve_newton_system (every backend without its own): the
// shared CG iteration over Matrix<double> vectors, products through the resident matrix, the Nystrom
// preconditioner's thin products through Backend::gemm.
#include <algorithm>
#include <string>

#include "ntk/backend.hpp"
#include "ntk/detail/conjugate_gradient.hpp"
#include "ntk/errors.hpp"
#include "ntk/sample_math.hpp"

namespace ntk {
namespace {

std::string shape(ConstMatrixView<double> m) {
  return std::to_string(m.rows) + " x " + std::to_string(m.cols);
}

void expect_shape(ConstMatrixView<double> m, std::int64_t rows, std::int64_t cols, const char* what) {
  if (m.rows != rows || m.cols != cols || (rows * cols > 0 && m.data == nullptr))
    throw InvalidArgument(std::string("Newton system: ") + what + " is " + shape(m) + ", expected " +
                          std::to_string(rows) + " x " + std::to_string(cols));
}

class HostNewtonOps {
 public:
  using Vector = Matrix<double>;

  HostNewtonOps(Backend& backend, ResidentMatrix& theta, const NewtonSystem& system)
      : backend_(backend),
        theta_(theta),
        system_(system),
        n_(system.p.rows),
        c_(system.p.cols),
        l_(system.basis.cols),
        st_v_(n_, c_),
        k_st_v_(n_, c_) {
    if (l_ > 0) {
      coefficients_ = Matrix<double>(l_, c_);
      basis_times_ = Matrix<double>(n_, c_);
    }
  }

  Vector make() const { return Vector(n_, c_); }
  void copy(const Vector& from, Vector& to) const { to = from; }
  void set_zero(Vector& v) const { std::fill(v.storage().begin(), v.storage().end(), 0.0); }
  double dot(const Vector& x, const Vector& y) const {
    double d = 0;
    for (std::size_t i = 0; i < x.size(); ++i) d += x.data()[i] * y.data()[i];
    return d;
  }
  void axpy(double alpha, const Vector& x, Vector& y) const {
    for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] += alpha * x.data()[i];
  }
  void xpby(const Vector& x, double beta, Vector& y) const {
    for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = x.data()[i] + beta * y.data()[i];
  }

  // out = (I + S K S^T) v
  void apply(const Vector& v, Vector& out) {
    apply_s_all(v, true, st_v_);
    if (system_.float32_products)
      theta_.multiply_float32(system_.k, st_v_.view(), 0.0, k_st_v_.view());
    else
      theta_.multiply(system_.k, st_v_.view(), 0.0, k_st_v_.view());
    apply_s_all(k_st_v_, false, out);
    for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] += v.data()[i];
  }

  // out = P^-1 r = r - V G^-1 V^T r (Nystrom, newton_preconditioner.hpp) or the Jacobi scaling.
  void precondition(const Vector& r, Vector& out) {
    if (l_ == 0) {
      for (std::int64_t i = 0; i < n_; ++i)
        for (std::int64_t j = 0; j < c_; ++j) out(i, j) = system_.inverse_diagonal(i, j) * r(i, j);
      return;
    }
    apply_s_all(r, true, st_v_);
    backend_.gemm(true, false, 1.0, system_.basis, st_v_.view(), 0.0, coefficients_.view());
    const MatrixView<double> t_vector{coefficients_.data(), l_ * c_, 1, 1};
    backend_.triangular_solve(system_.g_factor, t_vector, false);
    backend_.triangular_solve(system_.g_factor, t_vector, true);
    backend_.gemm(false, false, 1.0, system_.basis, coefficients_.view(), 0.0, basis_times_.view());
    apply_s_all(basis_times_, false, out);
    for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] = r.data()[i] - out.data()[i];
  }

 private:
  // out_i = S_i v_i (or S_i^T v_i) for every sample.
  void apply_s_all(const Vector& v, bool transpose, Vector& out) const {
    const int ci = static_cast<int>(c_);
    for (std::int64_t i = 0; i < n_; ++i) {
      const double* p = system_.p.row(i);
      if (transpose)
        sample::apply_st(p, v.row_data(i), ci, out.row_data(i));
      else
        sample::apply_s(p, v.row_data(i), ci, out.row_data(i));
    }
  }

  Backend& backend_;
  ResidentMatrix& theta_;
  const NewtonSystem& system_;
  std::int64_t n_, c_, l_;
  Matrix<double> st_v_, k_st_v_, coefficients_, basis_times_;
};

}  // namespace

void check_newton_system(const NewtonSystem& system, std::int64_t n, ConstMatrixView<double> rhs,
                         MatrixView<double> z) {
  const std::int64_t c = system.p.cols;
  expect_shape(system.p, n, c, "probabilities p");
  expect_shape(rhs, n, c, "right-hand side");
  expect_shape(z, n, c, "solution z");
  const std::int64_t l = system.basis.cols;
  if (l > 0) {
    expect_shape(system.basis, n, l, "Nystrom basis");
    expect_shape(system.g_factor, l * c, l * c, "preconditioner factor G");
  } else {
    expect_shape(system.inverse_diagonal, n, c, "Jacobi preconditioner");
  }
  if (!(system.k > 0)) throw InvalidArgument("Newton system: k must be positive");
}

int ResidentMatrix::solve_newton_system(Backend& backend, const NewtonSystem& system,
                                        ConstMatrixView<double> rhs, MatrixView<double> z, double tolerance,
                                        int max_iterations) {
  check_newton_system(system, rows(), rhs, z);
  HostNewtonOps ops(backend, *this, system);
  const Matrix<double> b = copy_matrix(rhs);
  Matrix<double> solution(z.rows, z.cols);
  const int iterations = detail::preconditioned_cg(ops, b, solution, tolerance, max_iterations);
  for (std::int64_t i = 0; i < z.rows; ++i)
    for (std::int64_t j = 0; j < z.cols; ++j) z(i, j) = solution(i, j);
  return iterations;
}

}  // namespace ntk
