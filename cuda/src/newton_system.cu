// Newton-CG on the device. The per-sample products with S_i and S_i^T are sample_math.hpp's, the very
// code the host solver runs (one thread per sample); products with Theta, the Nystrom basis and G's
// factor are cuBLAS (row-major matrices read as their column-major transposes); dot products return to
// the host through cuBLAS's host pointer mode, which synchronizes the stream.
#include <algorithm>
#include <limits>
#include <string>

#include "convert.cuh"
#include "newton_system.cuh"
#include "ntk/cuda/errors.cuh"
#include "ntk/detail/conjugate_gradient.hpp"
#include "ntk/sample_math.hpp"
#include "transfer.cuh"

namespace ntk::cuda {
namespace {

constexpr unsigned kThreads = 256;

unsigned blocks_for(std::int64_t count) {
  return static_cast<unsigned>(std::min<std::int64_t>((count + kThreads - 1) / kThreads, 1 << 30));
}

// out_i = S_i^T v_i for every sample i (rows of C).
__global__ void apply_st_kernel(const double* p, const double* v, std::int64_t n, int classes, double* out) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t o = i * classes;
    sample::apply_st(p + o, v + o, classes, out + o);
  }
}

// out_i = base_i + sign S_i v_i for every sample i (out must not alias base or v).
__global__ void add_s_kernel(const double* p, const double* base, const double* v, double sign,
                             std::int64_t n, int classes, double* out) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t o = i * classes;
    sample::apply_s(p + o, v + o, classes, out + o);
    for (int c = 0; c < classes; ++c) out[o + c] = base[o + c] + sign * out[o + c];
  }
}

// out = d o r, element-wise.
__global__ void scale_kernel(const double* d, const double* r, std::int64_t count, double* out) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = d[i] * r[i];
}

class DeviceNewtonOps {
 public:
  using Vector = DeviceBuffer;

  DeviceNewtonOps(DeviceResources& r, const DeviceTheta& theta, const NewtonSystem& system)
      : r_(r),
        theta_(theta),
        system_(system),
        n_(system.p.rows),
        c_(system.p.cols),
        l_(system.basis.cols),
        count_(n_ * c_),
        stream_(r.stream(0)),
        blas_(r.cublas()) {
    NTK_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    NTK_CUBLAS_CHECK(cublasSetPointerMode(blas_, CUBLAS_POINTER_MODE_HOST));
    // Every buffer first, then the copies: an allocation that throws must not return a buffer to the pool
    // while a copy into it is still queued (the pool's reuse is not ordered by streams).
    auto allocate = [&](std::int64_t elements, const char* what) {
      return r_.pool().allocate(std::size_t(elements) * sizeof(double), what);
    };
    p_ = allocate(count_, "Newton-CG probabilities");
    st_v_ = make();
    k_st_v_ = make();
    if (l_ > 0) {
      basis_ = allocate(n_ * l_, "Newton-CG Nystrom basis");
      g_factor_ = allocate(l_ * c_ * l_ * c_, "Newton-CG preconditioner factor");
      coefficients_ = allocate(l_ * c_, "Newton-CG coefficients");
      basis_times_ = make();
    } else {
      inverse_diagonal_ = allocate(count_, "Newton-CG Jacobi preconditioner");
    }
    if (system.float32_products)
      operand_f32_ =
          r_.pool().allocate(2 * std::size_t(count_) * sizeof(float), "Newton-CG float32 operands");
    copy_to_device(p_.as<double>(), system.p, stream_);
    if (l_ > 0) {
      copy_to_device(basis_.as<double>(), system.basis, stream_);
      copy_to_device(g_factor_.as<double>(), system.g_factor, stream_);
    } else {
      copy_to_device(inverse_diagonal_.as<double>(), system.inverse_diagonal, stream_);
    }
  }

  Vector make() { return r_.pool().allocate(std::size_t(count_) * sizeof(double), "Newton-CG vector"); }
  void copy(const Vector& from, Vector& to) {
    NTK_CUDA_CHECK(cudaMemcpyAsync(to.as<double>(), from.as<double>(), std::size_t(count_) * sizeof(double),
                                   cudaMemcpyDeviceToDevice, stream_));
  }
  void set_zero(Vector& v) {
    NTK_CUDA_CHECK(cudaMemsetAsync(v.as<double>(), 0, std::size_t(count_) * sizeof(double), stream_));
  }
  double dot(const Vector& x, const Vector& y) {
    double result = 0;
    NTK_CUBLAS_CHECK(cublasDdot_64(blas_, count_, x.as<double>(), 1, y.as<double>(), 1, &result));
    return result;
  }
  void axpy(double alpha, const Vector& x, Vector& y) {
    NTK_CUBLAS_CHECK(cublasDaxpy_64(blas_, count_, &alpha, x.as<double>(), 1, y.as<double>(), 1));
  }
  void xpby(const Vector& x, double beta, Vector& y) {
    const double one = 1.0;
    NTK_CUBLAS_CHECK(cublasDscal_64(blas_, count_, &beta, y.as<double>(), 1));
    NTK_CUBLAS_CHECK(cublasDaxpy_64(blas_, count_, &one, x.as<double>(), 1, y.as<double>(), 1));
  }

  // out = (I + S K S^T) v, K = k Theta.
  void apply(const Vector& v, Vector& out) {
    apply_st(v, st_v_);
    multiply_theta(st_v_, k_st_v_);
    add_s(v, k_st_v_, 1.0, out);
  }

  // out = P^-1 r: r - S B (G^-1 (B^T S^T r)) (Nystrom; G = L L^T) or the Jacobi scaling.
  void precondition(const Vector& r, Vector& out) {
    if (l_ == 0) {
      scale_kernel<<<blocks_for(count_), kThreads, 0, stream_>>>(inverse_diagonal_.as<double>(),
                                                                 r.as<double>(), count_, out.as<double>());
      NTK_CUDA_CHECK_LAUNCH("scale_kernel");
      return;
    }
    apply_st(r, st_v_);
    const double one = 1.0, zero = 0.0;
    // coefficients (l x C) = B^T st_v: column-major C x l = st_v^T (C x N) * B (N x l).
    NTK_CUBLAS_CHECK(cublasDgemm_64(blas_, CUBLAS_OP_N, CUBLAS_OP_T, c_, l_, n_, &one, st_v_.as<double>(), c_,
                                    basis_.as<double>(), l_, &zero, coefficients_.as<double>(), c_));
    // The l C vector through L^-1 then L^-T; L row-major lower is column-major upper L^T.
    const std::int64_t m = l_ * c_;
    NTK_CUBLAS_CHECK(cublasDtrsv_64(blas_, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT, m,
                                    g_factor_.as<double>(), m, coefficients_.as<double>(), 1));
    NTK_CUBLAS_CHECK(cublasDtrsv_64(blas_, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, m,
                                    g_factor_.as<double>(), m, coefficients_.as<double>(), 1));
    // basis_times (N x C) = B coefficients: column-major C x N = coefficients^T (C x l) * B^T (l x N).
    NTK_CUBLAS_CHECK(cublasDgemm_64(blas_, CUBLAS_OP_N, CUBLAS_OP_N, c_, n_, l_, &one,
                                    coefficients_.as<double>(), c_, basis_.as<double>(), l_, &zero,
                                    basis_times_.as<double>(), c_));
    add_s(r, basis_times_, -1.0, out);
  }

 private:
  void apply_st(const Vector& v, Vector& out) {
    apply_st_kernel<<<blocks_for(n_), kThreads, 0, stream_>>>(p_.as<double>(), v.as<double>(), n_, int(c_),
                                                              out.as<double>());
    NTK_CUDA_CHECK_LAUNCH("apply_st_kernel");
  }
  void add_s(const Vector& base, const Vector& v, double sign, Vector& out) {
    add_s_kernel<<<blocks_for(n_), kThreads, 0, stream_>>>(p_.as<double>(), base.as<double>(), v.as<double>(),
                                                           sign, n_, int(c_), out.as<double>());
    NTK_CUDA_CHECK_LAUNCH("add_s_kernel");
  }

  // out (N x C) = k Theta v, in float64 or, when the system asks, through the float32 copy of Theta
  // (v rounded to float32, the product converted back and scaled by k in float64, as the CPU's).
  void multiply_theta(const Vector& v, Vector& out) {
    const double k = system_.k, zero = 0.0;
    if (!system_.float32_products) {
      NTK_CUBLAS_CHECK(cublasDgemm_64(blas_, CUBLAS_OP_N, CUBLAS_OP_N, c_, n_, n_, &k, v.as<double>(), c_,
                                      theta_.f64, n_, &zero, out.as<double>(), c_));
      return;
    }
    float* v32 = operand_f32_.as<float>();
    float* r32 = v32 + count_;
    convert_on_device(v.as<double>(), std::size_t(count_), v32, stream_);
    const float one_f = 1.0f, zero_f = 0.0f;
    NTK_CUBLAS_CHECK(cublasSgemm_64(blas_, CUBLAS_OP_N, CUBLAS_OP_N, c_, n_, n_, &one_f, v32, c_, theta_.f32,
                                    n_, &zero_f, r32, c_));
    convert_on_device(r32, std::size_t(count_), out.as<double>(), stream_);
    NTK_CUBLAS_CHECK(cublasDscal_64(blas_, count_, &k, out.as<double>(), 1));
  }

  DeviceResources& r_;
  DeviceTheta theta_;
  const NewtonSystem& system_;
  std::int64_t n_, c_, l_, count_;
  cudaStream_t stream_;
  cublasHandle_t blas_;
  DeviceBuffer p_, basis_, g_factor_, inverse_diagonal_, coefficients_, basis_times_, st_v_, k_st_v_;
  DeviceBuffer operand_f32_;
};

}  // namespace

int solve_newton_system_on_device(DeviceResources& resources, const DeviceTheta& theta,
                                  const NewtonSystem& system, ConstMatrixView<double> rhs,
                                  MatrixView<double> z, double tolerance, int max_iterations) {
  const std::int64_t n = system.p.rows, c = system.p.cols;
  if (n == 0 || c == 0) return 0;
  if (c > std::numeric_limits<int>::max())
    throw InvalidArgument("Newton system: " + std::to_string(c) +
                          " classes is more than the device supports");
  if (system.float32_products && theta.f32 == nullptr)
    throw InvalidArgument("Newton system: float32 products asked for without a float32 copy of Theta");
  resources.activate();
  DeviceNewtonOps ops(resources, theta, system);
  const cudaStream_t s = resources.stream(0);
  DeviceBuffer solution = ops.make();
  const DeviceBuffer b = upload(resources, rhs, "Newton-CG right-hand side", s);
  // The host operands are pageable and the CG's own vectors are allocated next: let the copies land
  // first, so that an allocation failure there frees nothing a copy still writes.
  NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  const int iterations = detail::preconditioned_cg(ops, b, solution, tolerance, max_iterations);
  copy_to_host(z, solution.as<double>(), s);
  NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  return iterations;
}

}  // namespace ntk::cuda
