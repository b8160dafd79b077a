#pragma once
// The gRPC services. Each handler body runs inside handle() (runtime.hpp): authentication, status
// mapping, metrics and logging are done there, once.
#include "inference/grpc_service.grpc.pb.h"
#include "ntkserve/v1/dataset.grpc.pb.h"
#include "ntkserve/v1/kernel.grpc.pb.h"
#include "ntkserve/v1/model.grpc.pb.h"
#include "ntkserve/v1/predict.grpc.pb.h"
#include "ntkserve/v1/server.grpc.pb.h"
#include "runtime.hpp"

namespace ntkserver {

class DatasetServiceImpl final : public pb::DatasetService::Service {
 public:
  explicit DatasetServiceImpl(Runtime& rt) : rt_(rt) {}
  grpc::Status UploadDataset(grpc::ServerContext* ctx, grpc::ServerReader<pb::UploadDatasetRequest>* reader,
                             pb::DatasetInfo* response) override;
  grpc::Status ListDatasets(grpc::ServerContext* ctx, const pb::ListDatasetsRequest* request,
                            pb::ListDatasetsResponse* response) override;
  grpc::Status GetDataset(grpc::ServerContext* ctx, const pb::GetDatasetRequest* request,
                          pb::DatasetInfo* response) override;
  grpc::Status DeleteDataset(grpc::ServerContext* ctx, const pb::DeleteDatasetRequest* request,
                             pb::DeleteDatasetResponse* response) override;

 private:
  Runtime& rt_;
};

class ModelServiceImpl final : public pb::ModelService::Service {
 public:
  explicit ModelServiceImpl(Runtime& rt) : rt_(rt) {}
  grpc::Status Fit(grpc::ServerContext* ctx, const pb::FitRequest* request, pb::FitJob* response) override;
  grpc::Status WatchFit(grpc::ServerContext* ctx, const pb::WatchFitRequest* request,
                        grpc::ServerWriter<pb::FitProgress>* writer) override;
  grpc::Status CancelFit(grpc::ServerContext* ctx, const pb::CancelFitRequest* request,
                         pb::FitProgress* response) override;
  grpc::Status GetModel(grpc::ServerContext* ctx, const pb::GetModelRequest* request,
                        pb::ModelInfo* response) override;
  grpc::Status ListModels(grpc::ServerContext* ctx, const pb::ListModelsRequest* request,
                          pb::ListModelsResponse* response) override;
  grpc::Status DeleteModel(grpc::ServerContext* ctx, const pb::DeleteModelRequest* request,
                           pb::DeleteModelResponse* response) override;
  grpc::Status ExportModel(grpc::ServerContext* ctx, const pb::ExportModelRequest* request,
                           grpc::ServerWriter<pb::ModelChunk>* writer) override;
  grpc::Status ImportModel(grpc::ServerContext* ctx, grpc::ServerReader<pb::ModelChunk>* reader,
                           pb::ModelInfo* response) override;

 private:
  Runtime& rt_;
};

class PredictServiceImpl final : public pb::PredictService::Service {
 public:
  explicit PredictServiceImpl(Runtime& rt) : rt_(rt) {}
  grpc::Status Predict(grpc::ServerContext* ctx, const pb::PredictRequest* request,
                       grpc::ServerWriter<pb::PredictResponse>* writer) override;
  grpc::Status PredictStream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<pb::PredictResponse, pb::PredictRequest>* stream) override;

 private:
  Runtime& rt_;
};

class KernelServiceImpl final : public pb::KernelService::Service {
 public:
  explicit KernelServiceImpl(Runtime& rt) : rt_(rt) {}
  grpc::Status ComputeKernel(grpc::ServerContext* ctx, const pb::ComputeKernelRequest* request,
                             grpc::ServerWriter<pb::KernelTile>* writer) override;

 private:
  Runtime& rt_;
};

class InferenceServiceImpl final : public ::inference::GRPCInferenceService::Service {
 public:
  explicit InferenceServiceImpl(Runtime& rt) : rt_(rt) {}
  grpc::Status ServerLive(grpc::ServerContext* ctx, const ::inference::ServerLiveRequest* request,
                          ::inference::ServerLiveResponse* response) override;
  grpc::Status ServerReady(grpc::ServerContext* ctx, const ::inference::ServerReadyRequest* request,
                           ::inference::ServerReadyResponse* response) override;
  grpc::Status ModelReady(grpc::ServerContext* ctx, const ::inference::ModelReadyRequest* request,
                          ::inference::ModelReadyResponse* response) override;
  grpc::Status ServerMetadata(grpc::ServerContext* ctx, const ::inference::ServerMetadataRequest* request,
                              ::inference::ServerMetadataResponse* response) override;
  grpc::Status ModelMetadata(grpc::ServerContext* ctx, const ::inference::ModelMetadataRequest* request,
                             ::inference::ModelMetadataResponse* response) override;
  grpc::Status ModelInfer(grpc::ServerContext* ctx, const ::inference::ModelInferRequest* request,
                          ::inference::ModelInferResponse* response) override;

 private:
  Runtime& rt_;
};

class ServerServiceImpl final : public pb::ServerService::Service {
 public:
  explicit ServerServiceImpl(Runtime& rt) : rt_(rt) {}
  grpc::Status GetServerInfo(grpc::ServerContext* ctx, const pb::GetServerInfoRequest* request,
                             pb::ServerInfo* response) override;

 private:
  Runtime& rt_;
};

}  // namespace ntkserver
