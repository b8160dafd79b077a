// GPU benchmarks of issue 4 (run by scripts/gpu-check.sh on a machine with an NVIDIA GPU):
//   ceilings   a large cuBLAS SGEMM / DGEMM (TFLOP/s) and a device-to-device copy (GB/s, read + write)
//   assembly   the bare cuBLAS product of the assembly's shapes (the same symmetric 8192-tiling, on the
//              device) beside the CUDA backend's NTK assembly through the Backend API (which also brings
//              every tile home into host memory), float32 and float64
//   fit        the regularized fit (lambda = 1e-3, C = 10) end to end (kernel included), matrix-free;
//              direct at --direct-n (its C + 2 N x N float64 matrices do not fit for large N)
//   predict    mean-predictor throughput of the fitted model, and linearized-uncertainty throughput
// Prints markdown rows; every number is measured here, none is assumed.
//
//   gpu_bench [--n 50000] [--d 784] [--direct-n 8192] [--predict 20000] [--uncertainty 500]
//             [--parts ceilings,assembly,fit,predict]
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "ntk/classifier.hpp"
#include "ntk/cuda/cuda_backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/targets.hpp"
#include "ntk/uncertainty.hpp"

namespace {

#define CHECK_CUDA(x)                                                                                 \
  do {                                                                                                \
    cudaError_t e_ = (x);                                                                             \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#x) + ": " + cudaGetErrorString(e_)); \
  } while (0)
#define CHECK_CUBLAS(x)                                                                      \
  do {                                                                                       \
    if ((x) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(#x) + " failed"); \
  } while (0)

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

struct Timer {  // CUDA events around work on the default stream
  cudaEvent_t a, b;
  Timer() {
    CHECK_CUDA(cudaEventCreate(&a));
    CHECK_CUDA(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  void start() { CHECK_CUDA(cudaEventRecord(a)); }
  double stop() {
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    return ms / 1e3;
  }
};

void* device_alloc(std::size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  return p;
}

void ceilings(cublasHandle_t h) {
  Timer t;
  for (int dt = 0; dt < 2; ++dt) {
    const int n = dt == 0 ? 16384 : 8192;
    const std::size_t es = dt == 0 ? 4 : 8;
    void *a = device_alloc(std::size_t(n) * n * es), *b = device_alloc(std::size_t(n) * n * es),
         *c = device_alloc(std::size_t(n) * n * es);
    CHECK_CUDA(cudaMemset(a, 0, std::size_t(n) * n * es));
    CHECK_CUDA(cudaMemset(b, 0, std::size_t(n) * n * es));
    double best = 1e30;
    for (int rep = 0; rep < 4; ++rep) {
      t.start();
      if (dt == 0) {
        const float one = 1, zero = 0;
        CHECK_CUBLAS(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, (float*)a, n, (float*)b, n,
                                 &zero, (float*)c, n));
      } else {
        const double one = 1, zero = 0;
        CHECK_CUBLAS(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, (double*)a, n, (double*)b, n,
                                 &zero, (double*)c, n));
      }
      const double s = t.stop();
      if (rep > 0) best = std::min(best, s);
    }
    std::printf("| ceiling | %s GEMM %d^3 | %.4f s | %.1f TFLOP/s |\n", dt == 0 ? "SGEMM" : "DGEMM", n, best,
                2.0 * n * double(n) * n / best / 1e12);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
  }
  const std::size_t bytes = std::size_t(4) << 30;
  void *src = device_alloc(bytes), *dst = device_alloc(bytes);
  CHECK_CUDA(cudaMemset(src, 1, bytes));
  double best = 1e30;
  for (int rep = 0; rep < 4; ++rep) {
    t.start();
    CHECK_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    const double s = t.stop();
    if (rep > 0) best = std::min(best, s);
  }
  std::printf("| ceiling | device-to-device copy 4 GiB | %.4f s | %.0f GB/s (read + write) |\n", best,
              2.0 * double(bytes) / best / 1e9);
  cudaFree(src);
  cudaFree(dst);
}

template <class T>
ntk::Matrix<T> random_inputs(std::int64_t n, std::int64_t d, std::uint64_t seed) {
  ntk::Matrix<T> x(n, d);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (auto& v : x.storage()) v = static_cast<T>(normal(rng));
  return x;
}

ntk::KernelSpec relu3() {
  ntk::KernelSpec s;
  s.depth = 3;
  s.w_std = 1.5;
  s.b_std = 0.1;
  return s;
}

// The assembly's GEMM work alone: X X^T / d over the upper 8192-tiles, on the device, nothing copied.
template <class T>
double bare_product(cublasHandle_t h, std::int64_t n, std::int64_t d) {
  const std::int64_t tile = std::min<std::int64_t>(8192, n);
  T* x = static_cast<T*>(device_alloc(std::size_t(n * d) * sizeof(T)));
  T* out = static_cast<T*>(device_alloc(std::size_t(tile * tile) * sizeof(T)));
  CHECK_CUDA(cudaMemset(x, 0, std::size_t(n * d) * sizeof(T)));
  Timer t;
  double best = 1e30;
  for (int rep = 0; rep < 2; ++rep) {
    t.start();
    for (std::int64_t i0 = 0; i0 < n; i0 += tile)
      for (std::int64_t j0 = i0; j0 < n; j0 += tile) {
        const int rows = int(std::min(tile, n - i0)), cols = int(std::min(tile, n - j0));
        const T alpha = T(1) / T(d), beta = 0;
        if constexpr (sizeof(T) == 4)
          CHECK_CUBLAS(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, cols, rows, int(d), &alpha, x + j0 * d,
                                   int(d), x + i0 * d, int(d), &beta, out, cols));
        else
          CHECK_CUBLAS(cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, cols, rows, int(d), &alpha, x + j0 * d,
                                   int(d), x + i0 * d, int(d), &beta, out, cols));
      }
    best = std::min(best, t.stop());
  }
  cudaFree(x);
  cudaFree(out);
  return best;
}

template <class T>
void assembly(ntk::Backend& gpu, cublasHandle_t h, std::int64_t n, std::int64_t d) {
  const char* name = sizeof(T) == 4 ? "float32" : "float64";
  const double product = bare_product<T>(h, n, d);
  const auto x = random_inputs<T>(n, d, 1);
  ntk::Matrix<T> k(n, n);
  double best = 1e30;
  for (int rep = 0; rep < 2; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    gpu.kernel(relu3(), x.view(), nullptr, {{}, k.view()}, {});
    best = std::min(best, seconds_since(t0));
  }
  const double flops = double(n) * double(n) * double(d);  // upper tiles: about half of 2 N^2 d
  std::printf(
      "| assembly | NTK %lld^2, d = %lld, depth 3 ReLU, %s | bare cuBLAS product %.3f s (%.1f TFLOP/s) | "
      "ours %.3f s incl. copy home (%.2fx the product) |\n",
      (long long)n, (long long)d, name, product, flops / product / 1e12, best, best / product);
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t n = 50000, d = 784, direct_n = 8192, n_predict = 20000, n_uncertainty = 500;
  std::string parts = "ceilings,assembly,fit,predict";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--n")
      n = std::atoll(argv[i + 1]);
    else if (a == "--d")
      d = std::atoll(argv[i + 1]);
    else if (a == "--direct-n")
      direct_n = std::atoll(argv[i + 1]);
    else if (a == "--predict")
      n_predict = std::atoll(argv[i + 1]);
    else if (a == "--uncertainty")
      n_uncertainty = std::atoll(argv[i + 1]);
    else if (a == "--parts")
      parts = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  auto wants = [&](const char* p) { return parts.find(p) != std::string::npos; };
  try {
    if (ntk::cuda::device_count() == 0) {
      std::fprintf(stderr, "gpu_bench: no CUDA device: %s\n", ntk::cuda::unavailable_reason().c_str());
      return 1;
    }
    auto gpu = ntk::cuda::make_cuda_backend(0, {});
    std::printf("device: %s\n\n| part | what | time | rate |\n|---|---|---|---|\n",
                gpu->description().c_str());
    cublasHandle_t h;
    CHECK_CUBLAS(cublasCreate(&h));
    if (wants("ceilings")) ceilings(h);
    if (wants("assembly")) {
      assembly<float>(*gpu, h, n, d);
      assembly<double>(*gpu, h, n, d);
    }
    cublasDestroy(h);
    std::fflush(stdout);
    if (wants("fit") || wants("predict")) {
      // A 10-class Gaussian mixture (class means 2 sigma apart), as bench/fit_bench.cpp.
      const std::int64_t c = 10;
      std::mt19937_64 rng(7);
      std::normal_distribution<double> normal;
      auto mixture = [&](std::int64_t rows, std::vector<std::int64_t>& labels) {
        ntk::Matrix<double> means(c, d), x(rows, d);
        std::mt19937_64 mrng(3);
        for (auto& v : means.storage()) v = 2.0 * normal(mrng) / std::sqrt(2.0);
        labels.resize(std::size_t(rows));
        for (std::int64_t i = 0; i < rows; ++i) {
          labels[i] = std::int64_t(rng() % c);
          for (std::int64_t j = 0; j < d; ++j) x(i, j) = means(labels[i], j) + normal(rng);
        }
        return x;
      };
      std::vector<std::int64_t> labels;
      const auto x = mixture(n, labels);
      const auto targets = ntk::targets_from_labels(labels, c, 0.0);
      ntk::FitSettings s;
      s.lambda = 1e-3;
      s.solver = ntk::SolverKind::matrix_free;
      auto t0 = std::chrono::steady_clock::now();
      const ntk::Model m = ntk::fit_classifier(*gpu, relu3(), x.view(), targets, s);
      const double fit_s = seconds_since(t0);
      std::printf(
          "| fit | N = %lld, C = 10, lambda = 1e-3, matrix-free (kernel included) | %.2f s | %d Newton "
          "steps, "
          "%d CG iterations, %.3f s per step; %s |\n",
          (long long)n, fit_s, m.diagnostics.steps, m.diagnostics.cg_iterations,
          m.diagnostics.seconds / std::max(1, m.diagnostics.steps), m.diagnostics.message.c_str());
      std::fflush(stdout);
      if (wants("fit") && direct_n > 0) {
        std::vector<std::int64_t> small_labels(labels.begin(), labels.begin() + std::min(direct_n, n));
        const auto xs = ntk::Matrix<double>(ntk::copy_matrix(x.view().block(0, 0, std::min(direct_n, n), d)));
        const auto ts = ntk::targets_from_labels(small_labels, c, 0.0);
        for (auto solver : {ntk::SolverKind::direct, ntk::SolverKind::matrix_free}) {
          s.solver = solver;
          t0 = std::chrono::steady_clock::now();
          const ntk::Model ms = ntk::fit_classifier(*gpu, relu3(), xs.view(), ts, s);
          const double sec = seconds_since(t0);
          std::printf(
              "| fit | N = %lld, C = 10, lambda = 1e-3, %s | %.2f s | %d Newton steps, %d CG iterations, "
              "%.3f s per step |\n",
              (long long)xs.rows(), ntk::solver_name(solver), sec, ms.diagnostics.steps,
              ms.diagnostics.cg_iterations, ms.diagnostics.seconds / std::max(1, ms.diagnostics.steps));
          std::fflush(stdout);
        }
      }
      if (wants("predict")) {
        std::vector<std::int64_t> test_labels;
        const auto xt = mixture(n_predict, test_labels);
        t0 = std::chrono::steady_clock::now();
        const auto p = ntk::predict(*gpu, m, xt.view());
        const double pred_s = seconds_since(t0);
        std::printf("| predict | mean predictor, %lld points, N = %lld model | %.2f s | %.0f points/s |\n",
                    (long long)n_predict, (long long)n, pred_s, double(n_predict) / pred_s);
        // The linearized mode's Laplace factors are C + 1 host matrices of N x N float64
        // (core/src/newton.cpp, laplace_factors): skip rather than exhaust the host.
        const double factor_bytes = double(c + 2) * double(n) * double(n) * 8.0;
        const double host_bytes = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
        if (factor_bytes > 0.6 * host_bytes) {
          std::printf(
              "| predict | linearized uncertainty, N = %lld model | skipped | its factors need %.0f GB of "
              "host "
              "memory, the host has %.0f GB |\n",
              (long long)n, factor_bytes / 1e9, host_bytes / 1e9);
          return 0;
        }
        ntk::UncertaintyOptions o;
        o.mode = ntk::UncertaintyMode::linearized;
        const auto xu = ntk::copy_matrix(xt.view().block(0, 0, std::min(n_uncertainty, n_predict), d));
        t0 = std::chrono::steady_clock::now();
        const auto u = ntk::predict_uncertainty(*gpu, m, xu.view(), o);
        const double unc_s = seconds_since(t0);
        std::printf(
            "| predict | linearized uncertainty, %lld points, N = %lld model | %.2f s | %.1f points/s |\n",
            (long long)xu.rows(), (long long)n, unc_s, double(xu.rows()) / unc_s);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
