#pragma once
// The architecture flags every subcommand shares (SPEC section 4).
#include <string>

#include "ntk/kernel_spec.hpp"
#include "ntkctl/args.hpp"

namespace ntkctl {

enum class ComputeDType { float32, float64 };

struct Architecture {
  ntk::KernelSpec spec;
  ComputeDType dtype = ComputeDType::float64;
};

// --depth --activation --act-a --act-b --act-c --w-std --b-std --w-std-out --b-std-out --dtype
// --quadrature-degree; validated, with errors naming the flag.
Architecture parse_architecture(Args& args);

extern const char* const kArchitectureHelp;

}  // namespace ntkctl
