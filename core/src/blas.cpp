#include "ntk/blas.hpp"

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ntk/cpu_features.hpp"
#include "ntk/errors.hpp"
#include "ntk/logging.hpp"

namespace ntk::blas {
namespace {

// CBLAS enumerations (values fixed by the CBLAS standard).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kLower = 122, kLeft = 141, kRight = 142,
              kNonUnit = 131;

using sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float,
                          float*, int);
using dgemm_fn = void (*)(int, int, int, int, int, int, double, const double*, int, const double*, int,
                          double, double*, int);
using dtrsm_fn = void (*)(int, int, int, int, int, int, int, double, const double*, int, double*, int);
using dtrmm_fn = dtrsm_fn;  // same signature
using dsyrk_fn = void (*)(int, int, int, int, int, double, const double*, int, double, double*, int);
using dpotrf_fn = void (*)(const char*, const int*, double*, const int*, int*);
using set_threads_fn = void (*)(int);
using get_threads_fn = int (*)();
using get_string_fn = char* (*)();

struct Api {
  Info info;
  sgemm_fn sgemm = nullptr;
  dgemm_fn dgemm = nullptr;
  dtrsm_fn dtrsm = nullptr;
  dtrmm_fn dtrmm = nullptr;
  dsyrk_fn dsyrk = nullptr;
  dpotrf_fn dpotrf = nullptr;
  dpotrf_fn dpotri = nullptr;  // same signature
  set_threads_fn set_threads = nullptr;
  get_threads_fn get_threads = nullptr;
};

template <class F>
F symbol(void* handle, const char* name, const std::string& path) {
  void* p = dlsym(handle, name);
  if (p == nullptr) throw Unavailable("BLAS library " + path + " has no symbol " + name);
  return reinterpret_cast<F>(p);
}

// The OpenBLAS core type to request, and why.
std::pair<std::optional<std::string>, std::string> choose_core() {
  const char* requested = std::getenv("NTK_BLAS_CORETYPE");
  const std::string mode = requested ? requested : "auto";
  const char* inherited = std::getenv("OPENBLAS_CORETYPE");
  if (mode == "keep")
    return {std::nullopt,
            inherited ? std::string("OPENBLAS_CORETYPE=") + inherited + " kept (NTK_BLAS_CORETYPE=keep)"
                      : "OpenBLAS's own detection (NTK_BLAS_CORETYPE=keep)"};
  if (mode != "auto") return {mode, "NTK_BLAS_CORETYPE=" + mode};
  const int level = x86_level();
  std::string note = inherited ? std::string(", overriding inherited OPENBLAS_CORETYPE=") + inherited : "";
  if (level >= 4) return {"SkylakeX", "CPU has AVX-512 (x86-64-v4)" + note};
  if (level == 3) return {"Haswell", "CPU has AVX2/FMA (x86-64-v3)" + note};
  return {std::nullopt, "OpenBLAS's own detection (no AVX2 on this CPU)"};
}

// Forcing a core type trusts its kernels on this CPU: check GEMM (odd shapes, both transposes, both
// precisions) and a Cholesky against plain loops once at load, so a kernel that computes garbage here
// is a clear error instead of silently wrong kernels.
void self_test(const Api& api) {
  constexpr int m = 37, n = 29, k = 53;
  std::vector<double> a(m * k), b(n * k), c(m * n), want(m * n);
  std::vector<float> af(m * k), bf(n * k), cf(m * n);
  for (int i = 0; i < m * k; ++i) af[i] = static_cast<float>(a[i] = std::sin(0.37 * i + 0.1));
  for (int i = 0; i < n * k; ++i) bf[i] = static_cast<float>(b[i] = std::cos(0.23 * i + 0.3));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int q = 0; q < k; ++q) s += a[i * k + q] * b[j * k + q];
      want[i * n + j] = s;
    }
  api.dgemm(kRowMajor, kNoTrans, kTrans, m, n, k, 1.0, a.data(), k, b.data(), k, 0.0, c.data(), n);
  api.sgemm(kRowMajor, kNoTrans, kTrans, m, n, k, 1.0f, af.data(), k, bf.data(), k, 0.0f, cf.data(), n);
  double err64 = 0, err32 = 0;
  for (int i = 0; i < m * n; ++i) {
    err64 = std::max(err64, std::abs(c[i] - want[i]));
    err32 = std::max(err32, std::abs(double(cf[i]) - want[i]));
  }
  // An SPD matrix b b^T + n I and its Cholesky factor, reassembled.
  std::vector<double> spd(n * n), chol;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double s = i == j ? n : 0.0;
      for (int q = 0; q < k; ++q) s += b[i * k + q] * b[j * k + q];
      spd[i * n + j] = s;
    }
  chol = spd;
  int info = 0;
  api.dpotrf("U", &n, chol.data(), &n, &info);
  double err_chol = info == 0 ? 0.0 : 1e300;
  for (int i = 0; i < n && info == 0; ++i)
    for (int j = 0; j <= i; ++j) {
      double s = 0;
      for (int q = 0; q <= j; ++q) s += chol[i * n + q] * chol[j * n + q];
      err_chol = std::max(err_chol, std::abs(s - spd[i * n + j]) / spd[i * n + i]);
    }
  if (err64 > 1e-12 || err32 > 1e-4 || err_chol > 1e-12)
    throw Unavailable("OpenBLAS core " + api.info.core + " failed its self-test on this CPU (dgemm error " +
                      std::to_string(err64) + ", sgemm " + std::to_string(err32) + ", dpotrf " +
                      std::to_string(err_chol) +
                      "): set NTK_BLAS_CORETYPE=Haswell or NTK_BLAS_CORETYPE=keep");
}

Api load() {
  Api api;
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("NTK_OPENBLAS_LIBRARY")) candidates.emplace_back(path);
  candidates.insert(candidates.end(), {"libopenblas.so.0", "libopenblasp.so.0", "libopenblas.so"});

  const auto [core, reason] = choose_core();
  const char* previous = std::getenv("OPENBLAS_CORETYPE");
  const std::optional<std::string> saved = previous ? std::optional<std::string>(previous) : std::nullopt;
  // OpenBLAS reads OPENBLAS_CORETYPE once, in its constructor, which runs inside dlopen. Restore the
  // variable afterwards so child processes see the environment they were given.
  if (core) setenv("OPENBLAS_CORETYPE", core->c_str(), 1);
  // Without this OpenBLAS starts one worker per core at load; idle, they spin in sched_yield and
  // steal the cores from our own tile workers.
  const char* previous_threads = std::getenv("OPENBLAS_NUM_THREADS");
  const std::optional<std::string> saved_threads =
      previous_threads ? std::optional<std::string>(previous_threads) : std::nullopt;
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  void* handle = nullptr;
  std::string loaded, errors;
  for (const auto& c : candidates) {
    handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle) {
      loaded = c;
      break;
    }
    errors += std::string(" ") + dlerror() + ";";
  }
  auto restore = [](const char* name, const std::optional<std::string>& value) {
    if (value)
      setenv(name, value->c_str(), 1);
    else
      unsetenv(name);
  };
  if (core) restore("OPENBLAS_CORETYPE", saved);
  restore("OPENBLAS_NUM_THREADS", saved_threads);
  if (handle == nullptr)
    throw Unavailable("cannot load OpenBLAS (install libopenblas0-pthread or set NTK_OPENBLAS_LIBRARY):" +
                      errors);

  api.sgemm = symbol<sgemm_fn>(handle, "cblas_sgemm", loaded);
  api.dgemm = symbol<dgemm_fn>(handle, "cblas_dgemm", loaded);
  api.dtrsm = symbol<dtrsm_fn>(handle, "cblas_dtrsm", loaded);
  api.dtrmm = symbol<dtrmm_fn>(handle, "cblas_dtrmm", loaded);
  api.dsyrk = symbol<dsyrk_fn>(handle, "cblas_dsyrk", loaded);
  api.dpotrf = symbol<dpotrf_fn>(handle, "dpotrf_", loaded);
  api.dpotri = symbol<dpotrf_fn>(handle, "dpotri_", loaded);
  api.set_threads = symbol<set_threads_fn>(handle, "openblas_set_num_threads", loaded);
  api.get_threads = symbol<get_threads_fn>(handle, "openblas_get_num_threads", loaded);
  api.info.library = loaded;
  api.info.config = symbol<get_string_fn>(handle, "openblas_get_config", loaded)();
  api.info.core = symbol<get_string_fn>(handle, "openblas_get_corename", loaded)();
  api.info.core_reason = reason;
  // Parallelism comes from the callers (tiles across threads); a threaded BLAS underneath would
  // oversubscribe the cores.
  api.set_threads(1);
  self_test(api);
  log_info("BLAS: " + std::string(api.info.config) + " core=" + api.info.core + " (" + reason + ")");
  return api;
}

const Api& api() {
  static const Api instance = load();
  return instance;
}

int to_int(std::int64_t v, const char* what) {
  if (v > 2147483647 || v < 0)
    throw InvalidArgument(std::string(what) + " exceeds the 32-bit BLAS interface");
  return static_cast<int>(v);
}

}  // namespace

const Info& info() {
  return api().info;
}

std::string describe() {
  const Info& i = info();
  return i.config + " core=" + i.core + " (" + i.core_reason + ")";
}

void set_threads(int threads) {
  api().set_threads(threads < 1 ? 1 : threads);
}
int threads() {
  return api().get_threads();
}

template <>
void gemm<float>(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                 const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                 std::int64_t ldc) {
  api().sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, to_int(m, "m"), to_int(n, "n"),
              to_int(k, "k"), alpha, a, to_int(lda, "lda"), b, to_int(ldb, "ldb"), beta, c,
              to_int(ldc, "ldc"));
}

template <>
void gemm<double>(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
                  const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
                  double* c, std::int64_t ldc) {
  api().dgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, to_int(m, "m"), to_int(n, "n"),
              to_int(k, "k"), alpha, a, to_int(lda, "lda"), b, to_int(ldb, "ldb"), beta, c,
              to_int(ldc, "ldc"));
}

int potrf_lower(std::int64_t n, double* a, std::int64_t lda) {
  const int nn = to_int(n, "n"), ld = to_int(lda, "lda");
  int info = 0;
  api().dpotrf("U", &nn, a, &ld, &info);
  return info;
}

int potri_lower(std::int64_t n, double* a, std::int64_t lda) {
  const int nn = to_int(n, "n"), ld = to_int(lda, "lda");
  int info = 0;
  api().dpotri("U", &nn, a, &ld, &info);  // row-major lower == column-major upper
  return info;
}

void trsm_lower(bool transpose, std::int64_t n, std::int64_t nrhs, const double* l, std::int64_t ldl,
                double* b, std::int64_t ldb) {
  api().dtrsm(kRowMajor, kLeft, kLower, transpose ? kTrans : kNoTrans, kNonUnit, to_int(n, "n"),
              to_int(nrhs, "nrhs"), 1.0, l, to_int(ldl, "ldl"), b, to_int(ldb, "ldb"));
}

void syrk_lower(std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda, double beta,
                double* c, std::int64_t ldc) {
  api().dsyrk(kRowMajor, kLower, kNoTrans, to_int(n, "n"), to_int(k, "k"), alpha, a, to_int(lda, "lda"), beta,
              c, to_int(ldc, "ldc"));
}

void trmm_right_lower(std::int64_t m, std::int64_t n, const double* l, std::int64_t ldl, double* b,
                      std::int64_t ldb) {
  api().dtrmm(kRowMajor, kRight, kLower, kNoTrans, kNonUnit, to_int(m, "m"), to_int(n, "n"), 1.0, l,
              to_int(ldl, "ldl"), b, to_int(ldb, "ldb"));
}

ScopedThreads::ScopedThreads(int threads) {
  set_threads(threads);
}
ScopedThreads::~ScopedThreads() {
  set_threads(1);
}

}  // namespace ntk::blas
