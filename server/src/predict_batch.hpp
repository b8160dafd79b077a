#pragma once
// One batch of predictions into a PredictResponse: shared by Predict, PredictStream and the Open
// Inference Protocol's ModelInfer.
#include <memory>

#include "ntk/backend.hpp"
#include "ntk/model.hpp"
#include "ntk/uncertainty.hpp"
#include "ntkserve/v1/predict.pb.h"

namespace ntkserver {

struct Runtime;
namespace pb = ::ntkserve::v1;

struct PredictOptions {
  ntk::UncertaintyOptions uncertainty;
  bool float32_results = false;
  bool covariance = false;
};

// Checks the mode against the model (exact needs lambda = 0, linearized and mc lambda > 0).
PredictOptions predict_options(const pb::PredictRequest& request, const ntk::Model& model);
void check_predict_input(const ntk::Model& model, ntk::ConstMatrixView<double> x);
// What the batches of one call reuse: the model's kernel product on the call's backend and the
// uncertainty mode's per-model work, both from Runtime's caches when `model` is set (so they also outlive
// the call). Declare it after the backend lease and reset it when the call switches models.
struct PredictCache {
  std::shared_ptr<const ntk::Model> model;  // set by the caller: the product comes from Runtime::products
  std::shared_ptr<ntk::KernelProduct> product;
  std::shared_ptr<ntk::UncertaintyContext> uncertainty;  // the uncertainty mode's per-model work
};

// Reserves the batch's working memory, computes and encodes it (row_offset is left to the caller).
// first_row: the batch's offset in the request's test set (random streams follow the global row index).
void predict_batch(Runtime& rt, ntk::Backend& backend, const ntk::Model& model,
                   ntk::ConstMatrixView<double> x, std::int64_t first_row, const PredictOptions& options,
                   PredictCache& cache, pb::PredictResponse& out);

}  // namespace ntkserver
