#pragma once
// Every CUDA, cuBLAS, cuSOLVER and cuRAND status becomes a typed ntk::Error that names the call; the
// process never aborts on a device error.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand.h>
#include <cusolverDn.h>

#include <string>

#include "ntk/errors.hpp"

namespace ntk::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cusolver_error(cusolverStatus_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_curand_error(curandStatus_t status, const char* call, const char* file, int line);

}  // namespace ntk::cuda

#define NTK_CUDA_CHECK(call)                                                                               \
  do {                                                                                                     \
    const cudaError_t ntk_status_ = (call);                                                                \
    if (ntk_status_ != cudaSuccess) ::ntk::cuda::throw_cuda_error(ntk_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, execution errors at the next sync.
#define NTK_CUDA_CHECK_LAUNCH(name) NTK_CUDA_CHECK(cudaGetLastError())

#define NTK_CUBLAS_CHECK(call)                                                 \
  do {                                                                         \
    const cublasStatus_t ntk_status_ = (call);                                 \
    if (ntk_status_ != CUBLAS_STATUS_SUCCESS)                                  \
      ::ntk::cuda::throw_cublas_error(ntk_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define NTK_CUSOLVER_CHECK(call)                                                 \
  do {                                                                           \
    const cusolverStatus_t ntk_status_ = (call);                                 \
    if (ntk_status_ != CUSOLVER_STATUS_SUCCESS)                                  \
      ::ntk::cuda::throw_cusolver_error(ntk_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define NTK_CURAND_CHECK(call)                                                 \
  do {                                                                         \
    const curandStatus_t ntk_status_ = (call);                                 \
    if (ntk_status_ != CURAND_STATUS_SUCCESS)                                  \
      ::ntk::cuda::throw_curand_error(ntk_status_, #call, __FILE__, __LINE__); \
  } while (0)
