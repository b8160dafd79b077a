#pragma once
// Training dynamics at finite time (SPEC section 2): gradient flow with learning rate eta on the
// linearized network, on the training points,
//   df/dt = -eta [ (1/N) Theta g + lambda (f - f0) ],   dB/dt = eta g - eta lambda B,   g = softmax f - Y,
//   f(x*, t) = f0(x*) - Theta(x*, X) B(t) / N,           f(X, 0) = f0(X), B(0) = 0,
// integrated by adaptive Dormand-Prince 5(4) in float64. The cost grows with t * eta * lambda_max(Theta/N)
// (an explicit method's stability limit): the fixed point / closed form is the way to t = infinity.
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/model.hpp"
#include "ntk/newton.hpp"
#include "ntk/targets.hpp"

namespace ntk {

// One model per requested time (ascending, > 0); settings.lambda >= 0, settings.learning_rate = eta,
// settings.tolerance sets the integrator's relative tolerance. f0_train: N x C or empty (f0 = 0).
std::vector<Model> fit_dynamics(Backend& backend, const KernelSpec& spec, ConstMatrixView<double> x,
                                const Targets& targets, const FitSettings& settings,
                                const std::vector<double>& times, const ProgressCallback& progress = {},
                                ConstMatrixView<double> f0_train = {});

}  // namespace ntk
