// ntkctl: command-line client of ntkserve. Subcommands run in-process (SPEC section 4).
#include <cstdio>
#include <cstring>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "ntk/errors.hpp"
#include "ntkctl/arch_flags.hpp"
#include "ntkctl/commands.hpp"

namespace {

const char* const kUsage =
    "usage: ntkctl <command> [options]\n"
    "commands:\n"
    "  kernel    NNGP/NTK matrix of .npy inputs\n"
    "  fit       fit the cross-entropy NTK classifier, write a model file\n"
    "  predict   logits, probabilities and uncertainty for test inputs\n"
    "  evaluate  accuracy, NLL, Brier score, ECE on labelled test inputs\n"
    "run 'ntkctl <command> --help' for the options of a command.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  std::vector<std::string> rest(argv + 2, argv + argc);
  struct Command {
    const char* name;
    int (*run)(ntkctl::Args&);
    const char* help;
    bool architecture;
    std::set<std::string> switches;
  };
  const Command commands[] = {
      {"kernel", ntkctl::run_kernel, ntkctl::kKernelHelp, true, {"diagonal"}},
      {"fit", ntkctl::run_fit, ntkctl::kFitHelp, true, {"quiet"}},
      {"predict", ntkctl::run_predict, ntkctl::kPredictHelp, false, {}},
      {"evaluate", ntkctl::run_evaluate, ntkctl::kEvaluateHelp, false, {"json"}},
  };
  const Command* found = nullptr;
  for (const auto& c : commands)
    if (command == c.name) found = &c;
  if (found) {
    for (const auto& a : rest) {
      if (a == "--help" || a == "-h") {
        std::fputs(found->help, stdout);
        if (found->architecture) std::fputs(ntkctl::kArchitectureHelp, stdout);
        return 0;
      }
    }
  }
  try {
    if (found) {
      ntkctl::Args args(rest, found->switches);
      return found->run(args);
    }
    std::fprintf(stderr, "ntkctl: error: unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const ntk::Error& e) {
    std::fprintf(stderr, "ntkctl: error: %s\n", e.what());
    return e.code() == ntk::ErrorCode::internal ? 1 : 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ntkctl: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ntkctl: internal error: %s\n", e.what());
    return 1;
  }
}
