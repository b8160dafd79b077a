#pragma once
// Host <-> device copies of row-major float64 views (any leading dimension on the host; packed rows on
// the device), shared by the backend's operations.
#include <cstddef>

#include "ntk/cuda/errors.cuh"
#include "ntk/cuda/resources.cuh"
#include "ntk/matrix.hpp"

namespace ntk::cuda {

// dst (rows * cols packed) <- m, on stream s.
inline void copy_to_device(double* dst, ConstMatrixView<double> m, cudaStream_t s) {
  if (m.rows && m.cols)
    NTK_CUDA_CHECK(cudaMemcpy2DAsync(dst, std::size_t(m.cols) * sizeof(double), m.data,
                                     std::size_t(m.ld) * sizeof(double), std::size_t(m.cols) * sizeof(double),
                                     std::size_t(m.rows), cudaMemcpyHostToDevice, s));
}

// m <- src (rows * cols packed), on stream s; the caller synchronizes before reading m.
inline void copy_to_host(MatrixView<double> m, const double* src, cudaStream_t s) {
  if (m.rows && m.cols)
    NTK_CUDA_CHECK(cudaMemcpy2DAsync(
        m.data, std::size_t(m.ld) * sizeof(double), src, std::size_t(m.cols) * sizeof(double),
        std::size_t(m.cols) * sizeof(double), std::size_t(m.rows), cudaMemcpyDeviceToHost, s));
}

// A pool buffer holding a copy of m (named `what` in an out-of-memory error).
inline DeviceBuffer upload(DeviceResources& r, ConstMatrixView<double> m, const char* what, cudaStream_t s) {
  DeviceBuffer b = r.pool().allocate(std::size_t(m.rows * m.cols) * sizeof(double), what);
  copy_to_device(b.as<double>(), m, s);
  return b;
}

}  // namespace ntk::cuda
