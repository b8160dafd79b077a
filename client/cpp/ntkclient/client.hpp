#pragma once
// The C++ client of ntk-server: chunked uploads from memory or .npy files, fits with progress,
// streaming predictions, kernels, model export/import and health, with deadlines, retries with
// backoff on UNAVAILABLE, TLS and API tokens.
#include <grpcpp/channel.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ntk/errors.hpp"
#include "ntk/matrix.hpp"
#include "ntkserve/v1/dataset.grpc.pb.h"
#include "ntkserve/v1/kernel.grpc.pb.h"
#include "ntkserve/v1/model.grpc.pb.h"
#include "ntkserve/v1/predict.grpc.pb.h"
#include "ntkserve/v1/server.grpc.pb.h"

namespace ntkclient {

namespace pb = ::ntkserve::v1;

struct ClientOptions {
  std::string address = "127.0.0.1:50051";
  std::string token;  // sent as "authorization: Bearer TOKEN"
  bool tls = false;
  std::string tls_ca_file;    // PEM roots to verify the server (empty: the system's)
  std::string tls_cert_file;  // client certificate for mutual TLS
  std::string tls_key_file;
  std::string tls_server_name;   // override the name checked in the server's certificate
  double timeout_seconds = 0;    // deadline of each call (0: none; streams: the whole stream)
  int retries = 4;               // attempts after the first, on UNAVAILABLE, for calls safe to repeat
  double backoff_seconds = 0.1;  // first wait; doubles each attempt (with jitter), at most 5 s
};

// A failed call: the gRPC status code and the server's message. code() maps to ntk::ErrorCode so
// that callers handle local and remote errors alike.
class RpcError : public ntk::Error {
 public:
  RpcError(grpc::StatusCode status, const std::string& message);
  grpc::StatusCode status_code() const { return status_; }

 private:
  grpc::StatusCode status_;
};

struct UploadProgress {
  std::int64_t sent = 0, total = 0;
};

struct Prediction {
  ntk::Matrix<double> logits, probs;  // T x C
  std::vector<std::int64_t> classes;
  ntk::Matrix<double> logit_var;  // T x C, with uncertainty
  std::vector<double> predictive_entropy, expected_entropy, mutual_info;
  std::int64_t batches = 0;
};

struct PredictOptions {
  pb::UncertaintyMode uncertainty = pb::UNCERTAINTY_NONE;
  int samples = 0;
  std::uint64_t seed = 0;
  int batch_rows = 0;
  bool float32_results = false;
};

class Client {
 public:
  explicit Client(ClientOptions options);

  // Datasets. x is sent as `dtype` (FLOAT32 halves the bytes; values are rounded once).
  pb::DatasetInfo upload(const std::string& name, ntk::ConstMatrixView<double> x,
                         const std::vector<std::int64_t>* labels, ntk::ConstMatrixView<double> targets = {},
                         pb::DType dtype = pb::FLOAT64, std::int64_t num_classes = 0,
                         const std::function<void(const UploadProgress&)>& progress = {});
  // .npy files (float32/float64 x kept in its dtype; int32/int64 labels).
  pb::DatasetInfo upload_npy(const std::string& name, const std::string& x_path,
                             const std::optional<std::string>& labels_path,
                             const std::optional<std::string>& targets_path, std::int64_t num_classes = 0,
                             const std::function<void(const UploadProgress&)>& progress = {});
  std::vector<pb::DatasetInfo> list_datasets();
  pb::DatasetInfo get_dataset(const std::string& name);
  void delete_dataset(const std::string& name);

  // Fits.
  pb::FitJob fit(const pb::FitRequest& request);
  // Streams the job's progress to `on_progress` until it ends; returns the final state. Reconnects
  // (retries) when the stream breaks with UNAVAILABLE.
  pb::FitProgress watch(const std::string& job_id,
                        const std::function<void(const pb::FitProgress&)>& on_progress = {});
  pb::FitProgress cancel(const std::string& job_id);

  // Models.
  pb::ModelInfo get_model(const std::string& id);
  std::vector<pb::ModelInfo> list_models();
  void delete_model(const std::string& id);
  std::vector<std::uint8_t> export_model(const std::string& id);
  pb::ModelInfo import_model(const std::vector<std::uint8_t>& model_file);

  // Predictions (streamed, reassembled in order).
  Prediction predict(const std::string& model_id, ntk::ConstMatrixView<double> x,
                     const PredictOptions& options = {});
  Prediction predict_dataset(const std::string& model_id, const std::string& dataset,
                             const PredictOptions& options = {});

  // K(x1, x2) (x2 empty: x1), assembled from the streamed tiles.
  ntk::Matrix<double> kernel(const pb::KernelSpec& spec, pb::KernelKind kind, ntk::ConstMatrixView<double> x1,
                             ntk::ConstMatrixView<double> x2 = {});

  // grpc.health.v1: "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN" for `service` ("" = the server).
  std::string health(const std::string& service = "");
  // Version, backend (cpu / cuda:N and what runs underneath), memory budget, queue.
  pb::ServerInfo server_info();

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }
  // A context with the token and the deadline set; public for callers using the stubs directly.
  std::unique_ptr<grpc::ClientContext> context() const;

 private:
  template <class Call>
  void with_retries(const char* what, bool idempotent, Call&& call);
  Prediction collect(const pb::PredictRequest& request);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::DatasetService::Stub> datasets_;
  std::unique_ptr<pb::ModelService::Stub> models_;
  std::unique_ptr<pb::PredictService::Stub> predict_;
  std::unique_ptr<pb::KernelService::Stub> kernel_;
};

}  // namespace ntkclient
