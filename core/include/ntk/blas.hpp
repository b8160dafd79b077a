#pragma once
// The CPU BLAS/LAPACK in use. OpenBLAS is loaded at run time so that its kernel ("core type") can be
// chosen before it initializes: Debian's OpenBLAS 0.3.21 does not recognize recent CPUs and would fall
// back to slow kernels (docs/benchmarks.md has the measurements behind the choice).
#include <cstdint>
#include <string>

namespace ntk::blas {

struct Info {
  std::string library;      // path that was loaded
  std::string config;       // openblas_get_config()
  std::string core;         // openblas_get_corename(): the kernel set actually in use
  std::string core_reason;  // why that core type
};

// Loads the library on first use (thread-safe); throws Unavailable when no OpenBLAS can be loaded.
// Environment: NTK_BLAS_CORETYPE=auto (default: pick from CPUID) | keep (OpenBLAS's own detection or
// an inherited OPENBLAS_CORETYPE) | a core name (SkylakeX, Haswell, ...); NTK_OPENBLAS_LIBRARY=path.
const Info& info();
std::string describe();

// OpenBLAS's own thread count. The CPU backend keeps it at 1 and parallelizes over tiles itself.
void set_threads(int threads);
int threads();

// Row-major C = alpha op(A) op(B) + beta C.
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc);

// Cholesky of the row-major symmetric matrix a (n x n, float64): afterwards its lower triangle holds L
// with A = L L^T. Returns 0 on success, or the 1-based order of the leading minor that is not positive
// definite (LAPACK's info).
int potrf_lower(std::int64_t n, double* a, std::int64_t lda);

// From the factor of potrf_lower, the lower triangle of A^-1 (float64). Returns LAPACK's info.
int potri_lower(std::int64_t n, double* a, std::int64_t lda);

// b <- L^-1 b or L^-T b for row-major b (n x nrhs), L lower triangular (float64).
void trsm_lower(bool transpose, std::int64_t n, std::int64_t nrhs, const double* l, std::int64_t ldl,
                double* b, std::int64_t ldb);

// Row-major c (n x n) = alpha a a^T + beta c for a (n x k): the lower triangle only (float64).
void syrk_lower(std::int64_t n, std::int64_t k, double alpha, const double* a, std::int64_t lda, double beta,
                double* c, std::int64_t ldc);

// Row-major b (m x n) <- b L for L (n x n) lower triangular; L's strict upper triangle is not read.
void trmm_right_lower(std::int64_t m, std::int64_t n, const double* l, std::int64_t ldl, double* b,
                      std::int64_t ldb);

// Sets OpenBLAS's thread count for the lifetime of the object, then back to 1. For large single
// calls (factorizations) where the caller has no parallelism of its own.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;
};

}  // namespace ntk::blas
