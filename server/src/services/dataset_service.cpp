#include "ntk/errors.hpp"
#include "services.hpp"

namespace ntkserver {

grpc::Status DatasetServiceImpl::UploadDataset(grpc::ServerContext* ctx,
                                               grpc::ServerReader<pb::UploadDatasetRequest>* reader,
                                               pb::DatasetInfo* response) {
  return handle(rt_, ctx, "UploadDataset", [&](Call& call) {
    pb::UploadDatasetRequest message;
    if (!reader->Read(&message)) throw ntk::InvalidArgument("upload: the stream ended before the header");
    if (!message.has_header()) throw ntk::InvalidArgument("upload: the first message must be the header");
    const pb::UploadHeader header = message.header();
    const std::int64_t payload = check_upload_header(header, rt_.options.max_dataset_bytes);
    if (rt_.store.dataset_exists(call.tenant(), header.name()))
      throw ntk::AlreadyExists("dataset '" + header.name() +
                               "' already exists (delete it first or choose another name)");
    // The raw bytes and their float64 decoding are both held until the upload is stored.
    const std::uint64_t decoded =
        8ull * static_cast<std::uint64_t>(header.rows()) *
            static_cast<std::uint64_t>(header.cols() + (header.has_targets() ? header.num_classes() : 0)) +
        (header.has_labels() ? 8ull * static_cast<std::uint64_t>(header.rows()) : 0);
    Reservation data_memory = rt_.budget.reserve(decoded, "dataset '" + header.name() + "'");
    Reservation staging = rt_.budget.reserve(static_cast<std::uint64_t>(payload),
                                             "the upload buffer of '" + header.name() + "'");
    UploadAssembler assembler(header, rt_.options.max_dataset_bytes);
    while (reader->Read(&message)) {
      if (message.has_header())
        throw ntk::InvalidArgument("upload: a second header after " + std::to_string(assembler.received()) +
                                   " bytes");
      assembler.append(message.chunk());
    }
    call.check_alive();
    pb::DatasetInfo info;
    auto data = std::make_shared<const DatasetData>(assembler.finish(info));
    rt_.metrics.record_upload_bytes(assembler.received());
    *response = rt_.store.add_dataset(call.tenant(), info, assembler.payload(), data, std::move(data_memory));
    call.note(header.name() + ": " + std::to_string(header.rows()) + " x " + std::to_string(header.cols()));
  });
}

grpc::Status DatasetServiceImpl::ListDatasets(grpc::ServerContext* ctx, const pb::ListDatasetsRequest*,
                                              pb::ListDatasetsResponse* response) {
  return handle(rt_, ctx, "ListDatasets", [&](Call& call) {
    for (auto& info : rt_.store.list_datasets(call.tenant())) *response->add_datasets() = std::move(info);
  });
}

grpc::Status DatasetServiceImpl::GetDataset(grpc::ServerContext* ctx, const pb::GetDatasetRequest* request,
                                            pb::DatasetInfo* response) {
  return handle(rt_, ctx, "GetDataset",
                [&](Call& call) { *response = rt_.store.dataset_info(call.tenant(), request->name()); });
}

grpc::Status DatasetServiceImpl::DeleteDataset(grpc::ServerContext* ctx,
                                               const pb::DeleteDatasetRequest* request,
                                               pb::DeleteDatasetResponse*) {
  return handle(rt_, ctx, "DeleteDataset",
                [&](Call& call) { rt_.store.delete_dataset(call.tenant(), request->name()); });
}

}  // namespace ntkserver
