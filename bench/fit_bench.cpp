// Fit time of the cross-entropy NTK classifier on this machine (issue: classifier, benchmark):
// N in {1k, 2k, 4k, 8k}, d = 784, C = 10, depth-3 ReLU, lambda in {1e-3, 1e-1}, the direct (GPML 3.3)
// and matrix-free (Newton-CG) paths, and the gradient-flow ODE integrated to the same residual.
//
//   build/bin/fit_bench [--sizes 1000,2000] [--direct-max N] [--ode-max N] [--threads T]
//
// Inputs: a 10-class Gaussian mixture in 784 dimensions (class means at distance ~2 sigma), seeded,
// so the fits see classification-like data. Prints one markdown table row per configuration.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ntk/blas.hpp"
#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/cpu_features.hpp"
#include "ntk/dynamics.hpp"
#include "ntk/newton.hpp"

namespace {

constexpr std::int64_t kDim = 784, kClasses = 10;

struct Data {
  ntk::Matrix<double> x;
  std::vector<std::int64_t> y;
};

Data mixture(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  ntk::Matrix<double> means(kClasses, kDim);
  for (auto& v : means.storage()) v = 0.5 * normal(rng);  // mean separation ~20 vs noise norm 28
  Data d{ntk::Matrix<double>(n, kDim), std::vector<std::int64_t>(static_cast<std::size_t>(n))};
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t c = static_cast<std::int64_t>(rng() % kClasses);
    d.y[static_cast<std::size_t>(i)] = c;
    for (std::int64_t k = 0; k < kDim; ++k) d.x(i, k) = means(c, k) + normal(rng);
  }
  return d;
}

std::vector<std::int64_t> parse_list(const char* s) {
  std::vector<std::int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::atoll(item.c_str()));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> sizes = {1000, 2000, 4000, 8000};
  std::int64_t direct_max = 4000, ode_max = 1000;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--sizes")
      sizes = parse_list(argv[i + 1]);
    else if (a == "--direct-max")
      direct_max = std::atoll(argv[i + 1]);
    else if (a == "--ode-max")
      ode_max = std::atoll(argv[i + 1]);
    else if (a == "--threads")
      threads = std::atoi(argv[i + 1]);
  }
  ntk::BackendOptions bo;
  bo.threads = threads;
  ntk::CpuBackend cpu(bo);
  std::printf("CPU: %s, %d threads, BLAS %s\n\n", ntk::cpu_model_name().c_str(), cpu.threads(),
              ntk::blas::describe().c_str());
  std::printf(
      "| N | lambda | solver | total s | kernel s | Newton steps | CG iterations | s / step | residual |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  ntk::KernelSpec spec;
  spec.depth = 3;
  spec.w_std = 1.5;
  spec.b_std = 0.1;
  for (const std::int64_t n : sizes) {
    const Data data = mixture(n, 2026);
    const auto targets = ntk::targets_from_labels(data.y, kClasses, 0.0);
    // Kernel time on its own, so the table separates assembly from the solve.
    const auto k0 = std::chrono::steady_clock::now();
    ntk::Matrix<double> theta(n, n);
    cpu.kernel(spec, data.x.view(), nullptr, {{}, theta.view()}, {});
    const double kernel_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - k0).count();
    for (double lambda : {1e-3, 1e-1}) {
      for (auto solver : {ntk::SolverKind::direct, ntk::SolverKind::matrix_free}) {
        if (solver == ntk::SolverKind::direct && n > direct_max) {
          std::printf("| %lld | %g | direct | (skipped: N > --direct-max %lld) | | | | | |\n", (long long)n,
                      lambda, (long long)direct_max);
          continue;
        }
        ntk::FitSettings s;
        s.lambda = lambda;
        s.solver = solver;
        s.max_cg_iterations = 5000;
        const auto m = ntk::fit_classifier(cpu, spec, data.x.view(), targets, s);
        const auto& d = m.diagnostics;
        std::printf("| %lld | %g | %s | %.2f | %.2f | %d | %d | %.2f | %.1e%s |\n", (long long)n, lambda,
                    ntk::solver_name(solver), d.seconds, kernel_s, d.steps, d.cg_iterations,
                    (d.seconds - kernel_s) / std::max(1, d.steps), d.residual,
                    d.converged ? "" : " (not converged)");
        std::fflush(stdout);
        if (n > ode_max || solver != ntk::SolverKind::matrix_free) continue;
        // The gradient flow (eta = 1) integrated until its training logits agree with the fixed point to
        // 1e-9 (near the integrator's rtol of 1e-10; Newton's own residual is ~1e-13): time doubles until
        // max |f(t) - f*| <= 1e-9, and the last, successful integration is timed in full.
        const ntk::Model& fixed = m;
        double t = 10 / lambda, flow_s = 0, gap = 1e300;
        std::int64_t flow_steps = 0;
        while (gap > 1e-9 && t < 1e7) {
          ntk::FitSettings fs = s;
          fs.learning_rate = 1;
          fs.tolerance = 1e-10;
          const auto a = std::chrono::steady_clock::now();
          const auto models = ntk::fit_dynamics(cpu, spec, data.x.view(), targets, fs, {t});
          flow_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
          gap = 0;
          for (std::size_t q = 0; q < fixed.train_logits.size(); ++q)
            gap = std::max(gap, std::abs(models[0].train_logits.data()[q] - fixed.train_logits.data()[q]));
          flow_steps = models[0].diagnostics.steps;
          if (gap > 1e-9) t *= 2;
        }
        std::printf(
            "| %lld | %g | ODE to t=%g | %.2f | %.2f | %lld DP5 steps | | | gap %.1e; Newton-CG %.0fx faster "
            "|\n",
            (long long)n, lambda, t, flow_s, kernel_s, (long long)flow_steps, gap, flow_s / d.seconds);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
