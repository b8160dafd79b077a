#pragma once
namespace ntkserver {
inline constexpr const char* kNtkserveVersion = "0.2.0";
}
