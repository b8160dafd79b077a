#pragma once
// Preconditioned conjugate gradients written once over a vector-operations policy, so that the host
// (Matrix<double>) and the CUDA backend (device buffers) run the same iteration and stopping rule. No
// CUDA here: nvcc instantiates it with device operations in host code.
//
// Ops provides
//   using Vector = ...;                                   // default-constructible, movable
//   Vector make();                                        // a vector of the system's size (contents unset)
//   void copy(const Vector& from, Vector& to);
//   void set_zero(Vector& v);
//   double dot(const Vector& x, const Vector& y);
//   void axpy(double alpha, const Vector& x, Vector& y);  // y += alpha x
//   void xpby(const Vector& x, double beta, Vector& y);   // y = x + beta y
//   void apply(const Vector& v, Vector& out);             // out = A v (A symmetric positive definite)
//   void precondition(const Vector& r, Vector& out);      // out = P^-1 r
#include <cmath>

namespace ntk::detail {

// Solves A z = rhs from z = 0 until ||r|| <= tolerance ||rhs|| or max_iterations; returns the
// iterations taken.
template <class Ops>
int preconditioned_cg(Ops& ops, const typename Ops::Vector& rhs, typename Ops::Vector& z, double tolerance,
                      int max_iterations) {
  using Vector = typename Ops::Vector;
  Vector r = ops.make(), q = ops.make(), dir = ops.make(), ad = ops.make();
  ops.set_zero(z);
  ops.copy(rhs, r);
  ops.precondition(r, q);
  ops.copy(q, dir);
  double rq = ops.dot(r, q);
  const double rhs_norm = std::sqrt(ops.dot(rhs, rhs));
  int iterations = 0;
  while (rhs_norm > 0 && std::sqrt(ops.dot(r, r)) > tolerance * rhs_norm && iterations < max_iterations) {
    ops.apply(dir, ad);
    const double alpha = rq / ops.dot(dir, ad);
    ops.axpy(alpha, dir, z);
    ops.axpy(-alpha, ad, r);
    ops.precondition(r, q);
    const double rq_new = ops.dot(r, q);
    const double beta = rq_new / rq;
    rq = rq_new;
    ops.xpby(q, beta, dir);
    ++iterations;
  }
  return iterations;
}

}  // namespace ntk::detail
