#pragma once
// Building, running and draining ntk-server.
#include <grpcpp/server.h>

#include <memory>

#include "options.hpp"

namespace ntkserver {

struct Runtime;
class DatasetServiceImpl;
class ModelServiceImpl;
class PredictServiceImpl;
class KernelServiceImpl;
class InferenceServiceImpl;
class ServerServiceImpl;

class Server {
 public:
  explicit Server(const ServerOptions& options);
  ~Server();
  // Loads the store, re-queues interrupted jobs and starts listening. Throws on a bad address,
  // unreadable TLS files or a data directory that cannot be used.
  void start();
  int port() const { return port_; }
  // Blocks until shutdown() has completed.
  void wait();
  // Health to NOT_SERVING, no new calls; in-flight calls get the grace period, then are cancelled;
  // running fits are interrupted and re-run after the next start.
  void shutdown();

 private:
  ServerOptions options_;
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<DatasetServiceImpl> datasets_;
  std::unique_ptr<ModelServiceImpl> models_;
  std::unique_ptr<PredictServiceImpl> predict_;
  std::unique_ptr<KernelServiceImpl> kernel_;
  std::unique_ptr<InferenceServiceImpl> inference_;
  std::unique_ptr<ServerServiceImpl> server_info_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace ntkserver
