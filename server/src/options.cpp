#include "options.hpp"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdlib>
#include <functional>
#include <map>

#include "ntk/errors.hpp"

namespace ntkserver {

const char* const kServerHelp =
    "usage: ntk-server [options]\n"
    "  --listen HOST:PORT        gRPC address (default 127.0.0.1:50051)\n"
    "  --data-dir DIR            datasets, models and jobs are kept here (default ./ntkserve-data)\n"
    "  --backend auto|cpu|cuda:N compute backend (default auto: the first CUDA device, else CPU)\n"
    "  --metrics HOST:PORT|off   Prometheus endpoint /metrics (default 127.0.0.1:9464)\n"
    "  --config FILE.yaml        settings file (keys: the flag names with _ for -, tls: {cert, key, "
    "client_ca})\n"
    "  --token-file FILE         API tokens, one 'TOKEN TENANT' per line; unset: no authentication\n"
    "  --tls-cert F --tls-key F  serve TLS; --tls-client-ca F requires client certificates (mTLS)\n"
    "  --workers N               concurrent fit jobs (default 1)\n"
    "  --max-queued-jobs N       queued fits beyond which Fit answers RESOURCE_EXHAUSTED (default 64)\n"
    "  --predict-slots N         concurrent predictions / kernels (default 2)\n"
    "  --threads N               CPU threads per computation (default: all)\n"
    "  --memory-budget BYTES     memory the server may hold for data and work (e.g. 8G; default: half\n"
    "                            of the host's memory, or 90% of the GPU's)\n"
    "  --no-evict                never drop idle datasets from memory (default: drop, reload from disk)\n"
    "  --max-message-bytes N     largest request message (default 64M)\n"
    "  --max-dataset-bytes N     largest dataset (default 16G)\n"
    "  --shutdown-grace SECONDS  SIGTERM drain time (default 30)\n"
    "  --log-level debug|info|warning|error\n"
    "Environment: NTK_SERVER_LISTEN, NTK_SERVER_DATA_DIR, ... (the flag in capitals), NTK_SERVER_CONFIG.\n"
    "Precedence: flags > environment > config file > defaults.\n";

std::uint64_t parse_byte_size(const std::string& text, const std::string& what) {
  if (text.empty()) throw ntk::InvalidArgument(what + ": empty byte size");
  std::size_t pos = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &pos);
  } catch (const std::exception&) {
    throw ntk::InvalidArgument(what + ": '" + text + "' is not a byte size (e.g. 1048576, 512M, 8G)");
  }
  std::string suffix = text.substr(pos);
  if (!suffix.empty() && (suffix.back() == 'B' || suffix.back() == 'b')) suffix.pop_back();
  if (!suffix.empty() && (suffix.back() == 'i')) suffix.pop_back();
  int shift = 0;
  if (suffix.size() == 1) {
    switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      default:
        shift = -1;
    }
  } else if (!suffix.empty()) {
    shift = -1;
  }
  if (shift < 0) throw ntk::InvalidArgument(what + ": unknown size suffix in '" + text + "'");
  if (shift > 0 && value > (~0ull >> shift))
    throw ntk::InvalidArgument(what + ": '" + text + "' is too large");
  return static_cast<std::uint64_t>(value) << shift;
}

namespace {

using Setter = std::function<void(ServerOptions&, const std::string& value, const std::string& where)>;

int parse_int(const std::string& v, const std::string& where, int lo, int hi) {
  std::size_t pos = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != v.size() || v.empty() || x < lo || x > hi)
    throw ntk::InvalidArgument(where + ": '" + v + "' is not an integer in [" + std::to_string(lo) + ", " +
                               std::to_string(hi) + "]");
  return static_cast<int>(x);
}

double parse_seconds(const std::string& v, const std::string& where) {
  std::size_t pos = 0;
  double x = -1;
  try {
    x = std::stod(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != v.size() || !(x >= 0 && x <= 86400))
    throw ntk::InvalidArgument(where + ": '" + v + "' is not a number of seconds in [0, 86400]");
  return x;
}

bool parse_bool(const std::string& v, const std::string& where) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw ntk::InvalidArgument(where + ": '" + v + "' is not a boolean (true/false)");
}

// Setting name (flag spelling without the dashes) -> how to apply it.
const std::map<std::string, Setter>& setters() {
  static const std::map<std::string, Setter> table = {
      {"listen",
       [](ServerOptions& o, const std::string& v, const std::string& w) {
         if (v.find(':') == std::string::npos)
           throw ntk::InvalidArgument(w + ": '" + v + "' is not HOST:PORT");
         o.listen = v;
       }},
      {"data-dir",
       [](ServerOptions& o, const std::string& v, const std::string& w) {
         if (v.empty()) throw ntk::InvalidArgument(w + ": empty directory");
         o.data_dir = v;
       }},
      {"backend", [](ServerOptions& o, const std::string& v, const std::string&) { o.backend = v; }},
      {"metrics",
       [](ServerOptions& o, const std::string& v, const std::string& w) {
         if (v != "off" && !v.empty() && v.find(':') == std::string::npos)
           throw ntk::InvalidArgument(w + ": '" + v + "' is not HOST:PORT or off");
         o.metrics = v == "off" ? "" : v;
       }},
      {"token-file", [](ServerOptions& o, const std::string& v, const std::string&) { o.token_file = v; }},
      {"tls-cert", [](ServerOptions& o, const std::string& v, const std::string&) { o.tls.cert_file = v; }},
      {"tls-key", [](ServerOptions& o, const std::string& v, const std::string&) { o.tls.key_file = v; }},
      {"tls-client-ca",
       [](ServerOptions& o, const std::string& v, const std::string&) { o.tls.client_ca_file = v; }},
      {"workers", [](ServerOptions& o, const std::string& v,
                     const std::string& w) { o.workers = parse_int(v, w, 1, 256); }},
      {"max-queued-jobs", [](ServerOptions& o, const std::string& v,
                             const std::string& w) { o.max_queued_jobs = parse_int(v, w, 1, 1000000); }},
      {"predict-slots", [](ServerOptions& o, const std::string& v,
                           const std::string& w) { o.predict_slots = parse_int(v, w, 1, 1024); }},
      {"threads", [](ServerOptions& o, const std::string& v,
                     const std::string& w) { o.threads = parse_int(v, w, 0, 4096); }},
      {"memory-budget", [](ServerOptions& o, const std::string& v,
                           const std::string& w) { o.memory_budget_bytes = parse_byte_size(v, w); }},
      {"evict", [](ServerOptions& o, const std::string& v,
                   const std::string& w) { o.evict_idle_datasets = parse_bool(v, w); }},
      {"max-message-bytes",
       [](ServerOptions& o, const std::string& v, const std::string& w) {
         const auto b = parse_byte_size(v, w);
         if (b < 4096 || b > (1ull << 31) - 1) throw ntk::InvalidArgument(w + ": must be in [4 KiB, 2 GiB)");
         o.max_message_bytes = static_cast<std::int64_t>(b);
       }},
      {"max-dataset-bytes",
       [](ServerOptions& o, const std::string& v, const std::string& w) {
         o.max_dataset_bytes = static_cast<std::int64_t>(parse_byte_size(v, w));
       }},
      {"shutdown-grace", [](ServerOptions& o, const std::string& v,
                            const std::string& w) { o.shutdown_grace_seconds = parse_seconds(v, w); }},
      {"log-level",
       [](ServerOptions& o, const std::string& v, const std::string& w) {
         if (v != "debug" && v != "info" && v != "warning" && v != "error" && v != "off")
           throw ntk::InvalidArgument(w + ": '" + v + "' is not debug|info|warning|error|off");
         o.log_level = v;
       }},
  };
  return table;
}

std::string env_name(const std::string& setting) {
  std::string name = "NTK_SERVER_";
  for (char c : setting)
    name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

void apply(ServerOptions& o, const std::string& name, const std::string& value, const std::string& where) {
  const auto it = setters().find(name);
  if (it == setters().end()) throw ntk::InvalidArgument(where + ": unknown setting");
  it->second(o, value, where);
}

void apply_yaml(ServerOptions& o, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ntk::InvalidArgument("config file " + path + ": cannot be read");
  } catch (const YAML::Exception& e) {
    throw ntk::InvalidArgument("config file " + path + ": " + e.what());
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) throw ntk::InvalidArgument("config file " + path + ": expected a mapping of settings");
  for (const auto& entry : root) {
    std::string key = entry.first.as<std::string>();
    for (char& c : key)
      if (c == '_') c = '-';
    if (key == "memory-budget-bytes") key = "memory-budget";  // the documented YAML spelling
    const std::string where = "config file " + path + ": " + key;
    if (key == "tls") {
      if (!entry.second.IsMap()) throw ntk::InvalidArgument(where + ": expected {cert, key, client_ca}");
      for (const auto& t : entry.second) {
        const std::string k = t.first.as<std::string>();
        const std::string v = t.second.as<std::string>();
        if (k == "cert")
          o.tls.cert_file = v;
        else if (k == "key")
          o.tls.key_file = v;
        else if (k == "client_ca")
          o.tls.client_ca_file = v;
        else
          throw ntk::InvalidArgument(where + "." + k + ": unknown setting");
      }
      continue;
    }
    if (!entry.second.IsScalar()) throw ntk::InvalidArgument(where + ": expected a single value");
    apply(o, key, entry.second.as<std::string>(), where);
  }
}

}  // namespace

ServerOptions load_options(const std::vector<std::string>& args) {
  // Flags first into a list, so that precedence does not depend on where --config appears.
  std::vector<std::pair<std::string, std::string>> flags;
  std::string config = std::getenv("NTK_SERVER_CONFIG") ? std::getenv("NTK_SERVER_CONFIG") : "";
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0) throw ntk::InvalidArgument("unexpected argument '" + a + "' (see --help)");
    a = a.substr(2);
    std::string value;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (a == "no-evict") {
      flags.emplace_back("evict", "false");
      continue;
    } else {
      if (i + 1 >= args.size()) throw ntk::InvalidArgument("--" + a + ": missing value");
      value = args[++i];
    }
    if (a == "config") {
      config = value;
      continue;
    }
    if (!setters().count(a)) throw ntk::InvalidArgument("unknown option --" + a + " (see --help)");
    flags.emplace_back(a, value);
  }
  ServerOptions o;
  if (!config.empty()) apply_yaml(o, config);
  for (const auto& [name, setter] : setters()) {
    (void)setter;
    const std::string var = env_name(name);
    if (const char* v = std::getenv(var.c_str())) apply(o, name, v, "environment " + var);
  }
  for (const auto& [name, value] : flags) apply(o, name, value, "--" + name);
  if (o.tls.cert_file.empty() != o.tls.key_file.empty())
    throw ntk::InvalidArgument("TLS needs both --tls-cert and --tls-key");
  if (!o.tls.client_ca_file.empty() && o.tls.cert_file.empty())
    throw ntk::InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key");
  return o;
}

}  // namespace ntkserver
