#include "auth.hpp"

#include <cctype>
#include <fstream>
#include <sstream>

#include "ntk/errors.hpp"

namespace ntkserver {

namespace {
bool word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// Constant-time comparison, so that response times do not reveal how much of a token matched.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned diff = static_cast<unsigned>(a.size() ^ b.size());
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.size() + 1)]);
  return diff == 0;
}
}  // namespace

bool valid_tenant_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!word_char(c)) return false;
  return true;
}

bool valid_dataset_name(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name)
    if (!word_char(c) && c != '.') return false;
  return true;
}

bool valid_model_id(const std::string& id) {
  if (id.size() != 18 || id[0] != 'm' || id[1] != '-') return false;
  for (std::size_t i = 2; i < id.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(id[i])) || std::isupper(static_cast<unsigned char>(id[i])))
      return false;
  return true;
}

TokenStore TokenStore::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ntk::InvalidArgument("token file " + path + ": cannot be read");
  TokenStore store;
  store.enabled_ = true;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (const auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string token, tenant, extra;
    if (!(fields >> token)) continue;
    const std::string where = "token file " + path + " line " + std::to_string(number);
    if (!(fields >> tenant) || (fields >> extra))
      throw ntk::InvalidArgument(where + ": expected 'TOKEN TENANT'");
    if (token.size() < 16) throw ntk::InvalidArgument(where + ": token shorter than 16 characters");
    if (!valid_tenant_name(tenant))
      throw ntk::InvalidArgument(where + ": tenant '" + tenant + "' must match [A-Za-z0-9_-]{1,64}");
    if (!store.tenants_.emplace(token, tenant).second)
      throw ntk::InvalidArgument(where + ": duplicate token");
  }
  if (store.tenants_.empty()) throw ntk::InvalidArgument("token file " + path + ": no tokens");
  return store;
}

std::optional<std::string> TokenStore::tenant_for(std::optional<std::string> authorization) const {
  if (!enabled_) return std::string("default");
  if (!authorization) return std::nullopt;
  static const std::string prefix = "Bearer ";
  if (authorization->rfind(prefix, 0) != 0) return std::nullopt;
  const std::string token = authorization->substr(prefix.size());
  std::optional<std::string> found;
  for (const auto& [known, tenant] : tenants_)
    if (same_secret(known, token)) found = tenant;  // no early exit: same time for every token
  return found;
}

}  // namespace ntkserver
