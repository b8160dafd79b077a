#pragma once
// A low-rank preconditioner for the Newton-CG system (I + S K S^T) z = rhs of newton.cpp, K = k Theta
// per class, S = blockdiag_i((I - u_i u_i^T) diag(u_i)), u_i = sqrt(p_i).
//
// Why: Theta's spectrum decays (here: eig 3.7e3, 7e2, ... 1e2 at rank 10, 3e1 at 40 for N = 1000 images),
// so the system's condition number is ~k lambda_max(Theta)/4 and Jacobi-preconditioned CG needed ~100
// iterations per Newton step. With a rank-l Nystrom approximation B B^T of k Theta (B B^T <= k Theta in
// the Loewner order), P = I + S (B B^T (x) I) S^T satisfies P <= A <= (1 + ||k Theta - B B^T||) P, so CG on
// P^-1 A needs iterations set by the spectrum's tail instead (about 20 here). P^-1 comes from Woodbury with
// V y = rows S_i (y^T b_i):  P^-1 = I - V G^-1 V^T,  G = I + V^T V  (l C x l C), and
//   V^T V = blockdiag_c(B^T diag(p_c) B) - Z^T Z,   Z[i, a C + c] = b_ia p_ic,
// since S_i^T S_i = diag(p_i) - p_i p_i^T. B is built once per fit; G is factored once per Newton step.
// Every N-sized product goes through the Backend, so the same code runs on the CUDA backend.
#include <cstdint>

#include "ntk/backend.hpp"
#include "ntk/matrix.hpp"

namespace ntk::detail {

// Rank used when NewtonOptions::preconditioner_rank is negative (automatic): G has l C rows, so l shrinks
// with the class count (to 1 for C >= 160) to keep the per-step factorization (l C)^3 / 3 and Z^T Z
// (2 N (l C)^2) small.
int automatic_preconditioner_rank(std::int64_t n, std::int64_t classes);

// N x l' (l' <= rank; columns that Theta annihilates are dropped) with B B^T = the Nystrom approximation
// of k Theta from one step of subspace iteration on a fixed Gaussian sketch (seeded: reproducible).
Matrix<double> nystrom_basis(Backend& backend, ResidentMatrix& theta, double k, int rank);

// The lower Cholesky factor of G = I + V^T V (l C x l C) at probabilities p (N x C): P^-1 for one Newton
// step, applied by ResidentMatrix::solve_newton_system (NewtonSystem::g_factor). Throws NumericalError if
// G is not positive definite, which only rounding far beyond float64's could cause (G >= I exactly).
Matrix<double> nystrom_g_factor(Backend& backend, const Matrix<double>& basis, const Matrix<double>& p);

}  // namespace ntk::detail
