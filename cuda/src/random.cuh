#pragma once
#include <cstdint>

#include "ntk/cuda/resources.cuh"
#include "ntk/matrix.hpp"

namespace ntk::cuda {

// Standard normal draws by cuRAND (Philox4x32-10, offset 0, seeded with `seed`) on the device, copied
// into `out` row by row.
void normal_draws(DeviceResources& resources, std::uint64_t seed, MatrixView<double> out);

}  // namespace ntk::cuda
