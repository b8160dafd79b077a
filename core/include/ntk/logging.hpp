#pragma once
#include <string>

namespace ntk {

enum class LogLevel { debug = 0, info = 1, warning = 2, error = 3, off = 4 };

// Process-wide level; NTK_LOG_LEVEL=debug|info|warning|error|off sets the initial value (default info).
void set_log_level(LogLevel level);
LogLevel log_level();
// One line to stderr: "ntk <level> <message>". Thread-safe.
void log(LogLevel level, const std::string& message);
inline void log_info(const std::string& m) {
  log(LogLevel::info, m);
}
inline void log_warning(const std::string& m) {
  log(LogLevel::warning, m);
}
inline void log_debug(const std::string& m) {
  log(LogLevel::debug, m);
}

}  // namespace ntk
