#pragma once
// Per-entry NNGP/NTK layer recursion of SPEC section 1. Everything here is NTK_HD: the CPU tile loops
// and the CUDA kernels call these functions, so there is one implementation of the mathematics.
#include "ntk/fast_math.hpp"
#include "ntk/hd.hpp"

namespace ntk {

// How the dual activation E[phi(u)phi(v)], E[phi'(u)phi'(v)] is evaluated.
enum class ActFamily : int {
  abrelu = 0,      // a*min(x,0) + b*max(x,0): relu, leaky_relu, abs, identity; closed form
  erf = 1,         // a*erf(b x) + c, sigmoid_like; closed form
  gelu = 2,        // x * Phi(x); closed form
  quadrature = 3,  // any other elementwise phi: 2-D Gauss-Hermite quadrature
};

enum class QuadFunction : int { tanh = 0, softplus = 1, sin = 2, custom = 3 };

using ScalarFunction = double (*)(double);

// Plain data so it can be copied to the device by value.
template <class T>
struct RecursionParams {
  int depth = 0;  // hidden layers L
  T w_var = 1, b_var = 0;
  T w_var_out = 1, b_var_out = 0;
  ActFamily family = ActFamily::abrelu;
  // Family constants, precomputed on the host:
  //   abrelu: c0 = (a-b)^2 / (2 pi), c1 = (a^2 + b^2) / 2
  //   erf:    c0 = b^2, c1 = a^2, c2 = c^2
  T c0 = 0, c1 = 0, c2 = 0;
  QuadFunction quad_function = QuadFunction::tanh;
  ScalarFunction custom_phi = nullptr;   // host only
  ScalarFunction custom_dphi = nullptr;  // host only
  int gh_degree = 0;
  const T* gh_nodes = nullptr;    // physicists' Gauss-Hermite nodes (weight exp(-x^2))
  const T* gh_weights = nullptr;  // their weights divided by sqrt(pi), so they sum to 1
};

namespace detail {

template <class T>
NTK_HD T quad_phi(const RecursionParams<T>& p, T x) {
  switch (p.quad_function) {
    case QuadFunction::tanh:
      return fm::tanh(x);
    case QuadFunction::softplus: {
      const T ax = x < T(0) ? -x : x;
      return fm::log1p(fm::exp(-ax)) + (x > T(0) ? x : T(0));
    }
    case QuadFunction::sin:
      return fm::sin(x);
    default:
#if defined(__CUDA_ARCH__)
      return T(0) / T(0);  // custom functions are refused before a device launch
#else
      return static_cast<T>(p.custom_phi(static_cast<double>(x)));
#endif
  }
}

template <class T>
NTK_HD T quad_dphi(const RecursionParams<T>& p, T x) {
  switch (p.quad_function) {
    case QuadFunction::tanh: {
      const T th = fm::tanh(x);
      return T(1) - th * th;
    }
    case QuadFunction::softplus:
      return T(1) / (T(1) + fm::exp(-x));
    case QuadFunction::sin:
      return fm::cos(x);
    default:
#if defined(__CUDA_ARCH__)
      return T(0) / T(0);
#else
      return static_cast<T>(p.custom_dphi(static_cast<double>(x)));
#endif
  }
}

}  // namespace detail

// e = E[phi(u) phi(v)], ed = E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q1, q12], [q12, q2]]).
template <ActFamily F, class T>
NTK_HD void dual_activation(const RecursionParams<T>& p, T q1, T q2, T q12, T& e, T& ed) {
  constexpr T kPi = T(3.14159265358979323846264338327950288);
  if constexpr (F == ActFamily::abrelu) {
    const T s = fm::sqrt_clamped(q1 * q2 - q12 * q12);
    const T theta = fm::atan2(s, q12);
    ed = p.c1 - p.c0 * theta;
    e = p.c0 * s + ed * q12;
  } else if constexpr (F == ActFamily::erf) {
    const T b1 = p.c0 * q1, b2 = p.c0 * q2, b12 = p.c0 * q12;
    const T s = fm::sqrt_clamped((T(1) + T(2) * b1) * (T(1) + T(2) * b2) - T(4) * b12 * b12);
    e = p.c1 * (T(2) / kPi) * fm::atan2(T(2) * b12, s) + p.c2;
    ed = p.c1 * p.c0 * (T(4) / kPi) / s;
  } else if constexpr (F == ActFamily::gelu) {
    const T prod = q1 * q2;
    const T prod1 = (q1 + T(1)) * (q2 + T(1));
    const T d2 = prod1 - q12 * q12;
    const T d = fm::sqrt_clamped(d2);
    const T angle = fm::atan2(q12, d);
    e = ((q12 * q12 + prod * d2) / (prod1 * d) + q12 * angle) / (T(2) * kPi) + T(0.25) * q12;
    ed = q12 / (T(2) * kPi * d) * (T(1) / d2 + (T(1) - prod) / prod1 + T(1)) + T(0.25) + angle / (T(2) * kPi);
  } else {
    // Cholesky of the 2x2 covariance, as neural-tangents' ElementwiseNumerical: u = sqrt(2 q1) x,
    // v = q12 / sqrt(q1 / 2) x + sqrt(2 (q2 - q12^2 / q1)) y.
    const T q1_safe = q1 > T(1e-30) ? q1 : T(1e-30);
    const T scale_u = fm::sqrt_clamped(T(2) * q1);
    const T scale_vx = q12 / fm::sqrt(q1_safe / T(2));
    const T scale_vy = fm::sqrt_clamped(T(2) * (q2 - q12 * q12 / q1_safe));
    T sum_e = T(0), sum_ed = T(0);
    for (int i = 0; i < p.gh_degree; ++i) {
      const T xi = p.gh_nodes[i];
      const T u = scale_u * xi;
      const T phi_u = detail::quad_phi(p, u);
      const T dphi_u = detail::quad_dphi(p, u);
      T row_e = T(0), row_ed = T(0);
      for (int j = 0; j < p.gh_degree; ++j) {
        const T v = scale_vx * xi + scale_vy * p.gh_nodes[j];
        row_e += p.gh_weights[j] * detail::quad_phi(p, v);
        row_ed += p.gh_weights[j] * detail::quad_dphi(p, v);
      }
      sum_e += p.gh_weights[i] * phi_u * row_e;
      sum_ed += p.gh_weights[i] * dphi_u * row_ed;
    }
    e = sum_e;
    ed = sum_ed;
  }
}

// S_1 from the input covariance x.x'/d (the first Dense layer; the readout when depth == 0).
template <class T>
NTK_HD T input_layer(const RecursionParams<T>& p, T dot) {
  return p.depth == 0 ? p.w_var_out * dot + p.b_var_out : p.w_var * dot + p.b_var;
}

// Hidden layer `layer` (0-based): on entry s = S_l(x,x') and t = T_l; on exit S_{l+1} and T_{l+1}.
// var1, var2 are S_l(x,x) and S_l(x',x').
template <ActFamily F, bool kWithNtk, class T>
NTK_HD void layer_step(const RecursionParams<T>& p, int layer, T var1, T var2, T& s, T& t) {
  T e, ed;
  dual_activation<F>(p, var1, var2, s, e, ed);
  const bool readout = layer == p.depth - 1;
  const T w = readout ? p.w_var_out : p.w_var;
  const T b = readout ? p.b_var_out : p.b_var;
  s = w * e + b;
  if constexpr (kWithNtk) t = s + w * (t * ed);
}

// The whole recursion for one entry. var1[l * stride1] = S_{l+1}(x,x), likewise var2 for x'.
template <ActFamily F, bool kWithNtk, class T>
NTK_HD void kernel_entry(const RecursionParams<T>& p, T dot, const T* var1, int stride1, const T* var2,
                         int stride2, T& nngp, T& ntk) {
  T s = input_layer(p, dot);
  T t = s;
  for (int l = 0; l < p.depth; ++l) layer_step<F, kWithNtk>(p, l, var1[l * stride1], var2[l * stride2], s, t);
  nngp = s;
  ntk = t;
}

// K(x, x) for one input, from sq = |x|^2 / d, through the same dual activations as the off-diagonal
// entries (so K(X, X)'s diagonal equals this bit for bit). Writes S_{l+1}(x,x) to variances[l].
template <ActFamily F, class T>
NTK_HD void diagonal_entry(const RecursionParams<T>& p, T sq, T* variances, int stride, T& nngp, T& ntk) {
  T s = input_layer(p, sq);
  T t = s;
  for (int l = 0; l < p.depth; ++l) {
    variances[l * stride] = s;
    const T v = s;
    layer_step<F, true>(p, l, v, v, s, t);
  }
  nngp = s;
  ntk = t;
}

}  // namespace ntk
