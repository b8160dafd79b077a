#include "ntk/errors.hpp"
#include "ntk/model_file.hpp"
#include "services.hpp"

namespace ntkserver {

grpc::Status ModelServiceImpl::Fit(grpc::ServerContext* ctx, const pb::FitRequest* request,
                                   pb::FitJob* response) {
  return handle(rt_, ctx, "Fit", [&](Call& call) {
    if (rt_.draining) throw ntk::Unavailable("the server is shutting down");
    check_fit_request(rt_, call.tenant(), *request);
    const std::string id = rt_.new_model_id();
    // Durable before it is acknowledged: a crash from here on re-runs the job at the next start.
    rt_.store.save_job(call.tenant(), id, request->SerializeAsString());
    try {
      rt_.jobs->submit(std::make_shared<Job>(call.tenant(), id, *request));
    } catch (...) {
      rt_.store.remove_job(call.tenant(), id);
      throw;
    }
    response->set_job_id(id);
    response->set_model_id(id);
    response->set_state(pb::QUEUED);
    response->set_queue_position(rt_.jobs->queued());
    call.note(id + " on " + request->dataset());
  });
}

grpc::Status ModelServiceImpl::WatchFit(grpc::ServerContext* ctx, const pb::WatchFitRequest* request,
                                        grpc::ServerWriter<pb::FitProgress>* writer) {
  return handle(rt_, ctx, "WatchFit", [&](Call& call) {
    std::shared_ptr<Job> job;
    try {
      job = rt_.jobs->find(call.tenant(), request->job_id());
    } catch (const ntk::NotFound&) {
      // A job of an earlier server process: its model tells how it ended.
      pb::ModelInfo info = rt_.store.model_info(call.tenant(), request->job_id());
      pb::FitProgress done;
      done.set_job_id(info.model_id());
      done.set_state(pb::SUCCEEDED);
      done.set_phase("done");
      done.set_newton_step(info.newton_steps());
      done.set_residual(info.residual());
      done.set_converged(info.converged());
      done.set_elapsed_seconds(info.fit_seconds());
      writer->Write(done);
      return;
    }
    std::uint64_t seen = 0;
    for (;;) {
      pb::FitProgress progress;
      const std::uint64_t version =
          job->wait_change(seen, std::chrono::steady_clock::now() + std::chrono::milliseconds(200), progress);
      call.check_alive();
      if (version == seen) continue;
      seen = version;
      if (!writer->Write(progress)) throw ntk::Cancelled("WatchFit: the client stopped reading");
      if (is_final(progress.state())) return;
      if (rt_.draining && progress.state() == pb::QUEUED && !progress.message().empty())
        throw ntk::Unavailable("the server is shutting down; the job runs again after the restart");
    }
  });
}

grpc::Status ModelServiceImpl::CancelFit(grpc::ServerContext* ctx, const pb::CancelFitRequest* request,
                                         pb::FitProgress* response) {
  return handle(rt_, ctx, "CancelFit", [&](Call& call) {
    auto job = rt_.jobs->cancel(call.tenant(), request->job_id());
    *response = job->progress();
  });
}

grpc::Status ModelServiceImpl::GetModel(grpc::ServerContext* ctx, const pb::GetModelRequest* request,
                                        pb::ModelInfo* response) {
  return handle(rt_, ctx, "GetModel",
                [&](Call& call) { *response = rt_.store.model_info(call.tenant(), request->model_id()); });
}

grpc::Status ModelServiceImpl::ListModels(grpc::ServerContext* ctx, const pb::ListModelsRequest*,
                                          pb::ListModelsResponse* response) {
  return handle(rt_, ctx, "ListModels", [&](Call& call) {
    for (auto& info : rt_.store.list_models(call.tenant())) *response->add_models() = std::move(info);
  });
}

grpc::Status ModelServiceImpl::DeleteModel(grpc::ServerContext* ctx, const pb::DeleteModelRequest* request,
                                           pb::DeleteModelResponse*) {
  return handle(rt_, ctx, "DeleteModel",
                [&](Call& call) { rt_.store.delete_model(call.tenant(), request->model_id()); });
}

grpc::Status ModelServiceImpl::ExportModel(grpc::ServerContext* ctx, const pb::ExportModelRequest* request,
                                           grpc::ServerWriter<pb::ModelChunk>* writer) {
  return handle(rt_, ctx, "ExportModel", [&](Call& call) {
    const auto bytes = rt_.store.model_file_bytes(call.tenant(), request->model_id());
    constexpr std::size_t chunk = 1 << 20;
    for (std::size_t offset = 0; offset < bytes.size(); offset += chunk) {
      call.check_alive();
      pb::ModelChunk message;
      message.set_data(reinterpret_cast<const char*>(bytes.data() + offset),
                       std::min(chunk, bytes.size() - offset));
      if (!writer->Write(message)) throw ntk::Cancelled("ExportModel: the client stopped reading");
    }
  });
}

grpc::Status ModelServiceImpl::ImportModel(grpc::ServerContext* ctx,
                                           grpc::ServerReader<pb::ModelChunk>* reader,
                                           pb::ModelInfo* response) {
  return handle(rt_, ctx, "ImportModel", [&](Call& call) {
    std::vector<std::uint8_t> bytes;
    pb::ModelChunk chunk;
    while (reader->Read(&chunk)) {
      if (chunk.data().size() > (1u << 20))
        throw ntk::InvalidArgument("ImportModel: chunks are at most 1 MiB");
      if (static_cast<std::int64_t>(bytes.size() + chunk.data().size()) > rt_.options.max_dataset_bytes)
        throw ntk::ResourceExhausted("ImportModel: the model file exceeds the server's limit of " +
                                     std::to_string(rt_.options.max_dataset_bytes) + " bytes");
      bytes.insert(bytes.end(), chunk.data().begin(), chunk.data().end());
    }
    if (bytes.empty()) throw ntk::InvalidArgument("ImportModel: no model file received");
    ntk::Model model;
    try {
      model = ntk::deserialize_model(bytes, "imported model");
      ntk::check_model(model, "imported model");
    } catch (const ntk::Error& e) {
      throw ntk::InvalidArgument(e.what());
    }
    pb::ModelInfo info = describe_model(model);
    info.set_model_id(rt_.new_model_id());
    info.set_description("imported");
    info.set_created_unix_ms(unix_millis());
    *response = rt_.store.add_model(call.tenant(), info, model);
  });
}

}  // namespace ntkserver
