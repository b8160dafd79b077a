#define NTK_ISA_NAMESPACE isa_generic
#define NTK_ISA_NAME "generic"
#include "tile_recursion_impl.inc"
