// Every closed form of ntk::dual_activation, and the Gauss-Hermite path, against numerical integration
// written here from scratch: E[phi(u) phi(v)] and E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q1, q12], [q12,
// q2]]).
//
// The references:
// - ABReLU family (kinks): phi is positively homogeneous of degree 1, phi' of degree 0, so in polar
//   coordinates of the standard normal (z1, z2) the radius integrates out exactly and what is left is a
//   1-D integral over the angle, smooth between the angles where u = 0 or v = 0. Each piece is a low-order
//   trigonometric polynomial, which Gauss-Legendre integrates to rounding.
// - Smooth phi (erf, GELU, tanh, softplus, sin): an iterated composite Gauss-Legendre rule over
//   u = sqrt(q1) z1, v = sqrt(q2) (rho z1 + sqrt(1 - rho^2) z2), z in [-9, 9]^2, with panels graded towards
//   the lines u = 0 and v = 0, where phi changes fastest. A plain 2-D Gauss-Hermite rule is no reference
//   here: for variances >= 10 it has not converged even at degree 200 (erf: 1e-2, GELU: 1e-3 relative),
//   because erf(sqrt(q) z) is a near-step at the scale of the node spacing.
// Both are checked against integrals known in closed form (ReferenceRulesAreExact) before they are trusted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "ntk/kernel_math.hpp"
#include "ntk/kernel_spec.hpp"

namespace {

using LD = long double;
using Fn = std::function<double(double)>;

constexpr double kPi = 3.14159265358979323846;

struct Rule {
  std::vector<double> x, w;
};

// Gauss-Legendre on [-1, 1]: Newton on the Legendre three-term recurrence in long double.
Rule gauss_legendre(int n) {
  Rule r;
  const LD pi = std::acos(LD(-1));
  auto legendre = [n](LD x, LD& p, LD& dp) {
    LD p0 = 1, p1 = x;
    for (int k = 2; k <= n; ++k) {
      const LD p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
      p0 = p1;
      p1 = p2;
    }
    p = p1;
    dp = n * (x * p1 - p0) / (x * x - 1);
  };
  for (int i = 0; i < n; ++i) {
    LD x = std::cos(pi * (i + LD(0.75)) / (n + LD(0.5))), p, dp;
    for (int it = 0; it < 100; ++it) {
      legendre(x, p, dp);
      const LD dx = p / dp;
      x -= dx;
      if (std::fabs(dx) < 1e-19L) break;
    }
    legendre(x, p, dp);
    r.x.push_back(static_cast<double>(x));
    r.w.push_back(static_cast<double>(2 / ((1 - x * x) * dp * dp)));
  }
  return r;
}

// Gauss-Hermite for exp(-x^2) by Golub-Welsch (deliberately not the engine's Newton iteration): the nodes
// are the eigenvalues of the Jacobi matrix (zero diagonal, off-diagonal sqrt(k/2)), found by implicit QL
// in long double; the weights, normalized to sum to 1, are the squared first components of the
// eigenvectors, of which only the first row is carried through the rotations.
Rule gauss_hermite_golub_welsch(int n) {
  std::vector<LD> d(n, 0), e(n, 0), z(n, 0);
  for (int i = 0; i + 1 < n; ++i) e[i] = std::sqrt(LD(i + 1) / 2);
  z[0] = 1;
  const LD eps = std::numeric_limits<LD>::epsilon();
  for (int l = 0; l < n; ++l) {
    int iter = 0, m;
    do {
      for (m = l; m < n - 1; ++m)
        if (std::fabs(e[m]) <= eps * (std::fabs(d[m]) + std::fabs(d[m + 1]))) break;
      if (m == l) break;
      if (iter++ == 100) throw std::runtime_error("QL iteration did not converge");
      LD g = (d[l + 1] - d[l]) / (2 * e[l]);
      LD r = std::hypot(g, LD(1));
      g = d[m] - d[l] + e[l] / (g + std::copysign(r, g));
      LD s = 1, c = 1, p = 0;
      int i;
      for (i = m - 1; i >= l; --i) {
        LD f = s * e[i];
        const LD b = c * e[i];
        e[i + 1] = (r = std::hypot(f, g));
        if (r == 0) {
          d[i + 1] -= p;
          e[m] = 0;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        d[i + 1] = g + (p = s * r);
        g = c * r - b;
        f = z[i + 1];
        z[i + 1] = s * z[i] + c * f;
        z[i] = c * z[i] - s * f;
      }
      if (r == 0 && i >= l) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    } while (m != l);
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return d[a] < d[b]; });
  Rule rule;
  for (int k : order) {
    rule.x.push_back(static_cast<double>(d[k]));
    rule.w.push_back(static_cast<double>(z[k] * z[k]));
  }
  return rule;
}

const Rule& panel_rule() {
  static const Rule r = gauss_legendre(12);
  return r;
}

// Breakpoints on [-9, 9]: every integer (the Gaussian weight and slowly varying phi), plus a geometric
// grading towards c with smallest panel `width`, for the fast change of phi around c.
constexpr double kZ = 9.0;
std::vector<double> breakpoints(double c, double width) {
  std::vector<double> b;
  for (double x = -kZ; x <= kZ; x += 1) b.push_back(x);
  if (std::abs(c) < kZ) {
    b.push_back(c);
    for (double h = width; h < 1; h *= 2) {
      b.push_back(c - h);
      b.push_back(c + h);
    }
  }
  for (double& x : b) x = std::clamp(x, -kZ, kZ);
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

// Calls f(z, weight) over the nodes of the composite rule for the standard normal density.
template <class F>
void for_each_normal_node(const std::vector<double>& b, F&& f) {
  const Rule& r = panel_rule();
  const double norm = 1 / std::sqrt(2 * kPi);
  for (std::size_t k = 0; k + 1 < b.size(); ++k) {
    const double mid = 0.5 * (b[k] + b[k + 1]), half = 0.5 * (b[k + 1] - b[k]);
    for (std::size_t i = 0; i < r.x.size(); ++i) {
      const double z = mid + half * r.x[i];
      f(z, half * r.w[i] * norm * std::exp(-0.5 * z * z));
    }
  }
}

struct Expectations {
  double e, ed;
};

// E[phi(u)phi(v)], E[phi'(u)phi'(v)] for a smooth phi whose fastest change, at x = 0, has scale
// 1/sharpness. Requires |rho| < 1.
Expectations composite_expectation(const Fn& phi, const Fn& dphi, double sharpness, double q1, double q2,
                                   double q12) {
  const double s1 = std::sqrt(q1), s2 = std::sqrt(q2);
  const double rho = q12 / (s1 * s2), sr = std::sqrt(1 - rho * rho);
  const double inner_width = 0.5 / std::max(1.0, s2 * sr * sharpness);
  // Outer panels: u and the conditional mean of v, s2 rho z1, both change sign at z1 = 0.
  const double outer_width = 0.5 / std::max(1.0, std::max(s1, s2 * std::abs(rho)) * sharpness);
  LD sum_e = 0, sum_ed = 0;
  for_each_normal_node(breakpoints(0, outer_width), [&](double z1, double w1) {
    const double u = s1 * z1;
    LD inner_e = 0, inner_ed = 0;
    // v = 0 at z2 = -rho z1 / sr: grade the inner panels towards it.
    for_each_normal_node(breakpoints(-rho * z1 / sr, inner_width), [&](double z2, double w2) {
      const double v = s2 * (rho * z1 + sr * z2);
      inner_e += w2 * phi(v);
      inner_ed += w2 * dphi(v);
    });
    sum_e += w1 * phi(u) * inner_e;
    sum_ed += w1 * dphi(u) * inner_ed;
  });
  return {static_cast<double>(sum_e), static_cast<double>(sum_ed)};
}

// E[f(sqrt(q) z)^2] by the same composite rule: the Cauchy-Schwarz bound used as the error scale where
// the expectation itself vanishes.
double composite_second_moment(const Fn& f, double sharpness, double q) {
  LD sum = 0;
  for_each_normal_node(breakpoints(0, 0.5 / std::max(1.0, std::sqrt(q) * sharpness)),
                       [&](double z, double w) {
                         const double y = f(std::sqrt(q) * z);
                         sum += w * y * y;
                       });
  return static_cast<double>(sum);
}

// The ABReLU family phi(x) = a min(x, 0) + b max(x, 0) in polar coordinates z = r (cos t, sin t):
// u = sqrt(q1) r cos t, v = sqrt(q2) r (rho cos t + sqrt(1 - rho^2) sin t). With density
// r exp(-r^2/2) dr dt / (2 pi), E[r^2] = 2 and E[r^0] = 1, so
//   E[phi(u)phi(v)]   = (2 / 2pi) int_0^2pi phi(A(t)) phi(B(t)) dt,
//   E[phi'(u)phi'(v)] = (1 / 2pi) int_0^2pi phi'(A(t)) phi'(B(t)) dt,
// with A, B the values at r = 1. The integral is split where A = 0 (t = pi/2, 3pi/2) or B = 0.
Expectations polar_abrelu(double a, double b, double q1, double q2, double q12) {
  const double s1 = std::sqrt(q1), s2 = std::sqrt(q2);
  const double rho = std::clamp(q12 / (s1 * s2), -1.0, 1.0), sr = std::sqrt(1 - rho * rho);
  auto phi = [a, b](double x) { return x < 0 ? a * x : b * x; };
  auto dphi = [a, b](double x) { return x < 0 ? a : b; };
  std::vector<double> cuts{0, kPi / 2, 3 * kPi / 2, 2 * kPi};
  const double t0 = std::atan2(-rho, sr);  // rho cos t + sr sin t = 0
  for (double t : {t0, t0 + kPi, t0 + 2 * kPi, t0 - kPi})
    if (t > 0 && t < 2 * kPi) cuts.push_back(t);
  std::sort(cuts.begin(), cuts.end());
  static const Rule gl = gauss_legendre(24);
  LD sum_e = 0, sum_ed = 0;
  for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
    const double mid = 0.5 * (cuts[k] + cuts[k + 1]), half = 0.5 * (cuts[k + 1] - cuts[k]);
    for (std::size_t i = 0; i < gl.x.size(); ++i) {
      const double t = mid + half * gl.x[i];
      const double ua = s1 * std::cos(t), vb = s2 * (rho * std::cos(t) + sr * std::sin(t));
      sum_e += half * gl.w[i] * phi(ua) * phi(vb);
      sum_ed += half * gl.w[i] * dphi(ua) * dphi(vb);
    }
  }
  return {static_cast<double>(sum_e / kPi), static_cast<double>(sum_ed / (2 * kPi))};
}

// The grid of covariances: small to large variances, rho from nearly -1 to nearly +1.
struct Covariance {
  double q1, q2, q12;
};
std::vector<Covariance> covariance_grid(const std::vector<double>& variances) {
  std::vector<Covariance> grid;
  for (double q1 : variances)
    for (double q2 : variances)
      for (double rho : {-0.999, -0.6, 0.0, 0.3, 0.8, 0.999})
        grid.push_back({q1, q2, rho * std::sqrt(q1 * q2)});
  return grid;
}
const std::vector<double> kVariances = {0.01, 0.5, 3.0, 50.0};

// Relative error; where the expectation nearly vanishes (below 1e-7 of `scale`, the Cauchy-Schwarz bound on
// |want|: identity at rho = 0 is exactly 0, the reference's rounding is not) it is taken against 1e-7 scale.
double rel_error(double got, double want, double scale) {
  return std::abs(got - want) / std::max(std::abs(want), 1e-7 * scale);
}

ntk::KernelSpec spec_for(ntk::Activation kind, std::optional<double> a = {}, std::optional<double> b = {},
                         std::optional<double> c = {}) {
  ntk::KernelSpec spec;
  spec.activation.kind = kind;
  spec.activation.a = a;
  spec.activation.b = b;
  spec.activation.c = c;
  return spec;
}

TEST(DualActivation, ReferenceRulesAreExact) {
  // Gauss-Legendre integrates x^38 exactly (20 nodes); Golub-Welsch Gauss-Hermite reproduces the moments
  // E[x^2k] = (2k-1)!! / 2^k of the weight exp(-x^2) / sqrt(pi) and numpy's deg-25 hermgauss node.
  const Rule gl = gauss_legendre(20);
  LD m = 0;
  for (std::size_t i = 0; i < gl.x.size(); ++i) m += gl.w[i] * std::pow(LD(gl.x[i]), 38);
  EXPECT_NEAR(static_cast<double>(m), 2.0 / 39, 1e-15);
  const Rule gh = gauss_hermite_golub_welsch(150);
  double worst = 0;
  LD want = 1;
  for (int k = 0; k <= 20; ++k) {
    LD got = 0;
    for (std::size_t i = 0; i < gh.x.size(); ++i) got += gh.w[i] * std::pow(LD(gh.x[i]), 2 * k);
    worst = std::max(worst, static_cast<double>(std::fabs(got - want) / want));
    want *= LD(2 * k + 1) / 2;
  }
  EXPECT_LE(worst, 1e-14);
  // Its nodes are roots of H_25: with h_k = H_k / sqrt(2^k k!), h_{k+1} = x sqrt(2/(k+1)) h_k - sqrt(k/(k+1))
  // h_{k-1} and h_n' = sqrt(2n) h_{n-1}, so the distance to the root is |h_25 / (sqrt(50) h_24)|.
  const Rule gh25 = gauss_hermite_golub_welsch(25);
  double worst_root = 0;
  for (double x : gh25.x) {
    LD h0 = 0, h1 = 1;
    for (int k = 0; k < 25; ++k) {
      const LD h2 = LD(x) * std::sqrt(LD(2) / (k + 1)) * h1 - std::sqrt(LD(k) / (k + 1)) * h0;
      h0 = h1;
      h1 = h2;
    }
    worst_root = std::max(worst_root, static_cast<double>(std::fabs(h1 / (std::sqrt(LD(50)) * h0))));
  }
  EXPECT_LE(worst_root, 1e-14);
  // The composite rule: E[sin u sin v] = exp(-(q1+q2)/2) sinh(q12), E[cos u cos v] = ... cosh(q12).
  double worst_sin = 0;
  for (const Covariance& c : covariance_grid({0.01, 0.5, 3.0, 16.0})) {
    const Expectations r = composite_expectation(
        [](double x) { return std::sin(x); }, [](double x) { return std::cos(x); }, 1.0, c.q1, c.q2, c.q12);
    const double damp = std::exp(-(c.q1 + c.q2) / 2);
    worst_sin = std::max({worst_sin, rel_error(r.e, damp * std::sinh(c.q12), 1.0),
                          rel_error(r.ed, damp * std::cosh(c.q12), 1.0)});
  }
  EXPECT_LE(worst_sin, 1e-12);
  // The polar rule on the identity: E[uv] = q12, E[1] = 1.
  const Expectations id = polar_abrelu(1, 1, 2.0, 3.0, -1.7);
  EXPECT_NEAR(id.e, -1.7, 1e-14);
  EXPECT_NEAR(id.ed, 1.0, 1e-15);
  std::printf("[reference rules] GH(150) moment error %.2e, composite rule vs sin closed form %.2e\n", worst,
              worst_sin);
}

TEST(DualActivation, AbreluFamilyMatchesPolarIntegral) {
  struct Case {
    const char* name;
    ntk::KernelSpec spec;
    double a, b;
  };
  const Case cases[] = {
      {"relu", spec_for(ntk::Activation::relu), 0, 1},
      {"leaky_relu(0.1)", spec_for(ntk::Activation::leaky_relu, 0.1), 0.1, 1},
      {"abs", spec_for(ntk::Activation::abs), -1, 1},
      {"identity", spec_for(ntk::Activation::identity), 1, 1},
      {"abrelu(0.3,-0.7)", spec_for(ntk::Activation::abrelu, 0.3, -0.7), 0.3, -0.7},
  };
  double worst_all = 0;
  for (const Case& c : cases) {
    ntk::HostRecursion<double> recursion(c.spec);
    ASSERT_EQ(recursion.family(), ntk::ActFamily::abrelu);
    double worst = 0;
    for (const Covariance& cov : covariance_grid(kVariances)) {
      double e, ed;
      ntk::dual_activation<ntk::ActFamily::abrelu>(recursion.params(), cov.q1, cov.q2, cov.q12, e, ed);
      const Expectations want = polar_abrelu(c.a, c.b, cov.q1, cov.q2, cov.q12);
      const double bound_e = (c.a * c.a + c.b * c.b) / 2 * std::sqrt(cov.q1 * cov.q2);
      const double err = std::max(rel_error(e, want.e, bound_e), rel_error(ed, want.ed, 1.0));
      worst = std::max(worst, err);
      EXPECT_LE(err, 1e-9) << c.name << " q1=" << cov.q1 << " q2=" << cov.q2 << " q12=" << cov.q12
                           << ": e=" << e << " want " << want.e << ", ed=" << ed << " want " << want.ed;
    }
    std::printf("[abrelu] %-17s worst relative error %.2e\n", c.name, worst);
    worst_all = std::max(worst_all, worst);
  }
  RecordProperty("worst_relative_error", std::to_string(worst_all));
}

TEST(DualActivation, ErfFamilyMatchesCompositeQuadrature) {
  struct Case {
    const char* name;
    ntk::KernelSpec spec;
    double a, b, c;
  };
  const double sig_b = 1 / 2.4020563531719796;
  const Case cases[] = {
      {"erf", spec_for(ntk::Activation::erf), 1, 1, 0},
      {"sigmoid_like", spec_for(ntk::Activation::sigmoid_like), 0.5, sig_b, 0.5},
      {"erf(0.5,1/2.40,0.5)", spec_for(ntk::Activation::erf, 0.5, sig_b, 0.5), 0.5, sig_b, 0.5},
      {"erf(2,3,-0.4)", spec_for(ntk::Activation::erf, 2.0, 3.0, -0.4), 2.0, 3.0, -0.4},
      {"erf(0.7,0.2,1.5)", spec_for(ntk::Activation::erf, 0.7, 0.2, 1.5), 0.7, 0.2, 1.5},
  };
  double worst_all = 0;
  for (const Case& c : cases) {
    ntk::HostRecursion<double> recursion(c.spec);
    ASSERT_EQ(recursion.family(), ntk::ActFamily::erf);
    const Fn phi = [&c](double x) { return c.a * std::erf(c.b * x) + c.c; };
    const Fn dphi = [&c](double x) { return c.a * c.b * 2 / std::sqrt(kPi) * std::exp(-c.b * c.b * x * x); };
    double worst = 0;
    for (const Covariance& cov : covariance_grid(kVariances)) {
      double e, ed;
      ntk::dual_activation<ntk::ActFamily::erf>(recursion.params(), cov.q1, cov.q2, cov.q12, e, ed);
      const Expectations want = composite_expectation(phi, dphi, std::abs(c.b), cov.q1, cov.q2, cov.q12);
      const double bound_e =
          std::sqrt(composite_second_moment(phi, c.b, cov.q1) * composite_second_moment(phi, c.b, cov.q2));
      const double err = std::max(rel_error(e, want.e, bound_e), rel_error(ed, want.ed, 1.0));
      worst = std::max(worst, err);
      EXPECT_LE(err, 1e-9) << c.name << " q1=" << cov.q1 << " q2=" << cov.q2 << " q12=" << cov.q12
                           << ": e=" << e << " want " << want.e << ", ed=" << ed << " want " << want.ed;
    }
    std::printf("[erf] %-20s worst relative error %.2e\n", c.name, worst);
    worst_all = std::max(worst_all, worst);
  }
  RecordProperty("worst_relative_error", std::to_string(worst_all));
}

TEST(DualActivation, GeluMatchesCompositeQuadrature) {
  ntk::HostRecursion<double> recursion(spec_for(ntk::Activation::gelu));
  ASSERT_EQ(recursion.family(), ntk::ActFamily::gelu);
  // phi(x) = x Phi(x) with Phi the standard normal CDF; phi'(x) = Phi(x) + x Phi'(x).
  const Fn phi = [](double x) { return x * 0.5 * std::erfc(-x / std::sqrt(2.0)); };
  const Fn dphi = [](double x) {
    return 0.5 * std::erfc(-x / std::sqrt(2.0)) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * kPi);
  };
  double worst = 0;
  for (const Covariance& cov : covariance_grid(kVariances)) {
    double e, ed;
    ntk::dual_activation<ntk::ActFamily::gelu>(recursion.params(), cov.q1, cov.q2, cov.q12, e, ed);
    const Expectations want = composite_expectation(phi, dphi, 1.0, cov.q1, cov.q2, cov.q12);
    const double bound_e =
        std::sqrt(composite_second_moment(phi, 1.0, cov.q1) * composite_second_moment(phi, 1.0, cov.q2));
    const double bound_ed =
        std::sqrt(composite_second_moment(dphi, 1.0, cov.q1) * composite_second_moment(dphi, 1.0, cov.q2));
    const double err = std::max(rel_error(e, want.e, bound_e), rel_error(ed, want.ed, bound_ed));
    worst = std::max(worst, err);
    EXPECT_LE(err, 1e-9) << "q1=" << cov.q1 << " q2=" << cov.q2 << " q12=" << cov.q12 << ": e=" << e
                         << " want " << want.e << ", ed=" << ed << " want " << want.ed;
  }
  std::printf("[gelu] worst relative error %.2e\n", worst);
  RecordProperty("worst_relative_error", std::to_string(worst));
}

struct QuadCase {
  const char* name;
  ntk::Activation kind;
  Fn phi, dphi;
  // Variances where a degree-150 Gauss-Hermite rule has converged to 1e-9 for this phi (tanh's poles at
  // +-i pi/2 limit it: at q = 2 the error is already ~2e-8).
  std::vector<double> variances;
};

std::vector<QuadCase> quad_cases() {
  return {
      {"tanh",
       ntk::Activation::tanh,
       [](double x) { return std::tanh(x); },
       [](double x) { return 1 / (std::cosh(x) * std::cosh(x)); },
       {0.01, 0.3, 1.0}},
      {"softplus",
       ntk::Activation::softplus,
       [](double x) { return std::log(1 + std::exp(x)); },
       [](double x) { return 0.5 * (1 + std::tanh(x / 2)); },
       {0.01, 0.5, 4.0}},
      {"sin",
       ntk::Activation::sin,
       [](double x) { return std::sin(x); },
       [](double x) { return std::cos(x); },
       {0.01, 0.5, 4.0, 16.0}},
  };
}

TEST(DualActivation, QuadratureDegree150MatchesIndependentReference) {
  double worst_all = 0;
  for (const QuadCase& c : quad_cases()) {
    ntk::KernelSpec spec = spec_for(c.kind);
    spec.quadrature_degree = 150;
    ntk::HostRecursion<double> recursion(spec);
    ASSERT_EQ(recursion.family(), ntk::ActFamily::quadrature);
    double worst = 0;
    for (const Covariance& cov : covariance_grid(c.variances)) {
      double e, ed;
      ntk::dual_activation<ntk::ActFamily::quadrature>(recursion.params(), cov.q1, cov.q2, cov.q12, e, ed);
      const Expectations want = composite_expectation(c.phi, c.dphi, 1.0, cov.q1, cov.q2, cov.q12);
      const double bound_e = std::sqrt(composite_second_moment(c.phi, 1.0, cov.q1) *
                                       composite_second_moment(c.phi, 1.0, cov.q2));
      const double bound_ed = std::sqrt(composite_second_moment(c.dphi, 1.0, cov.q1) *
                                        composite_second_moment(c.dphi, 1.0, cov.q2));
      // sin's expectations decay like exp(-(q1+q2)/2): measure those against the bound throughout.
      const bool decaying = c.kind == ntk::Activation::sin;
      const double err = decaying
                             ? std::max(std::abs(e - want.e) / bound_e, std::abs(ed - want.ed) / bound_ed)
                             : std::max(rel_error(e, want.e, bound_e), rel_error(ed, want.ed, bound_ed));
      worst = std::max(worst, err);
      EXPECT_LE(err, 1e-9) << c.name << " q1=" << cov.q1 << " q2=" << cov.q2 << " q12=" << cov.q12
                           << ": e=" << e << " want " << want.e << ", ed=" << ed << " want " << want.ed;
    }
    std::printf("[quadrature deg 150] %-8s worst relative error %.2e\n", c.name, worst);
    worst_all = std::max(worst_all, worst);
  }
  RecordProperty("worst_relative_error", std::to_string(worst_all));
}

TEST(DualActivation, QuadratureDegree25IsNeuralTangentsFormula) {
  // neural-tangents' ElementwiseNumerical: x, w = hermgauss(deg) (weights summing to sqrt(pi)),
  // u = sqrt(2 q1) x_i, v = q12 / sqrt(q1 / 2) x_i + sqrt(2 (q2 - q12^2 / q1)) x_j, weight w_i w_j / pi.
  const Rule gh = gauss_hermite_golub_welsch(25);
  std::vector<double> w_np(gh.w.size());
  for (std::size_t i = 0; i < gh.w.size(); ++i) w_np[i] = gh.w[i] * std::sqrt(kPi);
  double worst_all = 0;
  for (const QuadCase& c : quad_cases()) {
    double worst_vs_exact = 0;
    ntk::HostRecursion<double> recursion(spec_for(c.kind));  // default degree 25
    ASSERT_EQ(recursion.params().gh_degree, 25);
    double worst = 0;
    for (const Covariance& cov : covariance_grid(kVariances)) {
      double e, ed;
      ntk::dual_activation<ntk::ActFamily::quadrature>(recursion.params(), cov.q1, cov.q2, cov.q12, e, ed);
      const double su = std::sqrt(2 * cov.q1), svx = cov.q12 / std::sqrt(cov.q1 / 2);
      const double svy = std::sqrt(2 * (cov.q2 - cov.q12 * cov.q12 / cov.q1));
      LD want_e = 0, want_ed = 0, abs_e = 0, abs_ed = 0;
      for (std::size_t i = 0; i < gh.x.size(); ++i)
        for (std::size_t j = 0; j < gh.x.size(); ++j) {
          const double u = su * gh.x[i], v = svx * gh.x[i] + svy * gh.x[j];
          const LD w = LD(w_np[i]) * w_np[j] / kPi;
          want_e += w * c.phi(u) * c.phi(v);
          want_ed += w * c.dphi(u) * c.dphi(v);
          abs_e += w * std::abs(c.phi(u) * c.phi(v));
          abs_ed += w * std::abs(c.dphi(u) * c.dphi(v));
        }
      // Both sums round; relative to the sum of |terms| they must agree to a few hundred ulp.
      const double err = std::max(std::abs(e - double(want_e)) / double(abs_e),
                                  std::abs(ed - double(want_ed)) / double(abs_ed));
      worst = std::max(worst, err);
      EXPECT_LE(err, 1e-13) << c.name << " q1=" << cov.q1 << " q2=" << cov.q2 << " q12=" << cov.q12;
      if (c.kind != ntk::Activation::sin && cov.q1 <= 3 && cov.q2 <= 3) {  // where the reference is cheap
        // Not asserted: how far the default degree is from the integral (informational).
        const Expectations exact = composite_expectation(c.phi, c.dphi, 1.0, cov.q1, cov.q2, cov.q12);
        worst_vs_exact = std::max(worst_vs_exact, std::abs(e - exact.e) / std::max(std::abs(exact.e), 1e-3));
      }
    }
    std::printf("[quadrature deg 25] %-8s worst error vs the same formula %.2e", c.name, worst);
    if (c.kind != ntk::Activation::sin)
      std::printf("; (info) degree 25 vs the integral, q <= 3: %.2e", worst_vs_exact);
    std::printf("\n");
    worst_all = std::max(worst_all, worst);
  }
  RecordProperty("worst_relative_error", std::to_string(worst_all));
}

}  // namespace
