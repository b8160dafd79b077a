#pragma once
// The CUDA backend's entry points. Plain C++ (no CUDA headers), so g++ code can select the backend.
#include <memory>
#include <string>

#include "ntk/backend.hpp"

namespace ntk::cuda {

// Usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count() noexcept;
// Why device_count() is 0, in words ("no CUDA device", "CUDA driver is older than the runtime", ...).
std::string unavailable_reason();

// Throws Unavailable when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int device, const BackendOptions& options);

}  // namespace ntk::cuda
