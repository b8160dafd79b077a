#pragma once
// The regularized cross-entropy fixed point of SPEC section 2,
//   h = -k Theta (softmax(f0 + h) - Y),   k = 1 / (N lambda),
// solved by damped Newton on the equivalent GP-classification posterior (prior N(0, k Theta) per class,
// soft-target softmax likelihood). Two interchangeable step solvers: `direct` (Rasmussen & Williams,
// GPML Algorithm 3.3: C + 1 Cholesky factorizations of N x N matrices per step) and `matrix_free`
// (Newton-CG on the same step, touching Theta only through products with N x C blocks, preconditioned by
// a low-rank Nystrom approximation of Theta).
#include <functional>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/model.hpp"

namespace ntk {

// Called after every Newton step; returning false cancels the fit (ntk::Cancelled is thrown).
using ProgressCallback = std::function<bool(const StepRecord&)>;

struct FixedPointProblem {
  ConstMatrixView<double> theta;  // N x N NTK of the training inputs (both triangles)
  double k = 0;                   // 1 / (N lambda)
  ConstMatrixView<double> y;      // N x C targets
  ConstMatrixView<double> f0;     // N x C initial outputs; empty = 0 (the deterministic predictor)
  // Theta where the backend keeps it (Backend::resident_kernel). When set, the matrix-free solver
  // multiplies through it and `theta` may be empty (the direct solver needs `theta`).
  ResidentMatrix* resident = nullptr;
};

struct NewtonOptions {
  SolverKind solver = SolverKind::direct;  // direct or matrix_free
  double tolerance = 1e-10;
  int max_steps = 100;
  int max_cg_iterations = 500;
  // Newton-CG preconditioner: the rank of the Nystrom approximation of Theta it is built from
  // (newton_preconditioner.hpp); negative = automatic (160 / C, within [1, 64]: G has l C rows), 0 = Jacobi
  // only.
  int preconditioner_rank = -1;
  // Newton-CG: CG's products in float32 (ResidentMatrix::multiply_float32) when the error that causes,
  // ~2^-24 k ||Theta||_inf relative per Newton step, is at most float32_inner_limit; residuals, line search
  // and every other product stay float64, so the fixed point and its tolerance are float64's. Falls back to
  // float64 products after a full Newton step near the solution that does not halve the residual.
  bool float32_inner_products = true;
  double float32_inner_limit = 1.0;
};

// h = f(X) - f0(X) and a with h = k Theta a; at the fixed point a = Y - softmax(f0 + h).
struct FixedPointSolution {
  Matrix<double> h, a;
  FitDiagnostics diagnostics;
};

// Throws InvalidArgument for inconsistent shapes, Cancelled when progress returns false, and
// NumericalError when a factorization fails. A run that hits max_steps returns with
// diagnostics.converged = false and says so in diagnostics.message.
FixedPointSolution solve_fixed_point(Backend& backend, const FixedPointProblem& problem,
                                     const NewtonOptions& options,
                                     const FixedPointSolution* warm_start = nullptr,
                                     const ProgressCallback& progress = {});

// The factors of GPML Algorithm 3.3 at probabilities p (N x C), with K = k Theta for every class:
// E_c = D_c^1/2 (I + D_c^1/2 K D_c^1/2)^-1 D_c^1/2 and M = chol(sum_c E_c). They
// represent (K + W^-1)^-1 = E - E R M^-T M^-1 R^T E (E = blockdiag E_c, R = stacked identities), which
// both the direct Newton step and the linearized uncertainty apply.
struct LaplaceFactors {
  std::vector<Matrix<double>> e;  // E_c, formed as D_c^1/2 (I + D_c^1/2 K D_c^1/2)^-1 D_c^1/2
  Matrix<double> m;               // lower Cholesky factor of sum_c E_c
};
LaplaceFactors laplace_factors(Backend& backend, ConstMatrixView<double> theta, double k,
                               const Matrix<double>& p);
// v (N x m) <- E_c v.
void apply_e(Backend& backend, const LaplaceFactors& f, std::size_t c, MatrixView<double> v);
// v (N x m) <- M^-T M^-1 v.
void apply_m_inverse(Backend& backend, const LaplaceFactors& f, MatrixView<double> v);

// max_ic |h + k Theta (softmax(f0 + h) - Y)|: the convergence criterion.
double fixed_point_residual(Backend& backend, const FixedPointProblem& problem, ConstMatrixView<double> h);

}  // namespace ntk
