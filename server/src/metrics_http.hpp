#pragma once
// The /metrics HTTP endpoint, served by one plain thread (Prometheus text format 0.0.4).
//
// Why not prometheus-cpp's Exposer: it runs civetweb, whose threads get a small fixed stack, and in a
// CUDA build the CUDA libraries' static thread-local storage is larger than that stack, so
// pthread_create fails and the endpoint never starts. A std::thread has the default stack.
#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

namespace ntkserver {

class MetricsEndpoint {
 public:
  // address "HOST:PORT" (PORT 0: any free port). Throws ntk::Unavailable when it cannot listen.
  MetricsEndpoint(const std::string& address, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;
  int port() const { return port_; }

 private:
  void serve();
  void answer(int connection);
  std::shared_ptr<prometheus::Registry> registry_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace ntkserver
