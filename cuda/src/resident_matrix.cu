#include <string>

#include "ntk/cuda/errors.cuh"
#include "resident_matrix.cuh"

namespace ntk::cuda {
namespace {

void copy_to_device(double* dst, ConstMatrixView<double> m, cudaStream_t s) {
  if (m.rows && m.cols)
    NTK_CUDA_CHECK(cudaMemcpy2DAsync(dst, std::size_t(m.cols) * sizeof(double), m.data,
                                     std::size_t(m.ld) * sizeof(double), std::size_t(m.cols) * sizeof(double),
                                     std::size_t(m.rows), cudaMemcpyHostToDevice, s));
}

class DeviceResidentMatrix final : public ResidentMatrix {
 public:
  DeviceResidentMatrix(DeviceResources& r, std::mutex& mutex, ConstMatrixView<double> a, const char* what)
      : resources_(r), mutex_(mutex), n_(a.rows) {
    std::lock_guard lock(mutex_);
    resources_.activate();
    matrix_ = resources_.pool().allocate(std::size_t(n_) * std::size_t(n_) * sizeof(double), what);
    copy_to_device(matrix_.as<double>(), a, resources_.stream(0));
    NTK_CUDA_CHECK(cudaStreamSynchronize(resources_.stream(0)));
  }

  std::int64_t rows() const override { return n_; }

  void multiply(double alpha, ConstMatrixView<double> v, double beta, MatrixView<double> out) override {
    if (v.rows != n_ || out.rows != n_ || out.cols != v.cols)
      throw InvalidArgument("resident product shapes do not agree: " + std::to_string(n_) + " x " +
                            std::to_string(n_) + " * " + std::to_string(v.rows) + " x " +
                            std::to_string(v.cols) + " -> " + std::to_string(out.rows) + " x " +
                            std::to_string(out.cols));
    const std::int64_t m = v.cols;
    if (m == 0 || n_ == 0) return;
    std::lock_guard lock(mutex_);
    resources_.activate();
    cudaStream_t s = resources_.stream(0);
    const std::size_t bytes = std::size_t(n_) * std::size_t(m) * sizeof(double);
    if (operand_.bytes() < bytes) {
      operand_ = resources_.pool().allocate(bytes, "resident product operand");
      result_ = resources_.pool().allocate(bytes, "resident product result");
    }
    copy_to_device(operand_.as<double>(), v, s);
    if (beta != 0) copy_to_device(result_.as<double>(), out.as_const(), s);
    cublasHandle_t h = resources_.cublas();
    NTK_CUBLAS_CHECK(cublasSetStream(h, s));
    // Row-major out = A v is column-major out^T = v^T A^T; A^T is A's row-major memory read column-major.
    NTK_CUBLAS_CHECK(cublasDgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, int(m), int(n_), int(n_), &alpha,
                                 operand_.as<double>(), int(m), matrix_.as<double>(), int(n_), &beta,
                                 result_.as<double>(), int(m)));
    NTK_CUDA_CHECK(cudaMemcpy2DAsync(out.data, std::size_t(out.ld) * sizeof(double), result_.as<double>(),
                                     std::size_t(m) * sizeof(double), std::size_t(m) * sizeof(double),
                                     std::size_t(n_), cudaMemcpyDeviceToHost, s));
    NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  }

 private:
  DeviceResources& resources_;
  std::mutex& mutex_;
  std::int64_t n_;
  DeviceBuffer matrix_, operand_, result_;
};

}  // namespace

std::unique_ptr<ResidentMatrix> make_device_resident(DeviceResources& resources, std::mutex& device_mutex,
                                                     ConstMatrixView<double> a, const char* what) {
  if (a.rows != a.cols)
    throw InvalidArgument(std::string(what) + " must be square, is " + std::to_string(a.rows) + " x " +
                          std::to_string(a.cols));
  return std::make_unique<DeviceResidentMatrix>(resources, device_mutex, a, what);
}

}  // namespace ntk::cuda
