// Whole NNGP/NTK matrices from ntk::assemble_kernel<double> and assemble_diagonal against the plain
// per-entry recursion in reference_kernel.hpp, on random inputs and random architectures, plus values
// small enough to check by hand from SPEC section 1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/reference_kernel.hpp"
#include "ntk/kernel_assembly.hpp"
#include "ntk/kernel_spec.hpp"
#include "ntk/matrix.hpp"

namespace {

using ntk::Activation;
using ntk_test::RefActivation;
using ntk_test::RefArchitecture;

constexpr double kPi = 3.14159265358979323846;

struct Architecture {
  ntk::KernelSpec spec;
  RefArchitecture ref;
};

// The same network as a KernelSpec for the engine and as a RefArchitecture for the reference.
Architecture random_architecture(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> unit(0, 1);
  Architecture a;
  a.spec.depth = static_cast<int>(rng() % 6);
  a.spec.w_std = 0.5 + 1.5 * unit(rng);
  a.spec.b_std = unit(rng) < 0.2 ? 0.0 : unit(rng);
  if (unit(rng) < 0.5) a.spec.w_std_out = 0.5 + 1.5 * unit(rng);
  if (unit(rng) < 0.5) a.spec.b_std_out = unit(rng);
  RefArchitecture& r = a.ref;
  r.depth = a.spec.depth;
  r.w_std = a.spec.w_std;
  r.b_std = a.spec.b_std;
  r.w_std_out = a.spec.readout_w_std();
  r.b_std_out = a.spec.readout_b_std();
  const Activation kinds[] = {Activation::relu,         Activation::leaky_relu, Activation::abs,
                              Activation::abrelu,       Activation::identity,   Activation::erf,
                              Activation::sigmoid_like, Activation::gelu};
  const Activation kind = kinds[rng() % std::size(kinds)];
  a.spec.activation.kind = kind;
  switch (kind) {
    case Activation::relu:
      r.a = 0, r.b = 1;
      break;
    case Activation::leaky_relu:
      a.spec.activation.a = r.a = 0.3 * unit(rng);
      r.b = 1;
      break;
    case Activation::abs:
      r.a = -1, r.b = 1;
      break;
    case Activation::abrelu:
      a.spec.activation.a = r.a = 2 * unit(rng) - 1;
      a.spec.activation.b = r.b = 2 * unit(rng) - 1;
      break;
    case Activation::identity:
      r.a = 1, r.b = 1;
      break;
    case Activation::erf:
      r.activation = RefActivation::erf;
      a.spec.activation.a = r.a = 0.3 + 1.5 * unit(rng);
      a.spec.activation.b = r.b = 0.2 + 2 * unit(rng);
      a.spec.activation.c = r.c = unit(rng) - 0.5;
      break;
    case Activation::sigmoid_like:
      r.activation = RefActivation::erf;
      r.a = 0.5, r.b = 1 / 2.4020563531719796, r.c = 0.5;
      break;
    default:
      r.activation = RefActivation::gelu;
      break;
  }
  return a;
}

ntk::Matrix<double> random_inputs(std::mt19937_64& rng, std::int64_t n, std::int64_t d) {
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> scale(0.3, 3.0);
  ntk::Matrix<double> x(n, d);
  for (std::int64_t i = 0; i < n; ++i) {
    const double s = scale(rng);  // rows of different norms, so the variances differ
    for (std::int64_t k = 0; k < d; ++k) x(i, k) = s * normal(rng);
  }
  return x;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max |got - want| / max |want|.
double matrix_error(const ntk::Matrix<double>& got, const std::vector<double>& want) {
  double err = 0;
  for (std::size_t i = 0; i < want.size(); ++i) err = std::max(err, std::abs(got.storage()[i] - want[i]));
  return err / max_abs(want);
}

TEST(RecursionReference, RandomArchitecturesAndInputs) {
  std::mt19937_64 rng(20240611);
  double worst_general = 0, worst_symmetric = 0, worst_diagonal = 0;
  for (int trial = 0; trial < 100; ++trial) {
    const Architecture arch = random_architecture(rng);
    const std::int64_t d = 3 + static_cast<std::int64_t>(rng() % 48);
    const std::int64_t n1 = 20 + static_cast<std::int64_t>(rng() % 41),
                       n2 = 20 + static_cast<std::int64_t>(rng() % 41);
    const ntk::Matrix<double> x1 = random_inputs(rng, n1, d), x2 = random_inputs(rng, n2, d);
    const std::string what = arch.spec.describe() + " n1=" + std::to_string(n1) +
                             " n2=" + std::to_string(n2) + " d=" + std::to_string(d);

    // K(x1, x2).
    ntk::Matrix<double> nngp(n1, n2), ntk_m(n1, n2);
    const ntk::ConstMatrixView<double> x2v = x2.view();
    ntk::assemble_kernel<double>(arch.spec, x1.view(), &x2v, {nngp.view(), ntk_m.view()});
    std::vector<double> want_nngp, want_ntk;
    ntk_test::reference_kernel(arch.ref, x1.data(), n1, x2.data(), n2, d, want_nngp, want_ntk);
    const double err = std::max(matrix_error(nngp, want_nngp), matrix_error(ntk_m, want_ntk));
    EXPECT_LE(err, 1e-12) << "K(x1, x2) " << what;
    worst_general = std::max(worst_general, err);

    // K(x1, x1) through the symmetric path.
    ntk::Matrix<double> snngp(n1, n1), sntk(n1, n1);
    ntk::assemble_kernel<double>(arch.spec, x1.view(), nullptr, {snngp.view(), sntk.view()});
    ntk_test::reference_kernel(arch.ref, x1.data(), n1, x1.data(), n1, d, want_nngp, want_ntk);
    const double serr = std::max(matrix_error(snngp, want_nngp), matrix_error(sntk, want_ntk));
    EXPECT_LE(serr, 1e-12) << "K(x1, x1) " << what;
    worst_symmetric = std::max(worst_symmetric, serr);

    // The diagonal alone.
    std::vector<double> dg(static_cast<std::size_t>(n1)), dt(static_cast<std::size_t>(n1));
    ntk::assemble_diagonal<double>(arch.spec, x1.view(), {dg, dt});
    std::vector<double> want_dg, want_dt;
    for (std::int64_t i = 0; i < n1; ++i) {
      want_dg.push_back(want_nngp[static_cast<std::size_t>(i * n1 + i)]);
      want_dt.push_back(want_ntk[static_cast<std::size_t>(i * n1 + i)]);
    }
    double derr = 0;
    for (std::int64_t i = 0; i < n1; ++i) {
      const auto k = static_cast<std::size_t>(i);
      derr = std::max({derr, std::abs(dg[k] - want_dg[k]) / max_abs(want_dg),
                       std::abs(dt[k] - want_dt[k]) / max_abs(want_dt)});
    }
    EXPECT_LE(derr, 1e-12) << "diagonal " << what;
    worst_diagonal = std::max(worst_diagonal, derr);
  }
  std::printf("[recursion reference] worst error / max|K|: K(x1,x2) %.2e, K(x,x) %.2e, diagonal %.2e\n",
              worst_general, worst_symmetric, worst_diagonal);
  RecordProperty("worst_general", std::to_string(worst_general));
  RecordProperty("worst_symmetric", std::to_string(worst_symmetric));
  RecordProperty("worst_diagonal", std::to_string(worst_diagonal));
}

// One-entry kernels K(x, y), through the general path.
void kernel_pair(const ntk::KernelSpec& spec, const std::vector<double>& x, const std::vector<double>& y,
                 double& nngp, double& ntk_value) {
  const auto d = static_cast<std::int64_t>(x.size());
  const ntk::ConstMatrixView<double> xv{x.data(), 1, d, d}, yv{y.data(), 1, d, d};
  ntk::assemble_kernel<double>(spec, xv, &yv, {{&nngp, 1, 1, 1}, {&ntk_value, 1, 1, 1}});
}

TEST(RecursionReference, DepthZeroIsTheLinearKernel) {
  // No hidden layer: NNGP = NTK = W_out^2 x.x'/d + b_out^2. x.x' = 4 - 10 + 18 = 12, d = 3.
  ntk::KernelSpec spec;
  spec.depth = 0;
  spec.w_std = 3.0;  // hidden values must not be used
  spec.b_std = 0.9;
  spec.w_std_out = 1.5;
  spec.b_std_out = 0.5;
  double g, t;
  kernel_pair(spec, {1, 2, 3}, {4, -5, 6}, g, t);
  EXPECT_DOUBLE_EQ(g, 2.25 * 4 + 0.25);
  EXPECT_DOUBLE_EQ(t, 2.25 * 4 + 0.25);
}

TEST(RecursionReference, ReluDepthOneOnIdenticalInputs) {
  // theta = 0: E[relu(u)^2] = S1 / 2 and E[relu'(u)^2] = 1/2, so with S1 = W^2 |x|^2/d + b^2,
  // NNGP = W^2 S1/2 + b^2 and NTK = NNGP + W^2 T1 / 2 with T1 = S1. x = (1, 2, 2): |x|^2/d = 3 exactly,
  // so the general path's dot product carries no rounding and theta is exactly 0 there too.
  ntk::KernelSpec spec;
  spec.depth = 1;
  spec.w_std = 1.3;
  spec.b_std = 0.4;
  const double w2 = 1.3 * 1.3, b2 = 0.4 * 0.4;
  const double s1 = w2 * 3 + b2;
  const double want_nngp = w2 * s1 / 2 + b2;
  const double want_ntk = want_nngp + w2 * s1 / 2;
  const std::vector<double> x = {1, 2, 2};
  double g, t;
  kernel_pair(spec, x, x, g, t);
  EXPECT_NEAR(g, want_nngp, 1e-15 * want_nngp);
  EXPECT_NEAR(t, want_ntk, 1e-15 * want_ntk);
  double dg, dt;
  ntk::assemble_diagonal<double>(spec, {x.data(), 1, 3, 3}, {{&dg, 1}, {&dt, 1}});
  EXPECT_NEAR(dg, want_nngp, 1e-15 * want_nngp);
  EXPECT_NEAR(dt, want_ntk, 1e-15 * want_ntk);
  std::printf("[relu depth 1, x = x'] nngp %.17g (want %.17g), ntk %.17g (want %.17g)\n", g, want_nngp, t,
              want_ntk);
}

TEST(RecursionReference, ReluOrthogonalInputs) {
  // x.x' = 0 and b = 0: S1(x,x') = 0, theta = pi/2, so E[relu(u)relu(v)] = sqrt(q1 q2)/(2 pi), T1 = 0 and
  // NTK = NNGP = W^2 sqrt(q1 q2)/(2 pi) with q1 = W^2 |x|^2/d, q2 = W^2 |x'|^2/d.
  ntk::KernelSpec spec;
  spec.depth = 1;
  spec.w_std = 1.7;
  spec.b_std = 0;
  const double w2 = 1.7 * 1.7;
  const double q1 = w2 * 5 / 3, q2 = w2 * 14 / 3;
  const double want = w2 * std::sqrt(q1 * q2) / (2 * kPi);
  double g, t;
  kernel_pair(spec, {1, 0, 2}, {2, 3, -1}, g, t);
  EXPECT_NEAR(g, want, 1e-15 * want);
  EXPECT_NEAR(t, want, 1e-15 * want);
  // Depth 2: the second layer sees q12 = sqrt(q1 q2)/(2 pi), q1/2, q2/2 (cos theta = 1/pi) and
  // T~1 = T1 * 1/4 = 0, so T2 = S2 and the readout NTK is S3 + W^2 S2 E[relu' relu'].
  spec.depth = 2;
  const double s2_12 = w2 * std::sqrt(q1 * q2) / (2 * kPi), s2_1 = w2 * q1 / 2, s2_2 = w2 * q2 / 2;
  const double p = s2_1 * s2_2, th = std::acos(s2_12 / std::sqrt(p));
  const double s3 = w2 * (std::sqrt(p - s2_12 * s2_12) + (kPi - th) * s2_12) / (2 * kPi);
  const double t3 = s3 + w2 * s2_12 * (kPi - th) / (2 * kPi);
  kernel_pair(spec, {1, 0, 2}, {2, 3, -1}, g, t);
  EXPECT_NEAR(g, s3, 1e-14 * s3);
  EXPECT_NEAR(t, t3, 1e-14 * t3);
}

}  // namespace
