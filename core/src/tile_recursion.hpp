#pragma once
// The fused per-tile pass: turns x.x'/d (already in the output tile, written there by the GEMM) into
// NNGP and/or NTK values, running every layer of the recursion before moving on. Compiled once per
// instruction set; select_tile_recursion() picks the best this CPU runs.
#include <cstdint>
#include <string>

#include "ntk/kernel_math.hpp"

namespace ntk::detail {

template <class T>
struct TileArgs {
  const RecursionParams<T>* params;
  std::int64_t rows, cols;
  // The GEMM result x.x'/d lives in `ntk` when it is requested, otherwise in `nngp`.
  T* nngp;  // may be null
  T* ntk;   // may be null
  std::int64_t nngp_ld, ntk_ld;
  const T* row_vars;  // S_{l+1}(x_i, x_i) at row_vars[i * depth + l]
  const T* col_vars;  // S_{l+1}(x'_j, x'_j) at col_vars[l * col_vars_ld + j]
  std::int64_t col_vars_ld;
  bool upper_only;  // a diagonal tile of a symmetric kernel: only j >= i is computed
  T* scratch;       // cols elements, used when the NNGP is not an output
};

template <class T>
using TileRecursionFn = void (*)(const TileArgs<T>&);

// out (rows x c) = a (rows x k, ld lda) vt^T for vt of c x k, c <= 32: thin_product_impl.inc, compiled
// with the same instruction sets (it lives here to share their dispatch).
template <class T>
using ThinProductFn = void (*)(const T* a, std::int64_t lda, std::int64_t rows, std::int64_t k, const T* vt,
                               std::int64_t c, T* out);

struct TileRecursionKernels {
  TileRecursionFn<float> f32;
  TileRecursionFn<double> f64;
  const char* isa;
  ThinProductFn<double> thin_product;
  ThinProductFn<float> thin_product_f32;  // for Newton-CG's float32 operator (ResidentMatrix)
};

namespace isa_v4 {
TileRecursionKernels kernels();
}
namespace isa_v3 {
TileRecursionKernels kernels();
}
namespace isa_generic {
TileRecursionKernels kernels();
}

// NTK_KERNEL_ISA=avx512|avx2|generic forces a variant (for tests and benchmarks); default: the best one.
const TileRecursionKernels& select_tile_recursion();

}  // namespace ntk::detail
