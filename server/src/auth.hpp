#pragma once
// API tokens: a file of "TOKEN TENANT" lines ('#' comments). Every call carries
// "authorization: Bearer TOKEN"; the tenant it maps to namespaces datasets, models and jobs.
#include <map>
#include <optional>
#include <string>

namespace ntkserver {

class TokenStore {
 public:
  // No file: authentication is off and every caller is tenant "default".
  TokenStore() = default;
  static TokenStore from_file(const std::string& path);  // throws InvalidArgument naming the line

  bool enabled() const { return enabled_; }
  // The tenant for an "authorization" metadata value, or nullopt (missing or unknown token).
  std::optional<std::string> tenant_for(std::optional<std::string> authorization) const;
  std::size_t size() const { return tenants_.size(); }

 private:
  bool enabled_ = false;
  std::map<std::string, std::string> tenants_;  // token -> tenant
};

// Tenant names become directory names: [A-Za-z0-9_-]{1,64}.
bool valid_tenant_name(const std::string& name);
// Dataset names: [A-Za-z0-9][A-Za-z0-9._-]{0,127}.
bool valid_dataset_name(const std::string& name);
// Model / job ids: "m-" followed by 16 lowercase hex digits.
bool valid_model_id(const std::string& id);

}  // namespace ntkserver
