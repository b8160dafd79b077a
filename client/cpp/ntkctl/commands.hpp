#pragma once
#include "ntkctl/args.hpp"

namespace ntkctl {

// Each returns the process exit status; errors are thrown as ntk::Error and reported by main.
int run_kernel(Args& args);

extern const char* const kKernelHelp;

}  // namespace ntkctl
