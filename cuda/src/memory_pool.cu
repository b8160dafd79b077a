#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <utility>

#include "ntk/cuda/errors.cuh"
#include "ntk/cuda/resources.cuh"
#include "ntk/logging.hpp"

namespace ntk::cuda {

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    ptr_ = other.ptr_;
    bytes_ = other.bytes_;
    pool_ = other.pool_;
    other.ptr_ = nullptr;
    other.bytes_ = 0;
    other.pool_ = nullptr;
  }
  return *this;
}

void DeviceBuffer::reset() noexcept {
  if (ptr_ && pool_) pool_->release(ptr_, bytes_);
  ptr_ = nullptr;
  bytes_ = 0;
  pool_ = nullptr;
}

MemoryPool::MemoryPool(int device, std::size_t budget) : device_(device), budget_(budget) {}

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

MemoryPool::~MemoryPool() {
  std::lock_guard lock(mutex_);
  drop_cache_locked();
  if (in_use_ != 0)
    log_warning("CUDA memory pool destroyed with " + std::to_string(in_use_) + " bytes in use");
}

void MemoryPool::drop_cache_locked() noexcept {
  cudaSetDevice(device_);
  for (auto& [bytes, ptr] : cache_) cudaFree(ptr);
  cache_.clear();
  cached_ = 0;
}

DeviceBuffer MemoryPool::allocate(std::size_t bytes, const char* what) {
  if (bytes == 0) return {};
  // 256-byte granularity keeps every buffer aligned for vector loads and makes cache hits likelier.
  bytes = (bytes + 255) / 256 * 256;
  std::lock_guard lock(mutex_);
  auto hit = cache_.lower_bound(bytes);
  if (hit != cache_.end() && hit->first <= bytes + bytes / 4) {
    const std::size_t size = hit->first;
    void* ptr = hit->second;
    cache_.erase(hit);
    cached_ -= size;
    in_use_ += size;
    peak_ = std::max(peak_, in_use_);
    return DeviceBuffer(ptr, size, this);
  }
  auto exhausted = [&](const std::string& why) {
    std::ostringstream os;
    os << "device memory exhausted for " << what << ": needs " << bytes << " bytes, " << budget_ - in_use_
       << " of the " << budget_ << "-byte budget available (" << why << ")";
    return ResourceExhausted(os.str());
  };
  if (in_use_ + bytes > budget_) throw exhausted("over budget");
  if (in_use_ + cached_ + bytes > budget_) drop_cache_locked();
  NTK_CUDA_CHECK(cudaSetDevice(device_));
  void* ptr = nullptr;
  cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error state before retrying
    drop_cache_locked();
    status = cudaMalloc(&ptr, bytes);
  }
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    std::size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    throw exhausted("cudaMalloc failed; " + std::to_string(free_bytes) + " bytes free on the device");
  }
  NTK_CUDA_CHECK(status);
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  return DeviceBuffer(ptr, bytes, this);
}

void MemoryPool::release(void* ptr, std::size_t bytes) noexcept {
  // Operations synchronize their streams before their buffers go; an exception half-way does not, and
  // the pool's reuse is not ordered by streams (it is shared by the device's backend instances): let
  // queued copies and kernels finish before the block can be handed to another stream.
  if (std::uncaught_exceptions() > 0) {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    cudaGetLastError();  // a sticky error stays for the operation that is already failing
  }
  std::lock_guard lock(mutex_);
  in_use_ -= bytes;
  cache_.emplace(bytes, ptr);
  cached_ += bytes;
}

MemoryStats MemoryPool::stats() const {
  std::lock_guard lock(mutex_);
  MemoryStats s;
  s.budget = budget_;
  s.in_use = in_use_;
  s.peak = peak_;
  if (cudaSetDevice(device_) == cudaSuccess) cudaMemGetInfo(&s.device_free, &s.device_total);
  return s;
}

}  // namespace ntk::cuda
