#include "ntk/backend.hpp"

#include <charconv>

#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/logging.hpp"
#if defined(NTK_WITH_CUDA)
#include "ntk/cuda/cuda_backend.hpp"
#endif

namespace ntk {
bool cuda_backend_built() {
#if defined(NTK_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#if defined(NTK_WITH_CUDA)
  return cuda::device_count();
#else
  return 0;
#endif
}

namespace {

std::string cuda_absence_reason() {
#if defined(NTK_WITH_CUDA)
  return cuda::unavailable_reason();
#else
  return "this build has no CUDA backend (configured with NTK_CUDA=OFF or without nvcc)";
#endif
}

std::unique_ptr<Backend> make_cuda(int device, const BackendOptions& options) {
#if defined(NTK_WITH_CUDA)
  return cuda::make_cuda_backend(device, options);
#else
  (void)device;
  (void)options;
  throw Unavailable("backend cuda requested but " + cuda_absence_reason());
#endif
}

}  // namespace

std::unique_ptr<Backend> make_backend(std::string_view name, const BackendOptions& options) {
  if (name == "cpu") {
    auto b = std::make_unique<CpuBackend>(options);
    log_info("backend: " + b->description() + " (requested)");
    return b;
  }
  if (name == "auto") {
    if (cuda_device_count() > 0) {
      auto b = make_cuda(0, options);
      log_info("backend: " + b->description() + " (auto: a CUDA device is usable)");
      return b;
    }
    auto b = std::make_unique<CpuBackend>(options);
    log_info("backend: " + b->description() + " (auto: no CUDA device: " + cuda_absence_reason() + ")");
    return b;
  }
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    int device = 0;
    if (name.size() > 5) {
      const auto digits = name.substr(5);
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), device);
      if (ec != std::errc() || ptr != digits.data() + digits.size() || device < 0)
        throw InvalidArgument("backend '" + std::string(name) + "': expected cuda:N with N a device index");
    }
    const int count = cuda_device_count();
    if (count == 0)
      throw Unavailable("backend " + std::string(name) + " requested but " + cuda_absence_reason());
    if (device >= count)
      throw InvalidArgument("backend " + std::string(name) + ": only " + std::to_string(count) +
                            " CUDA device(s) present");
    auto b = make_cuda(device, options);
    log_info("backend: " + b->description() + " (requested)");
    return b;
  }
  throw InvalidArgument("unknown backend '" + std::string(name) + "' (known: auto, cpu, cuda:N)");
}

}  // namespace ntk
