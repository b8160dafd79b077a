#include "ntkserve/version.hpp"
#include "services.hpp"

namespace ntkserver {

grpc::Status ServerServiceImpl::GetServerInfo(grpc::ServerContext* ctx, const pb::GetServerInfoRequest*,
                                              pb::ServerInfo* response) {
  return handle(rt_, ctx, "GetServerInfo", [&](Call& call) {
    response->set_version(kNtkserveVersion);
    response->set_backend(rt_.backends.name());
    response->set_backend_description(rt_.backends.description());
    response->set_memory_budget_bytes(static_cast<std::int64_t>(rt_.budget.total()));
    response->set_memory_in_use_bytes(static_cast<std::int64_t>(rt_.budget.in_use()));
    response->set_workers(rt_.options.workers);
    response->set_queued_jobs(rt_.jobs->queued());
    response->set_running_jobs(rt_.jobs->running());
    response->set_predict_slots(rt_.options.predict_slots);
    response->set_tenant(call.tenant());
    response->set_tls(!rt_.options.tls.cert_file.empty());
    response->set_authentication(rt_.tokens.enabled());
    const ntk::DeviceMemoryStats device = rt_.backends.device_memory();
    response->set_device_memory_budget_bytes(static_cast<std::int64_t>(device.budget));
    response->set_device_memory_in_use_bytes(static_cast<std::int64_t>(device.in_use));
    response->set_device_memory_free_bytes(static_cast<std::int64_t>(device.device_free));
    response->set_uptime_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - rt_.started).count());
  });
}

}  // namespace ntkserver
