#pragma once
// The architecture of the infinitely wide fully-connected network whose kernels we compute.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ntk/kernel_math.hpp"

namespace ntk {

enum class Activation {
  identity,
  relu,
  leaky_relu,  // parameter a = alpha
  abs,
  abrelu,        // a * min(x, 0) + b * max(x, 0)
  erf,           // a * erf(b x) + c
  sigmoid_like,  // erf(0.5, 1/2.4020563531719796, 0.5), neural-tangents' Sigmoid_like
  gelu,          // exact (erf-based) GELU
  tanh,          // Gauss-Hermite quadrature from here on
  softplus,
  sin,
  custom,  // a function registered with register_activation()
};

// Parses "relu", "leaky_relu", ...; also accepts the name of a registered custom activation.
// Throws InvalidArgument naming the unknown activation and listing the known ones.
Activation parse_activation(std::string_view name);
std::string_view activation_name(Activation activation);
std::vector<std::string> known_activation_names();

struct ActivationSpec {
  Activation kind = Activation::relu;
  // Parameters a, b, c as in SPEC section 4 (--act-a, --act-b, --act-c); unset means the default.
  std::optional<double> a, b, c;
  std::string custom_name;  // for Activation::custom
};

// Registers an elementwise activation phi with its derivative for the quadrature path (CPU backend).
// Throws AlreadyExists when the name is a built-in or already registered.
void register_activation(const std::string& name, ScalarFunction phi, ScalarFunction dphi);

struct KernelSpec {
  int depth = 1;  // hidden layers L
  double w_std = 1.0;
  double b_std = 0.0;
  std::optional<double> w_std_out;  // readout, defaults to the hidden values
  std::optional<double> b_std_out;
  ActivationSpec activation;
  int quadrature_degree = 25;

  double readout_w_std() const { return w_std_out.value_or(w_std); }
  double readout_b_std() const { return b_std_out.value_or(b_std); }
  bool uses_quadrature() const;
  // Throws InvalidArgument with a message naming the offending field.
  void validate() const;
  std::string describe() const;
};

// Which kernels a request returns.
enum class KernelSelection { nngp, ntk, both };
KernelSelection parse_kernel_selection(std::string_view name);

// The family and constants of a validated activation, shared by every backend.
struct ResolvedActivation {
  ActFamily family = ActFamily::abrelu;
  double a = 0, b = 0, c = 0;
  QuadFunction quad_function = QuadFunction::tanh;
  ScalarFunction custom_phi = nullptr;
  ScalarFunction custom_dphi = nullptr;
};
ResolvedActivation resolve_activation(const ActivationSpec& activation);

// Gauss-Hermite rule for weight exp(-x^2), weights normalized to sum to 1 (divided by sqrt(pi)),
// computed in long double by Newton iteration on the Hermite recurrence.
struct GaussHermiteRule {
  std::vector<double> nodes;
  std::vector<double> weights;
};
const GaussHermiteRule& gauss_hermite_rule(int degree);

// Host-side recursion parameters. The quadrature nodes live in `storage` owned by this object, so it
// must outlive every use of params().
template <class T>
class HostRecursion {
 public:
  explicit HostRecursion(const KernelSpec& spec);
  HostRecursion(const HostRecursion&) = delete;
  HostRecursion& operator=(const HostRecursion&) = delete;
  const RecursionParams<T>& params() const { return params_; }
  ActFamily family() const { return params_.family; }

 private:
  RecursionParams<T> params_;
  std::vector<T> nodes_, weights_;
};

}  // namespace ntk
