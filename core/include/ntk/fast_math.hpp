#pragma once
// Branch-free elementary functions for the per-entry kernel recursion. They use only +, *, /, sqrt and
// selects, so g++ vectorizes the recursion loops (libm's atan2 is a call that blocks vectorization) and
// nvcc runs the identical arithmetic on the device. Accuracy: about 1 ulp in double (Cephes rational
// approximation), about 2 ulp in float (Cephes polynomial); the tests check both against std::atan2.
#include <cmath>

#include "ntk/hd.hpp"

namespace ntk::fm {

// Overloads that resolve to the same libm/CUDA math routine on host and device.
NTK_HD double sqrt(double x) {
  return ::sqrt(x);
}
NTK_HD float sqrt(float x) {
  return ::sqrtf(x);
}
NTK_HD double exp(double x) {
  return ::exp(x);
}
NTK_HD float exp(float x) {
  return ::expf(x);
}
NTK_HD double log1p(double x) {
  return ::log1p(x);
}
NTK_HD float log1p(float x) {
  return ::log1pf(x);
}
NTK_HD double tanh(double x) {
  return ::tanh(x);
}
NTK_HD float tanh(float x) {
  return ::tanhf(x);
}
NTK_HD double sin(double x) {
  return ::sin(x);
}
NTK_HD float sin(float x) {
  return ::sinf(x);
}
NTK_HD double cos(double x) {
  return ::cos(x);
}
NTK_HD float cos(float x) {
  return ::cosf(x);
}

template <class T>
NTK_HD T sqrt_clamped(T x) {
  // sqrt(max(x, 0)): rounding can push a mathematically non-negative quantity slightly below zero.
  return fm::sqrt(x > T(0) ? x : T(0));
}

// atan(x) for the reduced argument of atan2 below: |x| <= 0.66 (double), |x| <= tan(pi/8) (float).
NTK_HD double atan_reduced(double x) {
  const double z = x * x;
  const double p =
      (((((-8.750608600031904122785E-1 * z) + -1.615753718733365076637E1) * z + -7.500855792314704667340E1) *
            z +
        -1.228866684490136173410E2) *
           z +
       -6.485021904942025371773E1);
  const double q =
      (((((z + 2.485846490142306297962E1) * z + 1.650270098316988542046E2) * z + 4.328810604912902668951E2) *
            z +
        4.853903996359136964868E2) *
           z +
       1.945506571482613964425E2);
  return x + x * (z * p / q);
}

NTK_HD float atan_reduced(float x) {
  const float z = x * x;
  return (((8.05374449538e-2f * z - 1.38776856032E-1f) * z + 1.99777106478E-1f) * z - 3.33329491539E-1f) * z *
             x +
         x;
}

template <class T>
struct AtanConstants;
template <>
struct AtanConstants<double> {
  static constexpr double reduce_above = 0.66;  // Cephes' split point
  static constexpr double pio4 = 7.85398163397448309616E-1 + 0.5 * 6.123233995736765886130E-17;
  static constexpr double tiny = 2.2250738585072014e-308;  // smallest normal
};
template <>
struct AtanConstants<float> {
  static constexpr float reduce_above = 0.414213562373095048802f;  // tan(pi/8)
  static constexpr float pio4 = 0.785398163397448309616f;
  static constexpr float tiny = 1.17549435e-38f;
};

NTK_HD double abs(double x) {
  return ::fabs(x);
}
NTK_HD float abs(float x) {
  return ::fabsf(x);
}

// atan2(y, x) with the quadrant conventions of std::atan2 for finite arguments; atan2(0, 0) = 0 and
// atan2(0, -x) = pi for x > 0 (the recursion only meets y >= 0 or x >= 0). With r = min/max of |x|, |y|,
// atan(r) = pi/4 + atan((r - 1)/(r + 1)) for r above the split; that ratio is formed directly from
// the two magnitudes, so the whole function costs one division.
// The branches are written as arithmetic with 0/1 factors (exact: x * 1, x * 0 and x + 0 round to
// themselves) because g++ if-converts selects here into duplicated masked divisions and polynomials.
template <class T>
NTK_HD T atan2(T y, T x) {
  constexpr T kPi = T(3.14159265358979323846264338327950288);
  constexpr T kPio2 = T(1.57079632679489661923132169163975144);
  const T ax = fm::abs(x);
  const T ay = fm::abs(y);
  const T lo = ay < ax ? ay : ax;
  const T hi = ay < ax ? ax : ay;
  const T reduce = static_cast<T>(lo > AtanConstants<T>::reduce_above * hi);
  const T num = lo - reduce * hi;
  const T den = hi + reduce * lo;
  // den == 0 only when x == y == 0, where num == 0 too and the ratio must be 0.
  const T safe_den = den > AtanConstants<T>::tiny ? den : AtanConstants<T>::tiny;
  T a = atan_reduced(num / safe_den) + reduce * AtanConstants<T>::pio4;
  const T swapped = static_cast<T>(ay > ax);
  a = swapped * kPio2 + (T(1) - T(2) * swapped) * a;
  const T negative_x = static_cast<T>(x < T(0));
  a = negative_x * kPi + (T(1) - T(2) * negative_x) * a;
  return y < T(0) ? -a : a;
}

}  // namespace ntk::fm
