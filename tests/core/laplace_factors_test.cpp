// The Laplace factors of the direct Newton step (ResidentMatrix::laplace_factors, the host
// implementation every backend without its own uses) against their definitions; the CUDA backend's
// device implementation runs the same check (tests/cuda).
#include <gtest/gtest.h>

#include "laplace_factors_case.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "test_data.hpp"

namespace {

using ntk::Matrix;

Matrix<double> kernel_matrix(ntk::Backend& backend, std::int64_t n, std::uint64_t seed) {
  const Matrix<double> x = ntk::testing::random_inputs(n, 6, seed);
  Matrix<double> theta(n, n);
  backend.kernel(ntk::testing::relu_spec(2), x.view(), nullptr, {{}, theta.view()}, {});
  return theta;
}

TEST(LaplaceFactors, HostFactorsApplyTheDefinitions) {
  ntk::CpuBackend cpu;
  for (const auto& [n, classes, k] :
       {std::tuple{40, 3, 2.5}, std::tuple{73, 5, 400.0}, std::tuple{1, 2, 1.0}}) {
    const Matrix<double> theta = kernel_matrix(cpu, n, 5 + n);
    const Matrix<double> p = ntk::testing::random_probabilities(n, classes, 9 + n);
    const auto resident = cpu.make_resident(theta.view(), "Theta");
    ntk::testing::expect_laplace_factors_match_definition(cpu, *resident, theta, k, p, 1e-11);
  }
}

TEST(LaplaceFactors, BadInputsAreNamedErrors) {
  ntk::CpuBackend cpu;
  const Matrix<double> theta = kernel_matrix(cpu, 10, 3);
  const auto resident = cpu.make_resident(theta.view(), "Theta");
  const Matrix<double> p = ntk::testing::random_probabilities(10, 3, 4);
  const Matrix<double> p_short = ntk::testing::random_probabilities(9, 3, 4);
  EXPECT_THROW(resident->laplace_factors(cpu, theta.view(), 1.0, p_short), ntk::InvalidArgument);
  EXPECT_THROW(resident->laplace_factors(cpu, theta.view(), 0.0, p), ntk::InvalidArgument);
  EXPECT_THROW(resident->laplace_factors(cpu, theta.view().block(0, 0, 9, 9), 1.0, p), ntk::InvalidArgument);
  // The host implementation needs Theta on the host.
  EXPECT_THROW(resident->laplace_factors(cpu, {}, 1.0, p), ntk::InvalidArgument);
}

}  // namespace
