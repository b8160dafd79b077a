#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "convert.cuh"
#include "laplace_factors.cuh"
#include "linear_algebra.cuh"
#include "newton_system.cuh"
#include "ntk/cuda/errors.cuh"
#include "ntk/logging.hpp"
#include "resident_matrix.cuh"
#include "transfer.cuh"

namespace ntk::cuda {
namespace {

// sums[i] = sum_j |a_ij| for a row-major n x n matrix: one warp per row.
__global__ void abs_row_sums_kernel(const double* a, std::int64_t n, double* sums) {
  const std::int64_t row = (std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= n) return;
  double acc = 0;
  for (std::int64_t j = lane; j < n; j += 32) acc += fabs(a[row * n + j]);
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  if (lane == 0) sums[row] = acc;
}

// a[i, i] += shift for a row-major n x n matrix (the closed form's diag_reg, added as the host adds it).
__global__ void add_to_diagonal_kernel(double* a, std::int64_t n, double shift) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) a[i * (n + 1)] += shift;
}

class DeviceResidentMatrix final : public ResidentMatrix {
 public:
  DeviceResidentMatrix(DeviceResources& r, std::mutex& mutex, ConstMatrixView<double> a, const char* what)
      : resources_(r), mutex_(mutex), n_(a.rows) {
    std::lock_guard lock(mutex_);
    resources_.activate();
    matrix_ = upload(resources_, a, what, resources_.stream(0));
    NTK_CUDA_CHECK(cudaStreamSynchronize(resources_.stream(0)));
  }
  // Takes over an n x n row-major float64 matrix already in the pool (assembled there).
  DeviceResidentMatrix(DeviceResources& r, std::mutex& mutex, DeviceBuffer matrix, std::int64_t n)
      : resources_(r), mutex_(mutex), n_(n), matrix_(std::move(matrix)) {}

  std::vector<double> diagonal() override {
    std::vector<double> d(static_cast<std::size_t>(n_));
    if (n_ == 0) return d;
    std::lock_guard lock(mutex_);
    check_live();  // under the lock: factor_and_solve may have run meanwhile
    resources_.activate();
    // Column 0 of a matrix with row pitch (n + 1) elements: the diagonal. On stream 0, after the work
    // queued there (the legacy default stream's implicit ordering is not what the backend relies on).
    cudaStream_t s = resources_.stream(0);
    NTK_CUDA_CHECK(cudaMemcpy2DAsync(d.data(), sizeof(double), matrix_.as<double>(),
                                     (std::size_t(n_) + 1) * sizeof(double), sizeof(double), std::size_t(n_),
                                     cudaMemcpyDeviceToHost, s));
    NTK_CUDA_CHECK(cudaStreamSynchronize(s));
    return d;
  }

  double max_abs_row_sum() override {
    if (n_ == 0) return 0;
    std::vector<double> sums(static_cast<std::size_t>(n_));
    {
      std::lock_guard lock(mutex_);
      check_live();  // under the lock: factor_and_solve may have run meanwhile
      resources_.activate();
      cudaStream_t s = resources_.stream(0);
      DeviceBuffer device_sums = resources_.pool().allocate(sums.size() * sizeof(double), "row sums");
      const unsigned blocks = static_cast<unsigned>((std::size_t(n_) * 32 + 255) / 256);
      abs_row_sums_kernel<<<blocks, 256, 0, s>>>(matrix_.as<double>(), n_, device_sums.as<double>());
      NTK_CUDA_CHECK_LAUNCH("abs_row_sums_kernel");
      NTK_CUDA_CHECK(cudaMemcpyAsync(sums.data(), device_sums.as<double>(), sums.size() * sizeof(double),
                                     cudaMemcpyDeviceToHost, s));
      NTK_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    return *std::max_element(sums.begin(), sums.end());
  }

  std::int64_t rows() const override { return n_; }

  void multiply(double alpha, ConstMatrixView<double> v, double beta, MatrixView<double> out) override {
    if (!check_shapes(v, out)) return;
    std::lock_guard lock(mutex_);
    check_live();  // under the lock: factor_and_solve may have run meanwhile
    resources_.activate();
    cudaStream_t s = resources_.stream(0);
    prepare_operands(v, beta, out, s);
    const std::int64_t m = v.cols;
    cublasHandle_t h = resources_.cublas();
    NTK_CUBLAS_CHECK(cublasSetStream(h, s));
    // Row-major out = A v is column-major out^T = v^T A^T; A^T is A's row-major memory read column-major.
    NTK_CUBLAS_CHECK(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, int(m), int(n_), int(n_), &alpha,
                                 operand_.as<double>(), int(m), matrix_.as<double>(), int(n_), &beta,
                                 result_.as<double>(), int(m)));
    download_result(out, s);
  }

  // A float32 copy of A on the device (N^2 x 4 bytes more) and SGEMM; without room for the copy, the
  // exact product (the contract allows it; the caller only loses speed).
  void multiply_float32(double alpha, ConstMatrixView<double> v, double beta,
                        MatrixView<double> out) override {
    if (!check_shapes(v, out)) return;
    std::unique_lock lock(mutex_);
    check_live();  // under the lock: factor_and_solve may have run meanwhile
    resources_.activate();
    if (!ensure_float32_copy()) {
      lock.unlock();
      multiply(alpha, v, beta, out);
      return;
    }
    cudaStream_t s = resources_.stream(0);
    prepare_operands(v, beta, out, s);
    const std::int64_t m = v.cols;
    const std::size_t count = std::size_t(n_) * std::size_t(m);
    if (operand_f32_.bytes() < 2 * count * sizeof(float))
      operand_f32_ =
          resources_.pool().allocate(2 * count * sizeof(float), "float32 resident product operands");
    float* v32 = operand_f32_.as<float>();
    float* r32 = v32 + count;
    convert_on_device(operand_.as<double>(), count, v32, s);
    cublasHandle_t h = resources_.cublas();
    NTK_CUBLAS_CHECK(cublasSetStream(h, s));
    const float one = 1.0f, zero = 0.0f;
    NTK_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, int(m), int(n_), int(n_), &one, v32, int(m),
                                 matrix_f32_.as<float>(), int(n_), &zero, r32, int(m)));
    // result = alpha * float64(r32) + beta * result, in float64 (the scaling is exact there).
    double* product = scratch_result(count, s);
    convert_on_device(r32, count, product, s);
    NTK_CUBLAS_CHECK(cublasDscal_64(h, std::int64_t(count), &beta, result_.as<double>(), 1));
    NTK_CUBLAS_CHECK(cublasDaxpy_64(h, std::int64_t(count), &alpha, product, 1, result_.as<double>(), 1));
    download_result(out, s);
  }

  // On the device end to end (newton_system.cu); float32 products fall back to float64 without room for
  // the float32 copy, as in multiply_float32. Holds the device for the whole solve.
  int solve_newton_system(Backend&, const NewtonSystem& system, ConstMatrixView<double> rhs,
                          MatrixView<double> z, double tolerance, int max_iterations) override {
    check_newton_system(system, n_, rhs, z);
    std::lock_guard lock(mutex_);
    check_live();  // under the lock: factor_and_solve may have run meanwhile
    resources_.activate();
    NewtonSystem effective = system;
    if (effective.float32_products && !ensure_float32_copy()) effective.float32_products = false;
    const DeviceTheta theta{matrix_.as<double>(),
                            effective.float32_products ? matrix_f32_.as<float>() : nullptr, n_};
    return solve_newton_system_on_device(resources_, theta, effective, rhs, z, tolerance, max_iterations);
  }

  // The C + 1 N x N factors on the device; where they do not fit, the host's (the caller has Theta there).
  std::unique_ptr<LaplaceFactorization> laplace_factors(Backend& backend, ConstMatrixView<double> host,
                                                        double k, const Matrix<double>& p) override {
    check_laplace_inputs(n_, host, false, k, p);
    try {
      std::lock_guard lock(mutex_);
      check_live();  // under the lock: factor_and_solve may have run meanwhile
      resources_.activate();
      return device_laplace_factors(resources_, mutex_, matrix_.as<double>(), n_, k, p);
    } catch (const ResourceExhausted& e) {
      if (host.empty()) throw;
      log_warning(std::string("Laplace factors on the host: ") + e.what());
    }
    return ResidentMatrix::laplace_factors(backend, host, k, p);
  }

  // Factored in place: Theta never crosses PCIe, only its factor comes back (it is the model's). The
  // matrix is consumed and its device memory goes back at once.
  Matrix<double> factor_and_solve(Backend&, double shift, MatrixView<double> b, const char* what) override {
    if (b.rows != n_)
      throw InvalidArgument(std::string(what) + ": the right-hand side has " + std::to_string(b.rows) +
                            " rows, expected " + std::to_string(n_));
    Matrix<double> factor(n_, n_);
    std::lock_guard lock(mutex_);
    check_live();  // under the lock: factor_and_solve may have run meanwhile
    if (n_ == 0) {
      consumed_ = true;
      return factor;
    }
    resources_.activate();
    cudaStream_t s = resources_.stream(0);
    DeviceBuffer rhs;  // before the matrix is touched: no room for it leaves the resident as it was
    if (b.cols > 0) rhs = upload(resources_, b, "closed-form right-hand side", s);
    consumed_ = true;  // from here on matrix_ holds (part of) the factor, whatever happens
    if (shift != 0) {
      add_to_diagonal_kernel<<<static_cast<unsigned>((n_ + 255) / 256), 256, 0, s>>>(matrix_.as<double>(), n_,
                                                                                     shift);
      NTK_CUDA_CHECK_LAUNCH("add_to_diagonal_kernel");
    }
    factor_on_device(resources_, matrix_.as<double>(), n_, what, s);
    if (b.cols > 0) {
      cholesky_solve_on_device(resources_, matrix_.as<double>(), n_, rhs.as<double>(), b.cols, s);
      copy_to_host(b, rhs.as<double>(), s);
    }
    copy_to_host(factor.view(), matrix_.as<double>(), s);
    NTK_CUDA_CHECK(cudaStreamSynchronize(s));
    for (DeviceBuffer* buffer : {&matrix_, &matrix_f32_, &operand_, &result_, &scratch_, &operand_f32_})
      buffer->reset();
    return factor;
  }

 private:
  // The float32 copy of A (N^2 x 4 bytes), made on first use; false when the pool has no room for it.
  // Call with mutex_ held.
  bool ensure_float32_copy() {
    if (!float32_refused_ && matrix_f32_.bytes() == 0) {
      try {
        matrix_f32_ = resources_.pool().allocate(std::size_t(n_) * std::size_t(n_) * sizeof(float),
                                                 "float32 copy of the resident matrix");
        const std::size_t count = std::size_t(n_) * std::size_t(n_);
        convert_on_device(matrix_.as<double>(), count, matrix_f32_.as<float>(), resources_.stream(0));
      } catch (const ResourceExhausted&) {
        float32_refused_ = true;
      }
    }
    return !float32_refused_;
  }

  void check_live() const {
    if (consumed_) throw FailedPrecondition("the resident matrix was consumed by its factorization");
  }

  bool check_shapes(ConstMatrixView<double> v, MatrixView<double> out) const {
    if (v.rows != n_ || out.rows != n_ || out.cols != v.cols)
      throw InvalidArgument("resident product shapes do not agree: " + std::to_string(n_) + " x " +
                            std::to_string(n_) + " * " + std::to_string(v.rows) + " x " +
                            std::to_string(v.cols) + " -> " + std::to_string(out.rows) + " x " +
                            std::to_string(out.cols));
    return v.cols > 0 && n_ > 0;
  }

  // v (and, for beta != 0, out) uploaded into operand_ / result_, grown as needed.
  void prepare_operands(ConstMatrixView<double> v, double beta, MatrixView<double> out, cudaStream_t s) {
    const std::size_t bytes = std::size_t(n_) * std::size_t(v.cols) * sizeof(double);
    // Each grown on its own: an allocation that throws must not leave result_ smaller than operand_.
    if (operand_.bytes() < bytes) operand_ = resources_.pool().allocate(bytes, "resident product operand");
    if (result_.bytes() < bytes) result_ = resources_.pool().allocate(bytes, "resident product result");
    copy_to_device(operand_.as<double>(), v, s);
    if (beta != 0)
      copy_to_device(result_.as<double>(), out.as_const(), s);
    else
      NTK_CUDA_CHECK(cudaMemsetAsync(result_.as<double>(), 0, bytes, s));
  }

  double* scratch_result(std::size_t count, cudaStream_t) {
    if (scratch_.bytes() < count * sizeof(double))
      scratch_ = resources_.pool().allocate(count * sizeof(double), "resident product scratch");
    return scratch_.as<double>();
  }

  void download_result(MatrixView<double> out, cudaStream_t s) {
    copy_to_host(out, result_.as<double>(), s);
    NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  DeviceResources& resources_;
  std::mutex& mutex_;
  std::int64_t n_;
  DeviceBuffer matrix_, operand_, result_, scratch_;
  DeviceBuffer matrix_f32_, operand_f32_;
  bool float32_refused_ = false;       // no room for the float32 copy: multiply_float32 computes exactly
  std::atomic<bool> consumed_{false};  // factor_and_solve ran: matrix_ is gone
};

class DeviceResidentFactor final : public ResidentFactor {
 public:
  DeviceResidentFactor(DeviceResources& r, std::mutex& mutex, ConstMatrixView<double> l, const char* what)
      : resources_(r), mutex_(mutex), n_(l.rows) {
    std::lock_guard lock(mutex_);
    resources_.activate();
    factor_ = upload(resources_, l, what, resources_.stream(0));
    NTK_CUDA_CHECK(cudaStreamSynchronize(resources_.stream(0)));
  }
  std::int64_t rows() const override { return n_; }
  void solve(MatrixView<double> b) override {
    if (b.rows != n_)
      throw InvalidArgument("resident factor solve: the right-hand side has " + std::to_string(b.rows) +
                            " rows, expected " + std::to_string(n_));
    if (b.cols == 0 || n_ == 0) return;
    std::lock_guard lock(mutex_);
    cholesky_solve_host_rhs(resources_, factor_.as<double>(), b);
  }

 private:
  DeviceResources& resources_;
  std::mutex& mutex_;
  std::int64_t n_;
  DeviceBuffer factor_;
};

}  // namespace

std::unique_ptr<ResidentFactor> make_device_resident_factor(DeviceResources& resources,
                                                            std::mutex& device_mutex,
                                                            ConstMatrixView<double> l, const char* what) {
  check_square_matrix(l, what);
  return std::make_unique<DeviceResidentFactor>(resources, device_mutex, l, what);
}

std::unique_ptr<ResidentMatrix> adopt_device_resident(DeviceResources& resources, std::mutex& device_mutex,
                                                      DeviceBuffer matrix, std::int64_t n) {
  return std::make_unique<DeviceResidentMatrix>(resources, device_mutex, std::move(matrix), n);
}

std::unique_ptr<ResidentMatrix> make_device_resident(DeviceResources& resources, std::mutex& device_mutex,
                                                     ConstMatrixView<double> a, const char* what) {
  check_square_matrix(a, what);
  return std::make_unique<DeviceResidentMatrix>(resources, device_mutex, a, what);
}

}  // namespace ntk::cuda
