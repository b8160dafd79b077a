#include "ntk/cuda/errors.cuh"
#include "ntk/cuda/resources.cuh"
#include "ntk/logging.hpp"

namespace ntk::cuda {

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::string unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess) return count > 0 ? "" : "no CUDA device";
  cudaGetLastError();
  if (status == cudaErrorNoDevice) return "no CUDA device";
  return std::string("no CUDA device usable (") + cudaGetErrorString(status) + ")";
}

DeviceResources::DeviceResources(int device, std::size_t memory_budget, ntk::MemoryReclaimer reclaimer)
    : device_(device), pool_(shared_memory_pool(device, memory_budget)) {
  if (reclaimer) reclaimer_ = pool_->add_reclaimer(std::move(reclaimer));
  NTK_CUDA_CHECK(cudaSetDevice(device));
  NTK_CUDA_CHECK(cudaGetDeviceProperties(&properties_, device));
  for (auto& s : streams_) NTK_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
}

DeviceResources::~DeviceResources() {
  cudaSetDevice(device_);
  if (curand_) curandDestroyGenerator(curand_);
  if (cusolver_) cusolverDnDestroy(cusolver_);
  if (cublas_) cublasDestroy(cublas_);
  for (auto& s : streams_)
    if (s) cudaStreamDestroy(s);
}

void DeviceResources::activate() const {
  NTK_CUDA_CHECK(cudaSetDevice(device_));
}

cublasHandle_t DeviceResources::cublas() {
  std::lock_guard lock(handle_mutex_);
  if (!cublas_) {
    activate();
    NTK_CUBLAS_CHECK(cublasCreate(&cublas_));
  }
  return cublas_;
}

cusolverDnHandle_t DeviceResources::cusolver() {
  std::lock_guard lock(handle_mutex_);
  if (!cusolver_) {
    activate();
    NTK_CUSOLVER_CHECK(cusolverDnCreate(&cusolver_));
  }
  return cusolver_;
}

curandGenerator_t DeviceResources::curand() {
  std::lock_guard lock(handle_mutex_);
  if (!curand_) {
    activate();
    NTK_CURAND_CHECK(curandCreateGenerator(&curand_, CURAND_RNG_PSEUDO_PHILOX4_32_10));
  }
  return curand_;
}

}  // namespace ntk::cuda
