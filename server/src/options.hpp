#pragma once
// ntk-server's settings: defaults that work on a laptop, overridden by a YAML file, then by
// environment variables, then by flags (the most specific source wins).
#include <cstdint>
#include <string>
#include <vector>

namespace ntkserver {

struct TlsOptions {
  std::string cert_file;       // PEM server certificate chain; empty: plaintext
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // PEM CA bundle; set: clients must present a certificate it signed
};

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";
  std::string data_dir = "ntkserve-data";
  std::string backend = "auto";
  std::string metrics = "127.0.0.1:9464";  // empty or "off": no metrics endpoint
  std::string token_file;                  // empty: no authentication, everything in tenant "default"
  TlsOptions tls;
  int workers = 1;                              // concurrent fit jobs per device
  int max_queued_jobs = 64;                     // beyond: RESOURCE_EXHAUSTED
  int predict_slots = 2;                        // concurrent predictions (each holds one backend instance)
  int threads = 0;                              // CPU threads per computation (0: all)
  std::uint64_t memory_budget_bytes = 0;        // 0: half the host's memory (CPU) / 90% of the device's
  bool evict_idle_datasets = true;              // under memory pressure, drop idle datasets to disk
  std::int64_t max_message_bytes = 64ll << 20;  // largest single request message
  std::int64_t max_dataset_bytes = 16ll << 30;  // largest uploaded dataset
  double shutdown_grace_seconds = 30;           // SIGTERM: time in-flight calls get to finish
  std::string log_level = "info";
};

// Parses argv (flags: --listen, --data-dir, --backend, --metrics, --config, --token-file,
// --tls-cert, --tls-key, --tls-client-ca, --workers, --max-queued-jobs, --predict-slots,
// --threads, --memory-budget, --no-evict, --max-message-bytes, --max-dataset-bytes,
// --shutdown-grace, --log-level), the environment (NTK_SERVER_<FLAG IN CAPITALS>) and the YAML
// file named by --config or NTK_SERVER_CONFIG. Throws ntk::InvalidArgument naming the bad
// setting and where it came from.
ServerOptions load_options(const std::vector<std::string>& args);

// Byte sizes: plain integers or with a K/M/G/T suffix (powers of 1024), e.g. "8G".
std::uint64_t parse_byte_size(const std::string& text, const std::string& what);

extern const char* const kServerHelp;

}  // namespace ntkserver
