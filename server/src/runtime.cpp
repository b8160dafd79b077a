#include "runtime.hpp"

#include <cstdio>
#include <ctime>
#include <random>
#include <sstream>

#include "ntk/errors.hpp"
#include "ntk/logging.hpp"

namespace ntkserver {

namespace {

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string random_hex(int digits) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char hex[] = "0123456789abcdef";
  std::string s(static_cast<std::size_t>(digits), '0');
  for (auto& c : s) c = hex[rng() & 15];
  return s;
}

std::optional<std::string> metadata(grpc::ServerContext* context, const char* key) {
  const auto& md = context->client_metadata();
  const auto it = md.find(key);
  if (it == md.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

BackendPool::BackendPool(const std::string& name, const ntk::BackendOptions& options, int slots) {
  if (slots < 1) throw ntk::InvalidArgument("a backend pool needs at least one slot");
  for (int i = 0; i < slots; ++i) {
    ntk::BackendOptions instance = options;
    // The instances share the device's pool: one registration of the reclaimer is enough (each would be
    // asked in turn, and all but the first find nothing left).
    if (i > 0) instance.reclaim_device_memory = nullptr;
    free_.push_back(ntk::make_backend(name, instance));
  }
  any_ = free_.front().get();
  name_ = free_.front()->name();
  description_ = free_.front()->description();
}

BackendPool::Lease::~Lease() {
  if (!backend_) return;
  {
    std::lock_guard lock(pool_->mutex_);
    pool_->free_.push_back(std::move(backend_));
  }
  pool_->returned_.notify_one();
}

BackendPool::Lease BackendPool::acquire(const std::function<void()>& check_alive) {
  std::unique_lock lock(mutex_);
  while (free_.empty()) {
    returned_.wait_for(lock, std::chrono::milliseconds(50));
    if (check_alive) {
      lock.unlock();
      check_alive();
      lock.lock();
    }
  }
  auto backend = std::move(free_.back());
  free_.pop_back();
  return Lease(*this, std::move(backend));
}

namespace {
ntk::BackendOptions backend_options(const ServerOptions& o, ntk::MemoryReclaimer reclaimer) {
  ntk::BackendOptions b;
  b.threads = o.threads;
  b.device_memory_budget = o.memory_budget_bytes;
  b.reclaim_device_memory = std::move(reclaimer);
  return b;
}
}  // namespace

Runtime::Runtime(const ServerOptions& o)
    : options(o),
      tokens(o.token_file.empty() ? TokenStore() : TokenStore::from_file(o.token_file)),
      backends(o.backend, backend_options(o, gated_device_reclaimer(reclaim_gate)),
               o.workers + o.predict_slots),
      budget(o.memory_budget_bytes ? o.memory_budget_bytes : default_host_budget()),
      store(o.data_dir, budget, o.evict_idle_datasets),
      metrics(o.metrics) {
  // Idle datasets and models first (they reload from disk quickly), then idle uncertainty contexts
  // (seconds to recompute).
  budget.set_reclaimer([this](std::uint64_t missing) {
    std::uint64_t freed = store.reclaim(missing);
    if (freed < missing) freed += uncertainty_contexts.reclaim(missing - freed);
    return freed;
  });
  std::lock_guard lock(reclaim_gate->mutex);
  reclaim_gate->runtime = this;
}

Runtime::~Runtime() {
  std::lock_guard lock(reclaim_gate->mutex);
  reclaim_gate->runtime = nullptr;
}

ntk::MemoryReclaimer gated_device_reclaimer(std::shared_ptr<ReclaimGate> gate) {
  return [gate = std::move(gate)](std::uint64_t missing) -> std::uint64_t {
    std::lock_guard lock(gate->mutex);
    return gate->runtime ? gate->runtime->reclaim_device_memory(missing) : 0;
  };
}

void Runtime::refresh_gauges() {
  uncertainty_contexts.drop_expired();  // contexts of deleted or evicted models give their memory back
  metrics.set_state(static_cast<double>(budget.in_use()), static_cast<double>(budget.total()),
                    static_cast<double>(budget.peak()), static_cast<double>(uncertainty_contexts.bytes()),
                    static_cast<double>(store.dataset_count()), static_cast<double>(store.model_count()),
                    jobs ? jobs->queued() : 0, jobs ? jobs->running() : 0);
  metrics.set_device_memory(backends.device_memory());
}

std::uint64_t Runtime::reclaim_device_memory(std::uint64_t missing) {
  std::uint64_t freed = products.reclaim(missing);
  if (freed < missing) freed += uncertainty_contexts.reclaim(missing - freed);
  metrics.record_device_reclaim(freed);
  ntk::log_info("device memory short by " + std::to_string(missing) + " bytes: idle cached work gave back " +
                std::to_string(freed) + " bytes");
  return freed;
}

std::string Runtime::new_model_id() {
  return "m-" + random_hex(16);
}

Call::Call(Runtime& runtime, grpc::ServerContext* context, const char* method)
    : runtime_(runtime), context_(context), method_(method) {
  auto id = metadata(context, "x-request-id");
  request_id_ = id && !id->empty() && id->size() <= 128 ? *id : random_hex(16);
  context->AddInitialMetadata("x-request-id", request_id_);
}

grpc::Status authenticate(Call& call) {
  auto tenant = call.runtime_.tokens.tenant_for(metadata(call.context_, "authorization"));
  if (!tenant)
    return {grpc::StatusCode::UNAUTHENTICATED,
            "missing or unknown API token: send metadata 'authorization: Bearer TOKEN' (ntkctl --token)"};
  call.tenant_ = *tenant;
  call.authenticated_ = true;
  return grpc::Status::OK;
}

void Call::check_alive() const {
  if (!context_->IsCancelled()) return;
  if (context_->deadline() <= std::chrono::system_clock::now())
    throw ntk::DeadlineExceeded(std::string(method_) + ": the client's deadline passed");
  throw ntk::Cancelled(std::string(method_) + ": cancelled by the client");
}

grpc::Status Call::finish(grpc::Status status) {
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const char* code = status_code_name(status.error_code());
  runtime_.metrics.record_request(method_, code, seconds);
  runtime_.refresh_gauges();
  const bool failed = !status.ok();
  const ntk::LogLevel level = failed && status.error_code() == grpc::StatusCode::INTERNAL
                                  ? ntk::LogLevel::error
                              : failed ? ntk::LogLevel::info
                                       : ntk::LogLevel::debug;
  if (level >= ntk::log_level()) {
    std::ostringstream line;
    line << "{\"time\":\"" << utc_now() << "\",\"level\":\""
         << (level == ntk::LogLevel::error  ? "error"
             : level == ntk::LogLevel::info ? "info"
                                            : "debug")
         << "\",\"request_id\":\"" << json_escape(request_id_) << "\",\"method\":\"" << method_
         << "\",\"tenant\":\"" << json_escape(tenant_) << "\",\"peer\":\"" << json_escape(context_->peer())
         << "\",\"code\":\"" << code << "\",\"ms\":" << seconds * 1e3;
    if (failed) line << ",\"message\":\"" << json_escape(status.error_message()) << "\"";
    if (!detail_.empty()) line << ",\"detail\":\"" << json_escape(detail_) << "\"";
    line << "}\n";
    std::fputs(line.str().c_str(), stderr);
  }
  return status;
}

}  // namespace ntkserver
