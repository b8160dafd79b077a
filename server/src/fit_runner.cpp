// Fit jobs: the checks made before a job is queued, and the worker that runs it.
#include <cmath>

#include "ntk/classifier.hpp"
#include "ntk/errors.hpp"
#include "ntk/logging.hpp"
#include "ntk/targets.hpp"
#include "runtime.hpp"
#include "wire.hpp"

namespace ntkserver {

namespace {

struct PreparedFit {
  ntk::KernelSpec spec;
  ntk::FitSettings settings;
};

PreparedFit prepare(const pb::FitRequest& r, const pb::DatasetInfo& info) {
  PreparedFit p;
  p.spec = from_proto(r.spec(), p.settings.dtype, "spec");
  auto& s = p.settings;
  if (!(r.lambda() >= 0) || !std::isfinite(r.lambda()))
    throw ntk::InvalidArgument("lambda must be a finite number >= 0 (got " + std::to_string(r.lambda()) +
                               ")");
  s.lambda = r.lambda();
  if (!(r.label_smoothing() >= 0 && r.label_smoothing() < 1))
    throw ntk::InvalidArgument("label_smoothing must be in [0, 1) (got " +
                               std::to_string(r.label_smoothing()) + ")");
  if (r.label_smoothing() > 0 && !info.has_labels())
    throw ntk::InvalidArgument("label_smoothing applies to labels; dataset '" + info.name() +
                               "' has soft targets");
  s.label_smoothing = r.label_smoothing();
  switch (r.solver()) {
    case pb::SOLVER_AUTO:
      s.solver = ntk::SolverKind::automatic;
      break;
    case pb::SOLVER_DIRECT:
      s.solver = ntk::SolverKind::direct;
      break;
    case pb::SOLVER_MATRIX_FREE:
      s.solver = ntk::SolverKind::matrix_free;
      break;
    default:
      throw ntk::InvalidArgument("solver: unknown value " + std::to_string(r.solver()));
  }
  if (r.tolerance() != 0) {
    if (!(r.tolerance() > 0 && r.tolerance() < 1)) throw ntk::InvalidArgument("tolerance must be in (0, 1)");
    s.tolerance = r.tolerance();
  }
  if (r.max_newton_steps() != 0) {
    if (r.max_newton_steps() < 1 || r.max_newton_steps() > 100000)
      throw ntk::InvalidArgument("max_newton_steps must be in [1, 100000]");
    s.max_newton_steps = r.max_newton_steps();
  }
  if (!(r.diag_reg() >= 0) || !std::isfinite(r.diag_reg()))
    throw ntk::InvalidArgument("diag_reg must be >= 0");
  s.diag_reg = r.diag_reg();
  if (!(r.time() >= 0) || !std::isfinite(r.time())) throw ntk::InvalidArgument("time must be >= 0");
  s.time = r.time();
  if (r.learning_rate() != 0) {
    if (!(r.learning_rate() > 0) || !std::isfinite(r.learning_rate()))
      throw ntk::InvalidArgument("learning_rate must be > 0");
    s.learning_rate = r.learning_rate();
  }
  if (r.description().size() > 4096) throw ntk::InvalidArgument("description: at most 4096 bytes");
  if (!info.has_labels() && !info.has_targets())
    throw ntk::FailedPrecondition("dataset '" + info.name() +
                                  "' has neither labels nor targets; upload it with "
                                  "labels or soft targets to fit on it");
  if (s.lambda == 0 && s.time == 0 && info.has_labels() && s.label_smoothing == 0)
    throw ntk::FailedPrecondition(
        "lambda = 0 with one-hot labels has no solution (the logits diverge): set label_smoothing > 0, "
        "lambda > 0, or a finite training time");
  return p;
}

// What a fit holds at its peak, in bytes (float64): the NTK, the solver's work matrices, the model.
std::uint64_t fit_memory_estimate(const pb::DatasetInfo& info, const ntk::FitSettings& s) {
  const double n = static_cast<double>(info.rows()), d = static_cast<double>(info.cols());
  const double c = static_cast<double>(std::max<std::int64_t>(info.num_classes(), 2));
  const ntk::SolverKind solver = s.solver == ntk::SolverKind::automatic
                                     ? ntk::choose_solver(info.rows(), static_cast<std::int64_t>(c), 0)
                                     : s.solver;
  double matrices = 2;  // Theta and the assembly's other kernel / a factor
  if (s.lambda > 0 && s.time == 0 && solver == ntk::SolverKind::direct) matrices = 4;  // + the GPML factors
  // + Newton-CG's float32 copy of Theta (NewtonOptions::float32_inner_products)
  if (s.lambda > 0 && s.time == 0 && solver == ntk::SolverKind::matrix_free) matrices = 2.5;
  if (s.time > 0) matrices = 3;
  return static_cast<std::uint64_t>(8 * (matrices * n * n + 8 * n * c + 2 * n * d) + (1 << 20));
}

}  // namespace

void check_fit_request(Runtime& rt, const std::string& tenant, const pb::FitRequest& request) {
  if (request.dataset().empty()) throw ntk::InvalidArgument("dataset: name an uploaded dataset");
  const pb::DatasetInfo info = rt.store.dataset_info(tenant, request.dataset());
  const PreparedFit p = prepare(request, info);
  const std::uint64_t need = fit_memory_estimate(info, p.settings);
  if (need > rt.budget.total())
    throw ntk::ResourceExhausted("fitting dataset '" + info.name() + "' (N = " + std::to_string(info.rows()) +
                                 ") needs about " + std::to_string(need) +
                                 " bytes, more than the server's whole " + "memory budget of " +
                                 std::to_string(rt.budget.total()) + " bytes");
}

void run_fit_job(Runtime& rt, Job& job) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto end = [&](pb::JobState state, const std::string& code, const std::string& message, int steps) {
    if (!job.cancelled_by_shutdown()) {
      try {
        rt.store.remove_job(job.tenant(), job.id());
      } catch (const ntk::Error& e) {
        ntk::log_warning("job " + job.id() + ": " + e.what());
      }
    }
    job.update([&](pb::FitProgress& p) {
      p.set_state(state);
      p.set_phase("done");
      p.set_error_code(code);
      p.set_message(message);
      p.set_elapsed_seconds(seconds());
      p.set_estimated_remaining_seconds(0);
    });
    rt.metrics.record_fit(state == pb::SUCCEEDED   ? "succeeded"
                          : state == pb::CANCELLED ? "cancelled"
                                                   : "failed",
                          seconds(), steps);
    ntk::log_info("job " + job.id() + " (tenant " + job.tenant() + "): " + pb::JobState_Name(state) +
                  (message.empty() ? "" : ": " + message) + " after " + std::to_string(seconds()) + " s");
  };
  if (job.cancel_requested()) {
    if (job.cancelled_by_shutdown()) return;
    end(pb::CANCELLED, "CANCELLED", "cancelled before it started", 0);
    return;
  }
  int steps = 0;
  try {
    job.update([&](pb::FitProgress& p) {
      p.set_state(pb::RUNNING);
      p.set_phase("kernel");
    });
    pb::DatasetInfo info;
    auto data = rt.store.dataset(job.tenant(), job.request().dataset(), &info);
    const PreparedFit p = prepare(job.request(), info);
    Reservation memory = rt.budget.reserve(fit_memory_estimate(info, p.settings), "fit job " + job.id());
    const ntk::Targets targets =
        info.has_labels()
            ? ntk::targets_from_labels(data->labels, info.num_classes(), p.settings.label_smoothing)
            : ntk::targets_from_probabilities(data->targets.view());
    auto check_cancel = [&] {
      if (job.cancel_requested()) throw ntk::Cancelled("fit cancelled");
    };
    auto backend = rt.backends.acquire(check_cancel);
    const double tolerance = p.settings.tolerance;
    std::vector<double> step_times;
    auto progress = [&](const ntk::StepRecord& r) {
      steps = r.step;
      step_times.push_back(r.elapsed_seconds);
      job.update([&](pb::FitProgress& q) {
        q.set_phase(p.settings.time > 0 ? "dynamics" : "newton");
        q.set_newton_step(r.step);
        q.set_residual(r.residual);
        q.set_objective(r.objective);
        q.set_cg_iterations(r.cg_iterations);
        q.set_elapsed_seconds(seconds());
        // Newton converges quadratically near the solution: the digits still missing over the digits
        // the last step gained, times the mean step time; unknown until two steps have run.
        double remaining = -1;
        if (p.settings.time > 0 && r.residual > 0) {
          remaining = r.elapsed_seconds * std::max(0.0, p.settings.time / r.residual - 1);
        } else if (step_times.size() >= 2 && r.residual > 0 && q.residual() > 0) {
          const double per_step = r.elapsed_seconds / static_cast<double>(step_times.size());
          const double missing = std::max(0.0, std::log10(r.residual / tolerance));
          remaining = per_step * std::min(missing, 20.0) / 2;
        }
        q.set_estimated_remaining_seconds(remaining);
      });
      return !job.cancel_requested();
    };
    // The kernel assembly asks between tiles too, so that a cancelled job stops within one tile.
    ntk::Model model = ntk::fit_classifier(*backend, p.spec, data->x.view(), targets, p.settings, progress,
                                           {}, [&job] { return job.cancel_requested(); });
    steps = model.diagnostics.steps;
    job.update([&](pb::FitProgress& q) {
      q.set_phase("saving");
      q.set_converged(model.diagnostics.converged);
      q.set_residual(model.diagnostics.residual);
      q.set_newton_step(model.diagnostics.steps);
    });
    pb::ModelInfo minfo = describe_model(model);
    minfo.set_model_id(job.id());
    minfo.set_dataset(info.name());
    minfo.set_description(job.request().description());
    minfo.set_created_unix_ms(unix_millis());
    rt.store.add_model(job.tenant(), minfo, model);
    // Released before the job is reported done, so that a client that sees SUCCEEDED also sees the memory
    // and the backend free again.
    memory.release();
    { auto done = std::move(backend); }
    const std::string message = model.diagnostics.message;
    job.update([&](pb::FitProgress& q) { q.set_converged(model.diagnostics.converged); });
    end(pb::SUCCEEDED, "", message, steps);
  } catch (const ntk::Cancelled&) {
    if (job.cancelled_by_shutdown()) {
      ntk::log_info("job " + job.id() + ": interrupted by shutdown; it runs again after the restart");
      job.update([&](pb::FitProgress& q) {
        q.set_state(pb::QUEUED);
        q.set_phase("queued");
        q.set_message("interrupted by a server shutdown; it runs again after the restart");
      });
      return;
    }
    end(pb::CANCELLED, "CANCELLED", "cancelled after Newton step " + std::to_string(steps), steps);
  } catch (...) {
    const grpc::Status s = to_status(std::current_exception());
    end(pb::FAILED, status_code_name(s.error_code()), s.error_message(), steps);
  }
}

}  // namespace ntkserver
