#include <cstdio>

#include "ntk/backend.hpp"
#include "ntk/classifier.hpp"
#include "ntk/errors.hpp"
#include "ntk/metrics.hpp"
#include "ntk/model_file.hpp"
#include "ntk/uncertainty.hpp"
#include "ntkctl/commands.hpp"
#include "ntkctl/io.hpp"

namespace ntkctl {

const char* const kPredictHelp =
    "usage: ntkctl predict --model MODEL --x T.npy --out-dir DIR [--uncertainty none|exact|linearized|mc]\n"
    "                      [--samples S] [--seed N] [--f0 F0.npy] [--backend auto|cpu|cuda:N] [--threads N]\n"
    "  Writes logits.npy, probs.npy and classes.npy; with uncertainty also logit_var.npy, entropy.npy\n"
    "  (predictive), expected_entropy.npy and mutual_info.npy. exact: lambda = 0; linearized and mc:\n"
    "  lambda > 0 (mc also for lambda = 0).\n";

const char* const kEvaluateHelp =
    "usage: ntkctl evaluate --model MODEL --x T.npy --labels y.npy [--uncertainty MODE] [--bins B]\n"
    "                       [--f0 F0.npy] [--json] [--backend auto|cpu|cuda:N] [--threads N]\n"
    "  Accuracy, mean NLL, Brier score, ECE and the reliability-diagram table.\n";

namespace {

struct Common {
  ntk::Model model;
  ntk::Matrix<double> x, f0;
  std::unique_ptr<ntk::Backend> backend;
  ntk::UncertaintyOptions uncertainty;
};

Common load_common(Args& args) {
  Common c;
  const std::string model_path = args.require("model");
  const std::string x_path = args.require("x");
  const auto f0_path = args.get("f0");
  c.uncertainty.mode = ntk::parse_uncertainty_mode(args.get("uncertainty").value_or("none"));
  if (auto v = args.get_int("samples")) {
    if (*v < 1 || *v > 1000000) throw ntk::InvalidArgument("--samples must be in [1, 1000000]");
    c.uncertainty.samples = static_cast<int>(*v);
  }
  if (auto v = args.get_int("seed")) c.uncertainty.seed = static_cast<std::uint64_t>(*v);
  ntk::BackendOptions backend_options;
  if (auto t = args.get_int("threads")) {
    if (*t < 1 || *t > 1024) throw ntk::InvalidArgument("--threads must be in [1, 1024]");
    backend_options.threads = static_cast<int>(*t);
  }
  const std::string backend_name = args.get("backend").value_or("auto");
  c.backend_name_ = backend_name;
  c.backend_options_ = backend_options;
  try {
    c.model = ntk::load_model(model_path);
  } catch (const ntk::Error& e) {
    throw ntk::Error(e.code(), std::string("--model: ") + e.what());
  }
  c.x = load_matrix<double>("x", x_path);
  if (f0_path) c.f0 = load_matrix<double>("f0", *f0_path);
  return c;
}

}  // namespace

}  // namespace ntkctl
