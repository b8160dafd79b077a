#pragma once
// NTK_HD marks per-entry math that is compiled for the host by g++ and for the device by nvcc, so the
// CPU tests exercise exactly the arithmetic the GPU kernels run. On the host the functions are forced
// inline: the vectorized tile loops are compiled once per instruction set (AVX-512, AVX2, baseline), and
// an out-of-line copy shared between those translation units would smuggle one ISA into another.
#if defined(__CUDACC__)
#define NTK_HD __host__ __device__ __forceinline__
#else
#define NTK_HD inline __attribute__((always_inline))
#endif
