#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "laplace_factors.cuh"
#include "linear_algebra.cuh"
#include "ntk/cuda/errors.cuh"
#include "ntk/laplace_math.hpp"
#include "transfer.cuh"

namespace ntk::cuda {
namespace {

constexpr dim3 kBlock(32, 8);

// Grid-stride over the rows: a 50k x 50k matrix has more row blocks than gridDim.y allows.
dim3 square_grid(std::int64_t n) {
  const auto columns = static_cast<unsigned>((n + kBlock.x - 1) / kBlock.x);
  const auto rows = static_cast<unsigned>(std::min<std::int64_t>((n + kBlock.y - 1) / kBlock.y, 65535));
  return dim3(columns, rows);
}

// b <- B_c = I + D^1/2 (k Theta) D^1/2, entry by entry (laplace::b_entry, as the host forms it).
__global__ void form_b_kernel(const double* theta, const double* sd, double k, std::int64_t n, double* b) {
  const std::int64_t q = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q >= n) return;
  for (std::int64_t i = std::int64_t(blockIdx.y) * blockDim.y + threadIdx.y; i < n;
       i += std::int64_t(gridDim.y) * blockDim.y)
    b[i * n + q] = laplace::b_entry(i == q, sd[i], k, theta[i * n + q], sd[q]);
}

// e holds B_c^-1 in its lower triangle (row-major; potri's output): e <- E_c = D^1/2 B_c^-1 D^1/2 in full
// and m += E_c. The thread of (i, q), q <= i, reads only (i, q) and writes (i, q) and (q, i), which no
// other thread reads or writes.
__global__ void scale_mirror_accumulate_kernel(double* e, const double* sd, std::int64_t n, double* m) {
  const std::int64_t q = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q >= n) return;
  for (std::int64_t i = std::int64_t(blockIdx.y) * blockDim.y + threadIdx.y; i < n;
       i += std::int64_t(gridDim.y) * blockDim.y) {
    if (q > i) continue;
    const double v = laplace::e_entry(e[i * n + q], sd[i], sd[q]);
    e[i * n + q] = v;
    e[q * n + i] = v;
    m[i * n + q] += v;
    if (q != i) m[q * n + i] += v;
  }
}

class DeviceLaplaceFactorization final : public LaplaceFactorization {
 public:
  DeviceLaplaceFactorization(DeviceResources& r, std::mutex& mutex, const double* theta, std::int64_t n,
                             double k, const Matrix<double>& p)
      : resources_(r), mutex_(mutex), n_(n) {
    const std::int64_t classes = p.cols();
    if (n == 0) {  // nothing to form (and a grid of no blocks is not a valid launch)
      e_.resize(std::size_t(classes));
      return;
    }
    const std::size_t matrix_bytes = std::size_t(n) * std::size_t(n) * sizeof(double);
    // The C + 1 matrices allocated before any work is queued: running out of room for them throws with
    // nothing in flight (the factorizations' workspaces come later; a failure there unwinds through the
    // pool's release, which waits for the device).
    for (std::int64_t c = 0; c < classes; ++c)
      e_.push_back(r.pool().allocate(matrix_bytes, "Laplace factor E_c"));
    m_ = r.pool().allocate(matrix_bytes, "Laplace factor M");
    DeviceBuffer sd = r.pool().allocate(std::size_t(n) * sizeof(double), "Laplace factor D^1/2");
    cudaStream_t s = r.stream(0);
    NTK_CUDA_CHECK(cudaMemsetAsync(m_.as<double>(), 0, matrix_bytes, s));
    std::vector<double> host_sd(static_cast<std::size_t>(n));
    const dim3 grid = square_grid(n);
    for (std::int64_t c = 0; c < classes; ++c) {
      for (std::int64_t i = 0; i < n; ++i) host_sd[std::size_t(i)] = std::sqrt(p(i, c));
      // The previous class's kernels read sd: the copy is ordered after them on the same stream, and the
      // host vector outlives the synchronous factorizations below.
      NTK_CUDA_CHECK(cudaMemcpyAsync(sd.as<double>(), host_sd.data(), std::size_t(n) * sizeof(double),
                                     cudaMemcpyHostToDevice, s));
      double* e = e_[std::size_t(c)].as<double>();
      form_b_kernel<<<grid, kBlock, 0, s>>>(theta, sd.as<double>(), k, n, e);
      NTK_CUDA_CHECK_LAUNCH("form_b_kernel");
      factor_on_device(r, e, n, "I + D^1/2 K D^1/2", s);
      invert_factored_on_device(r, e, n, "I + D^1/2 K D^1/2", s);
      scale_mirror_accumulate_kernel<<<grid, kBlock, 0, s>>>(e, sd.as<double>(), n, m_.as<double>());
      NTK_CUDA_CHECK_LAUNCH("scale_mirror_accumulate_kernel");
    }
    factor_on_device(r, m_.as<double>(), n, "sum of E_c", s);
  }

  void apply_e(std::int64_t c, MatrixView<double> v) override {
    check_laplace_operand(n_, std::int64_t(e_.size()), c, v);
    if (v.cols == 0 || n_ == 0) return;
    std::lock_guard lock(mutex_);
    resources_.activate();
    cudaStream_t s = resources_.stream(0);
    DeviceBuffer in = upload(resources_, v, "Laplace factor operand", s);
    DeviceBuffer out =
        resources_.pool().allocate(std::size_t(v.rows * v.cols) * sizeof(double), "Laplace factor product");
    cublasHandle_t h = resources_.cublas();
    NTK_CUBLAS_CHECK(cublasSetStream(h, s));
    const double one = 1, zero = 0;
    // Row-major out = E v is column-major out^T = v^T E^T; E^T is E's row-major memory read column-major.
    NTK_CUBLAS_CHECK(cublasDgemm_64(h, CUBLAS_OP_N, CUBLAS_OP_N, v.cols, n_, n_, &one, in.as<double>(),
                                    v.cols, e_[std::size_t(c)].as<double>(), n_, &zero, out.as<double>(),
                                    v.cols));
    copy_to_host(v, out.as<double>(), s);
    NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  void apply_m_inverse(MatrixView<double> v) override {
    check_laplace_operand(n_, std::int64_t(e_.size()), 0, v);
    if (v.cols == 0 || n_ == 0) return;
    std::lock_guard lock(mutex_);
    cholesky_solve_host_rhs(resources_, m_.as<double>(), v);
  }

 private:
  DeviceResources& resources_;
  std::mutex& mutex_;
  std::int64_t n_;
  std::vector<DeviceBuffer> e_;
  DeviceBuffer m_;
};

}  // namespace

std::unique_ptr<LaplaceFactorization> device_laplace_factors(DeviceResources& resources,
                                                             std::mutex& device_mutex, const double* theta,
                                                             std::int64_t n, double k,
                                                             const Matrix<double>& p) {
  return std::make_unique<DeviceLaplaceFactorization>(resources, device_mutex, theta, n, k, p);
}

}  // namespace ntk::cuda
