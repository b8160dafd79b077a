#pragma once
// Fitting and prediction of the cross-entropy NTK classifier (SPEC section 2). All algorithms reach
// the hardware only through the Backend.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/model.hpp"
#include "ntk/newton.hpp"
#include "ntk/targets.hpp"

namespace ntk {

// lambda > 0: the regularized fixed point (Newton, direct or matrix-free; automatic by N, C and memory).
// lambda = 0: the closed form f_inf (targets must be non-degenerate: every y_ic > 0).
// Throws InvalidArgument (bad settings or shapes), FailedPrecondition (lambda = 0 with degenerate
// targets), NumericalError (kernel not positive definite, with the advice to set diag_reg), Cancelled.
// f0_train (N x C, optional): the network's outputs at initialization on the training points; empty
// for the deterministic predictor f0 = 0. should_stop (optional) is asked between the kernel's tiles:
// true stops the fit with Cancelled (between Newton steps, `progress` returning false does the same).
Model fit_classifier(Backend& backend, const KernelSpec& spec, ConstMatrixView<double> x,
                     const Targets& targets, const FitSettings& settings,
                     const ProgressCallback& progress = {}, ConstMatrixView<double> f0_train = {},
                     const std::function<bool()>& should_stop = {});

// The automatic choice between the direct and the matrix-free Newton step, and why.
SolverKind choose_solver(std::int64_t n, std::int64_t classes, std::size_t memory_bytes);

struct Prediction {
  Matrix<double> logits;  // T x C
  Matrix<double> probs;   // T x C
  std::vector<std::int64_t> classes;
};

// The mean predictor for x (T x d) through Backend::make_kernel_product, so Theta(x, X) is never held
// whole (tile_rows > 0 also splits x into calls of that many rows). f0_test (T x C) is required exactly
// when the model was fitted with f0.
Prediction predict(Backend& backend, const Model& model, ConstMatrixView<double> x,
                   std::int64_t tile_rows = 0, ConstMatrixView<double> f0_test = {});

// The kernel product behind predict() (K_ntk(., X) coefficients in the model's dtype), for callers that
// predict many blocks with one model on one backend (the server's batches): on the CUDA backend X and
// the coefficients then go to the device once. It refers to the model, which must outlive it.
std::unique_ptr<KernelProduct> make_model_product(Backend& backend, const Model& model);
Prediction predict_with(KernelProduct& product, const Model& model, ConstMatrixView<double> x,
                        std::int64_t tile_rows = 0, ConstMatrixView<double> f0_test = {});

// Theta(x, X) or K(x, X) (NNGP) of the model's spec in its dtype, as float64.
Matrix<double> model_kernel(Backend& backend, const Model& model, ConstMatrixView<double> x1,
                            const ConstMatrixView<double>* x2, KernelSelection which);

// Theta(x, x) of the model's spec in its dtype, kept where the backend computes (Backend::resident_kernel).
std::unique_ptr<ResidentMatrix> resident_training_kernel(Backend& backend, const Model& model,
                                                         ConstMatrixView<double> x,
                                                         const AssemblyOptions& options = {});

}  // namespace ntk
