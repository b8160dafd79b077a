#pragma once
// A real ntk-server child process on a free loopback port, for the end-to-end tests.
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ntkclient/client.hpp"

namespace ntktest {

inline std::string temporary_directory(const std::string& tag) {
  std::mt19937_64 rng{std::random_device{}()};
  auto dir =
      std::filesystem::temp_directory_path() / ("ntk-" + tag + "-" + std::to_string(rng() % 1000000000));
  std::filesystem::create_directories(dir);
  return dir.string();
}

class ServerProcess {
 public:
  // Starts ntk-server with `--listen 127.0.0.1:0 --data-dir DIR --metrics off` plus `extra`, and waits
  // until it prints its port.
  explicit ServerProcess(std::string data_dir, std::vector<std::string> extra = {})
      : data_dir_(std::move(data_dir)) {
    start(std::move(extra));
  }
  ~ServerProcess() { stop(SIGKILL); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  void start(std::vector<std::string> extra) {
    extra_ = extra;
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      std::vector<std::string> args = {NTK_SERVER_BINARY, "--listen",    "127.0.0.1:0", "--data-dir",
                                       data_dir_,         "--log-level", "warning"};
      bool metrics = false;
      for (const auto& e : extra) metrics = metrics || e == "--metrics";
      if (!metrics) args.insert(args.end(), {"--metrics", "off"});
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    FILE* f = fdopen(out[0], "r");
    char line[512];
    port_ = 0;
    while (std::fgets(line, sizeof line, f)) {
      if (std::sscanf(line, "ntk-server: listening on port %d", &port_) == 1) break;
    }
    // Keep reading (and dropping) its stdout in the background so that it never blocks on a full pipe.
    reader_ = std::thread([f] {
      char buf[512];
      while (std::fgets(buf, sizeof buf, f)) {
      }
      std::fclose(f);
    });
    reader_.detach();
    if (port_ == 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
      throw std::runtime_error("ntk-server did not start (exit status " +
                               std::to_string(WEXITSTATUS(status)) + ")");
    }
  }

  // Sends `signal` and waits for the exit; returns the exit status (or 128 + signal).
  int stop(int signal = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void restart() {
    stop(SIGKILL);
    start(extra_);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return data_dir_; }

  ntkclient::ClientOptions client_options() const {
    ntkclient::ClientOptions o;
    o.address = address();
    o.retries = 2;
    o.backoff_seconds = 0.05;
    return o;
  }

 private:
  std::string data_dir_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::thread reader_;
};

}  // namespace ntktest
