#pragma once
#include <string>

namespace ntk {

// The x86-64 micro-architecture level this CPU supports (1..4, 0 elsewhere): 3 = AVX2/FMA,
// 4 = AVX-512 F/BW/CD/DQ/VL.
int x86_level();
std::string cpu_model_name();

}  // namespace ntk
