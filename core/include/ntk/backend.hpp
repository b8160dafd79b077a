#pragma once
// One interface, several implementations (CPU; CUDA when built): every algorithm reaches the hardware
// only through a Backend, and the CPU backend is the test oracle for the others.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ntk/caching_pool.hpp"
#include "ntk/kernel_assembly.hpp"

namespace ntk {

class Backend;

// One Newton-CG system of the regularized cross-entropy fit (newton.cpp), for A the resident Theta:
//   (I + S K S^T) z = rhs,   K = k A for every class,   S = blockdiag_i((I - u_i u_i^T) diag(u_i)),
// u_i = sqrt(p_i), preconditioned by P^-1 = I - V G^-1 V^T (the Nystrom preconditioner of
// newton_preconditioner.hpp, V y = rows S_i (y^T b_i)) when `basis` has columns, else by the diagonal.
struct NewtonSystem {
  double k = 0;
  ConstMatrixView<double> p;                 // N x C softmax probabilities
  ConstMatrixView<double> basis;             // N x l Nystrom basis B; l = 0 for Jacobi
  ConstMatrixView<double> g_factor;          // l C x l C lower Cholesky factor of G (when l > 0)
  ConstMatrixView<double> inverse_diagonal;  // N x C Jacobi preconditioner (when l = 0)
  bool float32_products = false;             // the operator's K products through multiply_float32
};

// The factors of GPML Algorithm 3.3 at probabilities p (newton.hpp, LaplaceFactors: E_c for each class and
// the Cholesky factor of M = sum_c E_c), kept where they were formed: the direct Newton step applies them.
class LaplaceFactorization {
 public:
  virtual ~LaplaceFactorization() = default;
  // v (N x m) <- E_c v.
  virtual void apply_e(std::int64_t c, MatrixView<double> v) = 0;
  // v (N x m) <- M^-T M^-1 v.
  virtual void apply_m_inverse(MatrixView<double> v) = 0;
};

// A square float64 matrix (the training kernel) kept where the backend computes, so that the solvers'
// many products with thin N x m blocks (Newton-CG, the Nystrom sketch, the gradient-flow ODE) do not
// move it every time: the CUDA backend uploads it once into its device memory pool.
// Its methods may be called from several threads at once (the server shares a model's uncertainty
// context between requests); implementations serialize what they must.
class ResidentMatrix {
 public:
  virtual ~ResidentMatrix() = default;
  virtual std::int64_t rows() const = 0;
  // out = alpha A v + beta out for host matrices v, out of N x m (out must not overlap v).
  virtual void multiply(double alpha, ConstMatrixView<double> v, double beta, MatrixView<double> out) = 0;
  // The same product with A and v rounded to float32 and summed in float32 (each entry off by ~1e-6 of
  // |A| |v|): about twice as fast where the product is bound by memory or SIMD width. Newton-CG runs its
  // inner iterations through it when the error it causes stays small (newton.cpp). The default (for a
  // backend without a float32 path) is the exact multiply().
  virtual void multiply_float32(double alpha, ConstMatrixView<double> v, double beta,
                                MatrixView<double> out) {
    multiply(alpha, v, beta, out);
  }
  // diag(A), and ||A||_inf = max_i sum_j |a_ij|: what the solvers need of A besides products (a Jacobi
  // preconditioner, the estimate of the rounding floor).
  virtual std::vector<double> diagonal() = 0;
  virtual double max_abs_row_sum() = 0;
  // z (N x C) = the preconditioned-CG solution of `system` (this matrix is its A) from z = 0, stopped at
  // ||r|| <= tolerance ||rhs|| or max_iterations; returns the iterations. One algorithm for all backends
  // (detail/conjugate_gradient.hpp); the default keeps the vectors on the host, multiplies through
  // multiply() / multiply_float32() and the preconditioner's small products through backend.gemm();
  // the CUDA backend keeps every vector, the probabilities and the preconditioner on the device, so an
  // iteration moves only three scalars (its dot products) to the host. Throws InvalidArgument for
  // inconsistent shapes.
  virtual int solve_newton_system(Backend& backend, const NewtonSystem& system, ConstMatrixView<double> rhs,
                                  MatrixView<double> z, double tolerance, int max_iterations);
  // The Laplace factors of K = k A at probabilities p (N x C), formed and kept where A lives: the CUDA
  // backend forms, factors and keeps its C + 1 N x N matrices on the device (and falls back to the host
  // when they do not fit). `host` is A on the host, which the default factors through backend's
  // operations. Throws NumericalError when a factorization fails, InvalidArgument for bad shapes.
  virtual std::unique_ptr<LaplaceFactorization> laplace_factors(Backend& backend,
                                                                ConstMatrixView<double> host, double k,
                                                                const Matrix<double>& p);
  // The lambda = 0 closed form's solve, where A lives: factors A + shift I = L L^T, solves b (N x m, on
  // the host) <- (A + shift I)^-1 b, and returns L on the host (row-major lower triangle; the upper one
  // holds what the factorization left there). Consumes the matrix: implementations may factor it in
  // place (the CUDA backend's never crosses PCIe before its factor; an owned host matrix is moved out,
  // not copied), and those answer any later call with FailedPrecondition. NumericalError naming `what`
  // when it is not positive definite.
  virtual Matrix<double> factor_and_solve(Backend& backend, double shift, MatrixView<double> b,
                                          const char* what) = 0;
};

// The shape checks of solve_newton_system shared by its implementations; throws InvalidArgument.
void check_newton_system(const NewtonSystem& system, std::int64_t n, ConstMatrixView<double> rhs,
                         MatrixView<double> z);
// InvalidArgument naming `what` unless `a` is square (the resident matrices' and factors' check).
void check_square_matrix(ConstMatrixView<double> a, const char* what);
// factor_and_solve's host part, shared by its host implementations: a <- its factor with shift added
// to the diagonal, b solved with it; returns a. Checks b's rows against a.
Matrix<double> factor_and_solve_on_host(Backend& backend, Matrix<double> a, double shift,
                                        MatrixView<double> b, const char* what);

// The shape checks of laplace_factors shared by its implementations (`host` may be empty where the
// implementation does not read it); throws InvalidArgument.
void check_laplace_inputs(std::int64_t n, ConstMatrixView<double> host, bool host_needed, double k,
                          const Matrix<double>& p);
// The operand checks of LaplaceFactorization's methods: c is one of the `classes` (apply_m_inverse passes
// 0) and v has n rows.
void check_laplace_operand(std::int64_t n, std::int64_t classes, std::int64_t c, ConstMatrixView<double> v);

// A Cholesky factor (row-major lower, as Backend::cholesky leaves it) kept where the backend computes, for
// repeated solves: the uncertainty modes solve with one factor for every block of test points. solve()
// may be called from several threads at once.
class ResidentFactor {
 public:
  virtual ~ResidentFactor() = default;
  virtual std::int64_t rows() const = 0;
  // b (N x m) <- (L L^T)^-1 b.
  virtual void solve(MatrixView<double> b) = 0;
};

// Products K_ntk(x, X) B for many x with X (N x d) and B (N x m) fixed: prediction, B being a model's
// coefficients. The CUDA backend keeps X, its layer variances and B in device memory and never moves a
// kernel tile to the host; the CPU backend prepares X once and assembles K(x, X) in row blocks (~64 MiB)
// multiplied through gemm().
class KernelProduct {
 public:
  virtual ~KernelProduct() = default;
  std::int64_t training_rows() const { return n_; }
  // out (x.rows x m) = K_ntk(x, X) B + beta out. Throws InvalidArgument for a wrong x (NaN, Inf, column
  // count) or out shape, Cancelled when options.should_stop says so between blocks.
  virtual void apply(ConstMatrixView<double> x, double beta, MatrixView<double> out,
                     const AssemblyOptions& options = {}) = 0;

 protected:
  explicit KernelProduct(std::int64_t n) : n_(n) {}
  std::int64_t n_;
};

// A device backend's memory: its pool's accounting (shared by the backend instances on the device with
// one budget) and the device's own view. All zero for the CPU backend, whose memory is the host's.
struct DeviceMemoryStats {
  std::size_t budget = 0;  // bytes the pool may hold
  std::size_t in_use = 0;  // bytes of live allocations
  std::size_t cached = 0;  // freed bytes kept for reuse (in_use + cached <= budget)
  std::size_t peak = 0;    // high-water mark of in_use
  std::size_t device_total = 0;
  std::size_t device_free = 0;  // as the driver sees it (other processes included)
};

class Backend {
 public:
  virtual ~Backend() = default;
  // "cpu" or "cuda:N".
  virtual std::string name() const = 0;
  // What runs underneath (BLAS and kernel ISA, device name and memory), for logs and health output.
  virtual std::string description() const = 0;
  virtual DeviceMemoryStats device_memory() const { return {}; }

  virtual void kernel(const KernelSpec& spec, ConstMatrixView<float> x1, const ConstMatrixView<float>* x2,
                      KernelOutputs<float> out, const AssemblyOptions& options) = 0;
  virtual void kernel(const KernelSpec& spec, ConstMatrixView<double> x1, const ConstMatrixView<double>* x2,
                      KernelOutputs<double> out, const AssemblyOptions& options) = 0;
  virtual void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<float> x, KernelDiagonal<float> out,
                               const AssemblyOptions& options) = 0;
  virtual void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<double> x, KernelDiagonal<double> out,
                               const AssemblyOptions& options) = 0;

  // Dense float64 linear algebra for the solvers, on host row-major matrices.
  // c = alpha op(a) op(b) + beta c.
  virtual void gemm(bool trans_a, bool trans_b, double alpha, ConstMatrixView<double> a,
                    ConstMatrixView<double> b, double beta, MatrixView<double> c) = 0;
  // In place: the lower triangle becomes L with A = L L^T (the strict upper triangle is left as is).
  // Throws NumericalError naming `what` and the leading minor that is not positive definite.
  virtual void cholesky(MatrixView<double> a, const char* what) = 0;
  // In place: a (symmetric positive definite) becomes a^-1, both triangles. Throws like cholesky().
  virtual void spd_inverse(MatrixView<double> a, const char* what) = 0;
  // b <- L^-1 b (transpose = false) or L^-T b (transpose = true), L lower triangular.
  virtual void triangular_solve(ConstMatrixView<double> l, MatrixView<double> b, bool transpose) = 0;
  // b <- (L L^T)^-1 b for the lower factor L of cholesky(): both triangular solves in one call. The
  // default calls triangular_solve() twice; the CUDA backend uploads L once (cusolverDnXpotrs).
  virtual void cholesky_solve(ConstMatrixView<double> l, MatrixView<double> b);
  // c = alpha a a^T + beta c (c square with a's rows): its lower triangle; the strict upper triangle is
  // unspecified afterwards (callers mirror once after accumulating). The default uses gemm().
  virtual void syrk_lower(double alpha, ConstMatrixView<double> a, double beta, MatrixView<double> c);
  // b <- b L for the lower factor L of cholesky() (L's strict upper triangle is not read). The default
  // multiplies by a copy of the lower triangle through gemm().
  virtual void multiply_by_lower(MatrixView<double> b, ConstMatrixView<double> l);

  // `a` (square) made resident for repeated products; `what` names it in errors. The default keeps a
  // view of `a`, which must then outlive the result, and multiplies through gemm(). Backends with their
  // own memory copy it there (and may fall back to the default when it does not fit).
  virtual std::unique_ptr<ResidentMatrix> make_resident(ConstMatrixView<double> a, const char* what);
  // The factor `l` (square) made resident for repeated solves. The default keeps a view of `l` (which
  // must outlive the result) and solves through cholesky_solve(); the CUDA backend uploads it once.
  virtual std::unique_ptr<ResidentFactor> make_resident_factor(ConstMatrixView<double> l, const char* what);

  // The NTK Theta = K_ntk(x, x) (N x N), computed in T and kept in float64 where this backend computes, for
  // solvers that only multiply with it (Newton-CG, the gradient flow). The default assembles it on the
  // host through kernel() and keeps that copy; the CUDA backend assembles it in device memory and never
  // copies it to the host (at N = 50k that is 20 GB each way saved).
  virtual std::unique_ptr<ResidentMatrix> resident_kernel(const KernelSpec& spec, ConstMatrixView<float> x,
                                                          const AssemblyOptions& options, const char* what);
  virtual std::unique_ptr<ResidentMatrix> resident_kernel(const KernelSpec& spec, ConstMatrixView<double> x,
                                                          const AssemblyOptions& options, const char* what);

  // K_ntk(., x_train) b for repeated test blocks (KernelProduct), computed in float32 when `float32` (the
  // inputs rounded, as kernel<float>()) and in float64 otherwise; b is float64 either way. x_train and b
  // must outlive the result (the CPU backend keeps views; the CUDA backend copies them to the device).
  virtual std::unique_ptr<KernelProduct> make_kernel_product(const KernelSpec& spec, bool float32,
                                                             ConstMatrixView<double> x_train,
                                                             ConstMatrixView<double> b) = 0;

  // Fills `out` (row by row) with independent standard normal draws determined by `seed` alone: the same
  // numbers for the same seed on the same backend. The default (the CPU's) is std::mt19937_64 with
  // std::normal_distribution; the CUDA backend draws on the device with cuRAND's Philox4x32-10. The
  // backends' numbers differ; their law does not.
  virtual void normal_draws(std::uint64_t seed, MatrixView<double> out);
};

// The checks every KernelProduct runs, with the messages all backends share: b has one row per training
// input and the training inputs are finite; a test block has the training inputs' columns and `out` is
// x.rows x m. Throw InvalidArgument.
void check_kernel_product_operands(ConstMatrixView<double> x_train, ConstMatrixView<double> b);
void check_kernel_product_shapes(ConstMatrixView<double> x, MatrixView<double> out, std::int64_t features,
                                 std::int64_t m);

// The shape checks of syrk_lower (c square with a's rows) and multiply_by_lower (l square with b's
// columns) every backend runs, with one message each; InvalidArgument.
void check_syrk_shapes(ConstMatrixView<double> a, ConstMatrixView<double> c);
void check_lower_product_shapes(ConstMatrixView<double> b, ConstMatrixView<double> l);
// c <- beta c (zeros for beta = 0, whatever c held), on the lower triangle only or on every entry: the
// result of an empty sum (a product with no inner dimension, which the BLAS libraries refuse).
void scale_by_beta(double beta, MatrixView<double> c, bool lower_triangle_only);

struct BackendOptions {
  int threads = 0;                       // CPU worker threads; 0 = all hardware threads
  std::size_t device_memory_budget = 0;  // bytes a CUDA backend may hold; 0 = 90% of the device's memory
  // Asked for room when a device backend's memory pool cannot satisfy an allocation (see
  // MemoryReclaimer): the server gives back idle cached uncertainty contexts and kernel products. The
  // CPU backend does not call it (host memory is the caller's budget). Every instance made with it
  // registers it with its device's shared pool: give it to one instance per device.
  MemoryReclaimer reclaim_device_memory;
};

// "cpu", "cuda" / "cuda:N", or "auto" (the first usable CUDA device, else the CPU). Logs the choice and
// the reason. Throws InvalidArgument for an unknown name, Unavailable when CUDA is asked for and absent.
std::unique_ptr<Backend> make_backend(std::string_view name, const BackendOptions& options = {});

// Whether this build contains the CUDA backend, and how many devices it can use right now.
bool cuda_backend_built();
int cuda_device_count();

}  // namespace ntk
