#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "ntk/cuda/errors.cuh"
#include "ntk/cuda/resources.cuh"

namespace ntk::cuda {

MemoryPool::MemoryPool(int device, std::size_t budget)
    : CachingPool(budget, "device memory"), device_(device) {}

MemoryPool::~MemoryPool() {
  drop_cache();
}

std::shared_ptr<MemoryPool> shared_memory_pool(int device, std::size_t budget) {
  static std::mutex mutex;
  static std::map<std::pair<int, std::size_t>, std::weak_ptr<MemoryPool>> pools;
  std::lock_guard lock(mutex);
  std::weak_ptr<MemoryPool>& slot = pools[{device, budget}];
  if (std::shared_ptr<MemoryPool> pool = slot.lock()) return pool;
  auto pool = std::make_shared<MemoryPool>(device, budget);
  slot = pool;
  return pool;
}

void* MemoryPool::raw_allocate(std::size_t bytes) {
  NTK_CUDA_CHECK(cudaSetDevice(device_));
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // out of memory is not sticky: clear it so the next call does not report it
    return nullptr;
  }
  NTK_CUDA_CHECK(status);
  return ptr;
}

void MemoryPool::raw_free(void* ptr) noexcept {
  cudaSetDevice(device_);
  cudaFree(ptr);
}

void MemoryPool::before_unwinding_release() noexcept {
  // Operations synchronize their streams before their buffers go; an exception half-way does not, and
  // the pool is shared by the device's backend instances: let queued copies and kernels finish first.
  cudaSetDevice(device_);
  cudaDeviceSynchronize();
  cudaGetLastError();  // a sticky error stays for the operation that is already failing
}

std::string MemoryPool::raw_exhaustion_detail() {
  std::size_t free_bytes = 0, total = 0;
  if (cudaMemGetInfo(&free_bytes, &total) != cudaSuccess) {
    cudaGetLastError();
    return "cudaMalloc failed";
  }
  return "cudaMalloc failed with " + std::to_string(free_bytes) + " bytes free on the device";
}

DeviceMemoryStats MemoryPool::stats() const {
  const ntk::PoolCounters c = counters();
  DeviceMemoryStats s;
  s.budget = c.budget;
  s.in_use = c.in_use;
  s.cached = c.cached;
  s.peak = c.peak;
  if (cudaSetDevice(device_) == cudaSuccess) cudaMemGetInfo(&s.device_free, &s.device_total);
  return s;
}

}  // namespace ntk::cuda
