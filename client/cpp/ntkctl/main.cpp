// ntkctl: command-line client of ntkserve. Subcommands run in-process (SPEC section 4).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ntk/errors.hpp"
#include "ntkclient/client.hpp"
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
    "with --server HOST:PORT (before or after the command; also --token T | --token-file F, --tls,\n"
    "--tls-ca F, --tls-cert F --tls-key F, --tls-server-name N, --timeout S) the commands above run on\n"
    "the server, and these exist:\n"
    "  upload    upload a dataset (.npy x with labels or soft targets)\n"
    "  datasets  list datasets          models  list models\n"
    "  watch     follow a fit job       cancel  cancel a fit job\n"
    "  health    the server's health    delete-dataset, delete-model\n"
    "run 'ntkctl <command> --help' for the options of a command.\n";

}  // namespace

int main(int argc, char** argv) {
  // Options before the command (--server and the connection options) join the command's own.
  std::vector<std::string> leading, rest;
  int i = 1;
  for (; i < argc && std::strncmp(argv[i], "--", 2) == 0 && std::strcmp(argv[i], "--help") != 0; ++i) {
    leading.emplace_back(argv[i]);
    const bool has_value = std::strchr(argv[i], '=') == nullptr && std::strcmp(argv[i], "--tls") != 0;
    if (has_value && i + 1 < argc) leading.emplace_back(argv[++i]);
  }
  if (i >= argc || std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
    std::fputs(kUsage, i >= argc ? stderr : stdout);
    return i >= argc ? 2 : 0;
  }
  const std::string command = argv[i];
  rest.assign(argv + i + 1, argv + argc);
  rest.insert(rest.end(), leading.begin(), leading.end());
  std::optional<std::string> server;
  for (std::size_t k = 0; k < rest.size(); ++k) {
    if (rest[k] == "--server" && k + 1 < rest.size()) {
      server = rest[k + 1];
      rest.erase(rest.begin() + static_cast<long>(k), rest.begin() + static_cast<long>(k) + 2);
      break;
    }
    if (rest[k].rfind("--server=", 0) == 0) {
      server = rest[k].substr(9);
      rest.erase(rest.begin() + static_cast<long>(k));
      break;
    }
  }
  if (!server)
    if (const char* env = std::getenv("NTK_SERVER")) server = std::string(env);
  if (server && ntkctl::is_remote_command(command)) {
    for (const auto& a : rest)
      if (a == "--help" || a == "-h") {
        std::fputs(ntkctl::remote_help(command), stdout);
        if (command == "fit" || command == "kernel") std::fputs(ntkctl::kArchitectureHelp, stdout);
        return 0;
      }
    try {
      ntkctl::Args args(rest, {"json", "quiet", "no-wait", "tls"});
      return ntkctl::run_remote(command, args, *server);
    } catch (const ntkclient::RpcError& e) {
      std::fprintf(stderr, "ntkctl: error: %s\n", e.what());
      switch (e.status_code()) {
        case grpc::StatusCode::UNAVAILABLE:
        case grpc::StatusCode::DEADLINE_EXCEEDED:
        case grpc::StatusCode::INTERNAL:
        case grpc::StatusCode::UNKNOWN:
        case grpc::StatusCode::CANCELLED:
          return 1;
        default:
          return 2;
      }
    } catch (const ntk::Error& e) {
      std::fprintf(stderr, "ntkctl: error: %s\n", e.what());
      return e.code() == ntk::ErrorCode::internal || e.code() == ntk::ErrorCode::cancelled ? 1 : 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ntkctl: internal error: %s\n", e.what());
      return 1;
    }
  }
  if (!server && ntkctl::is_remote_command(command) && command != "fit" && command != "predict" &&
      command != "evaluate" && command != "kernel") {
    std::fprintf(stderr, "ntkctl: error: '%s' talks to a server: give --server HOST:PORT (or NTK_SERVER)\n",
                 command.c_str());
    return 2;
  }
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
