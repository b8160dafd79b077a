#pragma once
// A fitted NTK classifier: what `ntkctl fit` writes and `ntkctl predict` reads (see model_file.hpp for
// the on-disk format). All arrays are float64 regardless of the compute dtype, so a model file is
// independent of the precision it was fitted in (`dtype` records that precision for prediction).
#include <cstdint>
#include <string>
#include <vector>

#include "ntk/kernel_spec.hpp"
#include "ntk/matrix.hpp"

namespace ntk {

enum class SolverKind { automatic = 0, direct = 1, matrix_free = 2, closed_form = 3, dynamics = 4 };
const char* solver_name(SolverKind kind);
SolverKind parse_solver(std::string_view name);  // "auto", "direct", "matrix_free"

enum class ComputeType { float32 = 0, float64 = 1 };

struct FitSettings {
  double lambda = 0;           // regularization strength, >= 0
  double label_smoothing = 0;  // eps in [0, 1); 0 when soft targets were given
  SolverKind solver = SolverKind::automatic;
  double tolerance = 1e-10;  // on the fixed-point residual max|h + k Theta (softmax(f0 + h) - Y)|
  int max_newton_steps = 100;
  int max_cg_iterations = 500;
  double diag_reg = 0;       // adds diag_reg * trace(Theta)/N * I (neural-tangents semantics)
  double time = 0;           // > 0: the gradient-flow model at this time (SPEC section 2 dynamics)
  double learning_rate = 1;  // eta of the gradient flow
  ComputeType dtype = ComputeType::float64;
};

// One Newton step (or one ODE checkpoint) as streamed to the progress callback.
struct StepRecord {
  int step = 0;
  double residual = 0;
  double objective = 0;
  int cg_iterations = 0;
  double step_size = 1;  // the backtracking factor accepted
  double elapsed_seconds = 0;
};

struct FitDiagnostics {
  SolverKind solver_used = SolverKind::automatic;
  bool converged = false;
  int steps = 0;  // Newton steps (or accepted ODE steps)
  int cg_iterations = 0;
  double residual = 0;
  double objective = 0;
  double seconds = 0;
  std::string message;  // why it stopped, in words
  std::vector<StepRecord> history;
};

struct Model {
  KernelSpec spec;
  FitSettings settings;
  FitDiagnostics diagnostics;
  std::int64_t num_classes = 0;
  Matrix<double> x_train;  // N x d
  Matrix<double> targets;  // N x C probability rows
  // Predictor: f(x*) = f0(x*) + Theta(x*, X) coefficients (N x C). For lambda > 0 coefficients = -A
  // with A = k (softmax f(X) - Y); for lambda = 0 coefficients = Theta^-1 (f_inf(X) - f0(X)).
  Matrix<double> coefficients;
  Matrix<double> train_logits;  // f(X), N x C (including f0)
  // The network's initial outputs f0(X) the fit used (N x C), or 0 x 0 for the deterministic predictor
  // f0 = 0. A model fitted with f0 predicts only with the matching f0(x*) of the test points.
  Matrix<double> f0_train;
  // Lower Cholesky factor of the matrix the variance formulas need (Theta (+ diag_reg) for lambda = 0;
  // empty when none was kept). Row-major N x N, lower triangle valid.
  Matrix<double> theta_factor;
};

}  // namespace ntk
