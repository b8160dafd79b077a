#pragma once
// Element-wise precision conversion of a device array (float32 <-> float64), shared by the resident
// matrix's float32 products and the float32 kernel product.
#include <algorithm>
#include <cstddef>

#include "ntk/cuda/errors.cuh"

namespace ntk::cuda {

template <class From, class To>
__global__ void convert_kernel(const From* in, std::size_t count, To* out) {
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x)
    out[i] = static_cast<To>(in[i]);
}

// out[i] = To(in[i]) for i < count, on `stream` (a grid-stride loop: any count fits the grid).
template <class From, class To>
void convert_on_device(const From* in, std::size_t count, To* out, cudaStream_t stream) {
  if (count == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<std::size_t>((count + 255) / 256, 65535));
  convert_kernel<From, To><<<blocks, 256, 0, stream>>>(in, count, out);
  NTK_CUDA_CHECK_LAUNCH("convert_kernel");
}

}  // namespace ntk::cuda
