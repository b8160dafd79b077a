// The Backend interface's default operations. They live in ntk_core (not with make_backend in
// ntk_backends) because every backend's vtable refers to them, the CPU backend's included.
#include <algorithm>
#include <cmath>
#include <random>

#include "host_resident.hpp"
#include "ntk/backend.hpp"
#include "ntk/errors.hpp"

namespace ntk {
namespace detail {

std::vector<double> diagonal_of(ConstMatrixView<double> a) {
  std::vector<double> d(static_cast<std::size_t>(std::min(a.rows, a.cols)));
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = a(std::int64_t(i), std::int64_t(i));
  return d;
}

double max_abs_row_sum_of(ConstMatrixView<double> a) {
  double norm = 0;
  for (std::int64_t i = 0; i < a.rows; ++i) {
    double row = 0;
    for (std::int64_t j = 0; j < a.cols; ++j) row += std::abs(a(i, j));
    norm = std::max(norm, row);
  }
  return norm;
}

namespace {

class OwningResident final : public ResidentMatrix {
 public:
  OwningResident(Backend& backend, Matrix<double> a, const char* what)
      : n_(a.rows()), a_(std::move(a)), inner_(backend.make_resident(a_.view(), what)) {}
  std::int64_t rows() const override { return n_; }
  void multiply(double alpha, ConstMatrixView<double> v, double beta, MatrixView<double> out) override {
    inner().multiply(alpha, v, beta, out);
  }
  void multiply_float32(double alpha, ConstMatrixView<double> v, double beta,
                        MatrixView<double> out) override {
    inner().multiply_float32(alpha, v, beta, out);
  }
  std::vector<double> diagonal() override { return inner().diagonal(); }
  double max_abs_row_sum() override { return inner().max_abs_row_sum(); }
  int solve_newton_system(Backend& backend, const NewtonSystem& system, ConstMatrixView<double> rhs,
                          MatrixView<double> z, double tolerance, int max_iterations) override {
    return inner().solve_newton_system(backend, system, rhs, z, tolerance, max_iterations);
  }
  std::unique_ptr<LaplaceFactorization> laplace_factors(Backend& backend, ConstMatrixView<double> host,
                                                        double k, const Matrix<double>& p) override {
    return inner().laplace_factors(backend, host.empty() ? a_.view() : host, k, p);
  }
  // The owned matrix becomes the factor: no second N x N copy (a CPU lambda = 0 fit peaks at one).
  Matrix<double> factor_and_solve(Backend& backend, double shift, MatrixView<double> b,
                                  const char* what) override {
    inner();  // throws when already consumed
    inner_.reset();
    return factor_and_solve_on_host(backend, std::move(a_), shift, b, what);
  }

 private:
  ResidentMatrix& inner() {
    if (!inner_) throw FailedPrecondition("the resident matrix was consumed by its factorization");
    return *inner_;
  }
  std::int64_t n_;
  Matrix<double> a_;  // before inner_, which may refer to it
  std::unique_ptr<ResidentMatrix> inner_;
};

}  // namespace

std::unique_ptr<ResidentMatrix> own_resident(Backend& backend, Matrix<double> a, const char* what) {
  return std::make_unique<OwningResident>(backend, std::move(a), what);
}

}  // namespace detail

namespace {

class HostResidentMatrix final : public ResidentMatrix {
 public:
  HostResidentMatrix(Backend& backend, ConstMatrixView<double> a) : backend_(backend), a_(a) {}
  std::int64_t rows() const override { return a_.rows; }
  void multiply(double alpha, ConstMatrixView<double> v, double beta, MatrixView<double> out) override {
    backend_.gemm(false, false, alpha, a_, v, beta, out);
  }
  std::vector<double> diagonal() override { return detail::diagonal_of(a_); }
  double max_abs_row_sum() override { return detail::max_abs_row_sum_of(a_); }
  // A view of the caller's matrix: factored in a copy.
  Matrix<double> factor_and_solve(Backend& backend, double shift, MatrixView<double> b,
                                  const char* what) override {
    return factor_and_solve_on_host(backend, copy_matrix(a_), shift, b, what);
  }

 private:
  Backend& backend_;
  ConstMatrixView<double> a_;
};

template <class T>
std::unique_ptr<ResidentMatrix> host_resident_kernel(Backend& be, const KernelSpec& spec,
                                                     ConstMatrixView<T> x, const AssemblyOptions& options,
                                                     const char* what) {
  Matrix<double> theta(x.rows, x.rows);
  if constexpr (std::is_same_v<T, double>) {
    be.kernel(spec, x, nullptr, {{}, theta.view()}, options);
  } else {
    Matrix<float> k(x.rows, x.rows);
    be.kernel(spec, x, nullptr, {{}, k.view()}, options);
    for (std::size_t i = 0; i < k.size(); ++i) theta.data()[i] = k.data()[i];
  }
  return detail::own_resident(be, std::move(theta), what);
}

}  // namespace

void check_kernel_product_shapes(ConstMatrixView<double> x, MatrixView<double> out, std::int64_t features,
                                 std::int64_t m) {
  if (x.cols != features)
    throw InvalidArgument("x has " + std::to_string(x.cols) + " columns, the training inputs have " +
                          std::to_string(features));
  if (out.rows != x.rows || out.cols != m)
    throw InvalidArgument("kernel product output is " + std::to_string(out.rows) + " x " +
                          std::to_string(out.cols) + ", expected " + std::to_string(x.rows) + " x " +
                          std::to_string(m));
}

void Backend::cholesky_solve(ConstMatrixView<double> l, MatrixView<double> b) {
  triangular_solve(l, b, false);
  triangular_solve(l, b, true);
}

void check_syrk_shapes(ConstMatrixView<double> a, ConstMatrixView<double> c) {
  if (c.rows != c.cols || a.rows != c.rows)
    throw InvalidArgument("syrk shapes do not agree: " + std::to_string(a.rows) + " x " +
                          std::to_string(a.cols) + " -> " + std::to_string(c.rows) + " x " +
                          std::to_string(c.cols));
}

void check_lower_product_shapes(ConstMatrixView<double> b, ConstMatrixView<double> l) {
  if (l.rows != l.cols || b.cols != l.rows)
    throw InvalidArgument("triangular product shapes do not agree: " + std::to_string(b.rows) + " x " +
                          std::to_string(b.cols) + " * " + std::to_string(l.rows) + " x " +
                          std::to_string(l.cols));
}

void scale_by_beta(double beta, MatrixView<double> c, bool lower_triangle_only) {
  for (std::int64_t i = 0; i < c.rows; ++i)
    for (std::int64_t j = 0; j < (lower_triangle_only ? i + 1 : c.cols); ++j)
      c(i, j) = beta == 0 ? 0.0 : beta * c(i, j);
}

void Backend::syrk_lower(double alpha, ConstMatrixView<double> a, double beta, MatrixView<double> c) {
  gemm(false, true, alpha, a, a, beta, c);
}

void Backend::multiply_by_lower(MatrixView<double> b, ConstMatrixView<double> l) {
  check_lower_product_shapes(b, l);
  Matrix<double> lower(l.rows, l.cols, 0.0);
  for (std::int64_t i = 0; i < l.rows; ++i)
    for (std::int64_t j = 0; j <= i; ++j) lower(i, j) = l(i, j);
  const Matrix<double> in = copy_matrix(b.as_const());
  gemm(false, false, 1.0, in.view(), lower.view(), 0.0, b);
}

namespace {

class HostResidentFactor final : public ResidentFactor {
 public:
  HostResidentFactor(Backend& backend, ConstMatrixView<double> l) : backend_(backend), l_(l) {}
  std::int64_t rows() const override { return l_.rows; }
  void solve(MatrixView<double> b) override { backend_.cholesky_solve(l_, b); }

 private:
  Backend& backend_;
  ConstMatrixView<double> l_;
};

}  // namespace

std::unique_ptr<ResidentFactor> Backend::make_resident_factor(ConstMatrixView<double> l, const char* what) {
  check_square_matrix(l, what);
  return std::make_unique<HostResidentFactor>(*this, l);
}

std::unique_ptr<ResidentMatrix> Backend::make_resident(ConstMatrixView<double> a, const char* what) {
  check_square_matrix(a, what);
  return std::make_unique<HostResidentMatrix>(*this, a);
}

std::unique_ptr<ResidentMatrix> Backend::resident_kernel(const KernelSpec& spec, ConstMatrixView<float> x,
                                                         const AssemblyOptions& options, const char* what) {
  return host_resident_kernel(*this, spec, x, options, what);
}

std::unique_ptr<ResidentMatrix> Backend::resident_kernel(const KernelSpec& spec, ConstMatrixView<double> x,
                                                         const AssemblyOptions& options, const char* what) {
  return host_resident_kernel(*this, spec, x, options, what);
}

void check_kernel_product_operands(ConstMatrixView<double> x_train, ConstMatrixView<double> b) {
  if (b.rows != x_train.rows)
    throw InvalidArgument("kernel product: " + std::to_string(x_train.rows) + " training inputs but b has " +
                          std::to_string(b.rows) + " rows");
  check_kernel_input(x_train, "training inputs");
}

void check_square_matrix(ConstMatrixView<double> a, const char* what) {
  if (a.rows != a.cols)
    throw InvalidArgument(std::string(what) + " must be square, is " + std::to_string(a.rows) + " x " +
                          std::to_string(a.cols));
}

Matrix<double> factor_and_solve_on_host(Backend& backend, Matrix<double> a, double shift,
                                        MatrixView<double> b, const char* what) {
  const std::int64_t n = a.rows();
  if (b.rows != n)
    throw InvalidArgument(std::string(what) + ": the right-hand side has " + std::to_string(b.rows) +
                          " rows, expected " + std::to_string(n));
  for (std::int64_t i = 0; i < n; ++i) a(i, i) += shift;
  backend.cholesky(a.view(), what);
  if (b.cols > 0) backend.cholesky_solve(a.view(), b);
  return a;
}

void Backend::normal_draws(std::uint64_t seed, MatrixView<double> out) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (std::int64_t i = 0; i < out.rows; ++i)
    for (std::int64_t j = 0; j < out.cols; ++j) out(i, j) = normal(rng);
}

}  // namespace ntk
