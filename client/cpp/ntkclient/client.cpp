#include "client.hpp"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "ntk/npy.hpp"
#include "wire/convert.hpp"
#include "wire/status_name.hpp"

namespace ntkclient {

namespace {

ntk::ErrorCode error_code_for(grpc::StatusCode s) {
  switch (s) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return ntk::ErrorCode::invalid_argument;
    case grpc::StatusCode::NOT_FOUND:
      return ntk::ErrorCode::not_found;
    case grpc::StatusCode::ALREADY_EXISTS:
      return ntk::ErrorCode::already_exists;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return ntk::ErrorCode::failed_precondition;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return ntk::ErrorCode::resource_exhausted;
    case grpc::StatusCode::UNAVAILABLE:
      return ntk::ErrorCode::unavailable;
    case grpc::StatusCode::CANCELLED:
      return ntk::ErrorCode::cancelled;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return ntk::ErrorCode::deadline_exceeded;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return ntk::ErrorCode::failed_precondition;
    default:
      return ntk::ErrorCode::internal;
  }
}

std::string read_text(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw ntk::InvalidArgument(std::string(what) + " " + path + ": cannot be read");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void check(const grpc::Status& status) {
  if (!status.ok()) throw RpcError(status.error_code(), status.error_message());
}

constexpr std::size_t kChunk = 1 << 20;

}  // namespace

RpcError::RpcError(grpc::StatusCode status, const std::string& message)
    : ntk::Error(error_code_for(status), std::string(ntkwire::status_code_name(status)) + ": " + message),
      status_(status) {}

Client::Client(ClientOptions options) : options_(std::move(options)) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options_.tls || !options_.tls_ca_file.empty() || !options_.tls_cert_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options_.tls_ca_file.empty()) ssl.pem_root_certs = read_text(options_.tls_ca_file, "--tls-ca");
    if (!options_.tls_cert_file.empty()) {
      ssl.pem_cert_chain = read_text(options_.tls_cert_file, "--tls-cert");
      ssl.pem_private_key = read_text(options_.tls_key_file, "--tls-key");
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  if (!options_.tls_server_name.empty()) args.SetSslTargetNameOverride(options_.tls_server_name);
  channel_ = grpc::CreateCustomChannel(options_.address, credentials, args);
  datasets_ = pb::DatasetService::NewStub(channel_);
  models_ = pb::ModelService::NewStub(channel_);
  predict_ = pb::PredictService::NewStub(channel_);
  kernel_ = pb::KernelService::NewStub(channel_);
}

std::unique_ptr<grpc::ClientContext> Client::context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.token);
  if (options_.timeout_seconds > 0)
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::microseconds(static_cast<long long>(options_.timeout_seconds * 1e6)));
  return ctx;
}

template <class Call>
void Client::with_retries(const char*, bool idempotent, Call&& call) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double wait = options_.backoff_seconds;
  for (int attempt = 0;; ++attempt) {
    const grpc::Status status = call();
    if (status.ok()) return;
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE || !idempotent || attempt >= options_.retries)
      throw RpcError(status.error_code(), status.error_message());
    std::uniform_real_distribution<double> jitter(0.5, 1.5);
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(5.0, wait * jitter(rng))));
    wait *= 2;
  }
}

pb::DatasetInfo Client::upload(const std::string& name, ntk::ConstMatrixView<double> x,
                               const std::vector<std::int64_t>* labels, ntk::ConstMatrixView<double> targets,
                               pb::DType dtype, std::int64_t num_classes,
                               const std::function<void(const UploadProgress&)>& progress) {
  pb::UploadHeader header;
  header.set_name(name);
  header.set_dtype(dtype);
  header.set_rows(x.rows);
  header.set_cols(x.cols);
  header.set_has_labels(labels != nullptr);
  header.set_has_targets(!targets.empty());
  header.set_num_classes(targets.empty() ? num_classes : targets.cols);
  // The payload, encoded once: x, then labels or targets.
  pb::Matrix xm;
  ntkwire::encode_matrix(x, dtype == pb::FLOAT32, &xm);
  std::string payload = std::move(*xm.mutable_data());
  if (labels)
    payload.append(reinterpret_cast<const char*>(labels->data()), labels->size() * sizeof(std::int64_t));
  if (!targets.empty()) {
    pb::Matrix tm;
    ntkwire::encode_matrix(targets, dtype == pb::FLOAT32, &tm);
    payload += tm.data();
  }
  pb::DatasetInfo info;
  // Uploads are retried on UNAVAILABLE: a name that was already stored answers ALREADY_EXISTS.
  with_retries("upload", true, [&] {
    auto ctx = context();
    auto writer = datasets_->UploadDataset(ctx.get(), &info);
    pb::UploadDatasetRequest message;
    *message.mutable_header() = header;
    bool ok = writer->Write(message);
    UploadProgress p{0, static_cast<std::int64_t>(payload.size())};
    for (std::size_t offset = 0; ok && offset < payload.size(); offset += kChunk) {
      pb::UploadDatasetRequest chunk;
      chunk.set_chunk(payload.substr(offset, kChunk));
      ok = writer->Write(chunk);
      p.sent = static_cast<std::int64_t>(std::min(payload.size(), offset + kChunk));
      if (ok && progress) progress(p);
    }
    writer->WritesDone();
    return writer->Finish();
  });
  return info;
}

pb::DatasetInfo Client::upload_npy(const std::string& name, const std::string& x_path,
                                   const std::optional<std::string>& labels_path,
                                   const std::optional<std::string>& targets_path, std::int64_t num_classes,
                                   const std::function<void(const UploadProgress&)>& progress) {
  auto as_matrix = [](const ntk::NpyArray& a, const std::string& path) {
    if (a.shape.size() != 2 || (a.dtype != ntk::DType::float32 && a.dtype != ntk::DType::float64))
      throw ntk::InvalidArgument(path + ": expected a 2-d float32/float64 array");
    ntk::Matrix<double> m(a.shape[0], a.shape[1]);
    for (std::int64_t i = 0; i < a.elements(); ++i) {
      if (a.dtype == ntk::DType::float32) {
        float f;
        std::memcpy(&f, a.data.data() + 4 * i, 4);
        m.data()[i] = f;
      } else {
        std::memcpy(m.data() + i, a.data.data() + 8 * i, 8);
      }
    }
    return m;
  };
  const ntk::NpyArray xa = ntk::read_npy(x_path);
  const ntk::Matrix<double> x = as_matrix(xa, x_path);
  const pb::DType dtype = xa.dtype == ntk::DType::float32 ? pb::FLOAT32 : pb::FLOAT64;
  std::vector<std::int64_t> labels;
  if (labels_path) {
    const ntk::NpyArray la = ntk::read_npy(*labels_path);
    if (la.shape.size() != 1 || (la.dtype != ntk::DType::int64 && la.dtype != ntk::DType::int32))
      throw ntk::InvalidArgument(*labels_path + ": expected a 1-d int32/int64 array of labels");
    labels.resize(static_cast<std::size_t>(la.shape[0]));
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (la.dtype == ntk::DType::int64) {
        std::memcpy(&labels[i], la.data.data() + 8 * i, 8);
      } else {
        std::int32_t v;
        std::memcpy(&v, la.data.data() + 4 * i, 4);
        labels[i] = v;
      }
    }
    if (static_cast<std::int64_t>(labels.size()) != x.rows())
      throw ntk::InvalidArgument(*labels_path + ": " + std::to_string(labels.size()) + " labels for " +
                                 std::to_string(x.rows()) + " rows of " + x_path);
  }
  ntk::Matrix<double> targets;
  if (targets_path) targets = as_matrix(ntk::read_npy(*targets_path), *targets_path);
  return upload(name, x.view(), labels_path ? &labels : nullptr,
                targets_path ? targets.view() : ntk::ConstMatrixView<double>{}, dtype, num_classes, progress);
}

std::vector<pb::DatasetInfo> Client::list_datasets() {
  pb::ListDatasetsResponse r;
  with_retries("list datasets", true, [&] { return datasets_->ListDatasets(context().get(), {}, &r); });
  return {r.datasets().begin(), r.datasets().end()};
}

pb::DatasetInfo Client::get_dataset(const std::string& name) {
  pb::GetDatasetRequest req;
  req.set_name(name);
  pb::DatasetInfo r;
  with_retries("get dataset", true, [&] { return datasets_->GetDataset(context().get(), req, &r); });
  return r;
}

void Client::delete_dataset(const std::string& name) {
  pb::DeleteDatasetRequest req;
  req.set_name(name);
  pb::DeleteDatasetResponse r;
  with_retries("delete dataset", true, [&] { return datasets_->DeleteDataset(context().get(), req, &r); });
}

pb::FitJob Client::fit(const pb::FitRequest& request) {
  pb::FitJob job;
  // Not retried: a request that reached the server before the connection broke would queue twice.
  with_retries("fit", false, [&] { return models_->Fit(context().get(), request, &job); });
  return job;
}

pb::FitProgress Client::watch(const std::string& job_id,
                              const std::function<void(const pb::FitProgress&)>& on_progress) {
  pb::WatchFitRequest req;
  req.set_job_id(job_id);
  pb::FitProgress last;
  bool done = false;
  with_retries("watch", true, [&] {
    auto ctx = context();
    auto reader = models_->WatchFit(ctx.get(), req);
    pb::FitProgress p;
    while (reader->Read(&p)) {
      last = p;
      if (on_progress) on_progress(p);
      if (p.state() == pb::SUCCEEDED || p.state() == pb::FAILED || p.state() == pb::CANCELLED) done = true;
    }
    return reader->Finish();
  });
  if (!done)
    throw RpcError(grpc::StatusCode::UNAVAILABLE, "the progress stream of " + job_id + " ended early");
  return last;
}

pb::FitProgress Client::cancel(const std::string& job_id) {
  pb::CancelFitRequest req;
  req.set_job_id(job_id);
  pb::FitProgress r;
  with_retries("cancel", true, [&] { return models_->CancelFit(context().get(), req, &r); });
  return r;
}

pb::ModelInfo Client::get_model(const std::string& id) {
  pb::GetModelRequest req;
  req.set_model_id(id);
  pb::ModelInfo r;
  with_retries("get model", true, [&] { return models_->GetModel(context().get(), req, &r); });
  return r;
}

std::vector<pb::ModelInfo> Client::list_models() {
  pb::ListModelsResponse r;
  with_retries("list models", true, [&] { return models_->ListModels(context().get(), {}, &r); });
  return {r.models().begin(), r.models().end()};
}

void Client::delete_model(const std::string& id) {
  pb::DeleteModelRequest req;
  req.set_model_id(id);
  pb::DeleteModelResponse r;
  with_retries("delete model", true, [&] { return models_->DeleteModel(context().get(), req, &r); });
}

std::vector<std::uint8_t> Client::export_model(const std::string& id) {
  pb::ExportModelRequest req;
  req.set_model_id(id);
  std::vector<std::uint8_t> bytes;
  with_retries("export", true, [&] {
    bytes.clear();
    auto ctx = context();
    auto reader = models_->ExportModel(ctx.get(), req);
    pb::ModelChunk chunk;
    while (reader->Read(&chunk)) bytes.insert(bytes.end(), chunk.data().begin(), chunk.data().end());
    return reader->Finish();
  });
  return bytes;
}

pb::ModelInfo Client::import_model(const std::vector<std::uint8_t>& file) {
  pb::ModelInfo info;
  with_retries("import", false, [&] {
    auto ctx = context();
    auto writer = models_->ImportModel(ctx.get(), &info);
    for (std::size_t offset = 0; offset < file.size(); offset += kChunk) {
      pb::ModelChunk chunk;
      chunk.set_data(reinterpret_cast<const char*>(file.data() + offset),
                     std::min(kChunk, file.size() - offset));
      if (!writer->Write(chunk)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  });
  return info;
}

Prediction Client::collect(const pb::PredictRequest& request) {
  Prediction out;
  with_retries("predict", true, [&] {
    out = Prediction{};
    auto ctx = context();
    auto reader = predict_->Predict(ctx.get(), request);
    pb::PredictResponse r;
    std::vector<pb::PredictResponse> batches;
    while (reader->Read(&r)) batches.push_back(std::move(r));
    const grpc::Status status = reader->Finish();
    if (!status.ok()) return status;
    std::int64_t rows = 0, classes = 0;
    for (const auto& b : batches) {
      if (b.row_offset() != rows) throw ntk::InternalError("predict: batches arrived out of order");
      rows += b.rows();
      classes = b.logits().cols();
    }
    out.batches = static_cast<std::int64_t>(batches.size());
    out.logits = ntk::Matrix<double>(rows, classes);
    out.probs = ntk::Matrix<double>(rows, classes);
    const bool uncertain = !batches.empty() && batches.front().has_logit_var();
    if (uncertain) out.logit_var = ntk::Matrix<double>(rows, classes);
    for (const auto& b : batches) {
      auto place = [&](const pb::Matrix& m, ntk::Matrix<double>& dst, const char* what) {
        const auto part = ntkwire::decode_matrix(m, what);
        std::memcpy(dst.row_data(b.row_offset()), part.data(), part.size() * sizeof(double));
      };
      place(b.logits(), out.logits, "logits");
      place(b.probs(), out.probs, "probs");
      const auto* c = reinterpret_cast<const std::int64_t*>(b.classes().data().data());
      out.classes.insert(out.classes.end(), c, c + b.classes().rows());
      if (uncertain) {
        place(b.logit_var(), out.logit_var, "logit_var");
        auto append = [&](const pb::Matrix& m, std::vector<double>& dst, const char* what) {
          const auto part = ntkwire::decode_matrix(m, what);
          dst.insert(dst.end(), part.data(), part.data() + part.size());
        };
        append(b.predictive_entropy(), out.predictive_entropy, "predictive_entropy");
        append(b.expected_entropy(), out.expected_entropy, "expected_entropy");
        append(b.mutual_info(), out.mutual_info, "mutual_info");
      }
    }
    return status;
  });
  check(grpc::Status::OK);
  return out;
}

namespace {
void apply(const PredictOptions& o, pb::PredictRequest& r) {
  r.set_uncertainty(o.uncertainty);
  r.set_samples(o.samples);
  r.set_seed(o.seed);
  r.set_batch_rows(o.batch_rows);
  r.set_float32_results(o.float32_results);
}
}  // namespace

Prediction Client::predict(const std::string& model_id, ntk::ConstMatrixView<double> x,
                           const PredictOptions& options) {
  pb::PredictRequest r;
  r.set_model_id(model_id);
  ntkwire::encode_matrix(x, false, r.mutable_x());
  apply(options, r);
  return collect(r);
}

Prediction Client::predict_dataset(const std::string& model_id, const std::string& dataset,
                                   const PredictOptions& options) {
  pb::PredictRequest r;
  r.set_model_id(model_id);
  r.set_dataset(dataset);
  apply(options, r);
  return collect(r);
}

ntk::Matrix<double> Client::kernel(const pb::KernelSpec& spec, pb::KernelKind kind,
                                   ntk::ConstMatrixView<double> x1, ntk::ConstMatrixView<double> x2) {
  pb::ComputeKernelRequest r;
  *r.mutable_spec() = spec;
  r.set_kind(kind);
  ntkwire::encode_matrix(x1, false, r.mutable_x1()->mutable_x());
  if (!x2.empty()) ntkwire::encode_matrix(x2, false, r.mutable_x2()->mutable_x());
  const std::int64_t cols = x2.empty() ? x1.rows : x2.rows;
  ntk::Matrix<double> k(x1.rows, cols);
  with_retries("kernel", true, [&] {
    auto ctx = context();
    auto reader = kernel_->ComputeKernel(ctx.get(), r);
    pb::KernelTile tile;
    while (reader->Read(&tile)) {
      const auto part = ntkwire::decode_matrix(tile.values(), "kernel tile");
      for (std::int64_t i = 0; i < part.rows(); ++i)
        std::memcpy(k.row_data(tile.row_offset() + i) + tile.col_offset(), part.row_data(i),
                    static_cast<std::size_t>(part.cols()) * sizeof(double));
    }
    return reader->Finish();
  });
  return k;
}

pb::ServerInfo Client::server_info() {
  auto stub = pb::ServerService::NewStub(channel_);
  pb::ServerInfo r;
  with_retries("server info", true, [&] { return stub->GetServerInfo(context().get(), {}, &r); });
  return r;
}

std::string Client::health(const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse r;
  with_retries("health", true, [&] { return stub->Check(context().get(), req, &r); });
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(r.status());
}

}  // namespace ntkclient
