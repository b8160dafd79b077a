#include <cstdlib>
#include <string>

#include "ntk/cpu_features.hpp"
#include "ntk/errors.hpp"
#include "tile_recursion.hpp"

namespace ntk::detail {

const TileRecursionKernels& select_tile_recursion() {
  static const TileRecursionKernels chosen = [] {
    const int level = x86_level();
    const char* forced = std::getenv("NTK_KERNEL_ISA");
    const std::string want = forced ? forced : "";
    if (want == "generic") return isa_generic::kernels();
    if (want == "avx2") {
      if (level < 3) throw Unavailable("NTK_KERNEL_ISA=avx2 but this CPU lacks AVX2/FMA");
      return isa_v3::kernels();
    }
    if (want == "avx512") {
      if (level < 4) throw Unavailable("NTK_KERNEL_ISA=avx512 but this CPU lacks AVX-512");
      return isa_v4::kernels();
    }
    if (!want.empty()) throw InvalidArgument("NTK_KERNEL_ISA must be avx512, avx2 or generic, got " + want);
    if (level >= 4) return isa_v4::kernels();
    if (level == 3) return isa_v3::kernels();
    return isa_generic::kernels();
  }();
  return chosen;
}

}  // namespace ntk::detail
