#include "ntk/logging.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace ntk {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("NTK_LOG_LEVEL");
  if (env == nullptr) return LogLevel::info;
  const struct {
    const char* name;
    LogLevel level;
  } names[] = {{"debug", LogLevel::debug},
               {"info", LogLevel::info},
               {"warning", LogLevel::warning},
               {"error", LogLevel::error},
               {"off", LogLevel::off}};
  for (const auto& n : names)
    if (std::strcmp(env, n.name) == 0) return n.level;
  return LogLevel::info;
}

std::atomic<LogLevel>& level_ref() {
  static std::atomic<LogLevel> level{initial_level()};
  return level;
}

}  // namespace

void set_log_level(LogLevel level) {
  level_ref().store(level);
}
LogLevel log_level() {
  return level_ref().load();
}

void log(LogLevel level, const std::string& message) {
  if (level < log_level()) return;
  static std::mutex m;
  static const char* names[] = {"debug", "info", "warning", "error"};
  std::lock_guard lock(m);
  std::fprintf(stderr, "ntk %s %s\n", names[static_cast<int>(level)], message.c_str());
}

}  // namespace ntk
