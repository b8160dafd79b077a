#include <mutex>
#include <sstream>

#include "kernel_assembly.cuh"
#include "kernel_product.cuh"
#include "linear_algebra.cuh"
#include "ntk/cuda/cuda_backend.hpp"
#include "ntk/cuda/errors.cuh"
#include "ntk/cuda/resources.cuh"
#include "random.cuh"
#include "resident_matrix.cuh"

namespace ntk::cuda {
namespace {

std::size_t default_budget(int device) {
  NTK_CUDA_CHECK(cudaSetDevice(device));
  std::size_t free_bytes = 0, total = 0;
  NTK_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return total / 10 * 9;
}

class CudaBackendImpl final : public Backend {
 public:
  CudaBackendImpl(int device, const BackendOptions& options)
      : resources_(device,
                   options.device_memory_budget ? options.device_memory_budget : default_budget(device),
                   options.reclaim_device_memory) {}

  std::string name() const override { return "cuda:" + std::to_string(resources_.device()); }
  std::string description() const override {
    const cudaDeviceProp& p = resources_.properties();
    std::ostringstream os;
    os << name() << " (" << p.name << ", compute capability " << p.major << "." << p.minor << ", "
       << p.totalGlobalMem / (1 << 20) << " MiB, budget " << resources_pool_budget() / (1 << 20) << " MiB)";
    return os.str();
  }
  DeviceMemoryStats device_memory() const override {
    return const_cast<DeviceResources&>(resources_).pool().stats();
  }

  void kernel(const KernelSpec& spec, ConstMatrixView<float> x1, const ConstMatrixView<float>* x2,
              KernelOutputs<float> out, const AssemblyOptions& options) override {
    std::lock_guard lock(mutex_);
    assemble_kernel(resources_, spec, x1, x2, out, options);
  }
  void kernel(const KernelSpec& spec, ConstMatrixView<double> x1, const ConstMatrixView<double>* x2,
              KernelOutputs<double> out, const AssemblyOptions& options) override {
    std::lock_guard lock(mutex_);
    assemble_kernel(resources_, spec, x1, x2, out, options);
  }
  void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<float> x, KernelDiagonal<float> out,
                       const AssemblyOptions&) override {
    std::lock_guard lock(mutex_);
    assemble_diagonal(resources_, spec, x, out);
  }
  void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<double> x, KernelDiagonal<double> out,
                       const AssemblyOptions&) override {
    std::lock_guard lock(mutex_);
    assemble_diagonal(resources_, spec, x, out);
  }

  void gemm(bool ta, bool tb, double alpha, ConstMatrixView<double> a, ConstMatrixView<double> b, double beta,
            MatrixView<double> c) override {
    std::lock_guard lock(mutex_);
    cuda::gemm(resources_, ta, tb, alpha, a, b, beta, c);
  }
  void cholesky(MatrixView<double> a, const char* what) override {
    std::lock_guard lock(mutex_);
    cuda::cholesky(resources_, a, what);
  }
  void spd_inverse(MatrixView<double> a, const char* what) override {
    std::lock_guard lock(mutex_);
    cuda::spd_inverse(resources_, a, what);
  }
  void triangular_solve(ConstMatrixView<double> l, MatrixView<double> b, bool transpose) override {
    std::lock_guard lock(mutex_);
    cuda::triangular_solve(resources_, l, b, transpose);
  }
  void cholesky_solve(ConstMatrixView<double> l, MatrixView<double> b) override {
    std::lock_guard lock(mutex_);
    cuda::cholesky_solve(resources_, l, b);
  }
  void syrk_lower(double alpha, ConstMatrixView<double> a, double beta, MatrixView<double> c) override {
    std::lock_guard lock(mutex_);
    cuda::syrk_lower(resources_, alpha, a, beta, c);
  }
  void multiply_by_lower(MatrixView<double> b, ConstMatrixView<double> l) override {
    std::lock_guard lock(mutex_);
    cuda::multiply_by_lower(resources_, b, l);
  }
  // No fallback to per-product uploads when it does not fit: those would need the same device memory.
  // ResourceExhausted names the bytes needed and available.
  std::unique_ptr<ResidentMatrix> make_resident(ConstMatrixView<double> a, const char* what) override {
    return make_device_resident(resources_, mutex_, a, what);
  }
  std::unique_ptr<ResidentFactor> make_resident_factor(ConstMatrixView<double> l, const char* what) override {
    return make_device_resident_factor(resources_, mutex_, l, what);
  }
  // Theta assembled straight into the pool: it never crosses to the host.
  std::unique_ptr<ResidentMatrix> resident_kernel(const KernelSpec& spec, ConstMatrixView<float> x,
                                                  const AssemblyOptions& options, const char* what) override {
    return resident(spec, x, options, what);
  }
  std::unique_ptr<ResidentMatrix> resident_kernel(const KernelSpec& spec, ConstMatrixView<double> x,
                                                  const AssemblyOptions& options, const char* what) override {
    return resident(spec, x, options, what);
  }
  std::unique_ptr<KernelProduct> make_kernel_product(const KernelSpec& spec, bool float32,
                                                     ConstMatrixView<double> x_train,
                                                     ConstMatrixView<double> b) override {
    check_kernel_product_operands(x_train, b);
    return make_device_kernel_product(resources_, mutex_, spec, float32, x_train, b);
  }
  void normal_draws(std::uint64_t seed, MatrixView<double> out) override {
    std::lock_guard lock(mutex_);
    cuda::normal_draws(resources_, seed, out);
  }

 private:
  template <class T>
  std::unique_ptr<ResidentMatrix> resident(const KernelSpec& spec, ConstMatrixView<T> x,
                                           const AssemblyOptions& options, const char* what) {
    DeviceBuffer matrix;
    {
      std::lock_guard lock(mutex_);
      matrix = assemble_resident_ntk(resources_, spec, x, options, what);
    }
    return adopt_device_resident(resources_, mutex_, std::move(matrix), x.rows);
  }
  std::size_t resources_pool_budget() const {
    return const_cast<DeviceResources&>(resources_).pool().stats().budget;
  }
  // One operation at a time per device: the streams and tile buffers belong to the running request.
  std::mutex mutex_;
  DeviceResources resources_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, const BackendOptions& options) {
  const int count = device_count();
  if (count == 0) throw Unavailable("CUDA backend unavailable: " + unavailable_reason());
  if (device < 0 || device >= count)
    throw InvalidArgument("CUDA device " + std::to_string(device) + " does not exist (" +
                          std::to_string(count) + " present)");
  return std::make_unique<CudaBackendImpl>(device, options);
}

}  // namespace ntk::cuda
