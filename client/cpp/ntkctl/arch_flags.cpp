#include "ntkctl/arch_flags.hpp"

#include "ntk/errors.hpp"

namespace ntkctl {

const char* const kArchitectureHelp =
    "architecture:\n"
    "  --depth L                 hidden layers (default 1)\n"
    "  --activation NAME         "
    "relu|erf|gelu|abrelu|leaky_relu|abs|sigmoid_like|identity|tanh|softplus|sin\n"
    "                            (default relu)\n"
    "  --act-a A --act-b B --act-c C\n"
    "                            leaky_relu: alpha = A; abrelu: a, b; erf: a erf(b x) + c\n"
    "  --w-std S --b-std S       hidden layer weight / bias std (default 1, 0)\n"
    "  --w-std-out S --b-std-out S  readout std (default: the hidden values)\n"
    "  --quadrature-degree N     Gauss-Hermite degree for tanh/softplus/sin (default 25)\n"
    "  --dtype float32|float64   compute precision (default float64)\n";

Architecture parse_architecture(Args& args) {
  Architecture a;
  ntk::KernelSpec& s = a.spec;
  if (auto v = args.get_int("depth")) {
    if (*v < 0 || *v > 1000)
      throw ntk::InvalidArgument("--depth must be in [0, 1000], got " + std::to_string(*v));
    s.depth = static_cast<int>(*v);
  }
  if (auto v = args.get("activation")) {
    try {
      s.activation.kind = ntk::parse_activation(*v);
    } catch (const ntk::InvalidArgument& e) {
      throw ntk::InvalidArgument(std::string("--activation: ") + e.what());
    }
    if (s.activation.kind == ntk::Activation::custom) s.activation.custom_name = *v;
  }
  s.activation.a = args.get_double("act-a");
  s.activation.b = args.get_double("act-b");
  s.activation.c = args.get_double("act-c");
  if (auto v = args.get_double("w-std")) s.w_std = *v;
  if (auto v = args.get_double("b-std")) s.b_std = *v;
  s.w_std_out = args.get_double("w-std-out");
  s.b_std_out = args.get_double("b-std-out");
  if (auto v = args.get_int("quadrature-degree")) {
    if (*v < 1 || *v > 200)
      throw ntk::InvalidArgument("--quadrature-degree must be in [1, 200], got " + std::to_string(*v));
    s.quadrature_degree = static_cast<int>(*v);
  }
  if (auto v = args.get("dtype")) {
    if (*v == "float32")
      a.dtype = ComputeDType::float32;
    else if (*v == "float64")
      a.dtype = ComputeDType::float64;
    else
      throw ntk::InvalidArgument("--dtype must be float32 or float64, got '" + *v + "'");
  }
  try {
    s.validate();
  } catch (const ntk::InvalidArgument& e) {
    // Name the flag the field came from.
    std::string m = e.what();
    for (auto [field, flag] : {std::pair{"w_std_out", "--w-std-out"},
                               {"b_std_out", "--b-std-out"},
                               {"w_std", "--w-std"},
                               {"b_std", "--b-std"},
                               {"depth", "--depth"}}) {
      if (m.rfind(field, 0) == 0) {
        m = std::string(flag) + m.substr(std::string(field).size());
        break;
      }
    }
    if (m.rfind("activation parameter ", 0) == 0) m = "--act-" + m.substr(21);
    throw ntk::InvalidArgument(m);
  }
  return a;
}

}  // namespace ntkctl
