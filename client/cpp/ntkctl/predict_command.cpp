#include <cstdio>
#include <filesystem>
#include <memory>

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
    "  Writes logits.npy, probs.npy and classes.npy; with uncertainty also logit_var.npy (T x C),\n"
    "  entropy.npy (predictive), expected_entropy.npy and mutual_info.npy. exact: lambda = 0;\n"
    "  linearized: lambda > 0; mc: either (S seeded initializations, default 100).\n";

const char* const kEvaluateHelp =
    "usage: ntkctl evaluate --model MODEL --x T.npy --labels y.npy [--uncertainty MODE --samples S --seed "
    "N]\n"
    "                       [--bins B] [--f0 F0.npy] [--json] [--backend auto|cpu|cuda:N] [--threads N]\n"
    "  Accuracy, mean NLL, Brier score, ECE (B equal-width bins, default 15) and the reliability table,\n"
    "  of the mean probabilities (with --uncertainty, of E[softmax f] over initialization).\n";

namespace {

// The options predict and evaluate share, read before any file is touched.
struct Request {
  std::string model_path, x_path;
  std::optional<std::string> f0_path;
  ntk::UncertaintyOptions uncertainty;
  std::string backend_name = "auto";
  ntk::BackendOptions backend_options;
};

Request parse_request(Args& args) {
  Request r;
  r.model_path = args.require("model");
  r.x_path = args.require("x");
  r.f0_path = args.get("f0");
  r.uncertainty.mode = ntk::parse_uncertainty_mode(args.get("uncertainty").value_or("none"));
  if (auto v = args.get_int("samples")) {
    if (*v < 1 || *v > 1000000) throw ntk::InvalidArgument("--samples must be in [1, 1000000]");
    r.uncertainty.samples = static_cast<int>(*v);
  }
  if (auto v = args.get_int("seed")) {
    if (*v < 0) throw ntk::InvalidArgument("--seed must be >= 0");
    r.uncertainty.seed = static_cast<std::uint64_t>(*v);
  }
  if (auto t = args.get_int("threads")) {
    if (*t < 1 || *t > 1024) throw ntk::InvalidArgument("--threads must be in [1, 1024]");
    r.backend_options.threads = static_cast<int>(*t);
  }
  r.backend_name = args.get("backend").value_or("auto");
  return r;
}

struct Loaded {
  ntk::Model model;
  ntk::Matrix<double> x, f0;
  std::unique_ptr<ntk::Backend> backend;
};

Loaded load(const Request& r) {
  Loaded l;
  try {
    l.model = ntk::load_model(r.model_path);
  } catch (const ntk::Error& e) {
    throw ntk::Error(e.code(), std::string("--model: ") + e.what());
  }
  l.x = load_matrix<double>("x", r.x_path);
  if (r.f0_path) l.f0 = load_matrix<double>("f0", *r.f0_path);
  l.backend = ntk::make_backend(r.backend_name, r.backend_options);
  return l;
}

ntk::UncertaintyResult run(const Request& r, Loaded& l) {
  try {
    if (!l.f0.size()) return ntk::predict_uncertainty(*l.backend, l.model, l.x.view(), r.uncertainty);
    if (r.uncertainty.mode != ntk::UncertaintyMode::none)
      throw ntk::InvalidArgument(
          "--f0 and --uncertainty exclude each other: the uncertainty is over f0 itself");
    const ntk::Prediction p = ntk::predict(*l.backend, l.model, l.x.view(), 0, l.f0.view());
    ntk::UncertaintyResult u;
    u.mean_logits = p.logits;
    u.mean_probs = p.probs;
    u.classes = p.classes;
    return u;
  } catch (const ntk::InvalidArgument& e) {
    std::string m = rename_subject(e.what(), "x", "--x '" + r.x_path + "'");
    if (m.rfind("test inputs", 0) == 0) m = "--x '" + r.x_path + "': " + m;
    if (m.rfind("test initial outputs", 0) == 0 || m.rfind("f0 ", 0) == 0 || m.rfind("this model", 0) == 0)
      m = "--f0: " + m;
    throw ntk::InvalidArgument(m);
  }
}

}  // namespace

int run_predict(Args& args) {
  const Request r = parse_request(args);
  const std::string out_dir = args.require("out-dir");
  args.reject_unused();
  Loaded l = load(r);
  // Created only now that the inputs are known good, and removed again if the run fails, so a failed
  // run leaves nothing behind.
  const bool created = !std::filesystem::exists(out_dir);
  prepare_output_dir("out-dir", out_dir);
  ntk::UncertaintyResult u;
  try {
    u = run(r, l);
  } catch (...) {
    std::error_code ec;
    if (created) std::filesystem::remove(out_dir, ec);
    throw;
  }
  write_predictions(out_dir, u, r.uncertainty.mode != ntk::UncertaintyMode::none);
  std::printf("wrote %lld predictions (%s) to %s on %s\n", static_cast<long long>(l.x.rows()),
              r.uncertainty.mode == ntk::UncertaintyMode::none
                  ? "mean predictor"
                  : ntk::uncertainty_mode_name(r.uncertainty.mode),
              out_dir.c_str(), l.backend->name().c_str());
  return 0;
}

int run_evaluate(Args& args) {
  const Request r = parse_request(args);
  const std::string labels_path = args.require("labels");
  int bins = 15;
  if (auto v = args.get_int("bins")) {
    if (*v < 1 || *v > 1000) throw ntk::InvalidArgument("--bins must be in [1, 1000]");
    bins = static_cast<int>(*v);
  }
  const bool json = args.flag("json");
  args.reject_unused();
  Loaded l = load(r);
  const auto labels = load_labels("labels", labels_path);
  if (static_cast<std::int64_t>(labels.size()) != l.x.rows())
    throw ntk::InvalidArgument("--labels has " + std::to_string(labels.size()) + " entries but --x has " +
                               std::to_string(l.x.rows()) + " rows");
  const ntk::UncertaintyResult u = run(r, l);
  return report_evaluation(u, labels, bins, json, r.uncertainty.mode != ntk::UncertaintyMode::none);
}

int report_evaluation(const ntk::UncertaintyResult& u, const std::vector<std::int64_t>& labels, int bins,
                      bool json, bool with_uncertainty) {
  ntk::ClassificationMetrics m;
  try {
    m = ntk::evaluate_probabilities(u.mean_probs.view(), labels, bins);
  } catch (const ntk::InvalidArgument& e) {
    throw ntk::InvalidArgument(std::string("--labels: ") + e.what());
  }
  double mean_mi = 0;
  if (with_uncertainty)
    for (std::int64_t i = 0; i < u.mutual_info.rows(); ++i)
      mean_mi += u.mutual_info(i, 0) / double(u.mutual_info.rows());
  if (json) {
    std::printf("{\"count\": %lld, \"accuracy\": %.17g, \"nll\": %.17g, \"brier\": %.17g, \"ece\": %.17g",
                static_cast<long long>(m.count), m.accuracy, m.nll, m.brier, m.ece);
    if (with_uncertainty) std::printf(", \"mean_mutual_info\": %.17g", mean_mi);
    std::printf(", \"reliability\": [");
    for (std::size_t b = 0; b < m.reliability.size(); ++b) {
      const auto& bin = m.reliability[b];
      std::printf(
          "%s{\"lower\": %.17g, \"upper\": %.17g, \"count\": %lld, \"confidence\": %.17g, \"accuracy\": "
          "%.17g}",
          b ? ", " : "", bin.lower, bin.upper, static_cast<long long>(bin.count), bin.mean_confidence,
          bin.accuracy);
    }
    std::printf("]}\n");
    return 0;
  }
  std::printf("points      %lld\naccuracy    %.4f\nmean NLL    %.4f\nBrier       %.4f\nECE (%d)    %.4f\n",
              static_cast<long long>(m.count), m.accuracy, m.nll, m.brier, bins, m.ece);
  if (with_uncertainty) std::printf("mean MI     %.4f\n", mean_mi);
  std::printf("\nreliability   bin          count  confidence  accuracy\n");
  for (const auto& bin : m.reliability)
    std::printf("            [%.3f, %.3f) %7lld    %.4f     %.4f\n", bin.lower, bin.upper,
                static_cast<long long>(bin.count), bin.mean_confidence, bin.accuracy);
  return 0;
}

}  // namespace ntkctl
