#pragma once
#include "ntkctl/args.hpp"

namespace ntkctl {

// Each returns the process exit status; errors are thrown as ntk::Error and reported by main.
int run_kernel(Args& args);
int run_fit(Args& args);
int run_predict(Args& args);
int run_evaluate(Args& args);

extern const char* const kKernelHelp;
extern const char* const kFitHelp;
extern const char* const kPredictHelp;
extern const char* const kEvaluateHelp;

}  // namespace ntkctl
