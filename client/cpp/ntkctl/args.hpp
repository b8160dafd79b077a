#pragma once
// Command-line flags of the form --name value, --name=value and bare --switch.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ntkctl {

class Args {
 public:
  // `switches` take no value. Throws ntk::InvalidArgument for a missing value or a stray positional.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& switches);

  std::optional<std::string> get(const std::string& name);
  std::string require(const std::string& name);
  bool flag(const std::string& name);
  std::optional<double> get_double(const std::string& name);
  std::optional<long long> get_int(const std::string& name);
  // Throws InvalidArgument naming the first flag that no get/require/flag call consumed.
  void reject_unused() const;

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> used_;
};

}  // namespace ntkctl
