#include "ntk/dynamics.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "ntk/classifier.hpp"
#include "ntk/errors.hpp"
#include "ntk/ode.hpp"
#include "ntk/sample_math.hpp"

namespace ntk {

std::vector<Model> fit_dynamics(Backend& be, const KernelSpec& spec, ConstMatrixView<double> x,
                                const Targets& targets, const FitSettings& settings,
                                const std::vector<double>& times, const ProgressCallback& progress,
                                ConstMatrixView<double> f0) {
  const auto start = std::chrono::steady_clock::now();
  if (times.empty()) throw InvalidArgument("no training times given");
  for (std::size_t i = 0; i < times.size(); ++i)
    if (!(times[i] > 0) || !std::isfinite(times[i]) || (i && times[i] < times[i - 1]))
      throw InvalidArgument("training times must be positive, finite and ascending");
  if (!(settings.learning_rate > 0) || !std::isfinite(settings.learning_rate))
    throw InvalidArgument("learning rate must be > 0 and finite");
  if (!std::isfinite(settings.lambda) || settings.lambda < 0)
    throw InvalidArgument("lambda must be >= 0 and finite");
  spec.validate();
  check_kernel_input(x, "x");
  const std::int64_t n = x.rows, c = targets.num_classes;
  if (targets.probabilities.rows() != n)
    throw InvalidArgument("x has " + std::to_string(n) + " rows but there are " +
                          std::to_string(targets.probabilities.rows()) + " targets");
  if (!f0.empty() && (f0.rows != n || f0.cols != c))
    throw InvalidArgument("initial outputs f0 have the wrong shape");

  Model base;
  base.spec = spec;
  base.settings = settings;
  base.num_classes = c;
  base.x_train = copy_matrix(x);
  base.targets = targets.probabilities;
  if (!f0.empty()) base.f0_train = copy_matrix(f0);
  const std::unique_ptr<ResidentMatrix> theta_resident = resident_training_kernel(be, base, x);
  const double eta = settings.learning_rate, lambda = settings.lambda, inv_n = 1.0 / static_cast<double>(n);
  const std::size_t block = static_cast<std::size_t>(n * c);

  // State: f (N x C) then B (N x C), row-major.
  std::vector<double> y0(2 * block, 0.0);
  if (!f0.empty()) std::copy(base.f0_train.data(), base.f0_train.data() + block, y0.begin());
  Matrix<double> g(n, c), tg(n, c);
  auto rhs = [&](double, std::span<const double> y, std::span<double> dy) {
    for (std::int64_t i = 0; i < n; ++i) {
      sample::softmax(y.data() + i * c, static_cast<int>(c), g.row_data(i));
      for (std::int64_t a = 0; a < c; ++a) g(i, a) -= targets.probabilities(i, a);
    }
    theta_resident->multiply(inv_n, g.view(), 0.0, tg.view());
    for (std::size_t q = 0; q < block; ++q) {
      const double f0q = f0.empty() ? 0.0 : base.f0_train.data()[q];
      dy[q] = -eta * (tg.data()[q] + lambda * (y[q] - f0q));
      dy[block + q] = eta * (g.data()[q] - lambda * y[block + q]);
    }
  };
  OdeOptions ode;
  ode.rtol = std::clamp(settings.tolerance, 1e-12, 1e-4);
  ode.atol = ode.rtol * 1e-2;
  ode.norm = OdeNorm::max;
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto last_report = start - std::chrono::seconds(1);  // the first accepted step is always reported
  OdeObserver observer;
  if (progress)
    observer = [&](double t, std::span<const double>, const OdeStats& s) {
      // Thousands of steps are normal here: report at most ten times a second.
      const auto now = std::chrono::steady_clock::now();
      if (now - last_report < std::chrono::milliseconds(100)) return true;
      last_report = now;
      StepRecord r;
      r.step = static_cast<int>(std::min<std::int64_t>(s.steps_accepted, 2147483647));
      r.residual = t;  // the time reached, for a progress display
      r.step_size = s.last_step;
      r.elapsed_seconds = elapsed();
      return progress(r);
    };
  OdeStats stats;
  const auto states = integrate_dopri5(rhs, 0.0, y0, times, ode, observer, &stats);

  std::vector<Model> models;
  for (std::size_t k = 0; k < times.size(); ++k) {
    Model m = base;
    m.train_logits = Matrix<double>(n, c);
    m.coefficients = Matrix<double>(n, c);
    std::copy(states[k].begin(), states[k].begin() + static_cast<std::ptrdiff_t>(block),
              m.train_logits.data());
    for (std::size_t q = 0; q < block; ++q) m.coefficients.data()[q] = -states[k][block + q] * inv_n;
    m.settings.time = times[k];
    m.diagnostics.solver_used = SolverKind::dynamics;
    m.diagnostics.converged = true;
    m.diagnostics.steps = static_cast<int>(std::min<std::int64_t>(stats.steps_accepted, 2147483647));
    // Report the training objective's stationarity at this time: max |df/dt| / eta.
    std::vector<double> dy(2 * block);
    rhs(times[k], states[k], dy);
    double r = 0;
    for (std::size_t q = 0; q < block; ++q) r = std::max(r, std::abs(dy[q]) / eta);
    m.diagnostics.residual = r;
    std::ostringstream os;
    os.precision(3);
    os << "gradient flow to t = " << times[k] << " (Dormand-Prince 5(4), " << stats.steps_accepted
       << " steps, " << stats.steps_rejected << " rejected"
       << (stats.stiffness_detected ? ", step size limited by stiffness" : "")
       << "); max |df/dt|/eta = " << r;
    m.diagnostics.message = os.str();
    m.diagnostics.seconds = elapsed();
    models.push_back(std::move(m));
  }
  return models;
}

}  // namespace ntk
