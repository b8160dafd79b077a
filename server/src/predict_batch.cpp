#include "predict_batch.hpp"

#include "ntk/classifier.hpp"
#include "ntk/errors.hpp"
#include "runtime.hpp"
#include "wire.hpp"

namespace ntkserver {

PredictOptions predict_options(const pb::PredictRequest& r, const ntk::Model& model) {
  PredictOptions o;
  switch (r.uncertainty()) {
    case pb::UNCERTAINTY_NONE:
      o.uncertainty.mode = ntk::UncertaintyMode::none;
      break;
    case pb::UNCERTAINTY_EXACT:
      o.uncertainty.mode = ntk::UncertaintyMode::exact;
      break;
    case pb::UNCERTAINTY_LINEARIZED:
      o.uncertainty.mode = ntk::UncertaintyMode::linearized;
      break;
    case pb::UNCERTAINTY_MONTE_CARLO:
      o.uncertainty.mode = ntk::UncertaintyMode::monte_carlo;
      break;
    default:
      throw ntk::InvalidArgument("uncertainty: unknown mode " + std::to_string(r.uncertainty()));
  }
  const bool regularized = model.settings.lambda > 0;
  if (o.uncertainty.mode == ntk::UncertaintyMode::exact && regularized)
    throw ntk::FailedPrecondition("uncertainty EXACT is the lambda = 0 Gaussian; this model has lambda = " +
                                  std::to_string(model.settings.lambda) + " (use LINEARIZED or MONTE_CARLO)");
  if ((o.uncertainty.mode == ntk::UncertaintyMode::linearized ||
       o.uncertainty.mode == ntk::UncertaintyMode::monte_carlo) &&
      !regularized)
    throw ntk::FailedPrecondition(
        "uncertainty LINEARIZED and MONTE_CARLO need a model with lambda > 0; this "
        "model has lambda = 0 (use EXACT)");
  if (r.samples() < 0 || r.samples() > 100000) throw ntk::InvalidArgument("samples must be in [0, 100000]");
  if (r.samples() > 0) o.uncertainty.samples = r.samples();
  o.uncertainty.seed = r.seed();
  o.float32_results = r.float32_results();
  o.covariance = r.covariance();
  return o;
}

void check_predict_input(const ntk::Model& model, ntk::ConstMatrixView<double> x) {
  if (x.cols != model.x_train.cols())
    throw ntk::InvalidArgument("x has " + std::to_string(x.cols) + " columns, the model was fitted on " +
                               std::to_string(model.x_train.cols()));
}

void predict_batch(Runtime& rt, ntk::Backend& backend, const std::shared_ptr<const ntk::Model>& model_ptr,
                   ntk::ConstMatrixView<double> x, std::int64_t first_row, const PredictOptions& options,
                   pb::PredictResponse& out) {
  const ntk::Model& model = *model_ptr;
  const std::uint64_t n = static_cast<std::uint64_t>(model.x_train.rows());
  const std::uint64_t rows = static_cast<std::uint64_t>(x.rows);
  const std::uint64_t c = static_cast<std::uint64_t>(model.num_classes);
  const bool uncertain = options.uncertainty.mode != ntk::UncertaintyMode::none;
  // Two kernels against the training set per test row (NNGP and NTK), twice more under uncertainty (the
  // uncertainty mode's per-model work is reserved by Runtime::uncertainty_contexts).
  const std::uint64_t need = 8 * rows * (n * (uncertain ? 4 : 2) + 8 * c + c * c);
  Reservation memory = rt.budget.reserve(need, "prediction of " + std::to_string(rows) + " rows");
  out.set_rows(x.rows);
  const bool f32 = options.float32_results;
  if (!uncertain) {
    const std::shared_ptr<ntk::KernelProduct> product = rt.products.get(backend, model_ptr);
    const ntk::Prediction p = ntk::predict_with(*product, model, x);
    encode_matrix(p.logits.view(), f32, out.mutable_logits());
    encode_matrix(p.probs.view(), f32, out.mutable_probs());
    encode_int64_column(p.classes, out.mutable_classes());
    return;
  }
  ntk::UncertaintyOptions uncertainty = options.uncertainty;
  uncertainty.first_row = first_row;
  const std::shared_ptr<ntk::UncertaintyContext> context =
      rt.uncertainty_contexts.get(backend, model_ptr, uncertainty);
  const ntk::UncertaintyResult u = ntk::predict_uncertainty(backend, model, x, uncertainty, context.get());
  encode_matrix(u.mean_logits.view(), f32, out.mutable_logits());
  encode_matrix(u.mean_probs.view(), f32, out.mutable_probs());
  encode_int64_column(u.classes, out.mutable_classes());
  encode_matrix(u.logit_var.view(), f32, out.mutable_logit_var());
  encode_matrix(u.predictive_entropy.view(), f32, out.mutable_predictive_entropy());
  encode_matrix(u.expected_entropy.view(), f32, out.mutable_expected_entropy());
  encode_matrix(u.mutual_info.view(), f32, out.mutable_mutual_info());
  if (options.covariance && u.covariance.size())
    encode_matrix(u.covariance.view(), f32, out.mutable_covariance());
}

}  // namespace ntkserver
