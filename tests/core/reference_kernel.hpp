#pragma once
// A deliberately plain implementation of SPEC section 1 for the tests: one entry at a time, no tiles, no
// shared code with the engine (std::atan2 / std::asin instead of ntk::fm, the ABReLU dual written as
// a^2 q12 + a (b - a) q12 + (b - a)^2 * arc-cosine kernel, the erf dual in Williams' arcsine form).
// Templated on the scalar so the near-duplicate tests can run it in long double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ntk_test {

enum class RefActivation { abrelu, erf, gelu };

struct RefArchitecture {
  int depth = 1;
  double w_std = 1, b_std = 0, w_std_out = 1, b_std_out = 0;
  RefActivation activation = RefActivation::abrelu;
  double a = 0, b = 1, c = 0;  // abrelu: a min(x,0) + b max(x,0); erf: a erf(b x) + c
};

template <class R>
void reference_dual(const RefArchitecture& arch, R q1, R q2, R q12, R& e, R& ed) {
  const R pi = std::acos(R(-1));
  switch (arch.activation) {
    case RefActivation::abrelu: {
      // phi(x) = a x + (b - a) relu(x); E[u relu(v)] = q12 / 2 by symmetry, and the ReLU part is Cho &
      // Saul's arc-cosine kernel of degree 1 (degree 0 for the derivative).
      const R a = R(arch.a), b = R(arch.b), k = b - a;
      const R s = std::sqrt(std::max(q1 * q2 - q12 * q12, R(0)));
      const R theta = std::atan2(s, q12);
      e = a * a * q12 + a * k * q12 + k * k * (s + (pi - theta) * q12) / (2 * pi);
      ed = a * a + a * k + k * k * (pi - theta) / (2 * pi);
      break;
    }
    case RefActivation::erf: {
      const R a = R(arch.a), b2 = R(arch.b) * R(arch.b), c = R(arch.c);
      const R n1 = 1 + 2 * b2 * q1, n2 = 1 + 2 * b2 * q2;
      e = a * a * (2 / pi) * std::asin(std::clamp(2 * b2 * q12 / std::sqrt(n1 * n2), R(-1), R(1))) + c * c;
      ed = a * a * b2 * (4 / pi) / std::sqrt(n1 * n2 - 4 * b2 * b2 * q12 * q12);
      break;
    }
    case RefActivation::gelu: {
      const R p = q1 * q2, p1 = (q1 + 1) * (q2 + 1);
      const R d2 = p1 - q12 * q12, d = std::sqrt(std::max(d2, R(0)));
      const R angle = std::atan2(q12, d);
      e = ((q12 * q12 + p * d2) / (p1 * d) + q12 * angle) / (2 * pi) + q12 / 4;
      ed = q12 / (2 * pi * d) * (1 / d2 + (1 - p) / p1 + 1) + R(0.25) + angle / (2 * pi);
      break;
    }
  }
}

// NNGP and NTK of one pair from the raw inputs (length d each).
template <class R, class X>
void reference_entry(const RefArchitecture& arch, const X* x, const X* y, std::int64_t d, R& nngp, R& ntk) {
  R xy = 0, xx = 0, yy = 0;
  for (std::int64_t k = 0; k < d; ++k) {
    xy += R(x[k]) * R(y[k]);
    xx += R(x[k]) * R(x[k]);
    yy += R(y[k]) * R(y[k]);
  }
  R q12 = xy / R(d), q1 = xx / R(d), q2 = yy / R(d), t = 0;  // post-activation covariances, NTK
  for (int l = 1; l <= arch.depth + 1; ++l) {
    const bool readout = l == arch.depth + 1;
    const R w2 = R(readout ? arch.w_std_out : arch.w_std) * R(readout ? arch.w_std_out : arch.w_std);
    const R b2 = R(readout ? arch.b_std_out : arch.b_std) * R(readout ? arch.b_std_out : arch.b_std);
    const R s12 = w2 * q12 + b2, s1 = w2 * q1 + b2, s2 = w2 * q2 + b2;
    const R tl = s12 + w2 * t;
    if (readout) {
      nngp = s12;
      ntk = tl;
      return;
    }
    R e = 0, ed = 0, e1 = 0, ed1 = 0, e2 = 0, ed2 = 0;
    reference_dual(arch, s1, s2, s12, e, ed);
    reference_dual(arch, s1, s1, s1, e1, ed1);
    reference_dual(arch, s2, s2, s2, e2, ed2);
    q12 = e;
    q1 = e1;
    q2 = e2;
    t = tl * ed;
  }
}

// Row-major n1 x n2 kernels of x1 (n1 x d) against x2 (n2 x d).
template <class R, class X>
void reference_kernel(const RefArchitecture& arch, const X* x1, std::int64_t n1, const X* x2, std::int64_t n2,
                      std::int64_t d, std::vector<R>& nngp, std::vector<R>& ntk) {
  nngp.assign(static_cast<std::size_t>(n1 * n2), R(0));
  ntk.assign(static_cast<std::size_t>(n1 * n2), R(0));
  for (std::int64_t i = 0; i < n1; ++i)
    for (std::int64_t j = 0; j < n2; ++j)
      reference_entry(arch, x1 + i * d, x2 + j * d, d, nngp[static_cast<std::size_t>(i * n2 + j)],
                      ntk[static_cast<std::size_t>(i * n2 + j)]);
}

}  // namespace ntk_test
