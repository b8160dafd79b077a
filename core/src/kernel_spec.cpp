#include "ntk/kernel_spec.hpp"

#include <cmath>
#include <map>
#include <mutex>
#include <numbers>
#include <sstream>

#include "ntk/errors.hpp"

namespace ntk {
namespace {

struct NamedActivation {
  const char* name;
  Activation kind;
};

constexpr NamedActivation kBuiltins[] = {
    {"identity", Activation::identity},
    {"relu", Activation::relu},
    {"leaky_relu", Activation::leaky_relu},
    {"abs", Activation::abs},
    {"abrelu", Activation::abrelu},
    {"erf", Activation::erf},
    {"sigmoid_like", Activation::sigmoid_like},
    {"gelu", Activation::gelu},
    {"tanh", Activation::tanh},
    {"softplus", Activation::softplus},
    {"sin", Activation::sin},
};

struct CustomActivation {
  ScalarFunction phi;
  ScalarFunction dphi;
};

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, CustomActivation, std::less<>>& registry() {
  static std::map<std::string, CustomActivation, std::less<>> r;
  return r;
}

bool is_finite(double v) {
  return std::isfinite(v);
}

// Which of a, b, c an activation takes, for the messages about parameters that do not apply.
int parameter_count(Activation kind) {
  switch (kind) {
    case Activation::leaky_relu:
      return 1;
    case Activation::abrelu:
      return 2;
    case Activation::erf:
      return 3;
    default:
      return 0;
  }
}

}  // namespace

Activation parse_activation(std::string_view name) {
  for (const auto& b : kBuiltins)
    if (name == b.name) return b.kind;
  {
    std::lock_guard lock(registry_mutex());
    if (registry().count(name)) return Activation::custom;
  }
  std::string known;
  for (const auto& n : known_activation_names()) known += (known.empty() ? "" : ", ") + n;
  throw InvalidArgument("unknown activation '" + std::string(name) + "' (known: " + known + ")");
}

std::string_view activation_name(Activation activation) {
  for (const auto& b : kBuiltins)
    if (b.kind == activation) return b.name;
  return "custom";
}

std::vector<std::string> known_activation_names() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltins) names.emplace_back(b.name);
  std::lock_guard lock(registry_mutex());
  for (const auto& [n, fn] : registry()) names.push_back(n);
  return names;
}

void register_activation(const std::string& name, ScalarFunction phi, ScalarFunction dphi) {
  if (name.empty()) throw InvalidArgument("custom activation name is empty");
  if (phi == nullptr || dphi == nullptr)
    throw InvalidArgument("custom activation '" + name + "' needs both phi and its derivative");
  for (const auto& b : kBuiltins)
    if (name == b.name) throw AlreadyExists("activation '" + name + "' is built in");
  std::lock_guard lock(registry_mutex());
  if (!registry().emplace(name, CustomActivation{phi, dphi}).second)
    throw AlreadyExists("activation '" + name + "' is already registered");
}

KernelSelection parse_kernel_selection(std::string_view name) {
  if (name == "nngp") return KernelSelection::nngp;
  if (name == "ntk") return KernelSelection::ntk;
  if (name == "both") return KernelSelection::both;
  throw InvalidArgument("unknown kernel '" + std::string(name) + "' (known: nngp, ntk, both)");
}

bool KernelSpec::uses_quadrature() const {
  return resolve_activation(activation).family == ActFamily::quadrature;
}

void KernelSpec::validate() const {
  if (depth < 0) throw InvalidArgument("depth must be >= 0, got " + std::to_string(depth));
  if (depth > 1000) throw InvalidArgument("depth must be <= 1000, got " + std::to_string(depth));
  auto check_std = [](const char* field, double v, bool allow_zero) {
    if (!is_finite(v) || v < 0 || (!allow_zero && v == 0)) {
      std::ostringstream os;
      os << field << " must be " << (allow_zero ? ">= 0" : "> 0") << " and finite, got " << v;
      throw InvalidArgument(os.str());
    }
  };
  check_std("w_std", w_std, false);
  check_std("b_std", b_std, true);
  if (w_std_out) check_std("w_std_out", *w_std_out, false);
  if (b_std_out) check_std("b_std_out", *b_std_out, true);
  const int takes = parameter_count(activation.kind);
  const std::optional<double>* params[] = {&activation.a, &activation.b, &activation.c};
  const char* flag[] = {"a", "b", "c"};
  for (int i = 0; i < 3; ++i) {
    if (!params[i]->has_value()) continue;
    if (i >= takes)
      throw InvalidArgument("activation parameter " + std::string(flag[i]) + " does not apply to " +
                            std::string(activation_name(activation.kind)));
    if (!is_finite(**params[i]))
      throw InvalidArgument("activation parameter " + std::string(flag[i]) + " must be finite");
  }
  if (activation.kind == Activation::custom) {
    std::lock_guard lock(registry_mutex());
    if (!registry().count(activation.custom_name))
      throw InvalidArgument("unknown activation '" + activation.custom_name + "'");
  }
  if (quadrature_degree < 1 || quadrature_degree > 200)
    throw InvalidArgument("quadrature degree must be in [1, 200], got " + std::to_string(quadrature_degree));
}

std::string KernelSpec::describe() const {
  std::ostringstream os;
  os.precision(17);
  os << "depth=" << depth << " activation="
     << (activation.kind == Activation::custom ? activation.custom_name
                                               : std::string(activation_name(activation.kind)));
  if (activation.a) os << " a=" << *activation.a;
  if (activation.b) os << " b=" << *activation.b;
  if (activation.c) os << " c=" << *activation.c;
  os << " w_std=" << w_std << " b_std=" << b_std << " w_std_out=" << readout_w_std()
     << " b_std_out=" << readout_b_std();
  if (uses_quadrature()) os << " quadrature_degree=" << quadrature_degree;
  return os.str();
}

ResolvedActivation resolve_activation(const ActivationSpec& activation) {
  ResolvedActivation r;
  auto abrelu = [&r](double a, double b) {
    r.family = ActFamily::abrelu;
    r.a = a;
    r.b = b;
  };
  switch (activation.kind) {
    case Activation::identity:
      abrelu(1, 1);
      break;
    case Activation::relu:
      abrelu(0, 1);
      break;
    case Activation::leaky_relu:
      abrelu(activation.a.value_or(0.01), 1);
      break;
    case Activation::abs:
      abrelu(-1, 1);
      break;
    case Activation::abrelu:
      abrelu(activation.a.value_or(0.0), activation.b.value_or(1.0));
      break;
    case Activation::erf:
      r.family = ActFamily::erf;
      r.a = activation.a.value_or(1.0);
      r.b = activation.b.value_or(1.0);
      r.c = activation.c.value_or(0.0);
      break;
    case Activation::sigmoid_like:
      r.family = ActFamily::erf;
      r.a = 0.5;
      r.b = 1.0 / 2.4020563531719796;
      r.c = 0.5;
      break;
    case Activation::gelu:
      r.family = ActFamily::gelu;
      break;
    case Activation::tanh:
      r.family = ActFamily::quadrature;
      r.quad_function = QuadFunction::tanh;
      break;
    case Activation::softplus:
      r.family = ActFamily::quadrature;
      r.quad_function = QuadFunction::softplus;
      break;
    case Activation::sin:
      r.family = ActFamily::quadrature;
      r.quad_function = QuadFunction::sin;
      break;
    case Activation::custom: {
      std::lock_guard lock(registry_mutex());
      auto it = registry().find(activation.custom_name);
      if (it == registry().end())
        throw InvalidArgument("unknown activation '" + activation.custom_name + "'");
      r.family = ActFamily::quadrature;
      r.quad_function = QuadFunction::custom;
      r.custom_phi = it->second.phi;
      r.custom_dphi = it->second.dphi;
      break;
    }
  }
  return r;
}

const GaussHermiteRule& gauss_hermite_rule(int degree) {
  if (degree < 1 || degree > 200)
    throw InvalidArgument("quadrature degree must be in [1, 200], got " + std::to_string(degree));
  static std::mutex m;
  static std::map<int, GaussHermiteRule> cache;
  std::lock_guard lock(m);
  auto it = cache.find(degree);
  if (it != cache.end()) return it->second;

  // Newton's method on the orthonormal Hermite recurrence (Numerical Recipes' gauher), long double.
  using LD = long double;
  const int n = degree;
  const LD pim4 = 0.7511255444649425L;  // pi^(-1/4)
  std::vector<LD> x(n), w(n);
  LD z = 0;
  for (int i = 0; i < (n + 1) / 2; ++i) {
    if (i == 0)
      z = std::sqrt(LD(2 * n + 1)) - 1.85575L * std::pow(LD(2 * n + 1), LD(-0.16667));
    else if (i == 1)
      z -= 1.14L * std::pow(LD(n), LD(0.426)) / z;
    else if (i == 2)
      z = 1.86L * z - 0.86L * x[0];
    else if (i == 3)
      z = 1.91L * z - 0.91L * x[1];
    else
      z = 2.0L * z - x[i - 2];
    LD pp = 0;
    for (int iter = 0; iter < 100; ++iter) {
      LD p1 = pim4, p2 = 0;
      for (int j = 0; j < n; ++j) {
        const LD p3 = p2;
        p2 = p1;
        p1 = z * std::sqrt(LD(2) / (j + 1)) * p2 - std::sqrt(LD(j) / (j + 1)) * p3;
      }
      pp = std::sqrt(LD(2 * n)) * p2;
      const LD z1 = z;
      z = z1 - p1 / pp;
      if (std::fabs(z - z1) <= 1e-19L * std::max(LD(1), std::fabs(z))) break;
    }
    x[i] = z;
    x[n - 1 - i] = -z;
    w[i] = LD(2) / (pp * pp);
    w[n - 1 - i] = w[i];
  }
  GaussHermiteRule rule;
  const LD sqrt_pi = std::sqrt(std::acos(LD(-1)));
  // Ascending order, as numpy's hermgauss.
  for (int i = n - 1; i >= 0; --i) {
    rule.nodes.push_back(static_cast<double>(x[i]));
    rule.weights.push_back(static_cast<double>(w[i] / sqrt_pi));
  }
  return cache.emplace(degree, std::move(rule)).first->second;
}

template <class T>
HostRecursion<T>::HostRecursion(const KernelSpec& spec) {
  spec.validate();
  const ResolvedActivation act = resolve_activation(spec.activation);
  params_.depth = spec.depth;
  params_.w_var = static_cast<T>(spec.w_std * spec.w_std);
  params_.b_var = static_cast<T>(spec.b_std * spec.b_std);
  params_.w_var_out = static_cast<T>(spec.readout_w_std() * spec.readout_w_std());
  params_.b_var_out = static_cast<T>(spec.readout_b_std() * spec.readout_b_std());
  params_.family = act.family;
  switch (act.family) {
    case ActFamily::abrelu:
      params_.c0 = static_cast<T>((act.a - act.b) * (act.a - act.b) / (2 * std::numbers::pi));
      params_.c1 = static_cast<T>((act.a * act.a + act.b * act.b) / 2);
      break;
    case ActFamily::erf:
      params_.c0 = static_cast<T>(act.b * act.b);
      params_.c1 = static_cast<T>(act.a * act.a);
      params_.c2 = static_cast<T>(act.c * act.c);
      break;
    case ActFamily::gelu:
      break;
    case ActFamily::quadrature: {
      params_.quad_function = act.quad_function;
      params_.custom_phi = act.custom_phi;
      params_.custom_dphi = act.custom_dphi;
      const GaussHermiteRule& rule = gauss_hermite_rule(spec.quadrature_degree);
      nodes_.assign(rule.nodes.begin(), rule.nodes.end());
      weights_.assign(rule.weights.begin(), rule.weights.end());
      params_.gh_degree = spec.quadrature_degree;
      params_.gh_nodes = nodes_.data();
      params_.gh_weights = weights_.data();
      break;
    }
  }
}

template class HostRecursion<float>;
template class HostRecursion<double>;

}  // namespace ntk
