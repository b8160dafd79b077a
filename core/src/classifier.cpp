#include "ntk/classifier.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "ntk/dynamics.hpp"
#include "ntk/errors.hpp"
#include "ntk/logging.hpp"
#include "ntk/sample_math.hpp"

namespace ntk {
namespace {

template <class T>
Matrix<double> kernel_in(Backend& be, const KernelSpec& spec, ConstMatrixView<double> x1,
                         const ConstMatrixView<double>* x2, KernelSelection which,
                         const AssemblyOptions& options = {}) {
  const std::int64_t n2 = x2 ? x2->rows : x1.rows;
  Matrix<double> out(x1.rows, n2);
  if constexpr (std::is_same_v<T, double>) {
    KernelOutputs<double> o = which == KernelSelection::nngp ? KernelOutputs<double>{out.view(), {}}
                                                             : KernelOutputs<double>{{}, out.view()};
    be.kernel(spec, x1, x2, o, options);
  } else {
    const Matrix<float> a = convert_matrix<float>(x1);
    Matrix<float> b;
    if (x2) b = convert_matrix<float>(*x2);
    const ConstMatrixView<float> bv = b.view();
    Matrix<float> k(x1.rows, n2);
    KernelOutputs<float> o = which == KernelSelection::nngp ? KernelOutputs<float>{k.view(), {}}
                                                            : KernelOutputs<float>{{}, k.view()};
    be.kernel(spec, a.view(), x2 ? &bv : nullptr, o, options);
    for (std::size_t i = 0; i < k.size(); ++i) out.data()[i] = k.data()[i];
  }
  return out;
}

// The training NTK in the model's compute type, on the host (float64 storage).
Matrix<double> training_kernel(Backend& be, const Model& m, ConstMatrixView<double> x,
                               const AssemblyOptions& options) {
  return m.settings.dtype == ComputeType::float32
             ? kernel_in<float>(be, m.spec, x, nullptr, KernelSelection::ntk, options)
             : kernel_in<double>(be, m.spec, x, nullptr, KernelSelection::ntk, options);
}

}  // namespace

// The training NTK in the model's compute type, kept where the backend computes.
std::unique_ptr<ResidentMatrix> resident_training_kernel(Backend& be, const Model& m,
                                                         ConstMatrixView<double> x,
                                                         const AssemblyOptions& options) {
  if (m.settings.dtype == ComputeType::float32) {
    const Matrix<float> x32 = convert_matrix<float>(x);
    return be.resident_kernel(m.spec, x32.view(), options, "training kernel Theta");
  }
  return be.resident_kernel(m.spec, x, options, "training kernel Theta");
}

namespace {

void check_settings(const FitSettings& s) {
  if (!std::isfinite(s.lambda) || s.lambda < 0)
    throw InvalidArgument("lambda must be >= 0 and finite, got " + std::to_string(s.lambda));
  if (!std::isfinite(s.diag_reg) || s.diag_reg < 0)
    throw InvalidArgument("diag_reg must be >= 0 and finite, got " + std::to_string(s.diag_reg));
  if (!(s.tolerance > 0)) throw InvalidArgument("tolerance must be > 0");
  if (s.max_newton_steps < 1) throw InvalidArgument("max_newton_steps must be >= 1");
  if (s.max_cg_iterations < 1) throw InvalidArgument("max_cg_iterations must be >= 1");
  if (!std::isfinite(s.time) || s.time < 0) throw InvalidArgument("time must be >= 0 and finite");
  if (!(s.learning_rate > 0) || !std::isfinite(s.learning_rate))
    throw InvalidArgument("learning rate must be > 0 and finite");
}

void check_inputs(ConstMatrixView<double> x, const Targets& t) {
  if (x.rows == 0) throw InvalidArgument("no training points");
  if (t.probabilities.rows() != x.rows)
    throw InvalidArgument("x has " + std::to_string(x.rows) + " rows but there are " +
                          std::to_string(t.probabilities.rows()) + " targets");
  check_kernel_input(x, "x");
}

// lambda = 0: f_inf(X) = log Y + c 1^T with c_i = mean_c (f0_ic - log y_ic) (gradient flow keeps each
// sample's class sum), coefficients = (Theta + diag_reg mean(diag Theta) I)^-1 (f_inf(X) - f0(X)), solved
// where Theta lives (on CUDA only the factor comes back to the host, for the model and exact uncertainty).
void fit_closed_form(Backend& be, Model& m, ResidentMatrix& theta) {
  const std::int64_t n = m.targets.rows(), c = m.targets.cols();
  const bool has_f0 = m.f0_train.size() > 0;
  m.train_logits = Matrix<double>(n, c);
  for (std::int64_t i = 0; i < n; ++i) {
    double shift = 0;
    for (std::int64_t j = 0; j < c; ++j)
      shift += (has_f0 ? m.f0_train(i, j) : 0.0) - std::log(m.targets(i, j));
    shift /= static_cast<double>(c);
    for (std::int64_t j = 0; j < c; ++j) m.train_logits(i, j) = std::log(m.targets(i, j)) + shift;
  }
  m.coefficients = m.train_logits;
  if (has_f0)
    for (std::size_t i = 0; i < m.coefficients.size(); ++i) m.coefficients.data()[i] -= m.f0_train.data()[i];
  double trace = 0;
  for (const double d : theta.diagonal()) trace += d;
  const double add = m.settings.diag_reg * trace / static_cast<double>(n);
  try {
    m.theta_factor = theta.factor_and_solve(be, add, m.coefficients.view(), "the training NTK");
  } catch (const NumericalError& e) {
    throw NumericalError(std::string(e.what()) +
                         "; duplicate or nearly collinear training points make it singular: set diag_reg > 0 "
                         "(e.g. 1e-6)");
  }
  m.diagnostics.solver_used = SolverKind::closed_form;
  m.diagnostics.converged = true;
  m.diagnostics.message = "closed form (lambda = 0)";
}

}  // namespace

SolverKind choose_solver(std::int64_t n, std::int64_t classes, std::size_t memory_bytes) {
  // The direct step holds C + 2 matrices of N x N doubles and costs about 3.3 C N^3 flops; Newton-CG
  // costs 2 N^2 C per CG iteration and needs ~25 (Nystrom-preconditioned) iterations per Newton step here
  // (docs/benchmarks.md: 15x faster at N = 1000, 80x at N = 4000). Direct is kept for small N, where it costs
  // little and does not depend on the conditioning of the CG system.
  const double direct_bytes = double(classes + 2) * double(n) * double(n) * 8.0;
  if (n <= 300 && direct_bytes <= 0.5 * double(memory_bytes)) return SolverKind::direct;
  return SolverKind::matrix_free;
}

Matrix<double> model_kernel(Backend& be, const Model& m, ConstMatrixView<double> x1,
                            const ConstMatrixView<double>* x2, KernelSelection which) {
  return m.settings.dtype == ComputeType::float32 ? kernel_in<float>(be, m.spec, x1, x2, which)
                                                  : kernel_in<double>(be, m.spec, x1, x2, which);
}

Model fit_classifier(Backend& be, const KernelSpec& spec, ConstMatrixView<double> x, const Targets& targets,
                     const FitSettings& settings, const ProgressCallback& progress,
                     ConstMatrixView<double> f0, const std::function<bool()>& should_stop) {
  const auto start = std::chrono::steady_clock::now();
  spec.validate();
  check_settings(settings);
  check_inputs(x, targets);
  if (settings.time > 0) {  // finite time: the flow is well defined even for one-hot targets
    auto models = fit_dynamics(be, spec, x, targets, settings, {settings.time}, progress, f0);
    return std::move(models.front());
  }
  if (settings.lambda == 0 && targets.degenerate)
    throw FailedPrecondition(
        "with lambda = 0 and targets that have zero probabilities (one-hot labels) the logits diverge: set "
        "lambda > 0 or label smoothing eps > 0");
  Model m;
  m.spec = spec;
  m.settings = settings;
  m.num_classes = targets.num_classes;
  m.x_train = copy_matrix(x);
  m.targets = targets.probabilities;
  if (!f0.empty()) {
    if (f0.rows != x.rows || f0.cols != targets.num_classes)
      throw InvalidArgument("initial outputs f0 are " + std::to_string(f0.rows) + " x " +
                            std::to_string(f0.cols) + ", expected " + std::to_string(x.rows) + " x " +
                            std::to_string(targets.num_classes));
    check_kernel_input(f0, "f0");
    m.f0_train = copy_matrix(f0);
  }
  AssemblyOptions assembly;
  assembly.should_stop = should_stop;
  const std::int64_t n = x.rows;

  if (settings.lambda == 0) {
    fit_closed_form(be, m, *resident_training_kernel(be, m, x, assembly));
  } else {
    NewtonOptions opt;
    opt.solver = settings.solver == SolverKind::automatic
                     ? choose_solver(n, targets.num_classes, std::size_t(8) << 30)
                     : settings.solver;
    if (opt.solver != SolverKind::direct && opt.solver != SolverKind::matrix_free)
      throw InvalidArgument(std::string("solver ") + solver_name(settings.solver) +
                            " does not apply to lambda > 0");
    opt.tolerance = settings.tolerance;
    opt.max_steps = settings.max_newton_steps;
    opt.max_cg_iterations = settings.max_cg_iterations;
    // Newton-CG only multiplies with Theta: it stays where the backend computes (on a GPU it never reaches
    // the host). The direct step keeps it on the host too: its Laplace factors are formed from the
    // resident copy, and from the host's where the device has no room for them.
    Matrix<double> theta;
    std::unique_ptr<ResidentMatrix> resident;
    if (opt.solver == SolverKind::matrix_free)
      resident = resident_training_kernel(be, m, x, assembly);
    else
      theta = training_kernel(be, m, x, assembly);
    FixedPointProblem problem{theta.view(), 1.0 / (static_cast<double>(n) * settings.lambda),
                              m.targets.view(), m.f0_train.view()};
    problem.resident = resident.get();
    if (m.f0_train.size() == 0) problem.f0 = {};
    FixedPointSolution sol = solve_fixed_point(be, problem, opt, nullptr, progress);
    m.train_logits = std::move(sol.h);
    if (m.f0_train.size())
      for (std::size_t i = 0; i < m.train_logits.size(); ++i)
        m.train_logits.data()[i] += m.f0_train.data()[i];
    m.coefficients = std::move(sol.a);
    for (std::size_t i = 0; i < m.coefficients.size(); ++i) m.coefficients.data()[i] *= problem.k;
    m.diagnostics = std::move(sol.diagnostics);
  }
  m.diagnostics.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

std::unique_ptr<KernelProduct> make_model_product(Backend& be, const Model& m) {
  return be.make_kernel_product(m.spec, m.settings.dtype == ComputeType::float32, m.x_train.view(),
                                m.coefficients.view());
}

Prediction predict(Backend& be, const Model& m, ConstMatrixView<double> x, std::int64_t tile_rows,
                   ConstMatrixView<double> f0) {
  const std::unique_ptr<KernelProduct> product = make_model_product(be, m);
  return predict_with(*product, m, x, tile_rows, f0);
}

Prediction predict_with(KernelProduct& product, const Model& m, ConstMatrixView<double> x,
                        std::int64_t tile_rows, ConstMatrixView<double> f0) {
  if (product.training_rows() != m.x_train.rows())
    throw InvalidArgument("kernel product of " + std::to_string(product.training_rows()) +
                          " training rows used with a model of " + std::to_string(m.x_train.rows()));
  if (x.cols != m.x_train.cols())
    throw InvalidArgument("test inputs have " + std::to_string(x.cols) +
                          " features, the model was fitted on " + std::to_string(m.x_train.cols()));
  check_kernel_input(x, "x");
  const bool model_has_f0 = m.f0_train.size() > 0;
  if (model_has_f0 && f0.empty())
    throw InvalidArgument("this model was fitted with initial outputs f0: pass f0 for the test points too");
  if (!model_has_f0 && !f0.empty())
    throw InvalidArgument("this model was fitted with f0 = 0 (the deterministic predictor): do not pass f0");
  if (!f0.empty()) {
    if (f0.rows != x.rows || f0.cols != m.num_classes)
      throw InvalidArgument("test initial outputs f0 are " + std::to_string(f0.rows) + " x " +
                            std::to_string(f0.cols) + ", expected " + std::to_string(x.rows) + " x " +
                            std::to_string(m.num_classes));
    check_kernel_input(f0, "f0");
  }
  const std::int64_t t = x.rows, c = m.num_classes;
  Prediction p;
  p.logits = Matrix<double>(t, c);
  p.probs = Matrix<double>(t, c);
  p.classes.resize(static_cast<std::size_t>(t));
  if (!f0.empty())
    for (std::int64_t i = 0; i < t; ++i) std::copy(f0.row(i), f0.row(i) + c, p.logits.row_data(i));
  // f(x*) = f0(x*) + Theta(x*, X) coefficients, the kernel never materialized beyond the backend's blocks.
  if (tile_rows <= 0) tile_rows = std::max<std::int64_t>(t, 1);
  for (std::int64_t r0 = 0; r0 < t; r0 += tile_rows) {
    const std::int64_t rows = std::min(tile_rows, t - r0);
    product.apply(x.block(r0, 0, rows, x.cols), f0.empty() ? 0.0 : 1.0,
                  p.logits.view().block(r0, 0, rows, c));
  }
  for (std::int64_t i = 0; i < t; ++i) {
    sample::softmax(p.logits.row_data(i), static_cast<int>(c), p.probs.row_data(i));
    p.classes[static_cast<std::size_t>(i)] =
        std::max_element(p.probs.row_data(i), p.probs.row_data(i) + c) - p.probs.row_data(i);
  }
  return p;
}

const char* solver_name(SolverKind kind) {
  switch (kind) {
    case SolverKind::automatic:
      return "auto";
    case SolverKind::direct:
      return "direct";
    case SolverKind::matrix_free:
      return "matrix_free";
    case SolverKind::closed_form:
      return "closed_form";
    case SolverKind::dynamics:
      return "dynamics";
  }
  return "?";
}

SolverKind parse_solver(std::string_view name) {
  if (name == "auto") return SolverKind::automatic;
  if (name == "direct") return SolverKind::direct;
  if (name == "matrix_free" || name == "cg") return SolverKind::matrix_free;
  throw InvalidArgument("unknown solver '" + std::string(name) + "' (known: auto, direct, matrix_free)");
}

}  // namespace ntk
