// ResidentMatrix::factor_and_solve, the lambda = 0 closed form's solve where Theta lives, on the CPU's
// residents: the owned one (resident_kernel) moves its matrix into the factor and is consumed, the views
// factor a copy; all equal the backend's Cholesky and solve on a copy bit for bit. The CUDA backend's
// in-place version runs the same comparison (tests/cuda).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "test_data.hpp"

namespace {

using ntk::Matrix;

TEST(FactorAndSolve, EqualsCholeskyAndSolveOnACopyAndConsumesTheOwnedMatrix) {
  ntk::CpuBackend cpu;
  const Matrix<double> x = ntk::testing::random_inputs(90, 7, 3);
  Matrix<double> theta(90, 90);
  cpu.kernel(ntk::testing::relu_spec(2), x.view(), nullptr, {{}, theta.view()}, {});
  const Matrix<double> b = ntk::testing::random_inputs(90, 4, 4);
  const Matrix<double> pristine = theta;
  for (const double shift : {0.0, 1e-3}) {
    Matrix<double> want_factor = theta, want = b;
    for (std::int64_t i = 0; i < 90; ++i) want_factor(i, i) += shift;
    cpu.cholesky(want_factor.view(), "reference");
    cpu.cholesky_solve(want_factor.view(), want.view());

    auto owned = cpu.resident_kernel(ntk::testing::relu_spec(2), x.view(), {}, "Theta");
    auto view = cpu.make_resident(theta.view(), "Theta");
    for (ntk::ResidentMatrix* resident : {owned.get(), view.get()}) {
      Matrix<double> got = b;
      const Matrix<double> factor = resident->factor_and_solve(cpu, shift, got.view(), "the training NTK");
      ASSERT_EQ(factor.rows(), 90);
      for (std::int64_t i = 0; i < 90; ++i)
        for (std::int64_t j = 0; j <= i; ++j) ASSERT_EQ(factor(i, j), want_factor(i, j)) << i << "," << j;
      for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got.data()[i], want.data()[i]);
    }
    // The owned matrix became the factor: the resident is spent.
    Matrix<double> out(90, 1);
    EXPECT_THROW(owned->multiply(1.0, b.view().block(0, 0, 90, 1), 0.0, out.view()), ntk::FailedPrecondition);
    EXPECT_THROW(owned->factor_and_solve(cpu, shift, out.view(), "again"), ntk::FailedPrecondition);
    // A view factors a copy: the caller's matrix is untouched.
    for (std::size_t i = 0; i < theta.size(); ++i) ASSERT_EQ(theta.data()[i], pristine.data()[i]);
  }
}

TEST(FactorAndSolve, BadRightHandSidesAndIndefiniteMatricesAreNamedErrors) {
  ntk::CpuBackend cpu;
  Matrix<double> a(3, 3, 0.0);
  a(0, 0) = 1;
  a(1, 1) = -1;  // indefinite
  a(2, 2) = 1;
  Matrix<double> b(3, 1, 1.0), short_b(2, 1, 1.0);
  auto resident = cpu.make_resident(a.view(), "A");
  EXPECT_THROW(resident->factor_and_solve(cpu, 0.0, short_b.view(), "the training NTK"),
               ntk::InvalidArgument);
  try {
    resident->factor_and_solve(cpu, 0.0, b.view(), "the training NTK");
    ADD_FAILURE() << "an indefinite matrix was factored";
  } catch (const ntk::NumericalError& e) {
    EXPECT_NE(std::string(e.what()).find("the training NTK"), std::string::npos) << e.what();
  }
  // A shift that makes it definite: factored.
  EXPECT_NO_THROW(resident->factor_and_solve(cpu, 2.0, b.view(), "the training NTK"));
}

}  // namespace

namespace {

// Backend::make_resident_factor, which the uncertainty modes solve every block with: the default solves
// through cholesky_solve(), bit for bit, and is safe from several threads (the server shares contexts).
TEST(ResidentFactor, SolvesAsCholeskySolveFromSeveralThreads) {
  ntk::CpuBackend cpu;
  const ntk::Matrix<double> x = ntk::testing::random_inputs(70, 5, 8);
  ntk::Matrix<double> l(70, 70);
  cpu.kernel(ntk::testing::relu_spec(2), x.view(), nullptr, {{}, l.view()}, {});
  cpu.cholesky(l.view(), "Theta");
  auto factor = cpu.make_resident_factor(l.view(), "Theta's factor");
  EXPECT_EQ(factor->rows(), 70);
  const ntk::Matrix<double> b = ntk::testing::random_inputs(70, 3, 9);
  ntk::Matrix<double> want = b;
  cpu.cholesky_solve(l.view(), want.view());
  std::vector<ntk::Matrix<double>> got(4, b);
  std::vector<std::thread> threads;
  for (auto& g : got) threads.emplace_back([&] { factor->solve(g.view()); });
  for (auto& t : threads) t.join();
  for (const auto& g : got)
    for (std::size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g.data()[i], want.data()[i]);
  ntk::Matrix<double> wrong(69, 1);
  EXPECT_THROW(factor->solve(wrong.view()), ntk::InvalidArgument);
  EXPECT_THROW(cpu.make_resident_factor(l.view().block(0, 0, 70, 69), "not square"), ntk::InvalidArgument);
}

}  // namespace
