#pragma once
#include <cstdint>
#include <memory>

#include "ntk/cuda/resources.cuh"
#include "ntk/kernel_assembly.hpp"

namespace ntk::cuda {

// A training set X uploaded once with its |x|^2/d and layer variances (and the spec's quadrature rule),
// for tiles of K_ntk(x, X) against test blocks: the device half of a KernelProduct.
template <class T>
class DeviceNtkOperand {
 public:
  DeviceNtkOperand(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x_train,
                   cudaStream_t stream);
  ~DeviceNtkOperand();
  std::int64_t rows() const;
  // Uploads a test block (its diagonal checked on the host first, with the CPU's messages).
  void set_test_block(const KernelSpec& spec, ConstMatrixView<T> x, cudaStream_t stream);
  // out (test rows x cols, leading dimension cols) = K_ntk(test block, X[col0 : col0 + cols]), on `stream`.
  void tile(std::int64_t col0, std::int64_t cols, T* out, cudaStream_t stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::int64_t features_ = 0;
};

// Host matrices in, host matrices out; see kernel_assembly.cu.
template <class T>
void assemble_kernel(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x1,
                     const ConstMatrixView<T>* x2, KernelOutputs<T> out, const AssemblyOptions& options);
// K_ntk(x, x) computed in T into a new pool buffer of x.rows^2 float64 (row-major; `what` names it in
// ResourceExhausted), never leaving the device.
template <class T>
DeviceBuffer assemble_resident_ntk(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x,
                                   const AssemblyOptions& options, const char* what);
template <class T>
void assemble_diagonal(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x,
                       KernelDiagonal<T> out);

}  // namespace ntk::cuda
