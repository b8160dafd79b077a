#define NTK_ISA_NAMESPACE isa_v3
#define NTK_ISA_NAME "avx2"
#include "tile_recursion_impl.inc"
