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

#include "ntk/cuda/cuda_backend.hpp"

namespace ntk::cuda {

class MemoryPool;

// Move-only device allocation; returns its bytes to the pool on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }
  void reset() noexcept;

 private:
  friend class MemoryPool;
  DeviceBuffer(void* ptr, std::size_t bytes, MemoryPool* pool) : ptr_(ptr), bytes_(bytes), pool_(pool) {}
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  MemoryPool* pool_ = nullptr;
};

// cudaMalloc (never managed memory) behind a budget with exact accounting. Freed blocks are cached for
// reuse by later requests of similar size; the cache is released before reporting exhaustion.
class MemoryPool {
 public:
  MemoryPool(int device, std::size_t budget);
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // Throws ResourceExhausted naming `what`, the bytes needed and the bytes available.
  DeviceBuffer allocate(std::size_t bytes, const char* what);
  MemoryStats stats() const;

 private:
  friend class DeviceBuffer;
  void release(void* ptr, std::size_t bytes) noexcept;
  void drop_cache_locked() noexcept;

  int device_;
  std::size_t budget_;
  mutable std::mutex mutex_;
  std::size_t in_use_ = 0, cached_ = 0, peak_ = 0;
  std::multimap<std::size_t, void*> cache_;
};

// The pool of `device` with `budget`, shared by every DeviceResources (backend instance) on that device
// with that budget: the server runs several instances on one GPU, and with a pool each, the budget was
// per instance rather than per device and blocks cached by an idle instance were out of reach of the
// others. Kept alive by its users; the next request after the last one is gone makes a new one.
std::shared_ptr<MemoryPool> shared_memory_pool(int device, std::size_t budget);

class DeviceResources {
 public:
  DeviceResources(int device, std::size_t memory_budget);
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
};

}  // namespace ntk::cuda
