#pragma once
// Uncertainty over random initialization (SPEC section 3): the trained predictor is a random function
// of f0 ~ GP(0, NNGP (x) I_C).
//   exact       lambda = 0: the exact Gaussian; logits reported class-centred.
//   linearized  lambda > 0: the delta-method Gaussian around the mean solution, reusing the GPML 3.3
//               factors of the Newton step.
//   mc          joint samples of f0 on (X, x*) (NNGP Cholesky, per-point conditionals), the fixed point
//               (or closed form) solved per sample warm-started from the mean; seeded.
// Probabilities from a Gaussian: Monte Carlo over it with a fixed seed (probability_samples draws).
#include <cstdint>
#include <memory>
#include <string_view>

#include "ntk/backend.hpp"
#include "ntk/model.hpp"

namespace ntk {

enum class UncertaintyMode { none, exact, linearized, monte_carlo };
UncertaintyMode parse_uncertainty_mode(std::string_view name);  // none|exact|linearized|mc
const char* uncertainty_mode_name(UncertaintyMode mode);

struct UncertaintyOptions {
  UncertaintyMode mode = UncertaintyMode::none;
  int samples = 100;              // mc: initializations drawn
  int probability_samples = 256;  // Gaussian modes: draws for the probability statistics
  std::uint64_t seed = 0;
  std::int64_t tile_rows = 0;  // test points per batch (0: automatic)
  // Index of x's first row in the whole test set. Every test point draws from its own random stream keyed
  // by its global index, so a caller that splits a test set into batches (the server) gets the same
  // samples as one call over all of it.
  std::int64_t first_row = 0;
};

struct UncertaintyResult {
  Matrix<double> mean_logits;         // T x C
  Matrix<double> logit_var;           // T x C
  Matrix<double> covariance;          // T x (C*C): each row a C x C logit covariance, row-major
  Matrix<double> mean_probs;          // T x C: E[softmax f(x*)]
  Matrix<double> predictive_entropy;  // T x 1: H[mean probs]
  Matrix<double> expected_entropy;    // T x 1: E[H[softmax f(x*)]]
  Matrix<double> mutual_info;         // T x 1: their difference
  std::vector<std::int64_t> classes;  // argmax of mean probs
};

// What a mode computes once per model before any test point (the training NNGP; the GPML factors and
// sum_c E_c K E_c for linearized; the NNGP factor and every sample's trained coefficients for Monte
// Carlo). A caller that predicts many blocks with one model, one backend and the same options passes one
// context to every call; it is filled by the first and reused while mode, seed and samples stay the same.
// It belongs to the model it was first used with and may refer to that Model object (exact mode solves
// with a view of its Theta factor where the backend keeps no copy) and to the backend it was prepared
// on: both must outlive it, and the model must not change while the context is used.
struct UncertaintyContext;
std::shared_ptr<UncertaintyContext> make_uncertainty_context();
// Fills `context` for options' mode (and seed and samples) now, as the first predict_uncertainty() with it
// would. Once filled, predict_uncertainty() only reads it, so calls with the same options may share it
// from several threads. Throws like predict_uncertainty() when the mode does not apply to the model.
void prepare_uncertainty(Backend& backend, const Model& model, const UncertaintyOptions& options,
                         UncertaintyContext& context);

// Throws InvalidArgument when the mode does not apply to the model (exact needs lambda = 0,
// linearized needs lambda > 0) or for models fitted with f0 (their uncertainty is over f0 itself).
UncertaintyResult predict_uncertainty(Backend& backend, const Model& model, ConstMatrixView<double> x,
                                      const UncertaintyOptions& options,
                                      UncertaintyContext* context = nullptr);

// Mean probabilities and entropies of softmax(mean + L z), z ~ N(0, I), from `draws` seeded draws;
// `cov` is a C x C covariance (row-major). Exposed for tests.
void gaussian_softmax_statistics(const double* mean, const double* cov, int classes, int draws,
                                 std::uint64_t seed, double* mean_probs, double& expected_entropy);

}  // namespace ntk
