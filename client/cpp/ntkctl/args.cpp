#include "ntkctl/args.hpp"

#include <cmath>
#include <cstdlib>

#include "ntk/errors.hpp"

namespace ntkctl {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& switches) {
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) throw ntk::InvalidArgument("unexpected argument '" + a + "'");
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (switches.count(name)) {
      value = "true";
    } else {
      if (i + 1 >= argv.size()) throw ntk::InvalidArgument("--" + name + " needs a value");
      value = argv[++i];
    }
    if (values_.count(name)) throw ntk::InvalidArgument("--" + name + " given more than once");
    values_[name] = value;
  }
}

std::optional<std::string> Args::get(const std::string& name) {
  used_.insert(name);
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::require(const std::string& name) {
  auto v = get(name);
  if (!v) throw ntk::InvalidArgument("--" + name + " is required");
  return *v;
}

bool Args::flag(const std::string& name) {
  auto v = get(name);
  return v && *v != "false" && *v != "0";
}

std::optional<double> Args::get_double(const std::string& name) {
  auto v = get(name);
  if (!v) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(d))
    throw ntk::InvalidArgument("--" + name + " must be a finite number, got '" + *v + "'");
  return d;
}

std::optional<long long> Args::get_int(const std::string& name) {
  auto v = get(name);
  if (!v) return std::nullopt;
  char* end = nullptr;
  const long long i = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0')
    throw ntk::InvalidArgument("--" + name + " must be an integer, got '" + *v + "'");
  return i;
}

void Args::reject_unused() const {
  for (const auto& [name, value] : values_)
    if (!used_.count(name)) throw ntk::InvalidArgument("unknown option --" + name);
}

}  // namespace ntkctl
