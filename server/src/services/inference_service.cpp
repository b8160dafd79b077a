// The Open Inference Protocol (KServe v2) on ntkserve's models: see proto/inference/grpc_service.proto
// for the mapping.
#include <cstring>

#include "ntk/errors.hpp"
#include "ntkserve/version.hpp"
#include "predict_batch.hpp"
#include "services.hpp"

namespace ntkserver {

namespace {

namespace inf = ::inference;

const char* const kOutputs[] = {"LOGITS", "PROBS", "LOGIT_VAR", "ENTROPY", "MUTUAL_INFO"};

std::string string_parameter(const google::protobuf::Map<std::string, inf::InferParameter>& params,
                             const std::string& key) {
  const auto it = params.find(key);
  if (it == params.end()) return "";
  if (it->second.parameter_choice_case() != inf::InferParameter::kStringParam)
    throw ntk::InvalidArgument("parameter '" + key + "' must be a string");
  return it->second.string_param();
}

std::int64_t int_parameter(const google::protobuf::Map<std::string, inf::InferParameter>& params,
                           const std::string& key, std::int64_t fallback) {
  const auto it = params.find(key);
  if (it == params.end()) return fallback;
  switch (it->second.parameter_choice_case()) {
    case inf::InferParameter::kInt64Param:
      return it->second.int64_param();
    case inf::InferParameter::kUint64Param:
      return static_cast<std::int64_t>(it->second.uint64_param());
    default:
      throw ntk::InvalidArgument("parameter '" + key + "' must be an integer");
  }
}

// The test matrix of the request's single input, as float64.
ntk::Matrix<double> input_matrix(const inf::ModelInferRequest& r, bool& fp32) {
  if (r.inputs_size() != 1)
    throw ntk::InvalidArgument("ModelInfer: expected exactly one input tensor (the T x d test matrix), got " +
                               std::to_string(r.inputs_size()));
  const auto& in = r.inputs(0);
  if (in.datatype() != "FP32" && in.datatype() != "FP64")
    throw ntk::InvalidArgument("input '" + in.name() + "': datatype must be FP32 or FP64, got '" +
                               in.datatype() + "'");
  fp32 = in.datatype() == "FP32";
  if (in.shape_size() != 2 || in.shape(0) < 1 || in.shape(1) < 1)
    throw ntk::InvalidArgument("input '" + in.name() + "': shape must be [T, d] with T, d >= 1");
  const std::int64_t t = in.shape(0), d = in.shape(1);
  if (d > (std::int64_t{1} << 40) / t)
    throw ntk::InvalidArgument("input '" + in.name() + "': shape too large");
  const std::size_t n = static_cast<std::size_t>(t * d);
  ntk::Matrix<double> x(t, d);
  if (r.raw_input_contents_size() > 0) {
    if (r.raw_input_contents_size() != 1)
      throw ntk::InvalidArgument("ModelInfer: one raw_input_contents entry expected");
    const std::string& raw = r.raw_input_contents(0);
    const std::size_t elem = fp32 ? 4 : 8;
    if (raw.size() != n * elem)
      throw ntk::InvalidArgument("input '" + in.name() + "': raw_input_contents has " +
                                 std::to_string(raw.size()) + " bytes, shape [" + std::to_string(t) + ", " +
                                 std::to_string(d) + "] of " + in.datatype() + " needs " +
                                 std::to_string(n * elem));
    for (std::size_t i = 0; i < n; ++i) {
      if (fp32) {
        float f;
        std::memcpy(&f, raw.data() + 4 * i, 4);
        x.data()[i] = f;
      } else {
        std::memcpy(x.data() + i, raw.data() + 8 * i, 8);
      }
    }
  } else {
    const auto& c = in.contents();
    const std::size_t have = fp32 ? static_cast<std::size_t>(c.fp32_contents_size())
                                  : static_cast<std::size_t>(c.fp64_contents_size());
    if (have != n)
      throw ntk::InvalidArgument("input '" + in.name() + "': " + std::to_string(have) +
                                 " values in contents, shape needs " + std::to_string(n));
    for (std::size_t i = 0; i < n; ++i)
      x.data()[i] = fp32 ? c.fp32_contents(static_cast<int>(i)) : c.fp64_contents(static_cast<int>(i));
  }
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(x.data()[i]))
      throw ntk::InvalidArgument("input '" + in.name() + "': non-finite value at row " +
                                 std::to_string(i / d) + ", column " + std::to_string(i % d));
  return x;
}

void add_output(inf::ModelInferResponse* response, const std::string& name, const pb::Matrix& m,
                bool vector) {
  auto* out = response->add_outputs();
  out->set_name(name);
  out->set_datatype(m.dtype() == pb::FLOAT32 ? "FP32" : "FP64");
  out->add_shape(m.rows());
  if (!vector) out->add_shape(m.cols());
  response->add_raw_output_contents(m.data());
}

}  // namespace

grpc::Status InferenceServiceImpl::ServerLive(grpc::ServerContext* ctx, const inf::ServerLiveRequest*,
                                              inf::ServerLiveResponse* response) {
  return handle(rt_, ctx, "ServerLive", [&](Call&) { response->set_live(true); });
}

grpc::Status InferenceServiceImpl::ServerReady(grpc::ServerContext* ctx, const inf::ServerReadyRequest*,
                                               inf::ServerReadyResponse* response) {
  return handle(rt_, ctx, "ServerReady", [&](Call&) { response->set_ready(!rt_.draining); });
}

grpc::Status InferenceServiceImpl::ModelReady(grpc::ServerContext* ctx, const inf::ModelReadyRequest* request,
                                              inf::ModelReadyResponse* response) {
  return handle(rt_, ctx, "ModelReady", [&](Call& call) {
    try {
      (void)rt_.store.model_info(call.tenant(), request->name());
      response->set_ready(!rt_.draining);
    } catch (const ntk::NotFound&) {
      response->set_ready(false);
    }
  });
}

grpc::Status InferenceServiceImpl::ServerMetadata(grpc::ServerContext* ctx, const inf::ServerMetadataRequest*,
                                                  inf::ServerMetadataResponse* response) {
  return handle(rt_, ctx, "ServerMetadata", [&](Call&) {
    response->set_name("ntkserve");
    response->set_version(kNtkserveVersion);
  });
}

grpc::Status InferenceServiceImpl::ModelMetadata(grpc::ServerContext* ctx,
                                                 const inf::ModelMetadataRequest* request,
                                                 inf::ModelMetadataResponse* response) {
  return handle(rt_, ctx, "ModelMetadata", [&](Call& call) {
    const pb::ModelInfo info = rt_.store.model_info(call.tenant(), request->name());
    response->set_name(info.model_id());
    response->add_versions("1");
    response->set_platform("ntkserve_ntk_classifier");
    const std::string dtype = info.spec().compute_dtype() == pb::FLOAT32 ? "FP32" : "FP64";
    auto* input = response->add_inputs();
    input->set_name("X");
    input->set_datatype(dtype);
    input->add_shape(-1);
    input->add_shape(info.cols());
    for (const char* name : kOutputs) {
      auto* out = response->add_outputs();
      out->set_name(name);
      out->set_datatype(dtype);
      out->add_shape(-1);
      if (std::strcmp(name, "ENTROPY") != 0 && std::strcmp(name, "MUTUAL_INFO") != 0)
        out->add_shape(info.num_classes());
    }
  });
}

grpc::Status InferenceServiceImpl::ModelInfer(grpc::ServerContext* ctx, const inf::ModelInferRequest* request,
                                              inf::ModelInferResponse* response) {
  return handle(rt_, ctx, "ModelInfer", [&](Call& call) {
    if (!request->model_version().empty() && request->model_version() != "1")
      throw ntk::NotFound("model " + request->model_name() + " has only version 1");
    auto model = rt_.store.model(call.tenant(), request->model_name());
    bool fp32 = false;
    const ntk::Matrix<double> x = input_matrix(*request, fp32);
    pb::PredictRequest options_request;
    const std::string mode = string_parameter(request->parameters(), "uncertainty");
    if (mode == "exact")
      options_request.set_uncertainty(pb::UNCERTAINTY_EXACT);
    else if (mode == "linearized")
      options_request.set_uncertainty(pb::UNCERTAINTY_LINEARIZED);
    else if (mode == "mc")
      options_request.set_uncertainty(pb::UNCERTAINTY_MONTE_CARLO);
    else if (!mode.empty() && mode != "none")
      throw ntk::InvalidArgument("parameter 'uncertainty' must be none, exact, linearized or mc, got '" +
                                 mode + "'");
    const std::int64_t samples = int_parameter(request->parameters(), "samples", 0);
    if (samples < 0 || samples > 100000)
      throw ntk::InvalidArgument("parameter 'samples' must be in [0, 100000]");
    options_request.set_samples(static_cast<int>(samples));
    options_request.set_seed(static_cast<std::uint64_t>(int_parameter(request->parameters(), "seed", 0)));
    options_request.set_float32_results(fp32);
    const PredictOptions options = predict_options(options_request, *model);
    check_predict_input(*model, x.view());

    std::vector<std::string> wanted;
    for (const auto& o : request->outputs()) {
      bool known = false;
      for (const char* name : kOutputs) known = known || o.name() == name;
      if (!known)
        throw ntk::InvalidArgument("unknown output '" + o.name() +
                                   "' (LOGITS, PROBS, LOGIT_VAR, ENTROPY, MUTUAL_INFO)");
      wanted.push_back(o.name());
    }
    const bool uncertain = options.uncertainty.mode != ntk::UncertaintyMode::none;
    if (wanted.empty()) {
      wanted = {"LOGITS", "PROBS"};
      if (uncertain) wanted.insert(wanted.end(), {"LOGIT_VAR", "ENTROPY", "MUTUAL_INFO"});
    }
    for (const auto& w : wanted)
      if (!uncertain && w != "LOGITS" && w != "PROBS")
        throw ntk::InvalidArgument("output " + w +
                                   " needs the request parameter 'uncertainty' (exact, linearized or mc)");

    auto backend = rt_.backends.acquire([&] { call.check_alive(); });
    pb::PredictResponse result;
    predict_batch(rt_, *backend, model, x.view(), 0, options, result);
    response->set_model_name(request->model_name());
    response->set_model_version("1");
    response->set_id(request->id());
    for (const auto& w : wanted) {
      if (w == "LOGITS")
        add_output(response, w, result.logits(), false);
      else if (w == "PROBS")
        add_output(response, w, result.probs(), false);
      else if (w == "LOGIT_VAR")
        add_output(response, w, result.logit_var(), false);
      else if (w == "ENTROPY")
        add_output(response, w, result.predictive_entropy(), true);
      else
        add_output(response, w, result.mutual_info(), true);
    }
  });
}

}  // namespace ntkserver
