#include "server.hpp"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <fstream>
#include <sstream>

#include "ntk/errors.hpp"
#include "ntk/logging.hpp"
#include "services/services.hpp"

namespace ntkserver {

namespace {

std::string read_pem(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw ntk::InvalidArgument(std::string(what) + " " + path + ": cannot be read");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const char* const kServiceNames[] = {"ntkserve.v1.DatasetService", "ntkserve.v1.ModelService",
                                     "ntkserve.v1.PredictService", "ntkserve.v1.KernelService",
                                     "ntkserve.v1.ServerService",  "inference.GRPCInferenceService"};

}  // namespace

Server::Server(const ServerOptions& options) : options_(options) {}

Server::~Server() {
  if (server_) shutdown();
}

void Server::start() {
  runtime_ = std::make_unique<Runtime>(options_);
  Runtime& rt = *runtime_;
  rt.store.load_index();
  rt.jobs = std::make_unique<JobQueue>([&rt](Job& job) { run_fit_job(rt, job); }, options_.workers,
                                       options_.max_queued_jobs);
  int requeued = 0;
  for (const auto& pending : rt.store.pending_jobs()) {
    try {
      (void)rt.store.model_info(pending.tenant, pending.id);
      rt.store.remove_job(pending.tenant, pending.id);  // finished just before the crash
      continue;
    } catch (const ntk::NotFound&) {
    }
    pb::FitRequest request;
    if (!request.ParseFromString(pending.request_bytes)) {
      ntk::log_warning("job " + pending.id + ": unreadable request; dropped");
      rt.store.remove_job(pending.tenant, pending.id);
      continue;
    }
    try {
      rt.jobs->submit(std::make_shared<Job>(pending.tenant, pending.id, request));
      ++requeued;
    } catch (const ntk::Error& e) {
      ntk::log_warning("job " + pending.id + " not re-queued now (" + e.what() + "); it stays on disk");
    }
  }
  if (requeued)
    ntk::log_info("re-queued " + std::to_string(requeued) + " fit job(s) interrupted by the last stop");

  datasets_ = std::make_unique<DatasetServiceImpl>(rt);
  models_ = std::make_unique<ModelServiceImpl>(rt);
  predict_ = std::make_unique<PredictServiceImpl>(rt);
  kernel_ = std::make_unique<KernelServiceImpl>(rt);
  inference_ = std::make_unique<InferenceServiceImpl>(rt);
  server_info_ = std::make_unique<ServerServiceImpl>(rt);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options_.tls.cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl(options_.tls.client_ca_file.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_key_cert_pairs.push_back(
        {read_pem(options_.tls.key_file, "--tls-key"), read_pem(options_.tls.cert_file, "--tls-cert")});
    if (!options_.tls.client_ca_file.empty())
      ssl.pem_root_certs = read_pem(options_.tls.client_ca_file, "--tls-client-ca");
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }
  builder.AddListeningPort(options_.listen, credentials, &port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(
      static_cast<int>(std::max<std::int64_t>(options_.max_message_bytes, 64ll << 20)));
  builder.RegisterService(datasets_.get());
  builder.RegisterService(models_.get());
  builder.RegisterService(predict_.get());
  builder.RegisterService(kernel_.get());
  builder.RegisterService(inference_.get());
  builder.RegisterService(server_info_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0)
    throw ntk::Unavailable("cannot listen on " + options_.listen + " (address in use or invalid?)");
  auto* health = server_->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const char* name : kServiceNames) health->SetServingStatus(name, true);
  ntk::log_info(
      "ntk-server listening on " + options_.listen + " (port " + std::to_string(port_) + ", " +
      (options_.tls.cert_file.empty()        ? "plaintext"
       : options_.tls.client_ca_file.empty() ? "TLS"
                                             : "mutual TLS") +
      ", " +
      (rt.tokens.enabled() ? std::to_string(rt.tokens.size()) + " API token(s)" : "no authentication") +
      "), backend " + rt.backends.name() + " [" + rt.backends.description() + "], memory budget " +
      std::to_string(rt.budget.total()) + " bytes, data " + options_.data_dir +
      (options_.metrics.empty() ? ""
                                : ", metrics on port " + std::to_string(rt.metrics.port()) + " (/metrics)"));
}

void Server::wait() {
  if (server_) server_->Wait();
}

void Server::shutdown() {
  if (!server_ || !runtime_) return;
  Runtime& rt = *runtime_;
  if (rt.draining.exchange(true)) return;
  ntk::log_info("shutting down: draining calls for up to " + std::to_string(options_.shutdown_grace_seconds) +
                " s");
  server_->GetHealthCheckService()->Shutdown();
  const auto grace =
      std::chrono::milliseconds(static_cast<long long>(options_.shutdown_grace_seconds * 1000));
  // Running fits get the same grace; whatever is left is interrupted (and re-run after a restart) so that
  // watchers see the end of their streams before the server stops.
  std::thread jobs_stop([&] { rt.jobs->shutdown(grace); });
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  jobs_stop.join();
  ntk::log_info("stopped");
}

}  // namespace ntkserver
