#include "ntk/uncertainty.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "ntk/classifier.hpp"
#include "ntk/detail/transpose.hpp"
#include "ntk/errors.hpp"
#include "ntk/logging.hpp"
#include "ntk/newton.hpp"
#include "ntk/sample_math.hpp"

namespace ntk {
namespace {

// A well-mixed 64-bit seed for stream (a, b): reproducible whatever the batching of test points.
std::uint64_t stream_seed(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ a) ^ b);
}

double entropy(const double* p, int c) {
  double h = 0;
  for (int k = 0; k < c; ++k)
    if (p[k] > 0) h -= p[k] * std::log(p[k]);
  return h;
}

// Lower factor L with L L^T = a for a symmetric positive semi-definite C x C matrix: pivots that
// rounding leaves at or below zero (a rank-deficient covariance, e.g. the class-centred exact one)
// give zero columns instead of a failure.
void psd_factor(const double* a, int n, double* l) {
  std::fill(l, l + n * n, 0.0);
  double scale = 0;
  for (int i = 0; i < n; ++i) scale = std::max(scale, std::abs(a[i * n + i]));
  const double tol = 1e-13 * scale;
  for (int j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int k = 0; k < j; ++k) d -= l[j * n + k] * l[j * n + k];
    if (d <= tol) continue;
    const double ljj = std::sqrt(d);
    l[j * n + j] = ljj;
    for (int i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (int k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / ljj;
    }
  }
}

Matrix<double> nngp_diagonal(Backend& be, const Model& m, ConstMatrixView<double> x) {
  Matrix<double> out(x.rows, 1);
  if (m.settings.dtype == ComputeType::float32) {
    const Matrix<float> xf = convert_matrix<float>(x);
    std::vector<float> d(static_cast<std::size_t>(x.rows));
    be.kernel_diagonal(m.spec, xf.view(), {std::span<float>(d), {}}, {});
    for (std::int64_t i = 0; i < x.rows; ++i) out(i, 0) = d[static_cast<std::size_t>(i)];
  } else {
    be.kernel_diagonal(m.spec, x, {std::span<double>(out.data(), out.size()), {}}, {});
  }
  return out;
}

// d[i] = sum_n a(n, i) b(n, i) for every column i of two N x t matrices, sweeping their rows in memory
// order: one column at a time strode t doubles per element, a cache miss each, and took most of a block's
// time (5 C^2 / 2 column dots per test point).
std::vector<double> column_dots(const Matrix<double>& a, const Matrix<double>& b) {
  const std::int64_t t = a.cols();
  std::vector<double> d(static_cast<std::size_t>(t), 0.0);
  for (std::int64_t n = 0; n < a.rows(); ++n) {
    const double* ra = a.row_data(n);
    const double* rb = b.row_data(n);
    for (std::int64_t i = 0; i < t; ++i) d[static_cast<std::size_t>(i)] += ra[i] * rb[i];
  }
  return d;
}

}  // namespace

// What a mode computes once per model and reuses for every block of test points (and, through a caller's
// context, for every later call with the same mode, seed and sample count).
struct UncertaintyContext {
  bool ready = false;
  UncertaintyMode mode = UncertaintyMode::none;
  std::uint64_t seed = 0;
  int samples = 0;
  // Gaussian modes
  Matrix<double> k_xx;  // NNGP of the training inputs
  LaplaceFactors factors;
  Matrix<double> q;  // linearized: sum_c E_c K E_c
  double k = 0;
  // The N x N matrices every block multiplies with, resident where the backend computes (on CUDA
  // uploaded once per model, not once per product): views of k_xx, factors.e and q above.
  std::unique_ptr<ResidentMatrix> k_xx_resident, q_resident;
  std::vector<std::unique_ptr<ResidentMatrix>> e_resident;
  // The factor every block solves with, resident likewise: linearized M (factors.m), exact the model's
  // Theta factor (a view of the model's, which outlives every call that uses this context).
  std::unique_ptr<ResidentFactor> solve_factor;
  // Monte Carlo: the NNGP's lower factor, and per sample z (f0(X) = L z) and the predictor coefficients
  Matrix<double> chol;
  std::vector<Matrix<double>> zs, coef;
};

namespace {

// Q = sum_c E_c K E_c, once per model. With K = L L^T (when K_XX factors) it is sum_c W_c W_c^T,
// W_c = E_c L: a triangular product and a symmetric rank-N update, 2 N^3 flops per class instead of the
// 4 N^3 of two general products (the per-model work at N = 2000, C = 10 on 2 threads: 4.5 s -> 3.2 s).
// K_XX is singular for duplicate training inputs; then the general products.
Matrix<double> sum_e_k_e(Backend& be, const Matrix<double>& k, const std::vector<Matrix<double>>& e) {
  const std::int64_t n = k.rows();
  Matrix<double> q(n, n, 0.0);
  Matrix<double> l = k;
  try {
    be.cholesky(l.view(), "the NNGP of the training inputs");
  } catch (const NumericalError&) {
    l = Matrix<double>();
  }
  Matrix<double> w(n, n);
  for (const Matrix<double>& e_c : e) {
    if (l.rows() == n) {
      std::copy(e_c.data(), e_c.data() + e_c.size(), w.data());
      be.multiply_by_lower(w.view(), l.view());
      be.syrk_lower(1.0, w.view(), 1.0, q.view());
    } else {
      be.gemm(false, false, 1.0, k.view(), e_c.view(), 0.0, w.view());
      be.gemm(false, false, 1.0, e_c.view(), w.view(), 1.0, q.view());
    }
  }
  if (l.rows() == n) detail::mirror_lower_to_upper(q.data(), n, n);
  return q;
}

// The context's N x N matrices (K_XX; for lambda > 0 also every E_c and Q) and the factor its blocks
// solve with (M, or for lambda = 0 the model's Theta factor) resident where the backend computes, all or
// none: when the backend has no room for all of them, none is kept there and all are host views
// multiplied through gemm() and solved through cholesky_solve() (the Backend defaults: per-call uploads
// on a GPU, slower, but the request succeeds, and the uploads find the memory the others would have held).
void make_residents(Backend& be, const Model& m, UncertaintyContext& ctx) {
  std::vector<std::pair<const Matrix<double>*, std::unique_ptr<ResidentMatrix>*>> wanted;
  ctx.e_resident.resize(ctx.factors.e.size());
  for (std::size_t c = 0; c < ctx.factors.e.size(); ++c)
    wanted.emplace_back(&ctx.factors.e[c], &ctx.e_resident[c]);
  if (!ctx.factors.e.empty()) wanted.emplace_back(&ctx.q, &ctx.q_resident);
  wanted.emplace_back(&ctx.k_xx, &ctx.k_xx_resident);
  const Matrix<double>& factor = m.settings.lambda > 0 ? ctx.factors.m : m.theta_factor;
  try {
    for (auto& [matrix, slot] : wanted)
      *slot = be.make_resident(matrix->view(), "uncertainty context matrix");
    ctx.solve_factor = be.make_resident_factor(factor.view(), "uncertainty context factor");
  } catch (const ResourceExhausted& e) {
    for (auto& [matrix, slot] : wanted) slot->reset();
    ctx.solve_factor.reset();
    log_warning(std::string("uncertainty: the context's ") + std::to_string(wanted.size() + 1) +
                " N x N matrices stay on the host (multiplied through gemm): " + e.what());
    for (auto& [matrix, slot] : wanted)
      *slot = be.Backend::make_resident(matrix->view(), "uncertainty context matrix");
    ctx.solve_factor = be.Backend::make_resident_factor(factor.view(), "uncertainty context factor");
  }
}

// Fills rows [r0, r0 + t) of the result's covariance (Gaussian modes).
//
// Linearized (lambda > 0): with u = k Theta(X, x*), Z_a = E_a u, Y_a = (sum_c E_c)^-1 Z_a and the columns
// v_ab = delta_ab Z_a - E_b Y_a of G^T, the covariance is
//   cov_ab = delta_ab k(x*, x*) - v_ab . k_X* - v_ba . k_X* + sum_q v_aq^T K v_bq.
// Expanded, the quadratic term is delta_ab Z_a^T K Z_a - R_a . Y_b - Y_a . R_b + Y_a^T Q Y_b with
// R_a = E_a K Z_a and Q = sum_q E_q K E_q (formed once per model), and v_ab . k_X* = delta_ab Z_a . k_X*
// - Y_a . E_b k_X*: 6 C products of N x N by N x t per block instead of 2 C^2 (C = 10: 3.7x fewer flops).
void gaussian_covariance(Backend& be, const Model& m, const UncertaintyContext& sh,
                         ConstMatrixView<double> xb, std::int64_t r0, UncertaintyResult& out) {
  const std::int64_t t = xb.rows, n = m.x_train.rows(), c = m.num_classes;
  const ConstMatrixView<double> train = m.x_train.view();
  const Matrix<double> theta_xs = model_kernel(be, m, train, &xb, KernelSelection::ntk);  // N x t
  const Matrix<double> k_xs = model_kernel(be, m, train, &xb, KernelSelection::nngp);     // N x t
  const Matrix<double> k_ss = nngp_diagonal(be, m, xb);
  // The mean predictor from the same kernel block: f(x*) = Theta*X coefficients.
  be.gemm(true, false, 1.0, theta_xs.view(), m.coefficients.view(), 0.0,
          out.mean_logits.view().block(r0, 0, t, c));
  if (m.settings.lambda == 0) {
    Matrix<double> v = theta_xs;  // Theta^-1 Theta_X*
    sh.solve_factor->solve(v.view());
    Matrix<double> kv(n, t);
    sh.k_xx_resident->multiply(1.0, v.view(), 0.0, kv.view());
    const std::vector<double> vkv = column_dots(v, kv), vk = column_dots(v, k_xs);
    for (std::int64_t i = 0; i < t; ++i) {
      const std::size_t at = static_cast<std::size_t>(i);
      const double sigma = std::max(0.0, k_ss(i, 0) + vkv[at] - 2 * vk[at]);
      double* cov = out.covariance.row_data(r0 + i);
      for (std::int64_t a = 0; a < c; ++a)
        for (std::int64_t b = 0; b < c; ++b)
          cov[a * c + b] = sigma * ((a == b ? 1.0 : 0.0) - 1.0 / double(c));
    }
    return;
  }
  Matrix<double> u = theta_xs;
  for (auto& e : u.storage()) e *= sh.k;
  const std::size_t cs = static_cast<std::size_t>(c);
  std::vector<Matrix<double>> z(cs), y(cs), r(cs), qy(cs), ek(cs);
  // Y_a = M^-T M^-1 Z_a for every class in one pair of solves on the N x C t block [Z_0 ... Z_C-1].
  Matrix<double> stacked(n, c * t);
  for (std::size_t a = 0; a < cs; ++a) {
    z[a] = Matrix<double>(n, t);
    sh.e_resident[a]->multiply(1.0, u.view(), 0.0, z[a].view());
    for (std::int64_t i = 0; i < n; ++i)
      std::copy(z[a].row_data(i), z[a].row_data(i) + t, stacked.row_data(i) + std::int64_t(a) * t);
  }
  sh.solve_factor->solve(stacked.view());  // M^-T M^-1
  Matrix<double> kz(n, t);
  for (std::size_t a = 0; a < cs; ++a) {
    ResidentMatrix& e_a = *sh.e_resident[a];
    y[a] = Matrix<double>(n, t);
    for (std::int64_t i = 0; i < n; ++i) {
      const double* from = stacked.row_data(i) + std::int64_t(a) * t;
      std::copy(from, from + t, y[a].row_data(i));
    }
    sh.k_xx_resident->multiply(1.0, z[a].view(), 0.0, kz.view());
    r[a] = Matrix<double>(n, t);
    e_a.multiply(1.0, kz.view(), 0.0, r[a].view());
    qy[a] = Matrix<double>(n, t);
    sh.q_resident->multiply(1.0, y[a].view(), 0.0, qy[a].view());
    ek[a] = Matrix<double>(n, t);
    e_a.multiply(1.0, k_xs.view(), 0.0, ek[a].view());
    // The diagonal's Z_a terms now, while K Z_a is at hand: Z_a^T K Z_a - 2 Z_a . k_X*.
    const std::vector<double> zkz = column_dots(z[a], kz), zk = column_dots(z[a], k_xs);
    for (std::int64_t i = 0; i < t; ++i) {
      const std::size_t at = static_cast<std::size_t>(i);
      out.covariance(r0 + i, std::int64_t(a * cs + a)) = zkz[at] - 2 * zk[at];
    }
  }
  // Per pair the quadratic and linear terms, -R_a.Y_b - Y_a.R_b + Y_a.Q Y_b + Y_a.E_b k_X* + Y_b.E_a k_X*,
  // regrouped as Y_b.P_a + Y_a.S_b with P_a = E_a k_X* - R_a and S_b = Q Y_b + E_b k_X* - R_b (formed
  // once per class, in place): 2 column dot products per pair instead of 5. On a GPU host these dot
  // products are the CPU's share of a block.
  for (std::size_t a = 0; a < cs; ++a) {
    double* s_a = qy[a].data();
    double* p_a = r[a].data();
    const double* e_a = ek[a].data();
    for (std::size_t q = 0; q < qy[a].size(); ++q) {
      s_a[q] = s_a[q] + e_a[q] - p_a[q];
      p_a[q] = e_a[q] - p_a[q];
    }
  }
  const std::vector<Matrix<double>>&p = r, &sq = qy;
  for (std::size_t a = 0; a < cs; ++a)
    for (std::size_t b = a; b < cs; ++b) {
      const std::vector<double> yp = column_dots(y[b], p[a]), ys = column_dots(y[a], sq[b]);
      for (std::int64_t i = 0; i < t; ++i) {
        const std::size_t at = static_cast<std::size_t>(i);
        double* cov = out.covariance.row_data(r0 + i);
        const double diagonal_terms = a == b ? k_ss(i, 0) + cov[a * cs + a] : 0.0;
        cov[a * cs + b] = cov[b * cs + a] = diagonal_terms + yp[at] + ys[at];
      }
    }
}

void finish_gaussian(const UncertaintyOptions& o, std::int64_t c, UncertaintyResult& out) {
  const std::int64_t t = out.mean_logits.rows();
  for (std::int64_t i = 0; i < t; ++i) {
    const double* cov = out.covariance.row_data(i);
    for (std::int64_t a = 0; a < c; ++a) out.logit_var(i, a) = std::max(0.0, cov[a * c + a]);
    double expected = 0;
    gaussian_softmax_statistics(out.mean_logits.row_data(i), cov, static_cast<int>(c), o.probability_samples,
                                stream_seed(o.seed, 1, static_cast<std::uint64_t>(o.first_row + i)),
                                out.mean_probs.row_data(i), expected);
    out.expected_entropy(i, 0) = expected;
  }
}

// Monte Carlo's per-model work: the NNGP factor, and per sample its draws and trained coefficients.
void prepare_monte_carlo(Backend& be, const Model& m, const UncertaintyOptions& o, UncertaintyContext& ctx) {
  const std::int64_t n = m.x_train.rows(), c = m.num_classes;
  const ConstMatrixView<double> train = m.x_train.view();
  Matrix<double>& chol = ctx.chol;
  chol = model_kernel(be, m, train, nullptr, KernelSelection::nngp);
  {
    double trace = 0;
    for (std::int64_t i = 0; i < n; ++i) trace += chol(i, i);
    // A little jitter keeps the NNGP factorable for duplicate points; it changes f0's law by 1e-10.
    for (std::int64_t i = 0; i < n; ++i) chol(i, i) += 1e-10 * trace / double(n);
    be.cholesky(chol.view(), "the NNGP of the training inputs");
    // The factor is the lower triangle; clear the upper one so f0 = L z is a plain GEMM.
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = i + 1; j < n; ++j) chol(i, j) = 0;
  }
  const Matrix<double> theta = model_kernel(be, m, train, nullptr, KernelSelection::ntk);
  // One resident Theta for every sample's solve (its float32 copy, for Newton-CG, is then made once).
  const std::unique_ptr<ResidentMatrix> resident = be.make_resident(theta.view(), "training kernel Theta");
  const double k = m.settings.lambda > 0 ? 1.0 / (double(n) * m.settings.lambda) : 0.0;
  // Per sample: z (f0(X) = L z) and the predictor coefficients c_s (f(x*) = f0(x*) + Theta*X c_s).
  std::vector<Matrix<double>>&zs = ctx.zs, &coef = ctx.coef;
  zs.clear();
  coef.clear();
  FixedPointSolution mean;
  if (k > 0) {
    mean.h = m.train_logits;
    mean.a = m.coefficients;
    for (auto& e : mean.a.storage()) e /= k;
  }
  for (int s = 0; s < o.samples; ++s) {
    Matrix<double> z(n, c);  // N C draws per sample: drawn by the backend (cuRAND on the GPU)
    be.normal_draws(stream_seed(o.seed, 2, static_cast<std::uint64_t>(s)), z.view());
    Matrix<double> f0(n, c);
    be.gemm(false, false, 1.0, chol.view(), z.view(), 0.0, f0.view());
    Matrix<double> cs(n, c);
    if (k > 0) {
      NewtonOptions opt;
      opt.solver =
          m.diagnostics.solver_used == SolverKind::matrix_free ? SolverKind::matrix_free : SolverKind::direct;
      opt.tolerance = m.settings.tolerance;
      opt.max_steps = m.settings.max_newton_steps;
      opt.max_cg_iterations = m.settings.max_cg_iterations;
      FixedPointProblem pr{theta.view(), k, m.targets.view(), f0.view()};
      pr.resident = resident.get();
      const FixedPointSolution sol = solve_fixed_point(be, pr, opt, &mean);
      if (!sol.diagnostics.converged)
        throw NumericalError("Monte Carlo sample " + std::to_string(s) + ": " + sol.diagnostics.message);
      cs = sol.a;
      for (auto& e : cs.storage()) e *= k;
    } else {
      // Closed form per sample: Theta^-1 (f_inf - f0), f_inf = log Y + c 1^T, c_i = mean_c (f0 - log Y).
      for (std::int64_t i = 0; i < n; ++i) {
        double shift = 0;
        for (std::int64_t a = 0; a < c; ++a) shift += (f0(i, a) - std::log(m.targets(i, a))) / double(c);
        for (std::int64_t a = 0; a < c; ++a) cs(i, a) = std::log(m.targets(i, a)) + shift - f0(i, a);
      }
      be.cholesky_solve(m.theta_factor.view(), cs.view());
    }
    zs.push_back(std::move(z));
    coef.push_back(std::move(cs));
  }
}

void monte_carlo(Backend& be, const Model& m, ConstMatrixView<double> x, const UncertaintyOptions& o,
                 const UncertaintyContext& ctx, UncertaintyResult& out) {
  const std::int64_t n = m.x_train.rows(), c = m.num_classes, t = x.rows;
  const ConstMatrixView<double> train = m.x_train.view();
  const double k = m.settings.lambda > 0 ? 1.0 / (double(n) * m.settings.lambda) : 0.0;
  const Matrix<double>& chol = ctx.chol;
  const std::vector<Matrix<double>>&zs = ctx.zs, &coef = ctx.coef;
  const std::int64_t tile =
      o.tile_rows > 0 ? o.tile_rows : std::max<std::int64_t>(1, (std::int64_t(4) << 20) / n);
  Matrix<double> sum_sq(t, c, 0.0);
  std::vector<double> f(static_cast<std::size_t>(c)), p(static_cast<std::size_t>(c));
  for (std::int64_t r0 = 0; r0 < t; r0 += tile) {
    const std::int64_t tb = std::min(tile, t - r0);
    const ConstMatrixView<double> xb = x.block(r0, 0, tb, x.cols);
    const Matrix<double> theta_sx = model_kernel(be, m, xb, &train, KernelSelection::ntk);  // tb x N
    Matrix<double> a = model_kernel(be, m, train, &xb, KernelSelection::nngp);              // N x tb
    be.triangular_solve(chol.view(), a.view(), false);                                      // L^-1 K_X*
    const Matrix<double> k_ss = nngp_diagonal(be, m, xb);
    for (int s = 0; s < o.samples; ++s) {
      Matrix<double> logits(tb, c);
      be.gemm(false, false, 1.0, theta_sx.view(), coef[s].view(), 0.0, logits.view());
      Matrix<double> cond_mean(tb, c);
      be.gemm(true, false, 1.0, a.view(), zs[s].view(), 0.0, cond_mean.view());
      for (std::int64_t i = 0; i < tb; ++i) {
        double var = k_ss(i, 0);
        for (std::int64_t q = 0; q < n; ++q) var -= a(q, i) * a(q, i);
        const double sd = std::sqrt(std::max(var, 0.0));
        std::mt19937_64 rng(stream_seed(o.seed, 3 + static_cast<std::uint64_t>(s),
                                        static_cast<std::uint64_t>(o.first_row + r0 + i)));
        std::normal_distribution<double> normal;
        double centre = 0;
        for (std::int64_t q = 0; q < c; ++q) {
          f[q] = logits(i, q) + cond_mean(i, q) + sd * normal(rng);
          centre += f[q] / double(c);
        }
        // lambda = 0 trains only the class-centred part of f0: report logits class-centred, as the
        // exact mode does (softmax is unchanged by the untrained class mean).
        if (k == 0)
          for (auto& e : f) e -= centre;
        for (std::int64_t q = 0; q < c; ++q) {
          out.mean_logits(r0 + i, q) += f[q] / o.samples;
          sum_sq(r0 + i, q) += f[q] * f[q];
        }
        sample::softmax(f.data(), static_cast<int>(c), p.data());
        for (std::int64_t q = 0; q < c; ++q) out.mean_probs(r0 + i, q) += p[q] / o.samples;
        out.expected_entropy(r0 + i, 0) += entropy(p.data(), static_cast<int>(c)) / o.samples;
      }
    }
  }
  const double denom = o.samples > 1 ? double(o.samples - 1) : 1.0;
  for (std::int64_t i = 0; i < t; ++i)
    for (std::int64_t q = 0; q < c; ++q) {
      const double mu = out.mean_logits(i, q);
      out.logit_var(i, q) = std::max(0.0, (sum_sq(i, q) - o.samples * mu * mu) / denom);
      out.covariance(i, q * c + q) = out.logit_var(i, q);
    }
}

}  // namespace

UncertaintyMode parse_uncertainty_mode(std::string_view name) {
  if (name == "none") return UncertaintyMode::none;
  if (name == "exact") return UncertaintyMode::exact;
  if (name == "linearized") return UncertaintyMode::linearized;
  if (name == "mc" || name == "monte_carlo") return UncertaintyMode::monte_carlo;
  throw InvalidArgument("unknown uncertainty mode '" + std::string(name) +
                        "' (known: none, exact, linearized, mc)");
}

const char* uncertainty_mode_name(UncertaintyMode mode) {
  switch (mode) {
    case UncertaintyMode::none:
      return "none";
    case UncertaintyMode::exact:
      return "exact";
    case UncertaintyMode::linearized:
      return "linearized";
    case UncertaintyMode::monte_carlo:
      return "mc";
  }
  return "?";
}

void gaussian_softmax_statistics(const double* mean, const double* cov, int classes, int draws,
                                 std::uint64_t seed, double* mean_probs, double& expected_entropy) {
  std::vector<double> l(static_cast<std::size_t>(classes * classes)), z(static_cast<std::size_t>(classes)),
      f(static_cast<std::size_t>(classes)), p(static_cast<std::size_t>(classes));
  psd_factor(cov, classes, l.data());
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::fill(mean_probs, mean_probs + classes, 0.0);
  expected_entropy = 0;
  for (int d = 0; d < draws; ++d) {
    for (auto& e : z) e = normal(rng);
    for (int a = 0; a < classes; ++a) {
      f[a] = mean[a];
      for (int b = 0; b <= a; ++b) f[a] += l[a * classes + b] * z[b];
    }
    sample::softmax(f.data(), classes, p.data());
    for (int a = 0; a < classes; ++a) mean_probs[a] += p[a] / draws;
    expected_entropy += entropy(p.data(), classes) / draws;
  }
}

namespace {

// The per-model work of o.mode into ctx, unless ctx already holds it for this mode (and, for Monte Carlo,
// this seed and sample count).
void prepare(Backend& be, const Model& m, const UncertaintyOptions& o, UncertaintyContext& ctx) {
  const bool mc = o.mode == UncertaintyMode::monte_carlo;
  if (ctx.ready && ctx.mode == o.mode && (!mc || (ctx.seed == o.seed && ctx.samples == o.samples))) return;
  ctx = UncertaintyContext{};
  if (mc) {
    prepare_monte_carlo(be, m, o, ctx);
  } else {
    const ConstMatrixView<double> train = m.x_train.view();
    const std::int64_t n = m.x_train.rows(), c = m.num_classes;
    ctx.k_xx = model_kernel(be, m, train, nullptr, KernelSelection::nngp);
    if (m.settings.lambda > 0) {
      ctx.k = 1.0 / (double(n) * m.settings.lambda);
      Matrix<double> p(n, c);
      for (std::int64_t i = 0; i < n; ++i)
        sample::softmax(m.train_logits.row_data(i), static_cast<int>(c), p.row_data(i));
      // Theta only while the factors are formed.
      ctx.factors =
          laplace_factors(be, model_kernel(be, m, train, nullptr, KernelSelection::ntk).view(), ctx.k, p);
      ctx.q = sum_e_k_e(be, ctx.k_xx, ctx.factors.e);
    }
    make_residents(be, m, ctx);
  }
  ctx.mode = o.mode;
  ctx.seed = o.seed;
  ctx.samples = o.samples;
  ctx.ready = true;
}

void check_mode(const Model& m, const UncertaintyOptions& o) {
  if (o.samples < 1 || o.probability_samples < 1) throw InvalidArgument("sample counts must be >= 1");
  const bool regularized = m.settings.lambda > 0;
  if (o.mode == UncertaintyMode::exact && regularized)
    throw InvalidArgument("uncertainty 'exact' is the lambda = 0 Gaussian; this model has lambda = " +
                          std::to_string(m.settings.lambda) + " (use linearized or mc)");
  if (o.mode == UncertaintyMode::linearized && !regularized)
    throw InvalidArgument("uncertainty 'linearized' needs lambda > 0; for lambda = 0 use exact");
  if (o.mode != UncertaintyMode::none && m.f0_train.size() > 0)
    throw InvalidArgument(
        "this model was fitted with a given f0; uncertainty over initialization needs the "
        "deterministic fit (f0 = 0)");
  if (!regularized && m.theta_factor.size() == 0) throw InvalidArgument("the model has no kernel factor");
}

}  // namespace

std::shared_ptr<UncertaintyContext> make_uncertainty_context() {
  return std::make_shared<UncertaintyContext>();
}

void prepare_uncertainty(Backend& be, const Model& m, const UncertaintyOptions& o, UncertaintyContext& ctx) {
  check_mode(m, o);
  if (o.mode != UncertaintyMode::none) prepare(be, m, o, ctx);
}

UncertaintyResult predict_uncertainty(Backend& be, const Model& m, ConstMatrixView<double> x,
                                      const UncertaintyOptions& o, UncertaintyContext* context) {
  check_mode(m, o);
  const bool regularized = m.settings.lambda > 0;
  const std::int64_t t = x.rows, c = m.num_classes;
  UncertaintyResult out;
  out.logit_var = Matrix<double>(t, c, 0.0);
  out.covariance = Matrix<double>(t, c * c, 0.0);
  out.predictive_entropy = Matrix<double>(t, 1, 0.0);
  out.expected_entropy = Matrix<double>(t, 1, 0.0);
  out.mutual_info = Matrix<double>(t, 1, 0.0);
  if (o.mode == UncertaintyMode::none) {
    const Prediction mean = predict(be, m, x);
    out.mean_logits = mean.logits;
    out.mean_probs = mean.probs;
    out.classes = mean.classes;
    for (std::int64_t i = 0; i < t; ++i) {
      out.predictive_entropy(i, 0) = entropy(out.mean_probs.row_data(i), static_cast<int>(c));
      out.expected_entropy(i, 0) = out.predictive_entropy(i, 0);
    }
    return out;
  }
  // The other modes form Theta(X, x*) themselves; the mean comes from it (no second kernel pass).
  if (x.cols != m.x_train.cols())
    throw InvalidArgument("test inputs have " + std::to_string(x.cols) +
                          " features, the model was fitted on " + std::to_string(m.x_train.cols()));
  check_kernel_input(x, "x");
  out.mean_logits = Matrix<double>(t, c, 0.0);
  out.mean_probs = Matrix<double>(t, c, 0.0);
  out.classes.resize(static_cast<std::size_t>(t));
  UncertaintyContext local;
  UncertaintyContext& ctx = context ? *context : local;
  prepare(be, m, o, ctx);
  if (o.mode == UncertaintyMode::monte_carlo) {
    monte_carlo(be, m, x, o, ctx, out);
  } else {
    const std::int64_t n = m.x_train.rows();
    // Test points per batch: the linearized mode holds 6 C + 4 blocks of N x batch.
    const std::int64_t per = regularized ? (6 * c + 4) * n : 4 * n;
    const std::int64_t tile =
        o.tile_rows > 0 ? o.tile_rows : std::max<std::int64_t>(1, (std::int64_t(32) << 20) / per);
    for (std::int64_t r0 = 0; r0 < t; r0 += tile)
      gaussian_covariance(be, m, ctx, x.block(r0, 0, std::min(tile, t - r0), x.cols), r0, out);
    finish_gaussian(o, c, out);
  }
  for (std::int64_t i = 0; i < t; ++i) {
    out.predictive_entropy(i, 0) = entropy(out.mean_probs.row_data(i), static_cast<int>(c));
    out.mutual_info(i, 0) = std::max(0.0, out.predictive_entropy(i, 0) - out.expected_entropy(i, 0));
    out.classes[static_cast<std::size_t>(i)] =
        std::max_element(out.mean_probs.row_data(i), out.mean_probs.row_data(i) + c) -
        out.mean_probs.row_data(i);
  }
  return out;
}

}  // namespace ntk
