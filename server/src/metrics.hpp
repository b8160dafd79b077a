#pragma once
// Prometheus metrics (prometheus-cpp's core), served on their own HTTP port at /metrics.
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "metrics_http.hpp"
#include "ntk/backend.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace ntkserver {

class Metrics {
 public:
  // address empty: metrics are counted but not served.
  explicit Metrics(const std::string& address);
  void record_request(const std::string& method, const std::string& code, double seconds);
  void record_fit(const std::string& outcome, double seconds, int newton_steps);
  void record_upload_bytes(std::int64_t bytes);
  void set_state(double memory_in_use, double memory_total, double memory_peak, double uncertainty_cache,
                 double datasets, double models, double queue_depth, double running_fits);
  // The device backend's pool (all zero on the CPU backend).
  void set_device_memory(const ntk::DeviceMemoryStats& device);
  // A device allocation that did not fit asked the server's idle cached work for room, which gave back
  // `freed` bytes (0: nothing was idle).
  void record_device_reclaim(std::uint64_t freed);
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  int port() const { return endpoint_ ? endpoint_->port() : 0; }  // the bound port (for address :0)

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsEndpoint> endpoint_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& fits_;
  prometheus::Histogram& fit_seconds_;
  prometheus::Histogram& fit_steps_;
  prometheus::Counter& upload_bytes_;
  prometheus::Gauge& memory_in_use_;
  prometheus::Gauge& memory_total_;
  prometheus::Gauge& memory_peak_;
  prometheus::Gauge& uncertainty_cache_bytes_;
  prometheus::Gauge& datasets_;
  prometheus::Gauge& models_;
  prometheus::Gauge& queue_depth_;
  prometheus::Gauge& running_fits_;
  prometheus::Gauge& device_budget_;
  prometheus::Gauge& device_in_use_;
  prometheus::Gauge& device_peak_;
  prometheus::Gauge& device_free_;
  prometheus::Counter& device_reclaims_;
  prometheus::Counter& device_reclaimed_bytes_;
  std::mutex mutex_;  // Family::Add is thread-safe; the lookups of latency histograms by label are not cached
};

}  // namespace ntkserver
