#pragma once
// The CUDA backend's entry points. Plain C++ (no CUDA headers), so g++ code can select the backend.
#include <cstddef>
#include <memory>
#include <string>

#include "ntk/backend.hpp"

namespace ntk::cuda {

// Usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count() noexcept;
// Why device_count() is 0, in words ("no CUDA device", "CUDA driver is older than the runtime", ...).
std::string unavailable_reason();

struct MemoryStats {
  std::size_t budget = 0;  // bytes this backend may hold on the device
  std::size_t in_use = 0;  // bytes allocated now
  std::size_t peak = 0;    // high-water mark of in_use
  std::size_t device_total = 0;
  std::size_t device_free = 0;
};

class CudaBackend : public Backend {
 public:
  virtual MemoryStats memory() const = 0;
};

// Throws Unavailable when the device cannot be used.
std::unique_ptr<CudaBackend> make_cuda_backend(int device, const BackendOptions& options);

}  // namespace ntk::cuda
