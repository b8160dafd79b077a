#define NTK_ISA_NAMESPACE isa_v4
#define NTK_ISA_NAME "avx512"
#include "tile_recursion_impl.inc"
