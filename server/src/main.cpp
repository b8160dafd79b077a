// ntk-server: the ntkserve gRPC service (SPEC section 4).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "ntk/errors.hpp"
#include "ntk/logging.hpp"
#include "options.hpp"
#include "server.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::fputs(ntkserver::kServerHelp, stdout);
      return 0;
    }
  // SIGTERM/SIGINT are taken by one thread with sigwait, so no handler runs inside gRPC's threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    const ntkserver::ServerOptions options = ntkserver::load_options(args);
    const std::string level = options.log_level;
    ntk::set_log_level(level == "debug"     ? ntk::LogLevel::debug
                       : level == "warning" ? ntk::LogLevel::warning
                       : level == "error"   ? ntk::LogLevel::error
                       : level == "off"     ? ntk::LogLevel::off
                                            : ntk::LogLevel::info);
    ntkserver::Server server(options);
    server.start();
    std::printf("ntk-server: listening on port %d\n", server.port());
    std::fflush(stdout);
    std::thread waiter([&] {
      int signal = 0;
      sigwait(&signals, &signal);
      ntk::log_info(std::string("received ") + (signal == SIGTERM ? "SIGTERM" : "SIGINT"));
      server.shutdown();
    });
    server.wait();
    waiter.join();
    return 0;
  } catch (const ntk::InvalidArgument& e) {
    std::fprintf(stderr, "ntk-server: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ntk-server: error: %s\n", e.what());
    return 1;
  }
}
