#pragma once
// One object per device owning its streams, library handles and memory (RAFT-style resources).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>
#include <cusolverDn.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "ntk/caching_pool.hpp"
#include "ntk/cuda/cuda_backend.hpp"

namespace ntk::cuda {

// Device blocks are the core pool's blocks: move-only, returned to the pool on destruction.
using DeviceBuffer = ntk::PoolBlock;

// cudaMalloc (never managed memory) behind ntk::CachingPool: a budget with exact accounting, freed blocks
// cached for reuse, and reclaimers asked for room (the cache is released first) before reporting
// exhaustion.
class MemoryPool final : public ntk::CachingPool {
 public:
  MemoryPool(int device, std::size_t budget);
  ~MemoryPool() override;

  DeviceMemoryStats stats() const;

 private:
  void* raw_allocate(std::size_t bytes) override;
  void raw_free(void* ptr) noexcept override;
  void before_unwinding_release() noexcept override;
  std::string raw_exhaustion_detail() override;

  int device_;
};

// The pool of `device` with `budget`, shared by every DeviceResources (backend instance) on that device
// with that budget: the server runs several instances on one GPU, and with a pool each, the budget was
// per instance rather than per device and blocks cached by an idle instance were out of reach of the
// others. Kept alive by its users; the next request after the last one is gone makes a new one.
std::shared_ptr<MemoryPool> shared_memory_pool(int device, std::size_t budget);

class DeviceResources {
 public:
  // `reclaimer` (may be empty) stays registered with the device's shared pool while this object lives.
  DeviceResources(int device, std::size_t memory_budget, ntk::MemoryReclaimer reclaimer = {});
  ~DeviceResources();
  DeviceResources(const DeviceResources&) = delete;
  DeviceResources& operator=(const DeviceResources&) = delete;

  int device() const { return device_; }
  const cudaDeviceProp& properties() const { return properties_; }
  // Makes this device current on the calling thread.
  void activate() const;
  cudaStream_t stream(int i) const { return streams_[i]; }
  cublasHandle_t cublas();
  cusolverDnHandle_t cusolver();
  curandGenerator_t curand();
  MemoryPool& pool() { return *pool_; }

 private:
  int device_;
  cudaDeviceProp properties_{};
  cudaStream_t streams_[2] = {nullptr, nullptr};
  std::mutex handle_mutex_;
  cublasHandle_t cublas_ = nullptr;
  cusolverDnHandle_t cusolver_ = nullptr;
  curandGenerator_t curand_ = nullptr;
  std::shared_ptr<MemoryPool> pool_;
  ntk::CachingPool::Registration reclaimer_;  // after pool_: unregistered before the pool can go
};

}  // namespace ntk::cuda
