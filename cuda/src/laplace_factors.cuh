#pragma once
#include <memory>
#include <mutex>

#include "ntk/backend.hpp"
#include "ntk/cuda/resources.cuh"

namespace ntk::cuda {

// ResidentMatrix::laplace_factors on the device: B_c formed from the resident Theta (n x n row-major
// float64 at `theta`) by a kernel, factored and inverted by cuSOLVER, scaled into E_c and summed into M,
// which is factored too; the C + 1 matrices stay in the pool, and applying them moves only the thin
// operands. The caller holds `device_mutex` (which the factorization's methods take again later) and
// has checked the inputs. ResourceExhausted when the C + 1 matrices do not fit.
std::unique_ptr<LaplaceFactorization> device_laplace_factors(DeviceResources& resources,
                                                             std::mutex& device_mutex, const double* theta,
                                                             std::int64_t n, double k,
                                                             const Matrix<double>& p);

}  // namespace ntk::cuda
