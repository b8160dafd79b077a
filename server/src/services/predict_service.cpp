#include "ntk/classifier.hpp"
#include "ntk/errors.hpp"
#include "ntk/uncertainty.hpp"
#include "predict_batch.hpp"
#include "services.hpp"
#include "wire.hpp"

namespace ntkserver {

namespace {

struct PredictInput {
  std::shared_ptr<const DatasetData> dataset;  // keeps a dataset's rows alive
  ntk::Matrix<double> inline_x;
  ntk::ConstMatrixView<double> x;
};

PredictInput resolve_input(Runtime& rt, const Call& call, const pb::PredictRequest& r) {
  PredictInput in;
  switch (r.input_case()) {
    case pb::PredictRequest::kX:
      in.inline_x = decode_matrix(r.x(), "x");
      in.x = in.inline_x.view();
      break;
    case pb::PredictRequest::kDataset:
      in.dataset = rt.store.dataset(call.tenant(), r.dataset());
      in.x = in.dataset->x.view();
      break;
    default:
      throw ntk::InvalidArgument("give the test inputs: x (a matrix) or dataset (a name)");
  }
  return in;
}

}  // namespace

grpc::Status PredictServiceImpl::Predict(grpc::ServerContext* ctx, const pb::PredictRequest* request,
                                         grpc::ServerWriter<pb::PredictResponse>* writer) {
  return handle(rt_, ctx, "Predict", [&](Call& call) {
    if (request->model_id().empty()) throw ntk::InvalidArgument("model_id: name a model");
    auto model = rt_.store.model(call.tenant(), request->model_id());
    const PredictOptions options = predict_options(*request, *model);
    PredictInput in = resolve_input(rt_, call, *request);
    check_predict_input(*model, in.x);
    const std::int64_t batch = request->batch_rows() > 0 ? request->batch_rows() : 1024;
    if (batch > 1 << 20) throw ntk::InvalidArgument("batch_rows must be <= 1048576");
    auto backend = rt_.backends.acquire([&] { call.check_alive(); });
    for (std::int64_t offset = 0; offset < in.x.rows; offset += batch) {
      call.check_alive();
      const std::int64_t rows = std::min(batch, in.x.rows - offset);
      pb::PredictResponse response;
      predict_batch(rt_, *backend, model, in.x.block(offset, 0, rows, in.x.cols), offset, options, response);
      response.set_row_offset(offset);
      if (!writer->Write(response)) throw ntk::Cancelled("Predict: the client stopped reading");
    }
    call.note(request->model_id() + ": " + std::to_string(in.x.rows) + " rows");
  });
}

grpc::Status PredictServiceImpl::PredictStream(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<pb::PredictResponse, pb::PredictRequest>* stream) {
  return handle(rt_, ctx, "PredictStream", [&](Call& call) {
    std::shared_ptr<const ntk::Model> model;
    std::string model_id;
    std::int64_t offset = 0;
    pb::PredictRequest request;
    // One backend for the whole stream: batches are in order and one at a time.
    std::optional<BackendPool::Lease> backend;
    while (stream->Read(&request)) {
      call.check_alive();
      if (!request.model_id().empty() && request.model_id() != model_id) {
        model = rt_.store.model(call.tenant(), request.model_id());
        model_id = request.model_id();
      }
      if (!model) throw ntk::InvalidArgument("PredictStream: the first request must name model_id");
      const PredictOptions options = predict_options(request, *model);
      PredictInput in = resolve_input(rt_, call, request);
      check_predict_input(*model, in.x);
      if (!backend) backend.emplace(rt_.backends.acquire([&] { call.check_alive(); }));
      pb::PredictResponse response;
      predict_batch(rt_, **backend, model, in.x, offset, options, response);
      response.set_row_offset(offset);
      offset += in.x.rows;
      // Write blocks while the client is not reading: that is the backpressure.
      if (!stream->Write(response)) throw ntk::Cancelled("PredictStream: the client stopped reading");
    }
    call.note(model_id + ": " + std::to_string(offset) + " rows streamed");
  });
}

}  // namespace ntkserver
