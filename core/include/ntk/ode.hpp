#pragma once
// Adaptive explicit Runge-Kutta integration: Dormand-Prince 5(4) (DOPRI5, Hairer-Norsett-Wanner I, II.5)
// with FSAL, the embedded 4th-order error estimate, a PI step-size controller, Hairer's initial step
// selection, 4th-order dense output and Hairer's stiffness detection.
//
// What step-size control can and cannot do here: once the fast modes of a dissipative system have decayed,
// the step of any explicit method is capped by stability, h * |lambda_max| <= ~3.3 for DOPRI5, whatever the
// tolerance. The controller then keeps the step at that boundary (the PI controller keeps it from
// oscillating), so integrating to time T costs about T * |lambda_max| / 3.3 steps. Problems whose
// slowest modes are 5 decades below lambda_max therefore reach the slow time scale in ~1e5 steps, not
// ~1e10; a larger spread needs an implicit method. OdeStats::stiffness_detected reports when a run spent
// long stretches at that boundary.
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

namespace ntk {

enum class OdeNorm {
  rms,  // sqrt(mean_i (e_i / s_i)^2), as in Hairer's dopri5: errors in a few components may exceed the
        // tolerance
  max,  // max_i |e_i| / s_i: every component within tolerance, slightly more steps
};

struct OdeOptions {
  // Per component the local error is kept below atol + rtol * max(|y_old|, |y_new|) (in `norm`).
  double rtol = 1e-10;
  double atol = 1e-12;
  OdeNorm norm = OdeNorm::rms;
  double initial_step = 0;  // 0: chosen automatically (Hairer's hinit), costs one rhs evaluation
  double max_step = std::numeric_limits<double>::infinity();
  std::int64_t max_steps = 10'000'000;  // attempted steps, accepted plus rejected
};

struct OdeStats {
  std::int64_t steps_accepted = 0;
  std::int64_t steps_rejected = 0;
  std::int64_t rhs_evaluations = 0;
  double t = 0;          // time reached
  double last_step = 0;  // size of the last accepted step
  // Set once 15 accepted steps in a row (allowing short interruptions) ran at the stability boundary of
  // the method: the step is then limited by stiffness, not accuracy (see the note above).
  bool stiffness_detected = false;
};

// Writes dy/dt at (t, y) into dydt (same size as y, not aliased with it).
using OdeRhs = std::function<void(double t, std::span<const double> y, std::span<double> dydt)>;
// Called after each accepted step with the new time and state; returning false cancels the integration.
using OdeObserver = std::function<bool(double t, std::span<const double> y, const OdeStats& stats)>;

// Integrates y' = rhs(t, y) from (t0, y0) and returns the state at each of `times` (non-decreasing,
// >= t0; t0 itself allowed), hitting each exactly: the last one by stepping onto it, the others by dense
// output, so they do not shorten steps. rhs is never evaluated beyond the last output time.
// Throws InvalidArgument for an empty or non-finite y0, non-finite or decreasing times or times before t0,
// and invalid options; NumericalError, naming the time reached, when the rhs returns non-finite values at
// an accepted state, when the step size underflows (|h| < 1e-14 |t|, e.g. at a singularity or because the
// rhs keeps returning non-finite values) and when max_steps is exhausted; Cancelled when the observer
// returns false. Exceptions thrown by rhs or observer propagate unchanged.
std::vector<std::vector<double>> integrate_dopri5(const OdeRhs& rhs, double t0, std::span<const double> y0,
                                                  std::span<const double> times,
                                                  const OdeOptions& options = {},
                                                  const OdeObserver& observer = {},
                                                  OdeStats* stats = nullptr);

}  // namespace ntk
