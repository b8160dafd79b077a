#pragma once
#include "ntk/backend.hpp"
#include "ntk/cuda/resources.cuh"

namespace ntk::cuda {

// The resident Theta of a Newton system: n x n row-major float64 in the pool, and its float32 copy when
// the system asks for float32 products (null otherwise).
struct DeviceTheta {
  const double* f64 = nullptr;
  const float* f32 = nullptr;
  std::int64_t n = 0;
};

// ResidentMatrix::solve_newton_system on the device: the shared CG iteration (detail/conjugate_gradient.hpp)
// with every vector, the probabilities and the preconditioner in the pool; only rhs, z and the dot
// products cross PCIe. The caller holds the device mutex and has checked the system's shapes.
int solve_newton_system_on_device(DeviceResources& resources, const DeviceTheta& theta,
                                  const NewtonSystem& system, ConstMatrixView<double> rhs,
                                  MatrixView<double> z, double tolerance, int max_iterations);

}  // namespace ntk::cuda
