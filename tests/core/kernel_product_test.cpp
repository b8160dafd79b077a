// Backend::resident_kernel and Backend::make_kernel_product on the CPU backend (the defaults every backend
// without its own starts from) against the plain operations they stand for: kernel() and gemm().
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <utility>

#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/kernel_assembly.hpp"
#include "ntk/targets.hpp"
#include "test_data.hpp"

namespace {

using ntk::Matrix;

ntk::KernelSpec relu3() {
  return ntk::testing::relu_spec(3);
}

Matrix<double> random_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  return ntk::testing::random_inputs(rows, cols, seed);
}

class KernelProductTest : public ::testing::Test {
 protected:
  ntk::CpuBackend cpu_{ntk::testing::with_threads(2)};
};

TEST_F(KernelProductTest, ResidentKernelIsTheKernelWithItsDiagonalAndNorm) {
  const auto x = random_matrix(157, 13, 1);
  Matrix<double> theta(157, 157);
  cpu_.kernel(relu3(), x.view(), nullptr, {{}, theta.view()}, {});
  const auto resident = cpu_.resident_kernel(relu3(), x.view(), {}, "Theta");
  ASSERT_EQ(resident->rows(), 157);
  const auto v = random_matrix(157, 4, 2);
  Matrix<double> got(157, 4, std::nan("")), want(157, 4);
  resident->multiply(0.5, v.view(), 0.0, got.view());
  cpu_.gemm(false, false, 0.5, theta.view(), v.view(), 0.0, want.view());
  EXPECT_LE(ntk::testing::max_abs_diff(got, want), 1e-12);
  const std::vector<double> diag = resident->diagonal();
  double norm = 0;
  for (std::int64_t i = 0; i < 157; ++i) {
    EXPECT_EQ(diag[std::size_t(i)], theta(i, i)) << i;
    double row = 0;
    for (std::int64_t j = 0; j < 157; ++j) row += std::abs(theta(i, j));
    norm = std::max(norm, row);
  }
  EXPECT_DOUBLE_EQ(resident->max_abs_row_sum(), norm);

  // float32: the float32 kernel, widened.
  Matrix<float> x32(157, 13), k32(157, 157);
  for (std::size_t i = 0; i < x.size(); ++i) x32.data()[i] = static_cast<float>(x.data()[i]);
  cpu_.kernel(relu3(), x32.view(), nullptr, {{}, k32.view()}, {});
  const auto resident32 = cpu_.resident_kernel(relu3(), std::as_const(x32).view(), {}, "Theta");
  EXPECT_EQ(resident32->diagonal()[5], double(k32(5, 5)));
  Matrix<double> e(157, 1);
  e(7, 0) = 1;
  Matrix<double> column(157, 1);
  resident32->multiply(1.0, e.view(), 0.0, column.view());
  for (std::int64_t i = 0; i < 157; ++i) EXPECT_EQ(column(i, 0), double(k32(i, 7))) << i;
}

TEST_F(KernelProductTest, ProductIsKernelTimesRightHandSide) {
  const auto train = random_matrix(211, 9, 3), b = random_matrix(211, 6, 4);
  for (bool float32 : {false, true}) {
    const auto product = cpu_.make_kernel_product(relu3(), float32, train.view(), b.view());
    EXPECT_EQ(product->training_rows(), 211);
    for (std::int64_t t : {1, 40, 700}) {
      const auto x = random_matrix(t, 9, 5 + std::uint64_t(t));
      Matrix<double> k(t, 211);
      if (float32) {
        Matrix<float> x32(t, 9), tr32(211, 9), k32(t, 211);
        for (std::size_t i = 0; i < x.size(); ++i) x32.data()[i] = static_cast<float>(x.data()[i]);
        for (std::size_t i = 0; i < train.size(); ++i) tr32.data()[i] = static_cast<float>(train.data()[i]);
        const ntk::ConstMatrixView<float> tv = tr32.view();
        cpu_.kernel(relu3(), x32.view(), &tv, {{}, k32.view()}, {});
        for (std::size_t i = 0; i < k.size(); ++i) k.data()[i] = k32.data()[i];
      } else {
        const ntk::ConstMatrixView<double> tv = train.view();
        cpu_.kernel(relu3(), x.view(), &tv, {{}, k.view()}, {});
      }
      for (double beta : {0.0, 2.0}) {
        Matrix<double> want = random_matrix(t, 6, 6), got = want;
        if (beta == 0)
          for (auto& v : got.storage()) v = std::nan("");
        cpu_.gemm(false, false, 1.0, k.view(), b.view(), beta, want.view());
        product->apply(x.view(), beta, got.view());
        EXPECT_LE(ntk::testing::max_abs_diff(got, want), 1e-12) << "float32 " << float32 << " t " << t;
      }
    }
  }
}

TEST_F(KernelProductTest, BlocksDoNotChangeTheResult) {
  // N = 20000 training rows make the default's blocks 419 rows: 1000 test rows take three.
  const auto train = random_matrix(20000, 3, 7), b = random_matrix(20000, 2, 8);
  const auto x = random_matrix(1000, 3, 9);
  const auto product = cpu_.make_kernel_product(relu3(), false, train.view(), b.view());
  Matrix<double> whole(1000, 2), parts(1000, 2);
  product->apply(x.view(), 0.0, whole.view());
  for (std::int64_t r0 = 0; r0 < 1000; r0 += 250)
    product->apply(x.view().block(r0, 0, 250, 3), 0.0, parts.view().block(r0, 0, 250, 2));
  EXPECT_LE(ntk::testing::max_abs_diff(whole, parts), 1e-12);
}

TEST_F(KernelProductTest, PreparedColumnsGiveTheSameKernelBitForBit) {
  const auto x1 = random_matrix(70, 11, 18), x2 = random_matrix(300, 11, 19);
  for (int depth : {1, 3}) {
    const ntk::KernelSpec spec = ntk::testing::relu_spec(depth);
    Matrix<double> plain_nngp(70, 300), plain_ntk(70, 300), nngp(70, 300), ntk_(70, 300);
    const ntk::ConstMatrixView<double> x2v = x2.view();
    ntk::assemble_kernel<double>(spec, x1.view(), &x2v, {plain_nngp.view(), plain_ntk.view()});
    const ntk::PreparedColumns<double> columns(spec, x2.view());
    ntk::AssemblyOptions small_tiles;
    small_tiles.tile_rows = small_tiles.tile_cols = 64;
    ntk::assemble_kernel<double>(x1.view(), columns, {nngp.view(), ntk_.view()}, small_tiles);
    EXPECT_EQ(ntk::testing::max_abs_diff(nngp, plain_nngp), 0.0) << depth;
    EXPECT_EQ(ntk::testing::max_abs_diff(ntk_, plain_ntk), 0.0) << depth;
  }
  auto bad = x2;
  bad(299, 10) = std::nan("");
  EXPECT_THROW(ntk::PreparedColumns<double>(relu3(), bad.view()), ntk::InvalidArgument);
  const ntk::PreparedColumns<double> columns(relu3(), x2.view());
  const auto narrow = random_matrix(5, 10, 20);
  Matrix<double> out(5, 300);
  EXPECT_THROW(ntk::assemble_kernel<double>(narrow.view(), columns, {{}, out.view()}), ntk::InvalidArgument);
}

TEST_F(KernelProductTest, BadInputsAreNamed) {
  const auto train = random_matrix(20, 4, 10), b = random_matrix(20, 3, 11);
  const auto short_b = random_matrix(19, 3, 12);
  EXPECT_THROW(cpu_.make_kernel_product(relu3(), false, train.view(), short_b.view()), ntk::InvalidArgument);
  auto bad_train = train;
  bad_train(3, 1) = std::numeric_limits<double>::infinity();
  try {
    (void)cpu_.make_kernel_product(relu3(), false, bad_train.view(), b.view());
    ADD_FAILURE() << "no error";
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("training inputs"), std::string::npos) << e.what();
  }
  const auto product = cpu_.make_kernel_product(relu3(), false, train.view(), b.view());
  Matrix<double> out(5, 3), wrong_out(5, 2);
  const auto wide = random_matrix(5, 5, 13);
  EXPECT_THROW(product->apply(wide.view(), 0.0, out.view()), ntk::InvalidArgument);
  const auto x = random_matrix(5, 4, 14);
  EXPECT_THROW(product->apply(x.view(), 0.0, wrong_out.view()), ntk::InvalidArgument);
  auto nan_x = x;
  nan_x(2, 2) = std::nan("");
  try {
    product->apply(nan_x.view(), 0.0, out.view());
    ADD_FAILURE() << "no error";
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
}

TEST_F(KernelProductTest, MatrixFreeFitThroughTheResidentKernelMatchesTheDirectFit) {
  // fit_classifier's matrix-free path never forms Theta on the host any more; the direct path does.
  const auto x = random_matrix(120, 6, 15);
  const auto targets = ntk::targets_from_labels(ntk::testing::random_labels(120, 3, 16), 3, 0.0);
  ntk::FitSettings s;
  s.lambda = 1e-2;
  s.solver = ntk::SolverKind::matrix_free;
  const ntk::Model free = ntk::fit_classifier(cpu_, relu3(), x.view(), targets, s);
  s.solver = ntk::SolverKind::direct;
  const ntk::Model direct = ntk::fit_classifier(cpu_, relu3(), x.view(), targets, s);
  ASSERT_TRUE(free.diagnostics.converged) << free.diagnostics.message;
  ASSERT_TRUE(direct.diagnostics.converged) << direct.diagnostics.message;
  EXPECT_LE(ntk::testing::max_abs_diff(free.coefficients, direct.coefficients), 1e-9);
  const auto xt = random_matrix(33, 6, 17);
  const auto p_free = ntk::predict(cpu_, free, xt.view()), p_direct = ntk::predict(cpu_, direct, xt.view());
  EXPECT_LE(ntk::testing::max_abs_diff(p_free.logits, p_direct.logits), 1e-8);
}

}  // namespace
