#include <sstream>

#include "ntk/cuda/errors.cuh"

namespace ntk::cuda {
namespace {

std::string where(const char* call, const char* file, int line) {
  std::ostringstream os;
  os << call << " at " << file << ":" << line;
  return os.str();
}

}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  const std::string message = std::string("CUDA error ") + cudaGetErrorName(status) + " (" +
                              cudaGetErrorString(status) + ") in " + where(call, file, line);
  switch (status) {
    case cudaErrorMemoryAllocation:
      throw ResourceExhausted(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
      throw Unavailable(message);
    default:
      throw InternalError(message);
  }
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const std::string message = std::string("cuBLAS error ") + cublasGetStatusName(status) + " (" +
                              cublasGetStatusString(status) + ") in " + where(call, file, line);
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw ResourceExhausted(message);
  if (status == CUBLAS_STATUS_NOT_INITIALIZED) throw Unavailable(message);
  throw InternalError(message);
}

void throw_cusolver_error(cusolverStatus_t status, const char* call, const char* file, int line) {
  const std::string message =
      "cuSOLVER error " + std::to_string(static_cast<int>(status)) + " in " + where(call, file, line);
  if (status == CUSOLVER_STATUS_ALLOC_FAILED) throw ResourceExhausted(message);
  if (status == CUSOLVER_STATUS_NOT_INITIALIZED) throw Unavailable(message);
  throw InternalError(message);
}

void throw_curand_error(curandStatus_t status, const char* call, const char* file, int line) {
  const std::string message =
      "cuRAND error " + std::to_string(static_cast<int>(status)) + " in " + where(call, file, line);
  if (status == CURAND_STATUS_ALLOCATION_FAILED) throw ResourceExhausted(message);
  throw InternalError(message);
}

}  // namespace ntk::cuda
