#include "ntk/kernel_assembly.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <sstream>
#include <vector>

#include "ntk/blas.hpp"
#include "ntk/detail/transpose.hpp"
#include "ntk/errors.hpp"
#include "ntk/parallel.hpp"
#include "tile_recursion.hpp"

namespace ntk {
namespace {

constexpr std::int64_t kDefaultTile = 256;

template <class T>
std::vector<T> scaled_squared_norms(ConstMatrixView<T> x) {
  std::vector<T> sq(static_cast<std::size_t>(x.rows));
  for (std::int64_t i = 0; i < x.rows; ++i) {
    const T* r = x.row(i);
    T acc = T(0);
    for (std::int64_t k = 0; k < x.cols; ++k) acc += r[k] * r[k];
    sq[static_cast<std::size_t>(i)] = acc / static_cast<T>(x.cols);
  }
  return sq;
}

template <ActFamily F, class T>
void diagonal_rows(const RecursionParams<T>& p, const std::vector<T>& sq, T* vars, T* nngp, T* ntk) {
  for (std::size_t i = 0; i < sq.size(); ++i) {
    T g, t;
    diagonal_entry<F>(p, sq[i], vars + i * static_cast<std::size_t>(p.depth), 1, g, t);
    if (nngp) nngp[i] = g;
    if (ntk) ntk[i] = t;
  }
}

// Per-point layer variances (point-major, n x depth) and the diagonal itself (into nngp/ntk when
// given). Throws InvalidArgument when a variance or K(x, x) overflows: the off-diagonal entries are
// bounded by the diagonal ones (both kernels are positive semi-definite), so a finite diagonal means a
// finite kernel, and a deep or wide-weighted network must not silently return NaN.
template <class T>
void diagonal_recursion(const RecursionParams<T>& p, const std::vector<T>& sq, std::vector<T>& vars, T* nngp,
                        T* ntk, const char* name) {
  vars.assign(sq.size() * static_cast<std::size_t>(p.depth), T(0));
  std::vector<T> g(sq.size()), t(sq.size());
  switch (p.family) {
    case ActFamily::abrelu:
      diagonal_rows<ActFamily::abrelu>(p, sq, vars.data(), g.data(), t.data());
      break;
    case ActFamily::erf:
      diagonal_rows<ActFamily::erf>(p, sq, vars.data(), g.data(), t.data());
      break;
    case ActFamily::gelu:
      diagonal_rows<ActFamily::gelu>(p, sq, vars.data(), g.data(), t.data());
      break;
    case ActFamily::quadrature:
      diagonal_rows<ActFamily::quadrature>(p, sq, vars.data(), g.data(), t.data());
      break;
  }
  const std::size_t depth = static_cast<std::size_t>(p.depth);
  for (std::size_t i = 0; i < sq.size(); ++i) {
    std::size_t bad_layer = depth + 1;
    for (std::size_t l = 0; l < depth && bad_layer > depth; ++l)
      if (!std::isfinite(vars[i * depth + l])) bad_layer = l + 1;
    if (bad_layer > depth && (!std::isfinite(g[i]) || !std::isfinite(t[i])))
      bad_layer = depth + 1;
    else if (bad_layer > depth)
      continue;
    std::ostringstream os;
    os << "the kernel overflows " << (sizeof(T) == 4 ? "float32" : "float64") << " at layer " << bad_layer
       << " for row " << i << " of " << name
       << " (the variance is no longer finite): use float64, a smaller w_std or depth, or rescale the inputs";
    throw InvalidArgument(os.str());
  }
  if (nngp) std::copy(g.begin(), g.end(), nngp);
  if (ntk) std::copy(t.begin(), t.end(), ntk);
}

template <class T>
std::vector<T> layer_major(const std::vector<T>& point_major, std::int64_t n, int depth) {
  std::vector<T> out(point_major.size());
  for (std::int64_t i = 0; i < n; ++i)
    for (int l = 0; l < depth; ++l)
      out[static_cast<std::size_t>(l * n + i)] = point_major[static_cast<std::size_t>(i * depth + l)];
  return out;
}

// Everything a tile needs that depends only on the inputs: validated once per assembly.
template <class T>
struct Prepared {
  explicit Prepared(const KernelSpec& spec) : recursion(spec) {}
  HostRecursion<T> recursion;
  ConstMatrixView<T> x1, x2;
  bool symmetric = false;
  std::vector<T> sq1;
  std::vector<T> row_vars;  // n1 x depth
  std::vector<T> col_vars;  // depth x n2 (unless x2 came prepared: then `columns` points to its own)
  const std::vector<T>* columns = nullptr;
  const T* column_variances() const { return columns ? columns->data() : col_vars.data(); }
};

void check_same_features(std::int64_t x1_cols, std::int64_t x2_cols) {
  if (x2_cols != x1_cols) {
    std::ostringstream os;
    os << "feature dimensions differ: x1 has " << x1_cols << " columns, x2 has " << x2_cols;
    throw InvalidArgument(os.str());
  }
}

template <class T>
void check_kernel_inputs(ConstMatrixView<T> x1, const ConstMatrixView<T>* x2) {
  check_kernel_input(x1, x2 ? "x1" : "x");
  if (x2) {
    check_kernel_input(*x2, "x2");
    check_same_features(x1.cols, x2->cols);
  }
}

// x's layer variances S_l(x, x), layer-major (the layout of a tile's columns).
template <class T>
std::vector<T> column_variances(const RecursionParams<T>& p, ConstMatrixView<T> x, const char* name) {
  std::vector<T> point_major;
  diagonal_recursion(p, scaled_squared_norms(x), point_major, static_cast<T*>(nullptr),
                     static_cast<T*>(nullptr), name);
  return layer_major(point_major, x.rows, p.depth);
}

// The row side of an assembly: x1, its |x|^2/d and its layer variances.
template <class T>
void prepare_rows(Prepared<T>& prep, ConstMatrixView<T> x1, const char* name) {
  prep.x1 = x1;
  prep.sq1 = scaled_squared_norms(x1);
  diagonal_recursion(prep.recursion.params(), prep.sq1, prep.row_vars, static_cast<T*>(nullptr),
                     static_cast<T*>(nullptr), name);
}

template <class T>
// The inputs must have passed check_kernel_inputs.
void prepare(Prepared<T>& prep, ConstMatrixView<T> x1, const ConstMatrixView<T>* x2) {
  prepare_rows(prep, x1, x2 ? "x1" : "x");
  prep.symmetric = x2 == nullptr;
  prep.x2 = x2 ? *x2 : x1;
  const RecursionParams<T>& p = prep.recursion.params();
  prep.col_vars =
      prep.symmetric ? layer_major(prep.row_vars, x1.rows, p.depth) : column_variances(p, *x2, "x2");
}

struct TileTask {
  std::int64_t ti, tj;
};

std::vector<TileTask> tile_tasks(std::int64_t n1, std::int64_t n2, std::int64_t tr, std::int64_t tc,
                                 bool symmetric) {
  std::vector<TileTask> tasks;
  const std::int64_t rt = (n1 + tr - 1) / tr, ct = (n2 + tc - 1) / tc;
  for (std::int64_t i = 0; i < rt; ++i)
    for (std::int64_t j = symmetric ? i : 0; j < ct; ++j) tasks.push_back({i, j});
  return tasks;
}

// GEMM for x.x'/d into the tile, then the fused recursion. nngp/ntk point at the tile's top-left.
template <class T>
void compute_tile(const Prepared<T>& prep, const TileLocation& loc, T* nngp, std::int64_t nngp_ld, T* ntk,
                  std::int64_t ntk_ld, T* scratch) {
  T* primary = ntk ? ntk : nngp;
  const std::int64_t primary_ld = ntk ? ntk_ld : nngp_ld;
  const std::int64_t d = prep.x1.cols;
  blas::gemm<T>(false, true, loc.rows, loc.cols, d, T(1) / static_cast<T>(d), prep.x1.row(loc.row0),
                prep.x1.ld, prep.x2.row(loc.col0), prep.x2.ld, T(0), primary, primary_ld);
  const bool diagonal_tile = prep.symmetric && loc.row0 == loc.col0;
  if (diagonal_tile) {
    // The exact |x|^2/d makes the diagonal identical to assemble_diagonal(): the GEMM's rounding of
    // x.x would otherwise leave P - q12^2 as noise and perturb the ReLU angle by ~sqrt(eps).
    for (std::int64_t k = 0; k < loc.rows; ++k)
      primary[k * primary_ld + k] = prep.sq1[static_cast<std::size_t>(loc.row0 + k)];
  }
  const RecursionParams<T>& p = prep.recursion.params();
  detail::TileArgs<T> args{&p,
                           loc.rows,
                           loc.cols,
                           nngp,
                           ntk,
                           nngp_ld,
                           ntk_ld,
                           prep.row_vars.data() + loc.row0 * p.depth,
                           prep.column_variances() + loc.col0,
                           prep.x2.rows,
                           diagonal_tile,
                           scratch};
  const auto& kernels = detail::select_tile_recursion();
  if constexpr (sizeof(T) == 4)
    kernels.f32(args);
  else
    kernels.f64(args);
}

template <class T>
void check_output(const MatrixView<T>& v, std::int64_t rows, std::int64_t cols, const char* name) {
  if (v.empty()) return;
  if (v.rows != rows || v.cols != cols || v.ld < cols) {
    std::ostringstream os;
    os << name << " output is " << v.rows << " x " << v.cols << " (ld " << v.ld << "), expected " << rows
       << " x " << cols;
    throw InvalidArgument(os.str());
  }
}

void stop_if_asked(const AssemblyOptions& o, std::int64_t tile, std::size_t tiles) {
  if (o.should_stop && o.should_stop())
    throw Cancelled("kernel assembly stopped at tile " + std::to_string(tile + 1) + " of " +
                    std::to_string(tiles));
}

int thread_count(const AssemblyOptions& o) {
  return o.threads > 0 ? o.threads : default_thread_count();
}

void check_tile_option(std::int64_t v, const char* name) {
  if (v < 0) throw InvalidArgument(std::string(name) + " must be >= 0 (0 = automatic)");
}

}  // namespace

template <class T>
void check_kernel_input(ConstMatrixView<T> x, const char* name) {
  if (x.cols <= 0) throw InvalidArgument(std::string(name) + " has no feature columns");
  if (x.rows < 0 || x.ld < x.cols) throw InvalidArgument(std::string(name) + " has an invalid shape");
  for (std::int64_t i = 0; i < x.rows; ++i) {
    const T* r = x.row(i);
    for (std::int64_t k = 0; k < x.cols; ++k) {
      if (!std::isfinite(r[k])) {
        std::ostringstream os;
        os << name << " contains " << (std::isnan(r[k]) ? "NaN" : "Inf") << " at row " << i << ", column "
           << k;
        throw InvalidArgument(os.str());
      }
    }
  }
}

template <class T>
void check_kernel_request(ConstMatrixView<T> x1, const ConstMatrixView<T>* x2, const KernelOutputs<T>& out) {
  if (out.nngp.empty() && out.ntk.empty()) throw InvalidArgument("no kernel output requested");
  check_kernel_inputs(x1, x2);
  const std::int64_t n2 = x2 ? x2->rows : x1.rows;
  check_output(out.nngp, x1.rows, n2, "nngp");
  check_output(out.ntk, x1.rows, n2, "ntk");
}

namespace {

// The tile loop of assemble_kernel, on inputs already prepared.
template <class T>
void assemble_prepared(const Prepared<T>& prep, KernelOutputs<T> out, const AssemblyOptions& options) {
  const std::int64_t n1 = prep.x1.rows, n2 = prep.x2.rows;
  if (n1 == 0 || n2 == 0) return;

  std::int64_t tr = options.tile_rows ? options.tile_rows : kDefaultTile;
  std::int64_t tc = options.tile_cols ? options.tile_cols : kDefaultTile;
  if (prep.symmetric) tr = tc = std::min(tr, tc);  // mirroring needs square tiles on the diagonal
  const auto tasks = tile_tasks(n1, n2, tr, tc, prep.symmetric);
  const int threads = thread_count(options);
  std::vector<std::vector<T>> scratch(static_cast<std::size_t>(threads),
                                      std::vector<T>(static_cast<std::size_t>(tc)));

  parallel_for(static_cast<std::int64_t>(tasks.size()), threads, [&](std::int64_t t, int worker) {
    stop_if_asked(options, t, tasks.size());
    const TileTask task = tasks[static_cast<std::size_t>(t)];
    const TileLocation loc{task.ti * tr, task.tj * tc, std::min(tr, n1 - task.ti * tr),
                           std::min(tc, n2 - task.tj * tc)};
    T* nngp = out.nngp.empty() ? nullptr : out.nngp.row(loc.row0) + loc.col0;
    T* ntk = out.ntk.empty() ? nullptr : out.ntk.row(loc.row0) + loc.col0;
    compute_tile(prep, loc, nngp, out.nngp.ld, ntk, out.ntk.ld,
                 scratch[static_cast<std::size_t>(worker)].data());
    if (!prep.symmetric) return;
    for (const MatrixView<T>& v : {out.nngp, out.ntk}) {
      if (v.empty()) continue;
      if (task.ti == task.tj)
        detail::mirror_upper_to_lower(v.row(loc.row0) + loc.col0, loc.rows, v.ld);
      else
        detail::transpose_block<T>(v.row(loc.row0) + loc.col0, v.ld, loc.rows, loc.cols,
                                   v.row(loc.col0) + loc.row0, v.ld);
    }
  });
}

}  // namespace

template <class T>
void assemble_kernel(const KernelSpec& spec, ConstMatrixView<T> x1, const ConstMatrixView<T>* x2,
                     KernelOutputs<T> out, const AssemblyOptions& options) {
  check_kernel_request(x1, x2, out);
  check_tile_option(options.tile_rows, "tile_rows");
  check_tile_option(options.tile_cols, "tile_cols");
  Prepared<T> prep(spec);
  prepare(prep, x1, x2);
  assemble_prepared(prep, out, options);
}

template <class T>
PreparedColumns<T>::PreparedColumns(const KernelSpec& spec, ConstMatrixView<T> x2) : spec_(spec), x_(x2) {
  check_kernel_input(x2, "x2");
  const HostRecursion<T> recursion(spec);
  vars_ = column_variances(recursion.params(), x2, "x2");
}

template <class T>
void assemble_kernel(ConstMatrixView<T> x1, const PreparedColumns<T>& x2, KernelOutputs<T> out,
                     const AssemblyOptions& options) {
  const ConstMatrixView<T> xv = x2.x();
  if (out.nngp.empty() && out.ntk.empty()) throw InvalidArgument("no kernel output requested");
  check_kernel_input(x1, "x1");
  check_same_features(x1.cols, xv.cols);
  check_output(out.nngp, x1.rows, xv.rows, "nngp");
  check_output(out.ntk, x1.rows, xv.rows, "ntk");
  check_tile_option(options.tile_rows, "tile_rows");
  check_tile_option(options.tile_cols, "tile_cols");
  Prepared<T> prep(x2.spec());
  prepare_rows(prep, x1, "x1");
  prep.x2 = xv;
  prep.symmetric = false;
  prep.columns = &x2.layer_variances();
  assemble_prepared(prep, out, options);
}

template <class T>
void assemble_diagonal(const KernelSpec& spec, ConstMatrixView<T> x, KernelDiagonal<T> out,
                       const AssemblyOptions& options) {
  (void)options;
  if (out.nngp.empty() && out.ntk.empty()) throw InvalidArgument("no kernel output requested");
  for (const auto& s : {out.nngp, out.ntk})
    if (!s.empty() && static_cast<std::int64_t>(s.size()) != x.rows)
      throw InvalidArgument("diagonal output has " + std::to_string(s.size()) + " entries, expected " +
                            std::to_string(x.rows));
  check_kernel_input(x, "x");
  HostRecursion<T> recursion(spec);
  std::vector<T> vars;
  diagonal_recursion(recursion.params(), scaled_squared_norms(x), vars,
                     out.nngp.empty() ? nullptr : out.nngp.data(), out.ntk.empty() ? nullptr : out.ntk.data(),
                     "x");
}

template <class T>
void assemble_kernel_tiles(const KernelSpec& spec, ConstMatrixView<T> x1, const ConstMatrixView<T>* x2,
                           KernelSelection selection, const TileSink<T>& sink,
                           const AssemblyOptions& options) {
  check_tile_option(options.tile_rows, "tile_rows");
  check_tile_option(options.tile_cols, "tile_cols");
  check_kernel_inputs(x1, x2);
  Prepared<T> prep(spec);
  prepare(prep, x1, x2);
  const std::int64_t n1 = x1.rows, n2 = prep.x2.rows;
  if (n1 == 0 || n2 == 0) return;
  const bool want_nngp = selection != KernelSelection::ntk;
  const bool want_ntk = selection != KernelSelection::nngp;
  const std::size_t kernels = (want_nngp ? 1 : 0) + (want_ntk ? 1 : 0);
  // A symmetric off-diagonal tile is emitted twice (as computed and transposed): twice the buffers.
  const std::size_t buffers_per_worker = kernels * (prep.symmetric ? 2 : 1);

  int threads = thread_count(options);
  std::int64_t tile = std::min(options.tile_rows ? options.tile_rows : kDefaultTile,
                               options.tile_cols ? options.tile_cols : kDefaultTile);
  auto bytes_for = [&](std::int64_t t, int w) {  // tile buffers plus one scratch row per worker
    return static_cast<std::size_t>(w) * (buffers_per_worker * static_cast<std::size_t>(t * t) + t) *
           sizeof(T);
  };
  while (tile > 16 && bytes_for(tile, threads) > options.workspace_bytes) tile /= 2;
  while (threads > 1 && bytes_for(tile, threads) > options.workspace_bytes) --threads;
  if (bytes_for(tile, threads) > options.workspace_bytes) {
    std::ostringstream os;
    os << "kernel tiles need at least " << bytes_for(tile, threads) << " bytes of workspace, the budget is "
       << options.workspace_bytes;
    throw ResourceExhausted(os.str());
  }
  const std::int64_t tr = tile, tc = tile;
  const auto tasks = tile_tasks(n1, n2, tr, tc, prep.symmetric);
  const std::size_t tile_elems = static_cast<std::size_t>(tr * tc);
  std::vector<std::vector<T>> buffers(
      static_cast<std::size_t>(threads),
      std::vector<T>(tile_elems * buffers_per_worker + static_cast<std::size_t>(tc)));
  std::mutex sink_mutex;

  parallel_for(static_cast<std::int64_t>(tasks.size()), threads, [&](std::int64_t t, int worker) {
    stop_if_asked(options, t, tasks.size());
    const TileTask task = tasks[static_cast<std::size_t>(t)];
    const TileLocation loc{task.ti * tr, task.tj * tc, std::min(tr, n1 - task.ti * tr),
                           std::min(tc, n2 - task.tj * tc)};
    T* base = buffers[static_cast<std::size_t>(worker)].data();
    T* nngp = want_nngp ? base : nullptr;
    T* ntk = want_ntk ? base + (want_nngp ? tile_elems : 0) : nullptr;
    T* scratch = base + tile_elems * buffers_per_worker;
    compute_tile(prep, loc, nngp, loc.cols, ntk, loc.cols, scratch);
    auto view = [&](T* p, std::int64_t r, std::int64_t c) {
      return p ? ConstMatrixView<T>{p, r, c, c} : ConstMatrixView<T>{};
    };
    const bool off_diagonal = prep.symmetric && task.ti != task.tj;
    if (prep.symmetric && !off_diagonal) {
      if (nngp) detail::mirror_upper_to_lower(nngp, loc.rows, loc.cols);
      if (ntk) detail::mirror_upper_to_lower(ntk, loc.rows, loc.cols);
    }
    T* nngp_t = nullptr;
    T* ntk_t = nullptr;
    if (off_diagonal) {
      T* second = base + tile_elems * kernels;
      if (nngp) detail::transpose_block<T>(nngp, loc.cols, loc.rows, loc.cols, nngp_t = second, loc.rows);
      if (ntk)
        detail::transpose_block<T>(ntk, loc.cols, loc.rows, loc.cols,
                                   ntk_t = second + (nngp ? tile_elems : 0), loc.rows);
    }
    std::lock_guard lock(sink_mutex);
    sink(loc, view(nngp, loc.rows, loc.cols), view(ntk, loc.rows, loc.cols));
    if (off_diagonal)
      sink(TileLocation{loc.col0, loc.row0, loc.cols, loc.rows}, view(nngp_t, loc.cols, loc.rows),
           view(ntk_t, loc.cols, loc.rows));
  });
}

std::string kernel_isa() {
  return detail::select_tile_recursion().isa;
}

#define NTK_INSTANTIATE(T)                                                                                 \
  template void check_kernel_input<T>(ConstMatrixView<T>, const char*);                                    \
  template void check_kernel_request<T>(ConstMatrixView<T>, const ConstMatrixView<T>*,                     \
                                        const KernelOutputs<T>&);                                          \
  template void assemble_kernel<T>(const KernelSpec&, ConstMatrixView<T>, const ConstMatrixView<T>*,       \
                                   KernelOutputs<T>, const AssemblyOptions&);                              \
  template void assemble_diagonal<T>(const KernelSpec&, ConstMatrixView<T>, KernelDiagonal<T>,             \
                                     const AssemblyOptions&);                                              \
  template void assemble_kernel_tiles<T>(const KernelSpec&, ConstMatrixView<T>, const ConstMatrixView<T>*, \
                                         KernelSelection, const TileSink<T>&, const AssemblyOptions&);     \
  template class PreparedColumns<T>;                                                                       \
  template void assemble_kernel<T>(ConstMatrixView<T>, const PreparedColumns<T>&, KernelOutputs<T>,        \
                                   const AssemblyOptions&);
NTK_INSTANTIATE(float)
NTK_INSTANTIATE(double)
#undef NTK_INSTANTIATE

}  // namespace ntk
