#include "ntk/ode.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "ntk/errors.hpp"

namespace ntk {
namespace {

// The Dormand-Prince 5(4) tableau, as in Hairer's dopri5.f.
constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
constexpr double a21 = 1.0 / 5;
constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561, a54 = -212.0 / 729;
constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                 a65 = -5103.0 / 18656;
// The 5th-order weights; also row 7, so the last stage is f at the new point (FSAL).
constexpr double a71 = 35.0 / 384, a73 = 500.0 / 1113, a74 = 125.0 / 192, a75 = -2187.0 / 6784,
                 a76 = 11.0 / 84;
// 5th- minus 4th-order weights: the local error estimate.
constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920, e5 = -17253.0 / 339200,
                 e6 = 22.0 / 525, e7 = -1.0 / 40;
// Dense output (Hairer-Norsett-Wanner I, II.6, Shampine's 4th-order continuous extension).
constexpr double d1 = -12715105075.0 / 11282082432.0, d3 = 87487479700.0 / 32700410799.0,
                 d4 = -10690763975.0 / 1880347072.0, d5 = 701980252875.0 / 199316789632.0,
                 d6 = -1453857185.0 / 822651844.0, d7 = 69997945.0 / 29380423.0;

// Step-size controller (Hairer-Norsett-Wanner II.4, Soderlind): h_new = h * safe * err^-expo1 * err_old^beta,
// the factor clamped to [1/max_shrink, max_growth]. beta = 0.04 is dopri5's default; it damps the
// oscillation of the step size at the stability boundary, which is where long dissipative runs live.
constexpr double safe = 0.9;
constexpr double beta = 0.04;
constexpr double expo1 = 0.2 - beta * 0.75;
constexpr double max_shrink = 5;   // h_new >= h / 5
constexpr double max_growth = 10;  // h_new <= 10 h
// After a step the rhs could not evaluate (non-finite values) there is no error estimate to scale by.
constexpr double non_finite_shrink = 0.1;
// Hairer's stiffness test: h * |lambda| estimated from stages 6 and 7 (both at t + h) beyond 3.25, close
// to DOPRI5's real stability boundary of ~3.3, for 15 accepted steps; 6 non-stiff steps reset the count.
constexpr double stiff_h_lambda = 3.25;
constexpr int stiff_count = 15;
constexpr int non_stiff_reset = 6;
// A step below this fraction of |t| no longer changes t meaningfully.
constexpr double min_relative_step = 1e-14;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

bool all_finite(std::span<const double> v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

// Accumulates squared or absolute scaled errors; the result is comparable to 1 in both norms.
class ErrorNorm {
 public:
  explicit ErrorNorm(OdeNorm norm) : norm_(norm) {}
  void add(double scaled) {
    if (norm_ == OdeNorm::rms) {
      acc_ += scaled * scaled;
    } else {
      acc_ = std::max(acc_, std::abs(scaled));
      // std::max drops NaN, which must reject the step.
      nan_ = nan_ || std::isnan(scaled);
    }
    ++n_;
  }
  double value() const {
    if (nan_) return std::numeric_limits<double>::quiet_NaN();
    return norm_ == OdeNorm::rms ? std::sqrt(acc_ / double(n_)) : acc_;
  }

 private:
  OdeNorm norm_;
  double acc_ = 0;
  bool nan_ = false;
  std::size_t n_ = 0;
};

void validate(double t0, std::span<const double> y0, std::span<const double> times, const OdeOptions& o) {
  if (y0.empty()) throw InvalidArgument("integrate_dopri5: the initial state is empty");
  if (!std::isfinite(t0)) throw InvalidArgument("integrate_dopri5: t0 = " + num(t0) + " is not finite");
  for (std::size_t i = 0; i < y0.size(); ++i) {
    if (!std::isfinite(y0[i])) {
      throw InvalidArgument("integrate_dopri5: y0[" + std::to_string(i) + "] = " + num(y0[i]) +
                            " is not finite");
    }
  }
  for (std::size_t i = 0; i < times.size(); ++i) {
    const std::string at = "integrate_dopri5: output time [" + std::to_string(i) + "] = " + num(times[i]);
    if (!std::isfinite(times[i])) throw InvalidArgument(at + " is not finite");
    if (times[i] < t0) throw InvalidArgument(at + " is before t0 = " + num(t0));
    if (i > 0 && times[i] < times[i - 1]) {
      throw InvalidArgument(at + " is before the previous one, " + num(times[i - 1]) +
                            "; times must be ascending");
    }
  }
  // Written as !(x > 0) so that NaN is refused too.
  if (!(o.rtol > 0) || !std::isfinite(o.rtol))
    throw InvalidArgument("integrate_dopri5: rtol must be > 0, got " + num(o.rtol));
  if (!(o.atol > 0) || !std::isfinite(o.atol))
    throw InvalidArgument("integrate_dopri5: atol must be > 0, got " + num(o.atol));
  if (!(o.initial_step >= 0) || !std::isfinite(o.initial_step)) {
    throw InvalidArgument("integrate_dopri5: initial_step must be >= 0 (0: automatic), got " +
                          num(o.initial_step));
  }
  if (!(o.max_step > 0))
    throw InvalidArgument("integrate_dopri5: max_step must be > 0, got " + num(o.max_step));
  if (o.max_steps <= 0) {
    throw InvalidArgument("integrate_dopri5: max_steps must be > 0, got " + std::to_string(o.max_steps));
  }
}

}  // namespace

std::vector<std::vector<double>> integrate_dopri5(const OdeRhs& rhs, double t0, std::span<const double> y0,
                                                  std::span<const double> times, const OdeOptions& options,
                                                  const OdeObserver& observer, OdeStats* stats_out) {
  validate(t0, y0, times, options);
  const std::size_t n = y0.size();
  const std::size_t m = times.size();
  const double rtol = options.rtol, atol = options.atol;

  OdeStats st;
  st.t = t0;
  // Keeps the caller's stats current even when an exception leaves this function.
  struct Publish {
    OdeStats* out;
    const OdeStats& st;
    ~Publish() {
      if (out) *out = st;
    }
  } publish{stats_out, st};

  std::vector<std::vector<double>> result(m);
  std::size_t next = 0;
  while (next < m && times[next] == t0) result[next++].assign(y0.begin(), y0.end());
  if (next == m) return result;
  const double t_end = times[m - 1];

  std::vector<double> y(y0.begin(), y0.end()), y1(n), ys(n), k1(n), k2(n), k3(n), k4(n), k5(n), k6(n), k7(n);
  auto eval = [&](double t, const std::vector<double>& at, std::vector<double>& out) {
    rhs(t, at, out);
    ++st.rhs_evaluations;
  };

  eval(t0, y, k1);
  if (!all_finite(k1)) {
    throw NumericalError("integrate_dopri5: the right-hand side returned non-finite values at t = " +
                         num(t0) + " (the initial state)");
  }

  double h = options.initial_step;
  if (h == 0) {
    // Hairer's hinit: a first guess from |y| / |f|, refined by an estimate of the second derivative so that
    // the first step's local error is about 0.01 in the tolerance norm.
    ErrorNorm nf(options.norm), ny(options.norm);
    for (std::size_t i = 0; i < n; ++i) {
      const double sk = atol + rtol * std::abs(y[i]);
      nf.add(k1[i] / sk);
      ny.add(y[i] / sk);
    }
    const double dnf = nf.value(), dny = ny.value();
    h = (dnf <= 1e-5 || dny <= 1e-5) ? 1e-6 : 0.01 * dny / dnf;
    h = std::min({h, options.max_step, t_end - t0});
    for (std::size_t i = 0; i < n; ++i) y1[i] = y[i] + h * k1[i];
    eval(t0 + h, y1, k2);
    ErrorNorm nd(options.norm);
    for (std::size_t i = 0; i < n; ++i) nd.add((k2[i] - k1[i]) / (atol + rtol * std::abs(y[i])));
    const double der2 = nd.value() / h;
    if (std::isfinite(der2)) {
      const double der12 = std::max(der2, dnf);
      const double h1 = der12 <= 1e-15 ? std::max(1e-6, h * 1e-3) : std::pow(0.01 / der12, 0.2);
      h = std::min(100 * h, h1);
    } else {
      // The trial point was already too far for the rhs; the step loop shrinks further as needed.
      h *= 0.01;
    }
  }
  h = std::min({h, options.max_step, t_end - t0});

  double t = t0;
  double err_old = 1e-4;
  bool last_rejected = false;
  double non_finite_at = std::numeric_limits<double>::quiet_NaN();  // the last trial step the rhs failed on
  int stiff_steps = 0, non_stiff_steps = 0;

  for (;;) {
    if (st.steps_accepted + st.steps_rejected >= options.max_steps) {
      throw NumericalError("integrate_dopri5: max_steps = " + std::to_string(options.max_steps) +
                           " exhausted at t = " + num(t) + " of " + num(t_end) + " (last step " + num(h) +
                           ")");
    }
    if (h < min_relative_step * std::abs(t) || t + h == t) {
      std::string why = std::isnan(non_finite_at)
                            ? "the solution may be singular there, or the tolerances too tight"
                            : "the right-hand side returned non-finite values for steps from t = " + num(t) +
                                  " (last at t = " + num(non_finite_at) + ")";
      throw NumericalError("integrate_dopri5: step size underflow at t = " + num(t) + " (h = " + num(h) +
                           "): " + why);
    }
    // Stretch the step by up to 1% to land on the last output time rather than leave a sliver after it.
    const bool last = t + 1.01 * h >= t_end;
    if (last) h = t_end - t;
    const double t_new = last ? t_end : t + h;

    for (std::size_t i = 0; i < n; ++i) ys[i] = y[i] + h * a21 * k1[i];
    eval(t + c2 * h, ys, k2);
    for (std::size_t i = 0; i < n; ++i) ys[i] = y[i] + h * (a31 * k1[i] + a32 * k2[i]);
    eval(t + c3 * h, ys, k3);
    for (std::size_t i = 0; i < n; ++i) ys[i] = y[i] + h * (a41 * k1[i] + a42 * k2[i] + a43 * k3[i]);
    eval(t + c4 * h, ys, k4);
    for (std::size_t i = 0; i < n; ++i)
      ys[i] = y[i] + h * (a51 * k1[i] + a52 * k2[i] + a53 * k3[i] + a54 * k4[i]);
    eval(t + c5 * h, ys, k5);
    for (std::size_t i = 0; i < n; ++i) {
      ys[i] = y[i] + h * (a61 * k1[i] + a62 * k2[i] + a63 * k3[i] + a64 * k4[i] + a65 * k5[i]);
    }
    eval(t_new, ys, k6);  // ys keeps this stage-6 point for the stiffness test
    for (std::size_t i = 0; i < n; ++i) {
      y1[i] = y[i] + h * (a71 * k1[i] + a73 * k3[i] + a74 * k4[i] + a75 * k5[i] + a76 * k6[i]);
    }
    eval(t_new, y1, k7);

    ErrorNorm norm(options.norm);
    bool finite = true;
    for (std::size_t i = 0; i < n; ++i) {
      const double e = h * (e1 * k1[i] + e3 * k3[i] + e4 * k4[i] + e5 * k5[i] + e6 * k6[i] + e7 * k7[i]);
      norm.add(e / (atol + rtol * std::max(std::abs(y[i]), std::abs(y1[i]))));
      // Checked directly: k7 becomes the next step's k1, and inf / inf in the scaled error can hide one.
      finite = finite && std::isfinite(y1[i]) && std::isfinite(k7[i]);
    }
    const double err = norm.value();

    if (!finite || !std::isfinite(err)) {
      // A trial point the rhs cannot evaluate (overflow, a domain error): retry much shorter. If the rhs
      // fails arbitrarily close to t, the step underflows and the error names t.
      non_finite_at = t_new;
      h *= non_finite_shrink;
      last_rejected = true;
      ++st.steps_rejected;
      continue;
    }

    const double fac_err = std::pow(err, expo1);
    if (err > 1) {
      h /= std::min(max_shrink, fac_err / safe);
      last_rejected = true;
      ++st.steps_rejected;
      continue;
    }

    // Accepted. PI control: the err_old^beta factor keeps h from overshooting after a sharp drop in err.
    double fac = fac_err / std::pow(err_old, beta);
    fac = std::clamp(fac / safe, 1 / max_growth, max_shrink);
    double h_new = h / fac;
    err_old = std::max(err, 1e-4);

    double stiff_num = 0, stiff_den = 0;
    for (std::size_t i = 0; i < n; ++i) {
      stiff_num += (k7[i] - k6[i]) * (k7[i] - k6[i]);
      stiff_den += (y1[i] - ys[i]) * (y1[i] - ys[i]);
    }
    if (stiff_den > 0 && h * std::sqrt(stiff_num / stiff_den) > stiff_h_lambda) {
      non_stiff_steps = 0;
      if (++stiff_steps >= stiff_count) st.stiffness_detected = true;
    } else if (++non_stiff_steps >= non_stiff_reset) {
      stiff_steps = 0;
    }

    // Output times inside this step come from the dense output, which needs one more combination of the
    // stages (k2's storage is free now) but no rhs evaluation.
    bool dense_ready = false;
    for (; next < m && times[next] <= t_new; ++next) {
      if (times[next] == t_new) {
        result[next] = y1;
        continue;
      }
      if (!dense_ready) {
        for (std::size_t i = 0; i < n; ++i) {
          k2[i] = h * (d1 * k1[i] + d3 * k3[i] + d4 * k4[i] + d5 * k5[i] + d6 * k6[i] + d7 * k7[i]);
        }
        dense_ready = true;
      }
      const double theta = (times[next] - t) / h, theta1 = 1 - theta;
      auto& out = result[next];
      out.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const double diff = y1[i] - y[i];
        const double bspl = h * k1[i] - diff;
        const double c4i = diff - h * k7[i] - bspl;
        out[i] = y[i] + theta * (diff + theta1 * (bspl + theta * (c4i + theta1 * k2[i])));
      }
    }

    y.swap(y1);
    k1.swap(k7);
    t = t_new;
    ++st.steps_accepted;
    st.t = t;
    st.last_step = h;
    non_finite_at = std::numeric_limits<double>::quiet_NaN();
    if (observer && !observer(t, y, st)) {
      throw Cancelled("integrate_dopri5: cancelled by the observer at t = " + num(t) + " after " +
                      std::to_string(st.steps_accepted) + " accepted steps");
    }
    if (next == m) break;

    h_new = std::min(h_new, options.max_step);
    // No growth right after a rejection: the rejected size was too large for a reason.
    if (last_rejected) h_new = std::min(h_new, h);
    last_rejected = false;
    h = h_new;
  }
  return result;
}

}  // namespace ntk
