// NNGP/NTK assembly on the CPU beside the bare GEMM of the same shapes (issue: kernel engine, item 8).
//
//   build/bin/kernel_assembly_bench [--benchmark_filter=...]
//
// Each assembly case reports entries/s and "gemm_GFLOPs" (the x.x' product's flops over the whole
// time). The bare GEMM cases run the same tiles on the same workers with the same single-threaded BLAS
// calls ("gemm_tiled"), and one whole-matrix GEMM with OpenBLAS's own threading ("gemm_whole").
// bench/report_kernel_assembly.py turns the JSON output into the docs/benchmarks.md table with the
// ratios: assembly speed vs bare GEMM (target >= 0.7), recursion share, symmetric speed-up (>= 1.7).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include "ntk/blas.hpp"
#include "ntk/cpu_features.hpp"
#include "ntk/kernel_assembly.hpp"
#include "ntk/parallel.hpp"

namespace {

constexpr std::int64_t kDim = 784;
// The tile edge, as the library's default; NTK_BENCH_TILE overrides it to explore.
const std::int64_t kTile = [] {
  const char* env = std::getenv("NTK_BENCH_TILE");
  return env ? std::atoll(env) : std::int64_t(256);
}();
const std::int64_t kTileCols = [] {
  const char* env = std::getenv("NTK_BENCH_TILE_COLS");
  return env ? std::atoll(env) : kTile;
}();

template <class T>
const ntk::Matrix<T>& inputs(std::int64_t n) {
  static std::map<std::int64_t, ntk::Matrix<T>> cache;
  auto it = cache.find(n);
  if (it != cache.end()) return it->second;
  ntk::Matrix<T> x(n, kDim);
  std::mt19937_64 rng(42);
  std::normal_distribution<double> normal;
  for (auto& v : x.storage()) v = static_cast<T>(normal(rng));
  return cache.emplace(n, std::move(x)).first->second;
}

ntk::KernelSpec depth3_relu() {
  ntk::KernelSpec spec;
  spec.depth = 3;
  spec.w_std = 1.5;
  spec.b_std = 0.1;
  return spec;
}

template <class T>
void tiled_gemm(const ntk::Matrix<T>& x, ntk::Matrix<T>& c, int threads) {
  const std::int64_t n = x.rows(), tiles = (n + kTile - 1) / kTile;
  ntk::parallel_for(tiles * tiles, threads, [&](std::int64_t t, int) {
    const std::int64_t i0 = (t / tiles) * kTile, j0 = (t % tiles) * kTile;
    ntk::blas::gemm<T>(false, true, std::min(kTile, n - i0), std::min(kTile, n - j0), kDim, T(1) / T(kDim),
                       x.data() + i0 * kDim, kDim, x.data() + j0 * kDim, kDim, T(0), c.data() + i0 * n + j0,
                       n);
  });
}

template <class T>
void bm_tiled_gemm(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const auto& x = inputs<T>(n);
  ntk::Matrix<T> c(n, n);
  for (auto _ : state) {
    tiled_gemm(x, c, threads);
    benchmark::DoNotOptimize(c.data());
  }
  const double flops = 2.0 * double(n) * double(n) * double(kDim);
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["entries_per_s"] =
      benchmark::Counter(double(n) * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

template <class T>
void bm_whole_gemm(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const auto& x = inputs<T>(n);
  ntk::Matrix<T> c(n, n);
  ntk::blas::set_threads(threads);
  for (auto _ : state) {
    ntk::blas::gemm<T>(false, true, n, n, kDim, T(1) / T(kDim), x.data(), kDim, x.data(), kDim, T(0),
                       c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  ntk::blas::set_threads(1);
  const double flops = 2.0 * double(n) * double(n) * double(kDim);
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <class T>
void bm_assembly(benchmark::State& state, bool symmetric, ntk::KernelSelection which) {
  const std::int64_t n = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  const auto& x = inputs<T>(n);
  const ntk::KernelSpec spec = depth3_relu();
  ntk::Matrix<T> nngp, ntk_m;
  if (which != ntk::KernelSelection::ntk) nngp = ntk::Matrix<T>(n, n);
  if (which != ntk::KernelSelection::nngp) ntk_m = ntk::Matrix<T>(n, n);
  const ntk::KernelOutputs<T> out{nngp.size() ? nngp.view() : ntk::MatrixView<T>{},
                                  ntk_m.size() ? ntk_m.view() : ntk::MatrixView<T>{}};
  ntk::AssemblyOptions options;
  options.threads = threads;
  options.tile_rows = kTile;
  options.tile_cols = kTileCols;
  const ntk::ConstMatrixView<T> xv = x.view();
  for (auto _ : state) {
    ntk::assemble_kernel<T>(spec, xv, symmetric ? nullptr : &xv, out, options);
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * double(n) * double(n) * double(kDim);
  state.counters["gemm_GFLOPs"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["entries_per_s"] =
      benchmark::Counter(double(n) * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

void args(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {2048, 4096, 8192})
    for (int t : {1, 2}) b->Args({n, t});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::printf("CPU: %s; kernel ISA %s; BLAS %s\n", ntk::cpu_model_name().c_str(), ntk::kernel_isa().c_str(),
              ntk::blas::describe().c_str());
  benchmark::RegisterBenchmark("gemm_tiled/f32", bm_tiled_gemm<float>)->Apply(args);
  benchmark::RegisterBenchmark("gemm_tiled/f64", bm_tiled_gemm<double>)->Apply(args);
  benchmark::RegisterBenchmark("gemm_whole/f32", bm_whole_gemm<float>)->Apply(args);
  benchmark::RegisterBenchmark("gemm_whole/f64", bm_whole_gemm<double>)->Apply(args);
  for (bool sym : {false, true}) {
    const char* shape = sym ? "sym" : "general";
    using KS = ntk::KernelSelection;
    for (auto [which, wname] : {std::pair{KS::ntk, "ntk"}, std::pair{KS::both, "nngp+ntk"}}) {
      benchmark::RegisterBenchmark((std::string("assembly/f32/") + shape + "/" + wname).c_str(),
                                   [=](benchmark::State& s) { bm_assembly<float>(s, sym, which); })
          ->Apply(args);
      benchmark::RegisterBenchmark((std::string("assembly/f64/") + shape + "/" + wname).c_str(),
                                   [=](benchmark::State& s) { bm_assembly<double>(s, sym, which); })
          ->Apply(args);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
