#include <cmath>
#include <cstdio>

#include "ntk/backend.hpp"
#include "ntk/classifier.hpp"
#include "ntk/errors.hpp"
#include "ntk/model_file.hpp"
#include "ntkctl/arch_flags.hpp"
#include "ntkctl/commands.hpp"
#include "ntkctl/io.hpp"

namespace ntkctl {

const char* const kFitHelp =
    "usage: ntkctl fit --x X.npy (--labels y.npy [--label-smoothing EPS] [--classes C] | --targets P.npy)\n"
    "                  --lambda LAM --out MODEL [architecture flags] [--solver auto|direct|matrix_free]\n"
    "                  [--tolerance TOL] [--max-steps N] [--diag-reg R] [--f0 F0.npy] [--time T --lr ETA]\n"
    "                  [--backend auto|cpu|cuda:N] [--threads N] [--quiet]\n"
    "  Fits the cross-entropy NTK classifier (lambda > 0: the regularized fixed point by Newton;\n"
    "  lambda = 0: the closed form, needs label smoothing or soft targets). Exit status 3 when the\n"
    "  Newton iteration did not converge (the model is written and says so).\n";

int run_fit(Args& args) {
  const Architecture arch = parse_architecture(args);
  const std::string x_path = args.require("x");
  const auto labels_path = args.get("labels");
  const auto targets_path = args.get("targets");
  const auto smoothing = args.get_double("label-smoothing");
  const auto classes = args.get_int("classes");
  const auto lambda = args.get_double("lambda");
  const std::string out = args.require("out");
  const auto f0_path = args.get("f0");
  ntk::FitSettings s;
  s.dtype = arch.dtype == ComputeDType::float32 ? ntk::ComputeType::float32 : ntk::ComputeType::float64;
  if (auto v = args.get("solver")) s.solver = ntk::parse_solver(*v);
  if (auto v = args.get_double("tolerance")) s.tolerance = *v;
  if (auto v = args.get_int("max-steps")) {
    if (*v < 1 || *v > 100000) throw ntk::InvalidArgument("--max-steps must be in [1, 100000]");
    s.max_newton_steps = static_cast<int>(*v);
  }
  if (auto v = args.get_int("max-cg-iterations")) {
    if (*v < 1 || *v > 10000000) throw ntk::InvalidArgument("--max-cg-iterations must be >= 1");
    s.max_cg_iterations = static_cast<int>(*v);
  }
  if (auto v = args.get_double("diag-reg")) s.diag_reg = *v;
  if (auto v = args.get_double("time")) s.time = *v;
  if (auto v = args.get_double("lr")) s.learning_rate = *v;
  ntk::BackendOptions backend_options;
  if (auto t = args.get_int("threads")) {
    if (*t < 1 || *t > 1024) throw ntk::InvalidArgument("--threads must be in [1, 1024]");
    backend_options.threads = static_cast<int>(*t);
  }
  const std::string backend_name = args.get("backend").value_or("auto");
  const bool quiet = args.flag("quiet");
  args.reject_unused();

  if (!lambda) throw ntk::InvalidArgument("--lambda is required (>= 0)");
  if (*lambda < 0) throw ntk::InvalidArgument("--lambda must be >= 0, got " + std::to_string(*lambda));
  s.lambda = *lambda;
  if (labels_path.has_value() == targets_path.has_value())
    throw ntk::InvalidArgument("give exactly one of --labels and --targets");
  if (targets_path && (smoothing || classes))
    throw ntk::InvalidArgument("--label-smoothing and --classes apply to --labels, not --targets");
  if (!(s.tolerance > 0)) throw ntk::InvalidArgument("--tolerance must be > 0");
  if (s.time < 0) throw ntk::InvalidArgument("--time must be >= 0");
  if (!(s.learning_rate > 0)) throw ntk::InvalidArgument("--lr must be > 0");
  check_output_file("out", out);

  const ntk::Matrix<double> x = load_matrix<double>("x", x_path);
  ntk::Targets targets;
  try {
    if (labels_path) {
      const auto labels = load_labels("labels", *labels_path);
      if (static_cast<std::int64_t>(labels.size()) != x.rows())
        throw ntk::InvalidArgument("--labels has " + std::to_string(labels.size()) + " entries but --x has " +
                                   std::to_string(x.rows()) + " rows");
      s.label_smoothing = smoothing.value_or(0.0);
      targets = ntk::targets_from_labels(labels, classes.value_or(0), s.label_smoothing);
    } else {
      const auto p = load_matrix<double>("targets", *targets_path);
      if (p.rows() != x.rows())
        throw ntk::InvalidArgument("--targets has " + std::to_string(p.rows()) + " rows but --x has " +
                                   std::to_string(x.rows()));
      targets = ntk::targets_from_probabilities(p.view());
    }
  } catch (const ntk::InvalidArgument& e) {
    const std::string m = e.what();
    throw ntk::InvalidArgument(m.rfind("--", 0) == 0 ? m : (labels_path ? "--labels: " : "--targets: ") + m);
  }
  ntk::Matrix<double> f0;
  if (f0_path) f0 = load_matrix<double>("f0", *f0_path);

  auto backend = ntk::make_backend(backend_name, backend_options);
  auto progress = [&](const ntk::StepRecord& r) {
    if (quiet) return true;
    if (s.time > 0)  // the gradient flow reports the time reached in `residual` (see fit_dynamics)
      std::fprintf(stderr, "  t = %.6g of %.6g  %d steps  step %.3g  %.2f s\n", r.residual, s.time, r.step,
                   r.step_size, r.elapsed_seconds);
    else
      std::fprintf(stderr, "  step %3d  residual %.3e  objective %.12g  cg %4d  step size %.3g  %.2f s\n",
                   r.step, r.residual, r.objective, r.cg_iterations, r.step_size, r.elapsed_seconds);
    return true;
  };
  ntk::Model model;
  try {
    model = ntk::fit_classifier(*backend, arch.spec, x.view(), targets, s, progress, f0.view());
  } catch (const ntk::InvalidArgument& e) {
    std::string m = rename_subject(e.what(), "x", "--x '" + x_path + "'");
    if (m.rfind("f0 ", 0) == 0 || m.rfind("initial outputs f0", 0) == 0) m = "--f0: " + m;
    throw ntk::InvalidArgument(m);
  }
  ntk::save_model(out, model);
  const auto& d = model.diagnostics;
  std::printf("wrote %s: N=%lld d=%lld C=%lld lambda=%g solver=%s, %s, %.3f s on %s\n", out.c_str(),
              static_cast<long long>(x.rows()), static_cast<long long>(x.cols()),
              static_cast<long long>(model.num_classes), s.lambda, ntk::solver_name(d.solver_used),
              d.message.c_str(), d.seconds, backend->name().c_str());
  return d.converged ? 0 : 3;
}

}  // namespace ntkctl
