// The vectorizable atan2 against libm over every quadrant, the axes and the magnitudes the recursion
// meets.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "ntk/fast_math.hpp"

namespace {

template <class T>
double ulp_error(T got, double want) {
  const double ulp = std::ldexp(1.0, std::ilogb(want == 0 ? 1.0 : want) - std::numeric_limits<T>::digits + 1);
  return std::abs(double(got) - want) / ulp;
}

template <class T>
void check_random(double max_ulp) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mag(-30, 30);
  std::uniform_int_distribution<int> sign(0, 1);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const T y = static_cast<T>((sign(rng) ? -1 : 1) * std::exp(mag(rng) / 3));
    const T x = static_cast<T>((sign(rng) ? -1 : 1) * std::exp(mag(rng) / 3));
    const double want = std::atan2(double(y), double(x));
    worst = std::max(worst, ulp_error(ntk::fm::atan2(y, x), want));
  }
  EXPECT_LE(worst, max_ulp);
}

TEST(FastMath, Atan2DoubleWithinTwoUlp) {
  check_random<double>(2.0);
}
TEST(FastMath, Atan2FloatWithinThreeUlp) {
  check_random<float>(3.0);
}

TEST(FastMath, Atan2AxesAndZero) {
  const double pi = std::acos(-1.0);
  EXPECT_EQ(ntk::fm::atan2(0.0, 0.0), 0.0);
  EXPECT_EQ(ntk::fm::atan2(0.0, 2.0), 0.0);
  EXPECT_DOUBLE_EQ(ntk::fm::atan2(0.0, -2.0), pi);
  EXPECT_DOUBLE_EQ(ntk::fm::atan2(3.0, 0.0), pi / 2);
  EXPECT_DOUBLE_EQ(ntk::fm::atan2(-3.0, 0.0), -pi / 2);
  EXPECT_DOUBLE_EQ(ntk::fm::atan2(1.0, 1.0), pi / 4);
  EXPECT_DOUBLE_EQ(ntk::fm::atan2(1.0, -1.0), 3 * pi / 4);
  // The split points of the range reduction.
  for (double r : {0.66, std::nextafter(0.66, 1.0), 0.41421356237309503, 0.41421356237309515, 1.0}) {
    EXPECT_LE(ulp_error(ntk::fm::atan2(r, 1.0), std::atan2(r, 1.0)), 2.0) << r;
    EXPECT_LE(ulp_error(ntk::fm::atan2(1.0, r), std::atan2(1.0, r)), 2.0) << r;
  }
}

TEST(FastMath, SqrtClampedIsZeroBelowZero) {
  EXPECT_EQ(ntk::fm::sqrt_clamped(-1e-17), 0.0);
  EXPECT_EQ(ntk::fm::sqrt_clamped(4.0), 2.0);
  EXPECT_EQ(ntk::fm::sqrt_clamped(-0.0f), 0.0f);
}

}  // namespace
