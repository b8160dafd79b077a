#include <gtest/gtest.h>

#include <cmath>

#include "ntk/errors.hpp"
#include "ntk/kernel_spec.hpp"

namespace {

using ntk::Activation;
using ntk::KernelSpec;

std::string validation_error(const KernelSpec& spec) {
  try {
    spec.validate();
  } catch (const ntk::InvalidArgument& e) {
    return e.what();
  }
  return "";
}

TEST(KernelSpec, DefaultsAreValid) {
  EXPECT_EQ(validation_error(KernelSpec{}), "");
}

TEST(KernelSpec, RejectsBadFieldsByName) {
  KernelSpec s;
  s.depth = -1;
  EXPECT_EQ(validation_error(s).rfind("depth", 0), 0u);
  s = {};
  s.w_std = 0;
  EXPECT_EQ(validation_error(s).rfind("w_std", 0), 0u);
  s.w_std = std::nan("");
  EXPECT_EQ(validation_error(s).rfind("w_std", 0), 0u);
  s = {};
  s.b_std = -0.5;
  EXPECT_EQ(validation_error(s).rfind("b_std", 0), 0u);
  s = {};
  s.b_std = 0;  // no bias is allowed
  EXPECT_EQ(validation_error(s), "");
  s.w_std_out = INFINITY;
  EXPECT_EQ(validation_error(s).rfind("w_std_out", 0), 0u);
  s = {};
  s.quadrature_degree = 0;
  EXPECT_NE(validation_error(s).find("quadrature degree"), std::string::npos);
}

TEST(KernelSpec, ActivationParametersMustApply) {
  KernelSpec s;
  s.activation.kind = Activation::relu;
  s.activation.a = 0.2;
  EXPECT_NE(validation_error(s).find("does not apply to relu"), std::string::npos);
  s.activation.kind = Activation::leaky_relu;
  EXPECT_EQ(validation_error(s), "");
  s.activation.b = 1.0;
  EXPECT_NE(validation_error(s).find("parameter b does not apply to leaky_relu"), std::string::npos);
  s.activation.kind = Activation::erf;
  s.activation.c = std::nan("");
  EXPECT_NE(validation_error(s).find("parameter c must be finite"), std::string::npos);
}

TEST(KernelSpec, ParsesEveryBuiltinAndRejectsUnknown) {
  for (const auto& name : ntk::known_activation_names())
    EXPECT_EQ(ntk::activation_name(ntk::parse_activation(name)), name);
  try {
    ntk::parse_activation("swish");
    FAIL();
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown activation 'swish'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("relu"), std::string::npos);
  }
}

TEST(KernelSpec, ResolvesFamilies) {
  ntk::ActivationSpec a;
  a.kind = Activation::leaky_relu;
  a.a = 0.1;
  auto r = ntk::resolve_activation(a);
  EXPECT_EQ(r.family, ntk::ActFamily::abrelu);
  EXPECT_EQ(r.a, 0.1);
  EXPECT_EQ(r.b, 1.0);
  a = {};
  a.kind = Activation::sigmoid_like;
  r = ntk::resolve_activation(a);
  EXPECT_EQ(r.family, ntk::ActFamily::erf);
  EXPECT_DOUBLE_EQ(r.b, 1.0 / 2.4020563531719796);
  a.kind = Activation::tanh;
  EXPECT_EQ(ntk::resolve_activation(a).family, ntk::ActFamily::quadrature);
}

double cube(double x) {
  return x * x * x;
}
double three_square(double x) {
  return 3 * x * x;
}

TEST(KernelSpec, RegistersCustomActivations) {
  ntk::register_activation("cube", &cube, &three_square);
  EXPECT_EQ(ntk::parse_activation("cube"), Activation::custom);
  EXPECT_THROW(ntk::register_activation("cube", &cube, &three_square), ntk::AlreadyExists);
  EXPECT_THROW(ntk::register_activation("relu", &cube, &three_square), ntk::AlreadyExists);
  EXPECT_THROW(ntk::register_activation("nothing", nullptr, &three_square), ntk::InvalidArgument);
}

TEST(GaussHermite, SmallRuleIsExact) {
  // Degree 3: nodes 0, +-sqrt(3/2); normalized weights 1/6, 2/3, 1/6.
  const auto& r = ntk::gauss_hermite_rule(3);
  ASSERT_EQ(r.nodes.size(), 3u);
  EXPECT_NEAR(r.nodes[0], -std::sqrt(1.5), 1e-15);
  EXPECT_NEAR(r.nodes[1], 0.0, 1e-15);
  EXPECT_NEAR(r.nodes[2], std::sqrt(1.5), 1e-15);
  EXPECT_NEAR(r.weights[0], 1.0 / 6, 1e-15);
  EXPECT_NEAR(r.weights[1], 2.0 / 3, 1e-15);
}

TEST(GaussHermite, IntegratesPolynomialsExactly) {
  // Under exp(-x^2)/sqrt(pi): E[x^(2k)] = (2k-1)!! / 2^k, exact for 2k <= 2 deg - 1.
  for (int deg : {5, 25, 60}) {
    const auto& r = ntk::gauss_hermite_rule(deg);
    double sum = 0;
    for (double w : r.weights) sum += w;
    EXPECT_NEAR(sum, 1.0, 1e-14) << deg;
    double moment = 1;  // (2k-1)!!/2^k
    for (int k = 1; 2 * k <= 2 * deg - 1 && k <= 12; ++k) {
      moment *= (2 * k - 1) / 2.0;
      double q = 0;
      for (std::size_t i = 0; i < r.nodes.size(); ++i) q += r.weights[i] * std::pow(r.nodes[i], 2 * k);
      EXPECT_NEAR(q / moment, 1.0, 1e-12) << "deg " << deg << " k " << k;
    }
  }
}

}  // namespace
