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
// Reserves the batch's working memory, computes and encodes it (row_offset is left to the caller).
// first_row: the batch's offset in the request's test set (random streams follow the global row index).
// The model's kernel product and the uncertainty mode's per-model work come from Runtime's caches, looked
// up per batch (a lookup is a short locked scan), so a stream may change modes between messages.
void predict_batch(Runtime& rt, ntk::Backend& backend, const std::shared_ptr<const ntk::Model>& model,
                   ntk::ConstMatrixView<double> x, std::int64_t first_row, const PredictOptions& options,
                   pb::PredictResponse& out);

}  // namespace ntkserver
