// GPU benchmarks of issue 4 (run by scripts/gpu-check.sh on a machine with an NVIDIA GPU):
//   ceilings   a large cuBLAS SGEMM / DGEMM (TFLOP/s) and a device-to-device copy (GB/s, read + write)
//   assembly   the bare cuBLAS product of the assembly's shapes (the same symmetric 8192-tiling, on the
//              device) beside the CUDA backend's NTK assembly through the Backend API (which also brings
//              every tile home into host memory), float32 and float64
//              and the device-resident assembly the solvers use (Backend::resident_kernel, nothing copied)
//   fit        the regularized fit (lambda = 1e-3, C = 10) end to end (kernel included), matrix-free
//   predict    mean-predictor throughput of that model
//   uncertainty  linearized-uncertainty throughput of an N = --uncertainty-n model (its C + 2 N x N
//              float64 matrices do not fit for N = 50k)
//   direct     both Newton step solvers at --direct-n (the direct one factors C + 1 N x N matrices per step)
// Prints markdown rows; every number is measured here, none is assumed. scripts/gpu-check.sh runs the
// parts as separate invocations, each under its own time limit.
//
//   gpu_bench [--n 50000] [--d 784] [--direct-n 4096] [--predict 20000] [--uncertainty 500]
//             [--uncertainty-n 8192] [--parts ceilings,assembly,fit,predict,uncertainty,direct]
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>

#include <algorithm>
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

// Uniform random contents: GEMMs on zeros run ~13% faster on this card (device/KINDS.md), which would
// flatter the ceilings our numbers are compared with.
void fill_random(void* p, std::size_t count, bool float64) {
  curandGenerator_t g;
  if (curandCreateGenerator(&g, CURAND_RNG_PSEUDO_PHILOX4_32_10) != CURAND_STATUS_SUCCESS)
    throw std::runtime_error("curandCreateGenerator failed");
  const curandStatus_t st = float64 ? curandGenerateUniformDouble(g, static_cast<double*>(p), count)
                                    : curandGenerateUniform(g, static_cast<float*>(p), count);
  curandDestroyGenerator(g);
  if (st != CURAND_STATUS_SUCCESS) throw std::runtime_error("curandGenerateUniform failed");
  CHECK_CUDA(cudaDeviceSynchronize());
}

void ceilings(cublasHandle_t h) {
  Timer t;
  for (int dt = 0; dt < 2; ++dt) {
    const int n = dt == 0 ? 16384 : 8192;
    const std::size_t es = dt == 0 ? 4 : 8;
    void *a = device_alloc(std::size_t(n) * n * es), *b = device_alloc(std::size_t(n) * n * es),
         *c = device_alloc(std::size_t(n) * n * es);
    fill_random(a, std::size_t(n) * n, es == 8);
    fill_random(b, std::size_t(n) * n, es == 8);
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
  fill_random(x, std::size_t(n * d), sizeof(T) == 8);
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
  const double flops = double(n) * double(n) * double(d);  // upper tiles: about half of 2 N^2 d
  // On the device, as the solvers use it (Theta stored as float64 in the pool, mirrored tiles written
  // once): the number the 1.5x target is about.
  double resident = 1e30;
  for (int rep = 0; rep < 2; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto theta = gpu.resident_kernel(relu3(), x.view(), {}, "benchmark Theta");
    resident = std::min(resident, seconds_since(t0));
  }
  std::printf(
      "| assembly | NTK %lld^2, d = %lld, depth 3 ReLU, %s, resident on the device | bare cuBLAS product "
      "%.3f s (%.1f TFLOP/s) | ours %.3f s (%.2fx the product) |\n",
      (long long)n, (long long)d, name, product, flops / product / 1e12, resident, resident / product);
  std::fflush(stdout);
  // Through Backend::kernel into host memory (N^2 entries home): bound by PCIe and the host's copies.
  ntk::Matrix<T> k(n, n);
  const auto t0 = std::chrono::steady_clock::now();
  gpu.kernel(relu3(), x.view(), nullptr, {{}, k.view()}, {});
  const double home = seconds_since(t0);
  std::printf("| assembly | the same, %s, into host memory | | %.3f s (%.2fx the product) |\n", name, home,
              home / product);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t n = 50000, d = 784, direct_n = 4096, n_predict = 20000, n_uncertainty = 500,
               uncertainty_n = 8192;
  std::string parts = "ceilings,assembly,fit,predict,uncertainty,direct";
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
    else if (a == "--uncertainty-n")
      uncertainty_n = std::atoll(argv[i + 1]);
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
    if (!wants("fit") && !wants("predict") && !wants("uncertainty") && !wants("direct")) return 0;
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
    const auto x = mixture(std::max({n, direct_n, uncertainty_n}), labels);
    ntk::FitSettings s;
    s.lambda = 1e-3;
    // The first `rows` points, fitted with `solver`; prints the row.
    auto fit = [&](std::int64_t rows, ntk::SolverKind solver, const char* note) {
      std::vector<std::int64_t> l(labels.begin(), labels.begin() + rows);
      const auto xs = ntk::copy_matrix(x.view().block(0, 0, rows, d));
      const auto ts = ntk::targets_from_labels(l, c, 0.0);
      s.solver = solver;
      const auto t0 = std::chrono::steady_clock::now();
      ntk::Model m = ntk::fit_classifier(*gpu, relu3(), xs.view(), ts, s);
      const double sec = seconds_since(t0);
      std::printf(
          "| fit | N = %lld, C = 10, lambda = 1e-3, %s%s | %.2f s | %d Newton steps, %d CG iterations, "
          "%.3f s per step; %s |\n",
          (long long)rows, ntk::solver_name(solver), note, sec, m.diagnostics.steps,
          m.diagnostics.cg_iterations, m.diagnostics.seconds / std::max(1, m.diagnostics.steps),
          m.diagnostics.message.c_str());
      std::fflush(stdout);
      return m;
    };
    std::vector<std::int64_t> test_labels;
    const auto xt = mixture(std::max(n_predict, n_uncertainty), test_labels);
    if (wants("fit") || wants("predict")) {
      const ntk::Model m = fit(n, ntk::SolverKind::matrix_free, " (kernel included)");
      if (wants("predict")) {
        const auto xp = ntk::copy_matrix(xt.view().block(0, 0, n_predict, d));
        // As the server serves a model: its training inputs and coefficients uploaded once (the product
        // cache), then test blocks through the kernel product; both timed. The first pass warms up.
        auto t0 = std::chrono::steady_clock::now();
        const auto product = ntk::make_model_product(*gpu, m);
        const double upload_s = seconds_since(t0);
        double pred_s = 1e30;
        for (int rep = 0; rep < 3; ++rep) {
          t0 = std::chrono::steady_clock::now();
          const auto p = ntk::predict_with(*product, m, xp.view());
          if (rep > 0) pred_s = std::min(pred_s, seconds_since(t0));
        }
        std::printf(
            "| predict | mean predictor, %lld points, N = %lld model (model upload %.2f s, once) | %.3f s | "
            "%.0f points/s |\n",
            (long long)n_predict, (long long)n, upload_s, pred_s, double(n_predict) / pred_s);
        t0 = std::chrono::steady_clock::now();
        const auto cold = ntk::predict(*gpu, m, xp.view());
        const double cold_s = seconds_since(t0);
        std::printf(
            "| predict | the same through ntk::predict (upload included) | %.3f s | %.0f points/s |\n",
            cold_s, double(n_predict) / cold_s);
        std::fflush(stdout);
      }
    }
    if (wants("uncertainty")) {
      // The linearized mode keeps C + 2 N x N float64 matrices per model (its Laplace factors, the NNGP
      // and Q, on the host and resident on the device), so it is measured on an N = --uncertainty-n model.
      const ntk::Model m = fit(uncertainty_n, ntk::SolverKind::matrix_free, "");
      ntk::UncertaintyOptions o;
      o.mode = ntk::UncertaintyMode::linearized;
      auto context = ntk::make_uncertainty_context();
      auto t0 = std::chrono::steady_clock::now();
      ntk::prepare_uncertainty(*gpu, m, o, *context);
      const double prepare_s = seconds_since(t0);
      const auto xu = ntk::copy_matrix(xt.view().block(0, 0, n_uncertainty, d));
      t0 = std::chrono::steady_clock::now();
      const auto u = ntk::predict_uncertainty(*gpu, m, xu.view(), o, context.get());
      const double unc_s = seconds_since(t0);
      std::printf(
          "| predict | linearized uncertainty, %lld points, N = %lld model | %.2f s (+ %.2f s per-model "
          "preparation) | %.1f points/s |\n",
          (long long)xu.rows(), (long long)uncertainty_n, unc_s, prepare_s, double(xu.rows()) / unc_s);
      std::fflush(stdout);
    }
    if (wants("direct")) {
      fit(direct_n, ntk::SolverKind::direct, "");
      fit(direct_n, ntk::SolverKind::matrix_free, "");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
