#pragma once
// A Newton-CG system (NewtonSystem of backend.hpp) built from a random problem, with its dense reference:
// A = I + S (k Theta (x) I_C) S^T formed entry by entry over the index i C + c and solved by Cholesky.
// Shared by the core test of the host solver and the CUDA differential test.
#include <cmath>
#include <cstdint>
#include <random>

#include "newton_preconditioner.hpp"
#include "ntk/backend.hpp"
#include "test_data.hpp"

namespace ntk::testing {

struct NewtonSystemCase {
  Matrix<double> theta, p, basis, g_factor, inverse_diagonal, rhs, dense;
  double k = 0;

  NewtonSystem system(bool float32_products = false) const {
    NewtonSystem s;
    s.k = k;
    s.p = p.view();
    s.basis = basis.cols() > 0 ? basis.view() : ConstMatrixView<double>{nullptr, p.rows(), 0, 0};
    if (basis.cols() > 0)
      s.g_factor = g_factor.view();
    else
      s.inverse_diagonal = inverse_diagonal.view();
    s.float32_products = float32_products;
    return s;
  }

  // A^-1 rhs as an N x C matrix.
  Matrix<double> dense_solution(Backend& backend) const {
    const std::int64_t m = dense.rows();
    Matrix<double> l = dense, z(m, 1);
    for (std::int64_t i = 0; i < m; ++i) z(i, 0) = rhs.data()[i];
    backend.cholesky(l.view(), "dense Newton system");
    backend.triangular_solve(l.view(), z.view(), false);
    backend.triangular_solve(l.view(), z.view(), true);
    Matrix<double> out(rhs.rows(), rhs.cols());
    for (std::int64_t i = 0; i < m; ++i) out.data()[i] = z(i, 0);
    return out;
  }
};

// n training points of dimension 6 under a depth-2 ReLU NTK, C classes with random probabilities, a
// Nystrom preconditioner of `rank` (0: Jacobi, read off the dense A's diagonal).
inline NewtonSystemCase make_newton_system_case(Backend& cpu, std::int64_t n, std::int64_t c, int rank,
                                                double k, std::uint64_t seed) {
  NewtonSystemCase t;
  t.k = k;
  const Matrix<double> x = random_inputs(n, 6, seed);
  t.theta = Matrix<double>(n, n);
  cpu.kernel(relu_spec(2), x.view(), nullptr, {{}, t.theta.view()}, {});
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<double> normal(0.0, 2.0);
  t.p = Matrix<double>(n, c);
  for (std::int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (std::int64_t j = 0; j < c; ++j) sum += t.p(i, j) = std::exp(normal(rng));
    for (std::int64_t j = 0; j < c; ++j) t.p(i, j) /= sum;
  }
  t.rhs = Matrix<double>(n, c);
  for (auto& v : t.rhs.storage()) v = normal(rng);

  const std::int64_t m = n * c;
  Matrix<double> s(m, m), kron(m, m), sk(m, m);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t r = 0; r < c; ++r)
      for (std::int64_t q = 0; q < c; ++q) {
        const double ur = std::sqrt(t.p(i, r)), uq = std::sqrt(t.p(i, q));
        s(i * c + r, i * c + q) = ((r == q ? 1.0 : 0.0) - ur * uq) * uq;
      }
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t r = 0; r < c; ++r) kron(i * c + r, j * c + r) = k * t.theta(i, j);
  t.dense = Matrix<double>(m, m);
  cpu.gemm(false, false, 1.0, s.view(), kron.view(), 0.0, sk.view());
  cpu.gemm(false, true, 1.0, sk.view(), s.view(), 0.0, t.dense.view());
  for (std::int64_t i = 0; i < m; ++i) t.dense(i, i) += 1.0;

  if (rank > 0) {
    t.basis = detail::nystrom_basis(cpu, *cpu.make_resident(t.theta.view(), "theta"), k, rank);
    t.g_factor = detail::nystrom_g_factor(cpu, t.basis, t.p);
  } else {
    t.basis = Matrix<double>(n, 0);
    t.inverse_diagonal = Matrix<double>(n, c);
    for (std::int64_t i = 0; i < m; ++i) t.inverse_diagonal.data()[i] = 1.0 / t.dense(i, i);
  }
  return t;
}

}  // namespace ntk::testing
