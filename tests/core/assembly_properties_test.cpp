// Properties of the assembled kernels that hold whatever the mathematics: symmetry, positive
// semi-definiteness, invariance under tiling and threading, agreement of float32 with float64 and of the
// streaming path with the dense one; and the refusal of bad inputs and outputs.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/reference_kernel.hpp"
#include "ntk/blas.hpp"
#include "ntk/errors.hpp"
#include "ntk/kernel_assembly.hpp"
#include "ntk/kernel_spec.hpp"
#include "ntk/matrix.hpp"

namespace {

using ntk::Activation;
using ntk::AssemblyOptions;
using ntk::KernelSpec;
using ntk::Matrix;

KernelSpec make_spec(Activation kind, int depth, double w_std = 1.4, double b_std = 0.3) {
  KernelSpec s;
  s.activation.kind = kind;
  s.depth = depth;
  s.w_std = w_std;
  s.b_std = b_std;
  return s;
}

// The architectures the property tests sweep: one per family (quadrature separately, it is slow).
std::vector<KernelSpec> closed_form_specs() {
  KernelSpec leaky = make_spec(Activation::leaky_relu, 2);
  leaky.activation.a = 0.2;
  KernelSpec erf = make_spec(Activation::erf, 2, 1.1, 0.5);
  erf.activation.a = 1.5;
  erf.activation.b = 0.8;
  erf.activation.c = 0.25;
  KernelSpec relu_out = make_spec(Activation::relu, 3);
  relu_out.w_std_out = 0.7;
  relu_out.b_std_out = 0.9;
  return {relu_out,
          leaky,
          erf,
          make_spec(Activation::gelu, 2),
          make_spec(Activation::sigmoid_like, 3),
          make_spec(Activation::relu, 0)};
}

template <class T>
Matrix<T> random_inputs(std::uint64_t seed, std::int64_t n, std::int64_t d) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_real_distribution<double> scale(0.3, 3.0);
  Matrix<T> x(n, d);
  for (std::int64_t i = 0; i < n; ++i) {
    const double s = scale(rng);
    for (std::int64_t k = 0; k < d; ++k) x(i, k) = static_cast<T>(s * normal(rng));
  }
  return x;
}

template <class T>
struct Kernels {
  Matrix<T> nngp, ntk;
};

template <class T>
Kernels<T> assemble(const KernelSpec& spec, const Matrix<T>& x1, const Matrix<T>* x2,
                    const AssemblyOptions& options = {}) {
  const std::int64_t n2 = x2 ? x2->rows() : x1.rows();
  Kernels<T> k{Matrix<T>(x1.rows(), n2), Matrix<T>(x1.rows(), n2)};
  const ntk::ConstMatrixView<T> x2v = x2 ? x2->view() : ntk::ConstMatrixView<T>{};
  ntk::assemble_kernel<T>(spec, x1.view(), x2 ? &x2v : nullptr, {k.nngp.view(), k.ntk.view()}, options);
  return k;
}

template <class T>
bool bitwise_equal(const Matrix<T>& a, const Matrix<T>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// max |a - b| / max |b|, in double.
template <class A, class B>
double max_rel_diff(const Matrix<A>& a, const Matrix<B>& b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::abs(double(a.storage()[i]) - double(b.storage()[i])));
    scale = std::max(scale, std::abs(double(b.storage()[i])));
  }
  return diff / scale;
}

TEST(AssemblyProperties, SymmetricKernelIsBitwiseSymmetricWithDiagonalOfAssembleDiagonal) {
  // K(X, X) computes one triangle and mirrors it; its diagonal goes through the exact |x|^2/d, so it
  // must equal assemble_diagonal() bit for bit. N = 300 with tiles of 256 and 7 exercises diagonal
  // and off-diagonal tiles, and ragged edges.
  std::vector<KernelSpec> specs = closed_form_specs();
  specs.push_back(make_spec(Activation::tanh, 1));
  for (const KernelSpec& spec : specs) {
    const bool slow = spec.uses_quadrature();
    const Matrix<double> x = random_inputs<double>(11, slow ? 40 : 300, 20);
    for (std::int64_t tile : {std::int64_t(0), std::int64_t(7)}) {
      AssemblyOptions o;
      o.tile_rows = o.tile_cols = tile;
      const Kernels<double> k = assemble<double>(spec, x, nullptr, o);
      std::vector<double> dg(static_cast<std::size_t>(x.rows())), dt(dg.size());
      ntk::assemble_diagonal<double>(spec, x.view(), {dg, dt});
      std::int64_t asymmetric = 0, diagonal_mismatch = 0;
      for (std::int64_t i = 0; i < x.rows(); ++i) {
        for (std::int64_t j = 0; j < i; ++j)
          for (const Matrix<double>* m : {&k.nngp, &k.ntk})
            asymmetric += std::memcmp(&(*m)(i, j), &(*m)(j, i), sizeof(double)) != 0;
        const auto u = static_cast<std::size_t>(i);
        diagonal_mismatch += std::memcmp(&k.nngp(i, i), &dg[u], sizeof(double)) != 0;
        diagonal_mismatch += std::memcmp(&k.ntk(i, i), &dt[u], sizeof(double)) != 0;
      }
      EXPECT_EQ(asymmetric, 0) << spec.describe() << " tile " << tile;
      EXPECT_EQ(diagonal_mismatch, 0) << spec.describe() << " tile " << tile;
    }
  }
}

TEST(AssemblyProperties, KernelsArePositiveSemiDefinite) {
  // Cholesky of K + 1e-8 tr(K)/N I. d = 5 < N makes the identity and depth-0 kernels rank-deficient:
  // only the jitter keeps them definite, so rounding that broke semi-definiteness would show.
  std::vector<KernelSpec> specs = closed_form_specs();
  specs.push_back(make_spec(Activation::identity, 2));
  specs.push_back(make_spec(Activation::abs, 4));
  const Matrix<double> x = random_inputs<double>(12, 200, 5);
  for (const KernelSpec& spec : specs) {
    Kernels<double> k = assemble<double>(spec, x, nullptr);
    for (Matrix<double>* m : {&k.nngp, &k.ntk}) {
      const std::int64_t n = m->rows();
      double trace = 0;
      for (std::int64_t i = 0; i < n; ++i) trace += (*m)(i, i);
      for (std::int64_t i = 0; i < n; ++i) (*m)(i, i) += 1e-8 * trace / double(n);
      EXPECT_EQ(ntk::blas::potrf_lower(n, m->data(), n), 0)
          << spec.describe() << (m == &k.nngp ? " nngp" : " ntk");
    }
  }
}

TEST(AssemblyProperties, TileSizeDoesNotChangeTheResult) {
  // float64, N = 300 (general: 300 x 290). Reports whether the tilings agree bit for bit; asserts 1e-14
  // relative to max|K| at most (the GEMM may round x.x' differently for different block shapes).
  const Matrix<double> x1 = random_inputs<double>(13, 300, 20), x2 = random_inputs<double>(14, 290, 20);
  double worst = 0;
  int not_bitwise = 0;
  for (const KernelSpec& spec : closed_form_specs()) {
    for (const Matrix<double>* x2p : {static_cast<const Matrix<double>*>(nullptr), &x2}) {
      const Kernels<double> base = assemble<double>(spec, x1, x2p);
      struct Tiling {
        std::int64_t rows, cols;
      };
      for (Tiling t : {Tiling{1, 1}, Tiling{7, 7}, Tiling{16, 16}, Tiling{64, 64}, Tiling{256, 256},
                       Tiling{1000, 1000}, Tiling{7, 64}, Tiling{300, 1}}) {
        AssemblyOptions o;
        o.tile_rows = t.rows;
        o.tile_cols = t.cols;
        const Kernels<double> k = assemble<double>(spec, x1, x2p, o);
        const double err = std::max(max_rel_diff(k.nngp, base.nngp), max_rel_diff(k.ntk, base.ntk));
        EXPECT_LE(err, 1e-14) << spec.describe() << " tiles " << t.rows << "x" << t.cols
                              << (x2p ? " general" : " symmetric");
        worst = std::max(worst, err);
        if (!bitwise_equal(k.nngp, base.nngp) || !bitwise_equal(k.ntk, base.ntk)) {
          ++not_bitwise;
          std::printf("[tile invariance] not bitwise: %s, %s, tiles %lldx%lld (%.2e)\n",
                      ntk::activation_name(spec.activation.kind).data(), x2p ? "general" : "symmetric",
                      static_cast<long long>(t.rows), static_cast<long long>(t.cols), err);
        }
      }
    }
  }
  std::printf("[tile invariance] worst relative difference %.2e; %d of %zu tilings not bitwise identical\n",
              worst, not_bitwise, closed_form_specs().size() * 2 * 8);
  RecordProperty("worst_relative_difference", std::to_string(worst));
  RecordProperty("not_bitwise", not_bitwise);
}

TEST(AssemblyProperties, ThreadCountDoesNotChangeTheResult) {
  const Matrix<double> x1 = random_inputs<double>(15, 300, 20), x2 = random_inputs<double>(16, 200, 20);
  for (const KernelSpec& spec : closed_form_specs()) {
    for (const Matrix<double>* x2p : {static_cast<const Matrix<double>*>(nullptr), &x2}) {
      AssemblyOptions o;
      o.tile_rows = o.tile_cols = 64;  // enough tiles for every worker
      o.threads = 1;
      const Kernels<double> one = assemble<double>(spec, x1, x2p, o);
      for (int threads : {2, 3}) {
        o.threads = threads;
        const Kernels<double> k = assemble<double>(spec, x1, x2p, o);
        EXPECT_TRUE(bitwise_equal(k.nngp, one.nngp) && bitwise_equal(k.ntk, one.ntk))
            << spec.describe() << " threads " << threads << (x2p ? " general" : " symmetric");
      }
    }
  }
}

TEST(AssemblyProperties, SingleKernelOutputsEqualTheJointOnes) {
  // With only the NTK requested, the NNGP lives in per-worker scratch; with only the NNGP, the GEMM
  // writes into it. Either way the values are those of the joint computation.
  const Matrix<double> x1 = random_inputs<double>(17, 150, 9), x2 = random_inputs<double>(18, 130, 9);
  for (const KernelSpec& spec : closed_form_specs()) {
    for (const Matrix<double>* x2p : {static_cast<const Matrix<double>*>(nullptr), &x2}) {
      const Kernels<double> both = assemble<double>(spec, x1, x2p);
      const std::int64_t n2 = both.nngp.cols();
      Matrix<double> g(x1.rows(), n2), t(x1.rows(), n2);
      const ntk::ConstMatrixView<double> x2v = x2p ? x2p->view() : ntk::ConstMatrixView<double>{};
      ntk::assemble_kernel<double>(spec, x1.view(), x2p ? &x2v : nullptr, {g.view(), {}});
      ntk::assemble_kernel<double>(spec, x1.view(), x2p ? &x2v : nullptr, {{}, t.view()});
      EXPECT_TRUE(bitwise_equal(g, both.nngp)) << spec.describe();
      EXPECT_TRUE(bitwise_equal(t, both.ntk)) << spec.describe();
    }
  }
}

TEST(AssemblyProperties, StridedInputsAndOutputs) {
  // Inputs that are column blocks of wider matrices (ld > cols, with NaN in the columns not part of the
  // view: they must be neither read into the result nor reported) and outputs with padded rows, whose
  // padding must stay untouched.
  const std::int64_t n1 = 70, n2 = 50, d = 6, pad = 3;
  const Matrix<double> x1 = random_inputs<double>(19, n1, d), x2 = random_inputs<double>(20, n2, d);
  auto widen = [&](const Matrix<double>& x) {
    Matrix<double> w(x.rows(), d + pad, std::numeric_limits<double>::quiet_NaN());
    for (std::int64_t i = 0; i < x.rows(); ++i)
      for (std::int64_t k = 0; k < d; ++k) w(i, k) = x(i, k);
    return w;
  };
  const Matrix<double> w1 = widen(x1), w2 = widen(x2);
  const ntk::ConstMatrixView<double> v1{w1.data(), n1, d, d + pad}, v2{w2.data(), n2, d, d + pad};
  for (const KernelSpec& spec : closed_form_specs()) {
    for (bool general : {false, true}) {
      const Kernels<double> want = assemble<double>(spec, x1, general ? &x2 : nullptr);
      const std::int64_t cols = general ? n2 : n1;
      const double sentinel = -12345.5;
      Matrix<double> g(n1, cols + pad, sentinel), t(n1, cols + 2 * pad, sentinel);
      AssemblyOptions o;
      o.tile_rows = o.tile_cols = 16;
      ntk::assemble_kernel<double>(spec, v1, general ? &v2 : nullptr,
                                   {{g.data(), n1, cols, cols + pad}, {t.data(), n1, cols, cols + 2 * pad}},
                                   o);
      std::int64_t mismatches = 0, padding_touched = 0;
      for (std::int64_t i = 0; i < n1; ++i) {
        for (std::int64_t j = 0; j < cols; ++j) {
          // The reference used tiles of 256: equal to 1e-14 (see TileSizeDoesNotChangeTheResult).
          mismatches += std::abs(g(i, j) - want.nngp(i, j)) > 1e-14 * std::abs(want.nngp(i, j));
          mismatches += std::abs(t(i, j) - want.ntk(i, j)) > 1e-14 * std::abs(want.ntk(i, j));
        }
        for (std::int64_t j = cols; j < cols + pad; ++j) padding_touched += g(i, j) != sentinel;
        for (std::int64_t j = cols; j < cols + 2 * pad; ++j) padding_touched += t(i, j) != sentinel;
      }
      EXPECT_EQ(mismatches, 0) << spec.describe() << (general ? " general" : " symmetric");
      EXPECT_EQ(padding_touched, 0) << spec.describe() << (general ? " general" : " symmetric");
    }
  }
}

TEST(AssemblyProperties, Float32AgreesWithFloat64) {
  const Matrix<double> x1 = random_inputs<double>(21, 300, 20), x2 = random_inputs<double>(22, 120, 20);
  auto to_float = [](const Matrix<double>& x) {
    Matrix<float> f(x.rows(), x.cols());
    for (std::size_t i = 0; i < x.size(); ++i) f.storage()[i] = static_cast<float>(x.storage()[i]);
    return f;
  };
  const Matrix<float> f1 = to_float(x1), f2 = to_float(x2);
  std::vector<KernelSpec> specs = closed_form_specs();
  specs.push_back(make_spec(Activation::relu, 5));
  double worst = 0;
  for (const KernelSpec& spec : specs) {
    for (bool general : {false, true}) {
      // float64 from the float32-rounded inputs, so only the arithmetic differs.
      Matrix<double> r1(x1.rows(), x1.cols()), r2(x2.rows(), x2.cols());
      for (std::size_t i = 0; i < r1.size(); ++i) r1.storage()[i] = f1.storage()[i];
      for (std::size_t i = 0; i < r2.size(); ++i) r2.storage()[i] = f2.storage()[i];
      const Kernels<double> k64 = assemble<double>(spec, r1, general ? &r2 : nullptr);
      const Kernels<float> k32 = assemble<float>(spec, f1, general ? &f2 : nullptr);
      const double err = std::max(max_rel_diff(k32.nngp, k64.nngp), max_rel_diff(k32.ntk, k64.ntk));
      EXPECT_LE(err, 1e-4) << spec.describe() << (general ? " general" : " symmetric");
      worst = std::max(worst, err);
    }
  }
  std::printf("[float32 vs float64] worst error / max|K| %.2e\n", worst);
  RecordProperty("worst_relative_error", std::to_string(worst));
}

// Reassembles the streamed tiles, checking each entry arrives exactly once and the sink is never entered
// concurrently.
struct Reassembled {
  Matrix<double> nngp, ntk;
  std::int64_t max_tile = 0;
  bool complete = true, overlapping = false, concurrent = false;
};

Reassembled stream(const KernelSpec& spec, const Matrix<double>& x1, const Matrix<double>* x2,
                   ntk::KernelSelection selection, const AssemblyOptions& options) {
  const std::int64_t n1 = x1.rows(), n2 = x2 ? x2->rows() : n1;
  Reassembled r{Matrix<double>(n1, n2), Matrix<double>(n1, n2)};
  std::vector<int> seen(static_cast<std::size_t>(n1 * n2), 0);
  std::atomic<int> inside{0};
  const ntk::ConstMatrixView<double> x2v = x2 ? x2->view() : ntk::ConstMatrixView<double>{};
  ntk::assemble_kernel_tiles<double>(
      spec, x1.view(), x2 ? &x2v : nullptr, selection,
      [&](const ntk::TileLocation& loc, ntk::ConstMatrixView<double> g, ntk::ConstMatrixView<double> t) {
        if (inside.fetch_add(1) != 0) r.concurrent = true;
        r.max_tile = std::max({r.max_tile, loc.rows, loc.cols});
        for (std::int64_t i = 0; i < loc.rows; ++i)
          for (std::int64_t j = 0; j < loc.cols; ++j) {
            const std::int64_t gi = loc.row0 + i, gj = loc.col0 + j;
            if (seen[static_cast<std::size_t>(gi * n2 + gj)]++) r.overlapping = true;
            if (!g.empty()) r.nngp(gi, gj) = g(i, j);
            if (!t.empty()) r.ntk(gi, gj) = t(i, j);
          }
        inside.fetch_sub(1);
      },
      options);
  for (int s : seen) r.complete = r.complete && s == 1;
  return r;
}

TEST(AssemblyProperties, StreamedTilesReassembleToTheDenseKernel) {
  const Matrix<double> x1 = random_inputs<double>(23, 300, 12), x2 = random_inputs<double>(24, 170, 12);
  for (const KernelSpec& spec : closed_form_specs()) {
    for (const Matrix<double>* x2p : {static_cast<const Matrix<double>*>(nullptr), &x2}) {
      for (std::int64_t tile : {std::int64_t(0), std::int64_t(64)}) {
        AssemblyOptions o;
        o.tile_rows = o.tile_cols = tile;
        o.threads = 2;
        const Kernels<double> dense = assemble<double>(spec, x1, x2p, o);
        const std::string what =
            spec.describe() + (x2p ? " general" : " symmetric") + " tile " + std::to_string(tile);
        const Reassembled both = stream(spec, x1, x2p, ntk::KernelSelection::both, o);
        EXPECT_TRUE(both.complete && !both.overlapping) << what;
        EXPECT_FALSE(both.concurrent) << what;
        EXPECT_TRUE(bitwise_equal(both.nngp, dense.nngp)) << what;
        EXPECT_TRUE(bitwise_equal(both.ntk, dense.ntk)) << what;
        const Reassembled g = stream(spec, x1, x2p, ntk::KernelSelection::nngp, o);
        const Reassembled t = stream(spec, x1, x2p, ntk::KernelSelection::ntk, o);
        EXPECT_TRUE(g.complete && t.complete) << what;
        EXPECT_TRUE(bitwise_equal(g.nngp, dense.nngp)) << what;
        EXPECT_TRUE(bitwise_equal(t.ntk, dense.ntk)) << what;
      }
    }
  }
}

TEST(AssemblyProperties, SmallWorkspaceForcesSmallTiles) {
  // One worker, symmetric, both kernels: 4 tile buffers of t^2 doubles. 40000 bytes allow t = 32 (32768)
  // but not 64, so the default 256 is halved to 32; the result is the dense one with 32-tiles, exactly.
  const Matrix<double> x = random_inputs<double>(25, 150, 8);
  const KernelSpec spec = make_spec(Activation::relu, 3);
  AssemblyOptions o;
  o.threads = 1;
  o.workspace_bytes = 40000;
  const Reassembled r = stream(spec, x, nullptr, ntk::KernelSelection::both, o);
  EXPECT_EQ(r.max_tile, 32);
  EXPECT_TRUE(r.complete && !r.overlapping);
  AssemblyOptions dense_options;
  dense_options.tile_rows = dense_options.tile_cols = 32;
  dense_options.threads = 1;
  const Kernels<double> dense = assemble<double>(spec, x, nullptr, dense_options);
  EXPECT_TRUE(bitwise_equal(r.nngp, dense.nngp));
  EXPECT_TRUE(bitwise_equal(r.ntk, dense.ntk));
  // Two workers under the same budget: tiles shrink further (16) instead of exceeding it.
  o.threads = 2;
  EXPECT_LE(stream(spec, x, nullptr, ntk::KernelSelection::both, o).max_tile, 16);
}

TEST(AssemblyProperties, WorkspaceTooSmallForOneTileIsResourceExhausted) {
  const Matrix<double> x = random_inputs<double>(26, 40, 4);
  AssemblyOptions o;
  o.threads = 1;
  o.workspace_bytes = 1000;  // the smallest automatic tile, 16 x 16 doubles x 4 buffers, needs 8192
  auto sink = [](const ntk::TileLocation&, ntk::ConstMatrixView<double>, ntk::ConstMatrixView<double>) {};
  try {
    ntk::assemble_kernel_tiles<double>(make_spec(Activation::relu, 1), x.view(), nullptr,
                                       ntk::KernelSelection::both, sink, o);
    FAIL() << "no ResourceExhausted";
  } catch (const ntk::ResourceExhausted& e) {
    EXPECT_NE(std::string(e.what()).find("workspace"), std::string::npos) << e.what();
  }
  o.tile_rows = o.tile_cols = 1;  // 1 x 1 tiles: 32 bytes
  o.workspace_bytes = 16;
  EXPECT_THROW(ntk::assemble_kernel_tiles<double>(make_spec(Activation::relu, 1), x.view(), nullptr,
                                                  ntk::KernelSelection::both, sink, o),
               ntk::ResourceExhausted);
}

TEST(AssemblyProperties, SinkExceptionReachesTheCaller) {
  // A sink that fails (say, a full disk) stops the stream; the error is the caller's, not a crash.
  const Matrix<double> x = random_inputs<double>(34, 100, 5);
  for (int threads : {1, 2}) {
    AssemblyOptions o;
    o.tile_rows = o.tile_cols = 16;
    o.threads = threads;
    int calls = 0;
    EXPECT_THROW(
        ntk::assemble_kernel_tiles<double>(
            make_spec(Activation::relu, 2), x.view(), nullptr, ntk::KernelSelection::both,
            [&](const ntk::TileLocation&, ntk::ConstMatrixView<double>, ntk::ConstMatrixView<double>) {
              if (++calls == 3) throw ntk::IoError("sink failed");
            },
            o),
        ntk::IoError);
    // 7 x 7 tiles: with one worker the rest are skipped; with two, how many the other worker delivers
    // before it sees the failure depends on the scheduler (a loaded machine ran them all once), so only
    // the error is checked there.
    if (threads == 1) {
      EXPECT_EQ(calls, 3);
    }
  }
}

TEST(AssemblyProperties, ZeroInputRowsGiveTheReferenceValues) {
  // x = 0 makes every variance of that row b^2-driven (0 without bias): atan2(0, 0), 0/0-prone
  // expressions in the closed forms and q1 = 0 in the quadrature must all stay finite and correct.
  const std::int64_t n = 6, d = 3;
  Matrix<double> x = random_inputs<double>(35, n, d);
  for (std::int64_t k = 0; k < d; ++k) x(0, k) = x(3, k) = 0;
  for (double b : {0.0, 0.4}) {
    const std::pair<KernelSpec, ntk_test::RefArchitecture> cases[] = {
        {make_spec(Activation::relu, 2, 1.4, b),
         {2, 1.4, b, 1.4, b, ntk_test::RefActivation::abrelu, 0, 1, 0}},
        {make_spec(Activation::abs, 2, 1.4, b),
         {2, 1.4, b, 1.4, b, ntk_test::RefActivation::abrelu, -1, 1, 0}},
        {make_spec(Activation::erf, 2, 1.4, b), {2, 1.4, b, 1.4, b, ntk_test::RefActivation::erf, 1, 1, 0}},
        {make_spec(Activation::gelu, 2, 1.4, b), {2, 1.4, b, 1.4, b, ntk_test::RefActivation::gelu, 0, 0, 0}},
    };
    for (const auto& [spec, ref] : cases) {
      const Kernels<double> k = assemble<double>(spec, x, nullptr);
      std::vector<double> want_g, want_t;
      ntk_test::reference_kernel(ref, x.data(), n, x.data(), n, d, want_g, want_t);
      Matrix<double> wg(n, n), wt(n, n);
      wg.storage() = want_g;
      wt.storage() = want_t;
      EXPECT_LE(std::max(max_rel_diff(k.nngp, wg), max_rel_diff(k.ntk, wt)), 1e-12) << spec.describe();
    }
    // Quadrature: only finiteness (no closed form here).
    const Kernels<double> k = assemble<double>(make_spec(Activation::tanh, 2, 1.4, b), x, nullptr);
    for (std::size_t i = 0; i < k.nngp.size(); ++i)
      ASSERT_TRUE(std::isfinite(k.nngp.storage()[i]) && std::isfinite(k.ntk.storage()[i])) << "b=" << b;
  }
}

// Reproducer (disabled: the engine fails it). A spec that passes validate() and finite inputs give NaN
// kernels without any error: in float32 the ReLU variance grows like (w_std^2/2)^depth, overflows to
// Inf at depth ~130 for w_std = 2, and q1 q2 - q12^2 = Inf - Inf. SPEC 1: "Inputs with NaN/Inf are
// rejected, never propagated"; a non-finite result should be reported (ntk::Error) rather than returned.
TEST(AssemblyProperties, OverflowIsReportedNotReturnedAsNaN) {
  KernelSpec spec = make_spec(Activation::relu, 200, 2.0, 0.0);
  ASSERT_NO_THROW(spec.validate());
  Matrix<float> x(2, 3);
  const float values[] = {1, 2, 3, 0.5f, -1, 2};
  std::copy(std::begin(values), std::end(values), x.data());
  Kernels<float> k{Matrix<float>(2, 2), Matrix<float>(2, 2)};
  try {
    ntk::assemble_kernel<float>(spec, x.view(), nullptr, {k.nngp.view(), k.ntk.view()});
    FAIL() << "an overflowing kernel was returned";
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("overflows float32 at layer"), std::string::npos) << e.what();
  }
  std::vector<float> diag(2);
  EXPECT_THROW(ntk::assemble_diagonal<float>(spec, x.view(), {std::span<float>(diag), {}}),
               ntk::InvalidArgument);
  // float64 has the range for it.
  Matrix<double> xd(2, 3);
  std::copy(std::begin(values), std::end(values), xd.data());
  Kernels<double> kd{Matrix<double>(2, 2), Matrix<double>(2, 2)};
  ntk::assemble_kernel<double>(spec, xd.view(), nullptr, {kd.nngp.view(), kd.ntk.view()});
  for (double v : kd.ntk.storage()) EXPECT_TRUE(std::isfinite(v));
}

// The InvalidArgument message of f(), or "" when it does not throw one.
std::string invalid_argument(const std::function<void()>& f) {
  try {
    f();
  } catch (const ntk::InvalidArgument& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(AssemblyProperties, RejectsNonFiniteInputsNamingTheEntry) {
  const KernelSpec spec = make_spec(Activation::relu, 2);
  Matrix<double> x1 = random_inputs<double>(27, 10, 4), x2 = random_inputs<double>(28, 8, 4);
  const double sentinel = 7.25;
  Matrix<double> g(10, 8, sentinel), t(10, 8, sentinel);
  auto general = [&] {
    const ntk::ConstMatrixView<double> x2v = x2.view();
    ntk::assemble_kernel<double>(spec, x1.view(), &x2v, {g.view(), t.view()});
  };
  x1(3, 2) = std::numeric_limits<double>::quiet_NaN();
  std::string m = invalid_argument(general);
  EXPECT_TRUE(contains(m, "x1") && contains(m, "NaN") && contains(m, "row 3") && contains(m, "column 2"))
      << m;
  x1(3, 2) = 0.5;
  x2(7, 0) = -std::numeric_limits<double>::infinity();
  m = invalid_argument(general);
  EXPECT_TRUE(contains(m, "x2") && contains(m, "Inf") && contains(m, "row 7") && contains(m, "column 0"))
      << m;
  // Nothing was written.
  for (double v : g.storage()) ASSERT_EQ(v, sentinel);
  for (double v : t.storage()) ASSERT_EQ(v, sentinel);
  // Symmetric, diagonal and streaming paths name their single input "x" (ntkctl maps it to --x1).
  x1(9, 3) = std::numeric_limits<double>::infinity();
  Matrix<double> s(10, 10);
  m = invalid_argument([&] { ntk::assemble_kernel<double>(spec, x1.view(), nullptr, {s.view(), {}}); });
  EXPECT_TRUE(contains(m, "x ") && contains(m, "row 9") && contains(m, "column 3")) << m;
  std::vector<double> dg(10);
  m = invalid_argument([&] { ntk::assemble_diagonal<double>(spec, x1.view(), {dg, {}}); });
  EXPECT_TRUE(contains(m, "row 9") && contains(m, "column 3")) << m;
  m = invalid_argument([&] {
    ntk::assemble_kernel_tiles<double>(
        spec, x1.view(), nullptr, ntk::KernelSelection::ntk,
        [](const ntk::TileLocation&, ntk::ConstMatrixView<double>, ntk::ConstMatrixView<double>) {});
  });
  EXPECT_TRUE(contains(m, "row 9") && contains(m, "column 3")) << m;
  // float32 too.
  Matrix<float> f(5, 3, 1.0f);
  f(4, 1) = std::numeric_limits<float>::quiet_NaN();
  Matrix<float> fk(5, 5);
  m = invalid_argument([&] { ntk::assemble_kernel<float>(spec, f.view(), nullptr, {fk.view(), {}}); });
  EXPECT_TRUE(contains(m, "row 4") && contains(m, "column 1")) << m;
}

TEST(AssemblyProperties, RejectsBadShapesAndRequests) {
  const KernelSpec spec = make_spec(Activation::erf, 1);
  const Matrix<double> x1 = random_inputs<double>(29, 6, 4), x2 = random_inputs<double>(30, 5, 3);
  const Matrix<double> x2ok = random_inputs<double>(31, 5, 4);
  Matrix<double> g(6, 5), t(6, 5);
  const ntk::ConstMatrixView<double> x2v = x2.view(), x2okv = x2ok.view();
  std::string m = invalid_argument([&] {
    ntk::assemble_kernel<double>(spec, x1.view(), &x2v, {g.view(), {}});
  });
  EXPECT_TRUE(contains(m, "feature dimensions differ") && contains(m, "4") && contains(m, "3")) << m;
  m = invalid_argument([&] {
    ntk::assemble_kernel_tiles<double>(
        spec, x1.view(), &x2v, ntk::KernelSelection::both,
        [](const ntk::TileLocation&, ntk::ConstMatrixView<double>, ntk::ConstMatrixView<double>) {});
  });
  EXPECT_TRUE(contains(m, "feature dimensions differ")) << m;
  // Outputs of the wrong shape: rows, columns, a leading dimension below the columns; either kernel.
  Matrix<double> wrong(6, 6);
  m = invalid_argument([&] {
    ntk::assemble_kernel<double>(spec, x1.view(), &x2okv, {wrong.view(), t.view()});
  });
  EXPECT_TRUE(contains(m, "nngp output") && contains(m, "6 x 6") && contains(m, "6 x 5")) << m;
  Matrix<double> wrong_rows(5, 5);
  m = invalid_argument([&] {
    ntk::assemble_kernel<double>(spec, x1.view(), &x2okv, {g.view(), wrong_rows.view()});
  });
  EXPECT_TRUE(contains(m, "ntk output")) << m;
  m = invalid_argument([&] {
    ntk::assemble_kernel<double>(spec, x1.view(), &x2okv, {{g.data(), 6, 5, 4}, {}});
  });
  EXPECT_TRUE(contains(m, "nngp output")) << m;
  Matrix<double> sym_wrong(6, 5);
  m = invalid_argument([&] {
    ntk::assemble_kernel<double>(spec, x1.view(), nullptr, {{}, sym_wrong.view()});
  });
  EXPECT_TRUE(contains(m, "ntk output") && contains(m, "6 x 6")) << m;
  // No output at all.
  m = invalid_argument([&] { ntk::assemble_kernel<double>(spec, x1.view(), &x2okv, {}); });
  EXPECT_TRUE(contains(m, "no kernel output")) << m;
  m = invalid_argument([&] { ntk::assemble_diagonal<double>(spec, x1.view(), {}); });
  EXPECT_TRUE(contains(m, "no kernel output")) << m;
  // A diagonal of the wrong length.
  std::vector<double> short_diag(5);
  m = invalid_argument([&] { ntk::assemble_diagonal<double>(spec, x1.view(), {short_diag, {}}); });
  EXPECT_TRUE(contains(m, "5 entries") && contains(m, "expected 6")) << m;
  // No feature columns.
  const ntk::ConstMatrixView<double> empty_features{x1.data(), 6, 0, 0};
  m = invalid_argument([&] { ntk::assemble_kernel<double>(spec, empty_features, nullptr, {{}, t.view()}); });
  EXPECT_TRUE(contains(m, "no feature columns")) << m;
  m = invalid_argument([&] {
    ntk::assemble_kernel<double>(spec, x1.view(), &empty_features, {g.view(), t.view()});
  });
  EXPECT_TRUE(contains(m, "x2") && contains(m, "no feature columns")) << m;
  std::vector<double> dg(6);
  m = invalid_argument([&] { ntk::assemble_diagonal<double>(spec, empty_features, {dg, {}}); });
  EXPECT_TRUE(contains(m, "no feature columns")) << m;
  // Negative tile sizes.
  AssemblyOptions o;
  o.tile_rows = -1;
  m = invalid_argument([&] { ntk::assemble_kernel<double>(spec, x1.view(), &x2okv, {g.view(), {}}, o); });
  EXPECT_TRUE(contains(m, "tile_rows")) << m;
  // Zero rows is not an error: there is nothing to compute.
  const ntk::ConstMatrixView<double> no_rows{x1.data(), 0, 4, 4};
  EXPECT_NO_THROW(ntk::assemble_kernel<double>(spec, no_rows, &x2okv, {{g.data(), 0, 5, 5}, {}}));
}

TEST(AssemblyProperties, NearDuplicateInputsStayAccurateInFloat64) {
  // x' = x + 1e-7 noise (and x' = x exactly, through the general path): P - q12^2 is then rounding
  // noise in float64 and the ReLU-like angle is perturbed by ~sqrt(eps). Against the reference in long
  // double (64-bit mantissa), the float64 kernel must stay within 1e-6 of max|K|.
  const std::int64_t n = 40, d = 10;
  const Matrix<double> x = random_inputs<double>(32, n, d);
  std::mt19937_64 rng(33);
  std::normal_distribution<double> normal(0, 1);
  KernelSpec leaky = make_spec(Activation::leaky_relu, 3);
  leaky.activation.a = 0.1;
  KernelSpec erf = make_spec(Activation::erf, 3);
  const std::pair<KernelSpec, ntk_test::RefArchitecture> cases[] = {
      {make_spec(Activation::relu, 3), {3, 1.4, 0.3, 1.4, 0.3, ntk_test::RefActivation::abrelu, 0, 1, 0}},
      {make_spec(Activation::relu, 5, 1.0, 0.0),
       {5, 1.0, 0.0, 1.0, 0.0, ntk_test::RefActivation::abrelu, 0, 1, 0}},
      {leaky, {3, 1.4, 0.3, 1.4, 0.3, ntk_test::RefActivation::abrelu, 0.1, 1, 0}},
      {make_spec(Activation::abs, 3), {3, 1.4, 0.3, 1.4, 0.3, ntk_test::RefActivation::abrelu, -1, 1, 0}},
      {erf, {3, 1.4, 0.3, 1.4, 0.3, ntk_test::RefActivation::erf, 1, 1, 0}},
      {make_spec(Activation::gelu, 3), {3, 1.4, 0.3, 1.4, 0.3, ntk_test::RefActivation::gelu, 0, 0, 0}},
  };
  double worst = 0, worst_float32 = 0;
  for (double noise : {1e-7, 0.0}) {
    Matrix<double> y(n, d);
    for (std::size_t i = 0; i < y.size(); ++i) y.storage()[i] = x.storage()[i] * (1 + noise * normal(rng));
    for (const auto& [spec, ref] : cases) {
      const Kernels<double> k = assemble<double>(spec, x, &y);
      std::vector<long double> want_g, want_t;
      ntk_test::reference_kernel(ref, x.data(), n, y.data(), n, d, want_g, want_t);
      Matrix<double> wg(n, n), wt(n, n);
      for (std::size_t i = 0; i < want_g.size(); ++i) {
        wg.storage()[i] = static_cast<double>(want_g[i]);
        wt.storage()[i] = static_cast<double>(want_t[i]);
      }
      const double err = std::max(max_rel_diff(k.nngp, wg), max_rel_diff(k.ntk, wt));
      EXPECT_LE(err, 1e-6) << spec.describe() << " noise " << noise;
      worst = std::max(worst, err);
      std::printf("[near duplicates] %-28s noise %.0e: float64 error / max|K| %.2e\n",
                  spec.describe().substr(0, 28).c_str(), noise, err);
      // float32 (informational: SPEC expects ~1e-4 per layer for the ReLU NTK here).
      Matrix<float> xf(n, d), yf(n, d);
      for (std::size_t i = 0; i < x.size(); ++i) xf.storage()[i] = static_cast<float>(x.storage()[i]);
      for (std::size_t i = 0; i < y.size(); ++i) yf.storage()[i] = static_cast<float>(y.storage()[i]);
      const Kernels<float> kf = assemble<float>(spec, xf, &yf);
      worst_float32 = std::max({worst_float32, max_rel_diff(kf.nngp, wg), max_rel_diff(kf.ntk, wt)});
    }
  }
  // The duplicated pairs also appear inside one symmetric K([X; X']).
  Matrix<double> stacked(2 * n, d);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < d; ++k) {
      stacked(i, k) = x(i, k);
      stacked(n + i, k) = x(i, k) * (1 + 1e-7 * normal(rng));
    }
  const auto& [spec, ref] = cases[0];
  const Kernels<double> k = assemble<double>(spec, stacked, nullptr);
  std::vector<long double> want_g, want_t;
  ntk_test::reference_kernel(ref, stacked.data(), 2 * n, stacked.data(), 2 * n, d, want_g, want_t);
  Matrix<double> wg(2 * n, 2 * n), wt(2 * n, 2 * n);
  for (std::size_t i = 0; i < want_g.size(); ++i) {
    wg.storage()[i] = static_cast<double>(want_g[i]);
    wt.storage()[i] = static_cast<double>(want_t[i]);
  }
  const double serr = std::max(max_rel_diff(k.nngp, wg), max_rel_diff(k.ntk, wt));
  EXPECT_LE(serr, 1e-6);
  std::printf("[near duplicates] symmetric K([X; X']) relu: %.2e; float32 (info) worst %.2e\n", serr,
              worst_float32);
  RecordProperty("worst_float64", std::to_string(std::max(worst, serr)));
}

}  // namespace

namespace {

TEST(AssemblyProperties, ShouldStopEndsTheAssemblyBetweenTilesWithCancelled) {
  const Matrix<double> x = random_inputs<double>(17, 300, 10);
  const KernelSpec spec = closed_form_specs().front();
  for (int threads : {1, 2}) {
    AssemblyOptions o;
    o.tile_rows = o.tile_cols = 32;  // 55 tiles of the upper triangle
    o.threads = threads;
    std::atomic<int> asked{0};
    o.should_stop = [&] { return ++asked > 3; };
    Matrix<double> k(300, 300);
    EXPECT_THROW(ntk::assemble_kernel<double>(spec, x.view(), nullptr, {{}, k.view()}, o), ntk::Cancelled);
    EXPECT_LE(asked.load(), 4 + threads) << "tiles kept starting after the stop";
    // Never asked to stop: the result is the usual one.
    o.should_stop = [] { return false; };
    Matrix<double> full(300, 300), plain(300, 300);
    ntk::assemble_kernel<double>(spec, x.view(), nullptr, {{}, full.view()}, o);
    o.should_stop = nullptr;
    ntk::assemble_kernel<double>(spec, x.view(), nullptr, {{}, plain.view()}, o);
    EXPECT_TRUE(bitwise_equal(full, plain));
  }
}

}  // namespace
