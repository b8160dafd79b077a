#include "metrics.hpp"

#include "ntk/errors.hpp"

namespace ntkserver {

namespace {
prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300};
}
prometheus::Gauge& gauge(prometheus::Registry& registry, const char* name, const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}
prometheus::Counter& counter(prometheus::Registry& registry, const char* name, const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}
}  // namespace

Metrics::Metrics(const std::string& address)
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("ntkserve_requests_total")
                    .Help("RPCs handled, by method and status code")
                    .Register(*registry_)),
      latency_(prometheus::BuildHistogram()
                   .Name("ntkserve_request_duration_seconds")
                   .Help("RPC latency by method, from the first byte to the status")
                   .Register(*registry_)),
      fits_(prometheus::BuildCounter()
                .Name("ntkserve_fits_total")
                .Help("Fit jobs finished, by outcome")
                .Register(*registry_)),
      fit_seconds_(prometheus::BuildHistogram()
                       .Name("ntkserve_fit_duration_seconds")
                       .Help("Wall time of fit jobs (kernel, Newton, saving)")
                       .Register(*registry_)
                       .Add({}, prometheus::Histogram::BucketBoundaries{0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60,
                                                                        300, 1800, 7200})),
      fit_steps_(prometheus::BuildHistogram()
                     .Name("ntkserve_fit_newton_steps")
                     .Help("Newton steps per fit")
                     .Register(*registry_)
                     .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 3, 5, 8, 13, 20, 30, 50, 100})),
      upload_bytes_(prometheus::BuildCounter()
                        .Name("ntkserve_upload_bytes_total")
                        .Help("Dataset bytes received")
                        .Register(*registry_)
                        .Add({})),
      memory_in_use_(
          prometheus::BuildGauge()
              .Name("ntkserve_memory_in_use_bytes")
              .Help("Bytes reserved in the server's memory budget (datasets, models, jobs, cached contexts)")
              .Register(*registry_)
              .Add({})),
      memory_total_(prometheus::BuildGauge()
                        .Name("ntkserve_memory_total_bytes")
                        .Help("The compute memory budget")
                        .Register(*registry_)
                        .Add({})),
      memory_peak_(prometheus::BuildGauge()
                       .Name("ntkserve_memory_peak_bytes")
                       .Help("Largest reservation total since start")
                       .Register(*registry_)
                       .Add({})),
      uncertainty_cache_bytes_(
          prometheus::BuildGauge()
              .Name("ntkserve_uncertainty_cache_bytes")
              .Help("Bytes of the memory budget held by cached uncertainty contexts (reclaimed "
                    "when idle and the budget needs room)")
              .Register(*registry_)
              .Add({})),
      datasets_(prometheus::BuildGauge()
                    .Name("ntkserve_datasets")
                    .Help("Stored datasets")
                    .Register(*registry_)
                    .Add({})),
      models_(prometheus::BuildGauge()
                  .Name("ntkserve_models")
                  .Help("Stored models")
                  .Register(*registry_)
                  .Add({})),
      queue_depth_(prometheus::BuildGauge()
                       .Name("ntkserve_fit_queue_depth")
                       .Help("Fit jobs waiting for a worker")
                       .Register(*registry_)
                       .Add({})),
      running_fits_(prometheus::BuildGauge()
                        .Name("ntkserve_fits_running")
                        .Help("Fit jobs running now")
                        .Register(*registry_)
                        .Add({})),
      device_budget_(gauge(*registry_, "ntkserve_device_memory_budget_bytes",
                           "Device memory the GPU backend's pool may hold (0 on the CPU backend)")),
      device_in_use_(gauge(*registry_, "ntkserve_device_memory_in_use_bytes",
                           "Device memory allocated by the GPU backend now")),
      device_peak_(gauge(*registry_, "ntkserve_device_memory_peak_bytes",
                         "Largest device memory allocated by the GPU backend since start")),
      device_free_(gauge(*registry_, "ntkserve_device_memory_free_bytes",
                         "Device memory free as the driver sees it (other processes included)")),
      device_reclaims_(counter(*registry_, "ntkserve_device_reclaims_total",
                               "Device allocations that did not fit and asked idle cached work for room")),
      device_reclaimed_bytes_(
          counter(*registry_, "ntkserve_device_reclaimed_bytes_total",
                  "Bytes idle cached kernel products and uncertainty contexts gave back to "
                  "device allocations")) {
  if (!address.empty()) {
    try {
      endpoint_ = std::make_unique<MetricsEndpoint>(address, registry_);
    } catch (const ntk::Error& e) {
      throw ntk::Unavailable(std::string(e.what()) + " (choose another --metrics address or 'off')");
    }
  }
}

void Metrics::record_request(const std::string& method, const std::string& code, double seconds) {
  requests_.Add({{"method", method}, {"code", code}}).Increment();
  latency_.Add({{"method", method}}, latency_buckets()).Observe(seconds);
}

void Metrics::record_fit(const std::string& outcome, double seconds, int newton_steps) {
  fits_.Add({{"outcome", outcome}}).Increment();
  fit_seconds_.Observe(seconds);
  fit_steps_.Observe(newton_steps);
}

void Metrics::record_upload_bytes(std::int64_t bytes) {
  upload_bytes_.Increment(static_cast<double>(bytes));
}

void Metrics::set_device_memory(const ntk::DeviceMemoryStats& device) {
  device_budget_.Set(static_cast<double>(device.budget));
  device_in_use_.Set(static_cast<double>(device.in_use));
  device_peak_.Set(static_cast<double>(device.peak));
  device_free_.Set(static_cast<double>(device.device_free));
}

void Metrics::record_device_reclaim(std::uint64_t freed) {
  device_reclaims_.Increment();
  device_reclaimed_bytes_.Increment(static_cast<double>(freed));
}

void Metrics::set_state(double memory_in_use, double memory_total, double memory_peak,
                        double uncertainty_cache, double datasets, double models, double queue_depth,
                        double running_fits) {
  memory_in_use_.Set(memory_in_use);
  uncertainty_cache_bytes_.Set(uncertainty_cache);
  memory_total_.Set(memory_total);
  memory_peak_.Set(memory_peak);
  datasets_.Set(datasets);
  models_.Set(models);
  queue_depth_.Set(queue_depth);
  running_fits_.Set(running_fits);
}

}  // namespace ntkserver
