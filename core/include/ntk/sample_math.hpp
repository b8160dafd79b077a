#pragma once
// Per-sample arithmetic of the cross-entropy solvers (SPEC section 2): softmax, log-sum-exp and the
// products with the per-sample softmax Hessian W_i = diag(p_i) - p_i p_i^T and its factor
// S_i = (I - u u^T) diag(u), u = sqrt(p_i) (so W_i = S_i^T S_i, |u| = 1). NTK_HD: the CPU solvers and
// the CUDA kernels share it.
#include "ntk/fast_math.hpp"
#include "ntk/hd.hpp"

namespace ntk::sample {

// p = softmax(f) for one sample of C classes; returns log-sum-exp(f). Shifted by the maximum so that
// no exponential overflows.
template <class T>
NTK_HD T softmax(const T* f, int classes, T* p) {
  T m = f[0];
  for (int c = 1; c < classes; ++c) m = f[c] > m ? f[c] : m;
  T sum = T(0);
  for (int c = 0; c < classes; ++c) {
    p[c] = fm::exp(f[c] - m);
    sum += p[c];
  }
  for (int c = 0; c < classes; ++c) p[c] /= sum;
  return m + ::log(sum);
}

// out = W v = p o v - p (p . v).
template <class T>
NTK_HD void apply_w(const T* p, const T* v, int classes, T* out) {
  T dot = T(0);
  for (int c = 0; c < classes; ++c) dot += p[c] * v[c];
  for (int c = 0; c < classes; ++c) out[c] = p[c] * v[c] - p[c] * dot;
}

// out = S v = u o v - u (u . (u o v)) = u o v - u (p . v), with u = sqrt(p).
template <class T>
NTK_HD void apply_s(const T* p, const T* v, int classes, T* out) {
  T dot = T(0);
  for (int c = 0; c < classes; ++c) dot += p[c] * v[c];
  for (int c = 0; c < classes; ++c) {
    const T u = fm::sqrt(p[c]);
    out[c] = u * v[c] - u * dot;
  }
}

// out = S^T z = u o (z - u (u . z)).
template <class T>
NTK_HD void apply_st(const T* p, const T* z, int classes, T* out) {
  T dot = T(0);
  for (int c = 0; c < classes; ++c) dot += fm::sqrt(p[c]) * z[c];
  for (int c = 0; c < classes; ++c) {
    const T u = fm::sqrt(p[c]);
    out[c] = u * (z[c] - u * dot);
  }
}

// diag(S S^T)_c = p_c (1 - 2 p_c + sum_k p_k^2): the Jacobi preconditioner of I + S K S^T.
template <class T>
NTK_HD T sst_diagonal(const T* p, int classes, int c) {
  T sum_sq = T(0);
  for (int k = 0; k < classes; ++k) sum_sq += p[k] * p[k];
  return p[c] * (T(1) - T(2) * p[c] + sum_sq);
}

}  // namespace ntk::sample
