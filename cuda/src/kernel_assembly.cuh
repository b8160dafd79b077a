#pragma once
#include "ntk/cuda/resources.cuh"
#include "ntk/kernel_assembly.hpp"

namespace ntk::cuda {

// Host matrices in, host matrices out; see kernel_assembly.cu.
template <class T>
void assemble_kernel(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x1,
                     const ConstMatrixView<T>* x2, KernelOutputs<T> out, const AssemblyOptions& options);
template <class T>
void assemble_diagonal(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x,
                       KernelDiagonal<T> out);

}  // namespace ntk::cuda
