#pragma once
// What every service shares: options, authentication, the memory budget, the store, the job queue,
// the compute backends and the metrics; and Call, the wrapper every RPC handler runs in.
#include <grpcpp/server_context.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "auth.hpp"
#include "jobs.hpp"
#include "memory_budget.hpp"
#include "metrics.hpp"
#include "ntk/backend.hpp"
#include "options.hpp"
#include "product_cache.hpp"
#include "status.hpp"
#include "store.hpp"
#include "uncertainty_cache.hpp"

namespace ntkserver {

// A fixed number of backend instances; computations lease one each, so that at most `slots` run at once
// and a device's handles and streams are never shared between threads.
class BackendPool {
 public:
  BackendPool(const std::string& name, const ntk::BackendOptions& options, int slots);
  class Lease {
   public:
    Lease(BackendPool& pool, std::unique_ptr<ntk::Backend> backend)
        : pool_(&pool), backend_(std::move(backend)) {}
    Lease(Lease&&) = default;
    ~Lease();
    ntk::Backend& operator*() const { return *backend_; }
    ntk::Backend* operator->() const { return backend_.get(); }

   private:
    BackendPool* pool_;
    std::unique_ptr<ntk::Backend> backend_;
  };
  // Waits for a free instance; `alive` is polled so that a cancelled caller stops waiting.
  Lease acquire(const std::function<void()>& check_alive);
  const std::string& name() const { return name_; }
  const std::string& description() const { return description_; }
  // The device pool's accounting, shared by the instances (all zero on the CPU backend); safe while
  // instances are leased.
  ntk::DeviceMemoryStats device_memory() const { return any_->device_memory(); }

 private:
  std::mutex mutex_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<ntk::Backend>> free_;
  std::string name_, description_;
  const ntk::Backend* any_ = nullptr;  // one of the instances, which live as long as the pool
};

struct Runtime;

// What the device pool's reclaimer goes through to reach a Runtime: open (runtime set) only while the
// Runtime is whole, from the end of its constructor to the start of its destructor, which waits for a
// call in flight. The pool is shared per device and outlives the Runtime's caches.
struct ReclaimGate {
  std::mutex mutex;
  Runtime* runtime = nullptr;
};
// The reclaimer a Runtime gives its device backends: the runtime's reclaim_device_memory while the gate
// is open, else nothing to give back.
ntk::MemoryReclaimer gated_device_reclaimer(std::shared_ptr<ReclaimGate> gate);

struct Runtime {
  explicit Runtime(const ServerOptions& options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  ServerOptions options;
  TokenStore tokens;
  std::shared_ptr<ReclaimGate> reclaim_gate = std::make_shared<ReclaimGate>();  // before backends
  BackendPool backends;
  ProductCache products;  // after backends: its device memory goes back before they are destroyed
  MemoryBudget budget;
  Store store;
  UncertaintyCache uncertainty_contexts{budget};  // after budget: its reservations go back first
  Metrics metrics;
  std::unique_ptr<JobQueue> jobs;
  std::atomic<bool> draining{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  void refresh_gauges();
  std::string new_model_id();
  // A device backend's pool is short of `missing` bytes: idle kernel products (cheap to remake), then
  // idle uncertainty contexts (seconds to recompute) give their device memory back.
  std::uint64_t reclaim_device_memory(std::uint64_t missing);
};

// One RPC: authentication, a request id, cancellation checks, and on the way out the status
// mapping, metrics and one structured log line.
class Call {
 public:
  Call(Runtime& runtime, grpc::ServerContext* context, const char* method);
  const std::string& tenant() const { return tenant_; }
  const std::string& request_id() const { return request_id_; }
  grpc::ServerContext* context() const { return context_; }
  Runtime& runtime() const { return runtime_; }
  // Throws Cancelled or DeadlineExceeded when the client went away or its deadline passed.
  void check_alive() const;
  void note(std::string detail) { detail_ = std::move(detail); }  // added to the log line
  grpc::Status finish(grpc::Status status);

 private:
  Runtime& runtime_;
  grpc::ServerContext* context_;
  const char* method_;
  std::string tenant_, request_id_, detail_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool authenticated_ = false;
  friend grpc::Status authenticate(Call&);
};

grpc::Status authenticate(Call& call);

template <class Body>
grpc::Status handle(Runtime& runtime, grpc::ServerContext* context, const char* method,
                    Body&& body) noexcept {
  Call call(runtime, context, method);
  grpc::Status status = authenticate(call);
  if (!status.ok()) return call.finish(status);
  try {
    body(call);
    status = grpc::Status::OK;
  } catch (...) {
    status = to_status(std::current_exception());
  }
  return call.finish(status);
}

// Fits a queued job: the worker body of the job queue.
void run_fit_job(Runtime& runtime, Job& job);

// Checks a fit request against the dataset before it is queued (the same checks the worker repeats).
struct FitInputs;
void check_fit_request(Runtime& runtime, const std::string& tenant, const pb::FitRequest& request);

}  // namespace ntkserver
