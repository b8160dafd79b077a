#pragma once
#include <memory>
#include <mutex>

#include "ntk/backend.hpp"
#include "ntk/cuda/resources.cuh"

namespace ntk::cuda {

// `a` uploaded once into the pool (throws ResourceExhausted when it does not fit); every multiply()
// then moves only the thin N x m operands, under `device_mutex` (the backend's: one operation at a time
// per device).
std::unique_ptr<ResidentMatrix> make_device_resident(DeviceResources& resources, std::mutex& device_mutex,
                                                     ConstMatrixView<double> a, const char* what);

// A float64 n x n row-major matrix already in the pool (Backend::resident_kernel assembles it there).
std::unique_ptr<ResidentMatrix> adopt_device_resident(DeviceResources& resources, std::mutex& device_mutex,
                                                      DeviceBuffer matrix, std::int64_t n);

// The Cholesky factor `l` uploaded once; every solve moves only its right-hand side, under
// `device_mutex`. ResourceExhausted when it does not fit.
std::unique_ptr<ResidentFactor> make_device_resident_factor(DeviceResources& resources,
                                                            std::mutex& device_mutex,
                                                            ConstMatrixView<double> l, const char* what);

}  // namespace ntk::cuda
