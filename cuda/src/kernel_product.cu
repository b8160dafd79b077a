// Backend::make_kernel_product on the device: X, its layer variances and B uploaded once; per test block
// the NTK tiles K(x, X[c0 : c0 + tc]) are computed (cuBLAS GEMM + the fused recursion) and multiplied
// into the block's output by DGEMM right there, so only x and the x.rows x m result cross PCIe.
#include <algorithm>
#include <vector>

#include "convert.cuh"
#include "kernel_assembly.cuh"
#include "kernel_product.cuh"
#include "ntk/cuda/errors.cuh"

namespace ntk::cuda {
namespace {

template <class T>
class DeviceKernelProduct final : public KernelProduct {
 public:
  DeviceKernelProduct(DeviceResources& r, std::mutex& mutex, const KernelSpec& spec,
                      ConstMatrixView<T> x_train, ConstMatrixView<double> b)
      : KernelProduct(x_train.rows), r_(r), mutex_(mutex), spec_(spec), features_(x_train.cols), m_(b.cols) {
    std::lock_guard lock(mutex_);
    r_.activate();
    cudaStream_t s = r_.stream(0);
    if (n_ == 0) return;  // apply() answers beta * out without the device
    operand_ = std::make_unique<DeviceNtkOperand<T>>(r_, spec_, x_train, s);
    b_ = r_.pool().allocate(std::max<std::size_t>(1, std::size_t(n_) * std::size_t(m_)) * sizeof(double),
                            "kernel product right-hand side");
    if (n_ && m_)
      NTK_CUDA_CHECK(cudaMemcpy2DAsync(b_.as<double>(), std::size_t(m_) * sizeof(double), b.data,
                                       std::size_t(b.ld) * sizeof(double), std::size_t(m_) * sizeof(double),
                                       std::size_t(n_), cudaMemcpyHostToDevice, s));
    NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  void apply(ConstMatrixView<double> x, double beta, MatrixView<double> out,
             const AssemblyOptions& options) override {
    check_kernel_product_shapes(x, out, features_, m_);
    check_kernel_input(x, "x");
    if (x.rows == 0 || m_ == 0) return;
    if (n_ == 0) {  // no training points: an empty sum
      scale_by_beta(beta, out, false);
      return;
    }
    Matrix<T> converted;
    if constexpr (!std::is_same_v<T, double>) converted = convert_matrix<T>(x);
    std::lock_guard lock(mutex_);
    r_.activate();
    cudaStream_t s = r_.stream(0);
    const auto [block_rows, block_cols] = block_shape(x.rows);
    DeviceBuffer tile =
        r_.pool().allocate(std::size_t(block_rows * block_cols) * sizeof(T), "kernel product tile");
    DeviceBuffer wide;
    if constexpr (!std::is_same_v<T, double>)
      wide = r_.pool().allocate(std::size_t(block_rows * block_cols) * sizeof(double),
                                "kernel product tile (float64)");
    DeviceBuffer result =
        r_.pool().allocate(std::size_t(block_rows * m_) * sizeof(double), "kernel product result");
    cublasHandle_t handle = r_.cublas();
    for (std::int64_t r0 = 0; r0 < x.rows; r0 += block_rows) {
      const std::int64_t rows = std::min(block_rows, x.rows - r0);
      if constexpr (std::is_same_v<T, double>)
        operand_->set_test_block(spec_, x.block(r0, 0, rows, x.cols), s);
      else
        operand_->set_test_block(spec_, converted.view().block(r0, 0, rows, x.cols), s);
      double* c = result.as<double>();
      const std::size_t row_bytes = std::size_t(m_) * sizeof(double);
      if (beta != 0)
        NTK_CUDA_CHECK(cudaMemcpy2DAsync(c, row_bytes, out.row(r0), std::size_t(out.ld) * sizeof(double),
                                         row_bytes, std::size_t(rows), cudaMemcpyHostToDevice, s));
      double accumulate = beta;
      for (std::int64_t c0 = 0; c0 < n_; c0 += block_cols) {
        if (options.should_stop && options.should_stop()) {
          NTK_CUDA_CHECK(cudaStreamSynchronize(s));
          throw Cancelled("kernel product stopped at row " + std::to_string(r0) + " of " +
                          std::to_string(x.rows));
        }
        const std::int64_t cols = std::min(block_cols, n_ - c0);
        operand_->tile(c0, cols, tile.as<T>(), s);
        const double* k = nullptr;
        if constexpr (std::is_same_v<T, double>) {
          k = tile.as<double>();
        } else {
          const std::size_t count = std::size_t(rows * cols);
          convert_on_device(tile.as<float>(), count, wide.as<double>(), s);
          k = wide.as<double>();
        }
        // Row-major result (rows x m) += K (rows x cols) B[c0 :] (cols x m); column-major:
        // result^T = B^T K^T.
        const double one = 1.0;
        NTK_CUBLAS_CHECK(cublasSetStream(handle, s));
        NTK_CUBLAS_CHECK(cublasDgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, int(m_), int(rows), int(cols), &one,
                                     b_.as<double>() + c0 * m_, int(m_), k, int(cols), &accumulate, c,
                                     int(m_)));
        accumulate = 1.0;
      }
      NTK_CUDA_CHECK(cudaMemcpy2DAsync(out.row(r0), std::size_t(out.ld) * sizeof(double), c, row_bytes,
                                       row_bytes, std::size_t(rows), cudaMemcpyDeviceToHost, s));
      NTK_CUDA_CHECK(cudaStreamSynchronize(s));
    }
  }

 private:
  // Test rows x training columns per tile: up to 4096 x 8192, halved while the tile (and its float64 copy,
  // for float32) would take more than half the free budget; at 64 x 64 the allocation itself reports an
  // exhausted budget. Idle cached work is evicted only for up to 1024 x 1024 blocks (as fitting_tile).
  std::pair<std::int64_t, std::int64_t> block_shape(std::int64_t test_rows) const {
    const std::size_t per_entry = sizeof(T) + (std::is_same_v<T, double> ? 0 : sizeof(double));
    auto bytes_of = [&](std::int64_t rows, std::int64_t cols) {
      return std::size_t(rows * cols) * per_entry + std::size_t(rows * m_) * sizeof(double);
    };
    std::int64_t rows = std::min<std::int64_t>(test_rows, 4096), cols = std::min<std::int64_t>(n_, 8192);
    auto bytes = [&] { return bytes_of(rows, cols); };
    const std::size_t available = r_.pool().room_for(
        2 * bytes_of(std::min<std::int64_t>(rows, 1024), std::min<std::int64_t>(cols, 1024)));
    while (bytes() > available / 2 && (rows > 64 || cols > 64)) {
      if (cols >= rows && cols > 64)
        cols = (cols + 1) / 2;
      else
        rows = (rows + 1) / 2;
    }
    return {rows, cols};
  }

  DeviceResources& r_;
  std::mutex& mutex_;
  KernelSpec spec_;
  std::int64_t features_, m_;
  std::unique_ptr<DeviceNtkOperand<T>> operand_;
  DeviceBuffer b_;
};

}  // namespace

std::unique_ptr<KernelProduct> make_device_kernel_product(DeviceResources& resources,
                                                          std::mutex& device_mutex, const KernelSpec& spec,
                                                          bool float32, ConstMatrixView<double> x_train,
                                                          ConstMatrixView<double> b) {
  if (float32) {
    const Matrix<float> x32 = convert_matrix<float>(x_train);
    return std::make_unique<DeviceKernelProduct<float>>(resources, device_mutex, spec, x32.view(), b);
  }
  return std::make_unique<DeviceKernelProduct<double>>(resources, device_mutex, spec, x_train, b);
}

}  // namespace ntk::cuda
