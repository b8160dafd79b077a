#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ntk/uncertainty.hpp"
#include "ntkctl/args.hpp"

namespace ntkctl {

// Each returns the process exit status; errors are thrown as ntk::Error and reported by main.
int run_kernel(Args& args);
int run_fit(Args& args);
int run_predict(Args& args);
int run_evaluate(Args& args);
// Remote use (--server): every command above plus the service's own.
int run_remote(const std::string& command, Args& args, const std::string& server);
bool is_remote_command(const std::string& command);
const char* remote_help(const std::string& command);

// Accuracy, NLL, Brier, ECE and the reliability table of predicted probabilities, as text or JSON.
int report_evaluation(const ntk::UncertaintyResult& u, const std::vector<std::int64_t>& labels, int bins,
                      bool json, bool with_uncertainty);

extern const char* const kKernelHelp;
extern const char* const kFitHelp;
extern const char* const kPredictHelp;
extern const char* const kEvaluateHelp;

}  // namespace ntkctl
