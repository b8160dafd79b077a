#pragma once
// Seeded random inputs and labels, and a matrix distance, shared by the solver tests.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/kernel_spec.hpp"
#include "ntk/matrix.hpp"

namespace ntk::testing {

// CPU backend options with `threads` worker threads and the rest defaulted.
inline BackendOptions with_threads(int threads) {
  BackendOptions options;
  options.threads = threads;
  return options;
}

inline Matrix<double> random_inputs(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  Matrix<double> x(n, d);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (auto& v : x.storage()) v = normal(rng);
  return x;
}

// A depth-`depth` ReLU network with W_std 1.5, b_std 0.1 (the benchmarks' architecture).
inline KernelSpec relu_spec(int depth = 3) {
  KernelSpec s;
  s.depth = depth;
  s.w_std = 1.5;
  s.b_std = 0.1;
  return s;
}

inline std::vector<std::int64_t> random_labels(std::int64_t n, std::int64_t classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> y(static_cast<std::size_t>(n));
  for (auto& v : y) v = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(classes));
  return y;
}

// Infinity when the shapes differ or an entry is not finite, so a NaN left in a poisoned output fails.
inline double max_abs_diff(const Matrix<double>& a, const Matrix<double>& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return std::numeric_limits<double>::infinity();
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a.data()[i]) || !std::isfinite(b.data()[i]))
      return std::numeric_limits<double>::infinity();
    d = std::max(d, std::abs(a.data()[i] - b.data()[i]));
  }
  return d;
}

}  // namespace ntk::testing
