// NNGP/NTK assembly on the device: per tile a cuBLAS GEMM for x.x'/d, then one fused kernel running
// the whole layer recursion per entry in registers (ntk/kernel_math.hpp, the same code the CPU runs).
// Tiles alternate between two streams, so the copy of one tile to the host overlaps the next tile's
// compute.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernel_assembly.cuh"
#include "ntk/cuda/errors.cuh"
#include "ntk/detail/transpose.hpp"
#include "ntk/parallel.hpp"

namespace ntk::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void squared_norms_kernel(const T* x, std::int64_t n, std::int64_t d, T* sq) {
  // One warp per row.
  const std::int64_t row = (std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (row >= n) return;
  T acc = T(0);
  for (std::int64_t k = lane; k < d; k += 32) {
    const T v = x[row * d + k];
    acc += v * v;
  }
  for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
  if (lane == 0) sq[row] = acc / static_cast<T>(d);
}

// Layer variances, layer-major (vars[l * n + i]) so that a warp's column reads are coalesced.
template <ActFamily F, class T>
__global__ void diagonal_kernel(RecursionParams<T> p, const T* sq, std::int64_t n, T* vars, T* nngp, T* ntk) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T g, t;
  diagonal_entry<F>(p, sq[i], vars + i, static_cast<int>(n), g, t);
  if (nngp) nngp[i] = g;
  if (ntk) ntk[i] = t;
}

struct TileGeometry {
  std::int64_t rows, cols, ld;  // the tile buffer is rows x cols with leading dimension ld
  std::int64_t row0, col0;      // its place in the whole kernel
  bool diagonal;                // a diagonal tile of a symmetric kernel
};

template <ActFamily F, bool kNngp, bool kNtk, class T>
__global__ void fused_tile_kernel(RecursionParams<T> p, TileGeometry g, T* nngp, T* ntk, const T* row_vars,
                                  std::int64_t n_rows_total, const T* col_vars, std::int64_t n_cols_total,
                                  const T* row_sq) {
  const std::int64_t j = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (std::int64_t i = blockIdx.y; i < g.rows; i += gridDim.y) {
    if (j >= g.cols || (g.diagonal && j < i)) continue;
    const std::int64_t at = i * g.ld + j;
    // On the diagonal the exact |x|^2/d replaces the GEMM's x.x, as on the CPU.
    const T dot = (g.diagonal && i == j) ? row_sq[g.row0 + i] : (kNtk ? ntk[at] : nngp[at]);
    T s, t;
    kernel_entry<F, kNtk>(p, dot, row_vars + g.row0 + i, static_cast<int>(n_rows_total),
                          col_vars + g.col0 + j, static_cast<int>(n_cols_total), s, t);
    if (kNngp) nngp[at] = s;
    if (kNtk) ntk[at] = t;
  }
}

template <class T>
void launch_diagonal(const RecursionParams<T>& p, const T* sq, std::int64_t n, T* vars, T* nngp, T* ntk,
                     cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  switch (p.family) {
    case ActFamily::abrelu:
      diagonal_kernel<ActFamily::abrelu><<<blocks, kThreads, 0, stream>>>(p, sq, n, vars, nngp, ntk);
      break;
    case ActFamily::erf:
      diagonal_kernel<ActFamily::erf><<<blocks, kThreads, 0, stream>>>(p, sq, n, vars, nngp, ntk);
      break;
    case ActFamily::gelu:
      diagonal_kernel<ActFamily::gelu><<<blocks, kThreads, 0, stream>>>(p, sq, n, vars, nngp, ntk);
      break;
    case ActFamily::quadrature:
      diagonal_kernel<ActFamily::quadrature><<<blocks, kThreads, 0, stream>>>(p, sq, n, vars, nngp, ntk);
      break;
  }
  NTK_CUDA_CHECK_LAUNCH("diagonal_kernel");
}

template <ActFamily F, class T>
void launch_tile_family(const RecursionParams<T>& p, const TileGeometry& g, T* nngp, T* ntk, const T* rv,
                        std::int64_t nr, const T* cv, std::int64_t nc, const T* sq, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((g.cols + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min<std::int64_t>(g.rows, 65535)));
  if (nngp && ntk)
    fused_tile_kernel<F, true, true><<<grid, kThreads, 0, stream>>>(p, g, nngp, ntk, rv, nr, cv, nc, sq);
  else if (ntk)
    fused_tile_kernel<F, false, true><<<grid, kThreads, 0, stream>>>(p, g, nngp, ntk, rv, nr, cv, nc, sq);
  else
    fused_tile_kernel<F, true, false><<<grid, kThreads, 0, stream>>>(p, g, nngp, ntk, rv, nr, cv, nc, sq);
  NTK_CUDA_CHECK_LAUNCH("fused_tile_kernel");
}

template <class T>
void launch_tile(const RecursionParams<T>& p, const TileGeometry& g, T* nngp, T* ntk, const T* rv,
                 std::int64_t nr, const T* cv, std::int64_t nc, const T* sq, cudaStream_t stream) {
  switch (p.family) {
    case ActFamily::abrelu:
      launch_tile_family<ActFamily::abrelu>(p, g, nngp, ntk, rv, nr, cv, nc, sq, stream);
      break;
    case ActFamily::erf:
      launch_tile_family<ActFamily::erf>(p, g, nngp, ntk, rv, nr, cv, nc, sq, stream);
      break;
    case ActFamily::gelu:
      launch_tile_family<ActFamily::gelu>(p, g, nngp, ntk, rv, nr, cv, nc, sq, stream);
      break;
    case ActFamily::quadrature:
      launch_tile_family<ActFamily::quadrature>(p, g, nngp, ntk, rv, nr, cv, nc, sq, stream);
      break;
  }
}

// Row-major C (m x n, ldc) = alpha A (m x k) B^T (B: n x k), both row-major with leading dimension k:
// in cuBLAS's column-major terms C^T = B A^T.
void gemm_abt(cublasHandle_t h, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
              const float* b, float* c, std::int64_t ldc) {
  const float beta = 0;
  NTK_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, b, int(k), a,
                               int(k), &beta, c, int(ldc)));
}
void gemm_abt(cublasHandle_t h, std::int64_t m, std::int64_t n, std::int64_t k, double alpha, const double* a,
              const double* b, double* c, std::int64_t ldc) {
  const double beta = 0;
  NTK_CUBLAS_CHECK(cublasDgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha, b, int(k), a,
                               int(k), &beta, c, int(ldc)));
}

class PinnedBuffer {
 public:
  explicit PinnedBuffer(std::size_t bytes) {
    if (bytes == 0) return;
    if (cudaMallocHost(&ptr_, bytes) != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: clear it
      ptr_ = nullptr;
      throw ResourceExhausted("pinned host memory for kernel tiles: " + std::to_string(bytes) +
                              " bytes could not be allocated");
    }
  }
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
};

// Device copies of a matrix's rows (compact, ld = cols), its |x|^2/d and its layer variances.
template <class T>
struct DeviceInputs {
  DeviceBuffer x, sq, vars;
  std::int64_t rows = 0;
};

template <class T>
DeviceInputs<T> upload_inputs(DeviceResources& r, const RecursionParams<T>& p, ConstMatrixView<T> x,
                              cudaStream_t stream, T* diag_nngp = nullptr, T* diag_ntk = nullptr) {
  DeviceInputs<T> in;
  in.rows = x.rows;
  const std::size_t n = static_cast<std::size_t>(x.rows), d = static_cast<std::size_t>(x.cols);
  in.x = r.pool().allocate(n * d * sizeof(T), "kernel inputs");
  in.sq = r.pool().allocate(n * sizeof(T), "kernel input norms");
  in.vars = r.pool().allocate(std::max<std::size_t>(1, n * p.depth) * sizeof(T), "kernel layer variances");
  NTK_CUDA_CHECK(cudaMemcpy2DAsync(in.x.template as<T>(), d * sizeof(T), x.data, x.ld * sizeof(T),
                                   d * sizeof(T), n, cudaMemcpyHostToDevice, stream));
  const unsigned blocks = static_cast<unsigned>((n * 32 + kThreads - 1) / kThreads);
  squared_norms_kernel<<<blocks, kThreads, 0, stream>>>(in.x.template as<const T>(), x.rows, x.cols,
                                                        in.sq.template as<T>());
  NTK_CUDA_CHECK_LAUNCH("squared_norms_kernel");
  launch_diagonal(p, in.sq.template as<const T>(), x.rows, in.vars.template as<T>(), diag_nngp, diag_ntk,
                  stream);
  return in;
}

// Quadrature nodes must live on the device; returns the params with device pointers.
template <class T>
RecursionParams<T> device_params(DeviceResources& r, const HostRecursion<T>& host, DeviceBuffer& storage,
                                 cudaStream_t stream) {
  RecursionParams<T> p = host.params();
  if (p.family != ActFamily::quadrature) return p;
  if (p.quad_function == QuadFunction::custom)
    throw InvalidArgument("custom (registered) activations run on the CPU backend only");
  const std::size_t deg = static_cast<std::size_t>(p.gh_degree);
  storage = r.pool().allocate(2 * deg * sizeof(T), "quadrature rule");
  NTK_CUDA_CHECK(
      cudaMemcpyAsync(storage.as<T>(), p.gh_nodes, deg * sizeof(T), cudaMemcpyHostToDevice, stream));
  NTK_CUDA_CHECK(
      cudaMemcpyAsync(storage.as<T>() + deg, p.gh_weights, deg * sizeof(T), cudaMemcpyHostToDevice, stream));
  p.gh_nodes = storage.as<T>();
  p.gh_weights = storage.as<T>() + deg;
  return p;
}

// A finished tile of a symmetric kernel (rows x cols at (row0, col0), leading dimension ld; a diagonal
// tile holds only its upper triangle) stored as float64 into the n x n row-major dst, together with its
// mirror image: blocks of 32 x 32 through shared memory, so both the store and the transposed store
// are coalesced.
constexpr int kStoreEdge = 32, kStoreRows = 8;

template <class T>
__global__ void store_symmetric_tile_kernel(const T* tile, TileGeometry g, double* dst, std::int64_t n) {
  __shared__ double block[kStoreEdge][kStoreEdge + 1];
  const std::int64_t bi = std::int64_t(blockIdx.y) * kStoreEdge, bj = std::int64_t(blockIdx.x) * kStoreEdge;
  for (int k = threadIdx.y; k < kStoreEdge; k += kStoreRows) {
    const std::int64_t i = bi + k, j = bj + threadIdx.x;
    if (i < g.rows && j < g.cols) {
      // Below the diagonal of a diagonal tile: its mirror entry, which the recursion computed.
      const double v = static_cast<double>((g.diagonal && j < i) ? tile[j * g.ld + i] : tile[i * g.ld + j]);
      dst[(g.row0 + i) * n + g.col0 + j] = v;
      block[k][threadIdx.x] = v;
    }
  }
  if (g.diagonal) return;  // the whole block returns: g is uniform
  __syncthreads();
  for (int k = threadIdx.y; k < kStoreEdge; k += kStoreRows) {
    const std::int64_t j = bj + k, i = bi + threadIdx.x;
    if (i < g.rows && j < g.cols) dst[(g.col0 + j) * n + g.row0 + i] = block[threadIdx.x][k];
  }
}

// The largest square tile edge (`start` halved while needed, down to 64) for which `buffers` square tile
// buffers of T fit in half the pool's free budget; at 64 the allocation itself reports an exhausted
// budget. Idle cached work is evicted only for 1024-edge tiles (efficient GEMMs, a few MiB), not for the
// largest: smaller tiles cost little, recomputing an evicted uncertainty context seconds.
template <class T>
std::int64_t fitting_tile(DeviceResources& r, std::int64_t start, int buffers) {
  auto bytes = [&](std::int64_t t) { return std::size_t(buffers) * std::size_t(t * t) * sizeof(T); };
  const std::size_t available = r.pool().room_for(2 * bytes(std::min<std::int64_t>(start, 1024)));
  std::int64_t tile = start;
  while (tile > 64 && bytes(tile) > available / 2) tile /= 2;
  return tile;
}

// The host diagonal (O(N d + N L)) finds an overflowing architecture before any device work, with the
// CPU's message: a finite diagonal bounds every entry.
template <class T>
void check_diagonal_on_host(const KernelSpec& spec, ConstMatrixView<T> x) {
  std::vector<T> diag(static_cast<std::size_t>(x.rows));
  ntk::assemble_diagonal<T>(spec, x, {std::span<T>(diag.data(), diag.size()), {}});
}

}  // namespace

template <class T>
struct DeviceNtkOperand<T>::Impl {
  DeviceResources& r;
  HostRecursion<T> host;
  DeviceBuffer rule;
  RecursionParams<T> params;
  DeviceInputs<T> train, test;
  Impl(DeviceResources& res, const KernelSpec& spec) : r(res), host(spec) {}
};

template <class T>
DeviceNtkOperand<T>::DeviceNtkOperand(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x_train,
                                      cudaStream_t stream)
    : impl_(std::make_unique<Impl>(r, spec)) {
  check_diagonal_on_host(spec, x_train);
  r.activate();
  impl_->params = device_params(r, impl_->host, impl_->rule, stream);
  impl_->train = upload_inputs(r, impl_->params, x_train, stream);
  features_ = x_train.cols;
}

template <class T>
DeviceNtkOperand<T>::~DeviceNtkOperand() = default;

template <class T>
std::int64_t DeviceNtkOperand<T>::rows() const {
  return impl_->train.rows;
}

template <class T>
void DeviceNtkOperand<T>::set_test_block(const KernelSpec& spec, ConstMatrixView<T> x, cudaStream_t stream) {
  check_diagonal_on_host(spec, x);
  impl_->test = DeviceInputs<T>{};  // back to the pool first: the new block may reuse its memory
  impl_->test = upload_inputs(impl_->r, impl_->params, x, stream);
}

template <class T>
void DeviceNtkOperand<T>::tile(std::int64_t col0, std::int64_t cols, T* out, cudaStream_t stream) {
  Impl& m = *impl_;
  TileGeometry g{m.test.rows, cols, cols, 0, col0, false};
  cublasHandle_t handle = m.r.cublas();
  NTK_CUBLAS_CHECK(cublasSetStream(handle, stream));
  gemm_abt(handle, g.rows, g.cols, features_, T(1) / static_cast<T>(features_),
           m.test.x.template as<const T>(), m.train.x.template as<const T>() + col0 * features_, out, g.ld);
  launch_tile(m.params, g, static_cast<T*>(nullptr), out, m.test.vars.template as<const T>(), m.test.rows,
              m.train.vars.template as<const T>(), m.train.rows, m.test.sq.template as<const T>(), stream);
}

template <class T>
DeviceBuffer assemble_resident_ntk(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x,
                                   const AssemblyOptions& options, const char* what) {
  check_kernel_input(x, "x");
  check_diagonal_on_host(spec, x);
  const std::int64_t n = x.rows, d = x.cols;
  r.activate();
  DeviceBuffer dst = r.pool().allocate(std::size_t(n) * std::size_t(n) * sizeof(double), what);
  if (n == 0) return dst;
  HostRecursion<T> host(spec);
  cudaStream_t s0 = r.stream(0);
  DeviceBuffer rule;
  const RecursionParams<T> p = device_params(r, host, rule, s0);
  DeviceInputs<T> in = upload_inputs(r, p, x, s0);
  NTK_CUDA_CHECK(cudaStreamSynchronize(s0));
  const std::int64_t tile =
      fitting_tile<T>(r, std::min<std::int64_t>(options.tile_rows > 0 ? options.tile_rows : 8192, n), 2);
  DeviceBuffer tiles[2];
  for (auto& t : tiles) t = r.pool().allocate(std::size_t(tile * tile) * sizeof(T), "kernel tile");
  cublasHandle_t handle = r.cublas();
  const std::int64_t tiles_per_side = (n + tile - 1) / tile;
  int slot = 0;
  for (std::int64_t ti = 0; ti < tiles_per_side; ++ti) {
    for (std::int64_t tj = ti; tj < tiles_per_side; ++tj) {
      if (options.should_stop && options.should_stop()) {
        for (int k = 0; k < 2; ++k) NTK_CUDA_CHECK(cudaStreamSynchronize(r.stream(k)));
        throw Cancelled("kernel assembly stopped at tile row " + std::to_string(ti + 1) + " of " +
                        std::to_string(tiles_per_side));
      }
      // Work on one stream runs in order, so a slot's buffer is free again when its next tile starts.
      cudaStream_t stream = r.stream(slot);
      TileGeometry g{
          std::min(tile, n - ti * tile), std::min(tile, n - tj * tile), 0, ti * tile, tj * tile, ti == tj};
      g.ld = g.cols;
      T* buffer = tiles[slot].as<T>();
      NTK_CUBLAS_CHECK(cublasSetStream(handle, stream));
      gemm_abt(handle, g.rows, g.cols, d, T(1) / static_cast<T>(d), in.x.template as<const T>() + g.row0 * d,
               in.x.template as<const T>() + g.col0 * d, buffer, g.ld);
      launch_tile(p, g, static_cast<T*>(nullptr), buffer, in.vars.template as<const T>(), n,
                  in.vars.template as<const T>(), n, in.sq.template as<const T>(), stream);
      const dim3 grid(static_cast<unsigned>((g.cols + kStoreEdge - 1) / kStoreEdge),
                      static_cast<unsigned>((g.rows + kStoreEdge - 1) / kStoreEdge));
      store_symmetric_tile_kernel<T>
          <<<grid, dim3(kStoreEdge, kStoreRows), 0, stream>>>(buffer, g, dst.as<double>(), n);
      NTK_CUDA_CHECK_LAUNCH("store_symmetric_tile_kernel");
      slot ^= 1;
    }
  }
  for (int k = 0; k < 2; ++k) NTK_CUDA_CHECK(cudaStreamSynchronize(r.stream(k)));
  return dst;
}

template <class T>
void assemble_kernel(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x1,
                     const ConstMatrixView<T>* x2, KernelOutputs<T> out, const AssemblyOptions& options) {
  check_kernel_request(x1, x2, out);  // the CPU backend's checks and messages
  const bool symmetric = x2 == nullptr;
  const ConstMatrixView<T> xb = symmetric ? x1 : *x2;
  const std::int64_t n1 = x1.rows, n2 = xb.rows, d = x1.cols;
  const MatrixView<T> views[2] = {out.nngp, out.ntk};
  if (n1 == 0 || n2 == 0) return;
  check_diagonal_on_host(spec, x1);
  if (!symmetric) check_diagonal_on_host(spec, xb);

  HostRecursion<T> host(spec);
  r.activate();
  cudaStream_t s0 = r.stream(0);
  DeviceBuffer rule;
  const RecursionParams<T> p = device_params(r, host, rule, s0);
  DeviceInputs<T> a = upload_inputs(r, p, x1, s0);
  DeviceInputs<T> b;
  if (!symmetric) b = upload_inputs(r, p, xb, s0);
  const DeviceInputs<T>& bi = symmetric ? a : b;
  NTK_CUDA_CHECK(cudaStreamSynchronize(s0));

  const int kernels = (out.nngp.empty() ? 0 : 1) + (out.ntk.empty() ? 0 : 1);
  // Tile edge: as large as the budget allows (big GEMMs run closest to peak), at most 8192.
  const std::int64_t tile = fitting_tile<T>(
      r, std::min<std::int64_t>(options.tile_rows > 0 ? options.tile_rows : 8192, std::max(n1, n2)),
      2 * kernels);
  const std::int64_t tile_elems = tile * tile;
  DeviceBuffer device_tiles[2];
  for (auto& t : device_tiles) t = r.pool().allocate(kernels * tile_elems * sizeof(T), "kernel tile");
  // Host staging as large as a tile can be here (a thin K(X, x*) of 50k x 83 needs 8192 x 83, not 8192^2:
  // pinning a gigabyte per call cost more than the call), and only each tile's entries come home.
  const std::int64_t stage_elems = std::min(tile, n1) * std::min(tile, n2);
  PinnedBuffer staging[2] = {PinnedBuffer(kernels * stage_elems * sizeof(T)),
                             PinnedBuffer(kernels * stage_elems * sizeof(T))};

  constexpr std::int64_t kDeliverBand = 256;
  const int deliver_threads = std::min(default_thread_count(), 8);
  struct Pending {
    bool active = false;
    TileGeometry g{};
  } pending[2];
  // Copies a finished tile from pinned memory into the caller's matrices (and its mirror image).
  auto deliver = [&](int slot) {
    if (!pending[slot].active) return;
    NTK_CUDA_CHECK(cudaStreamSynchronize(r.stream(slot)));
    const TileGeometry& g = pending[slot].g;
    T* base = staging[slot].as<T>();
    int k = 0;
    for (const MatrixView<T>& v : views) {
      if (v.empty()) continue;
      const T* src = base + k++ * stage_elems;
      // In bands of rows on several threads: one thread copied and transposed an 8192^2 float64 tile in
      // ~0.3 s (first-touch page faults of the caller's matrix included) while the device computed the
      // next one in a few milliseconds. Bands write disjoint rows (copy) and disjoint columns (mirror).
      const std::int64_t bands = (g.rows + kDeliverBand - 1) / kDeliverBand;
      parallel_for(bands, deliver_threads, [&](std::int64_t band, int) {
        const std::int64_t r0 = band * kDeliverBand, rows = std::min(kDeliverBand, g.rows - r0);
        for (std::int64_t i = r0; i < r0 + rows; ++i)
          std::memcpy(v.row(g.row0 + i) + g.col0, src + i * g.ld, std::size_t(g.cols) * sizeof(T));
        if (symmetric && !g.diagonal)
          detail::transpose_block(src + r0 * g.ld, g.ld, rows, g.cols, v.row(g.col0) + g.row0 + r0, v.ld);
      });
      if (symmetric && g.diagonal) detail::mirror_upper_to_lower(v.row(g.row0) + g.col0, g.rows, v.ld);
    }
    pending[slot].active = false;
  };

  cublasHandle_t handle = r.cublas();
  const std::int64_t row_tiles = (n1 + tile - 1) / tile, col_tiles = (n2 + tile - 1) / tile;
  int slot = 0;
  for (std::int64_t ti = 0; ti < row_tiles; ++ti) {
    for (std::int64_t tj = symmetric ? ti : 0; tj < col_tiles; ++tj) {
      if (options.should_stop && options.should_stop()) {
        // Copies still in flight write into the caller's output: wait for them before unwinding.
        for (int s = 0; s < 2; ++s) NTK_CUDA_CHECK(cudaStreamSynchronize(r.stream(s)));
        throw Cancelled("kernel assembly stopped at tile row " + std::to_string(ti + 1) + " of " +
                        std::to_string(row_tiles));
      }
      deliver(slot);  // the buffers of this slot are free again once its previous tile is home
      cudaStream_t stream = r.stream(slot);
      TileGeometry g{std::min(tile, n1 - ti * tile), std::min(tile, n2 - tj * tile), 0, ti * tile, tj * tile,
                     symmetric && ti == tj};
      g.ld = g.cols;
      T* dev = device_tiles[slot].as<T>();
      T* nngp = out.nngp.empty() ? nullptr : dev;
      T* ntk = out.ntk.empty() ? nullptr : dev + (nngp ? tile_elems : 0);
      NTK_CUBLAS_CHECK(cublasSetStream(handle, stream));
      gemm_abt(handle, g.rows, g.cols, d, T(1) / static_cast<T>(d), a.x.template as<const T>() + g.row0 * d,
               bi.x.template as<const T>() + g.col0 * d, ntk ? ntk : nngp, g.ld);
      launch_tile(p, g, nngp, ntk, a.vars.template as<const T>(), n1, bi.vars.template as<const T>(), n2,
                  a.sq.template as<const T>(), stream);
      for (int k = 0; k < kernels; ++k)
        NTK_CUDA_CHECK(cudaMemcpyAsync(staging[slot].as<T>() + k * stage_elems, dev + k * tile_elems,
                                       std::size_t(g.rows * g.cols) * sizeof(T), cudaMemcpyDeviceToHost,
                                       stream));
      pending[slot] = {true, g};
      slot ^= 1;
    }
  }
  deliver(slot);
  deliver(slot ^ 1);
}

template <class T>
void assemble_diagonal(DeviceResources& r, const KernelSpec& spec, ConstMatrixView<T> x,
                       KernelDiagonal<T> out) {
  // The host diagonal runs the CPU backend's checks (outputs, NaN/Inf, overflow) with its messages;
  // it costs O(N (d + L)), as the device pass does.
  {
    std::vector<T> nngp(out.nngp.size()), ntk(out.ntk.size());
    ntk::assemble_diagonal<T>(spec, x, {std::span<T>(nngp), std::span<T>(ntk)});
  }
  if (x.rows == 0) return;
  HostRecursion<T> host(spec);
  r.activate();
  cudaStream_t s0 = r.stream(0);
  DeviceBuffer rule;
  const RecursionParams<T> p = device_params(r, host, rule, s0);
  const std::size_t n = static_cast<std::size_t>(x.rows);
  DeviceBuffer diag = r.pool().allocate(2 * n * sizeof(T), "kernel diagonal");
  T* dn = out.nngp.empty() ? nullptr : diag.as<T>();
  T* dt = out.ntk.empty() ? nullptr : diag.as<T>() + n;
  DeviceInputs<T> in = upload_inputs(r, p, x, s0, dn, dt);
  if (dn) NTK_CUDA_CHECK(cudaMemcpyAsync(out.nngp.data(), dn, n * sizeof(T), cudaMemcpyDeviceToHost, s0));
  if (dt) NTK_CUDA_CHECK(cudaMemcpyAsync(out.ntk.data(), dt, n * sizeof(T), cudaMemcpyDeviceToHost, s0));
  NTK_CUDA_CHECK(cudaStreamSynchronize(s0));
}

template void assemble_kernel<float>(DeviceResources&, const KernelSpec&, ConstMatrixView<float>,
                                     const ConstMatrixView<float>*, KernelOutputs<float>,
                                     const AssemblyOptions&);
template void assemble_kernel<double>(DeviceResources&, const KernelSpec&, ConstMatrixView<double>,
                                      const ConstMatrixView<double>*, KernelOutputs<double>,
                                      const AssemblyOptions&);
template class DeviceNtkOperand<float>;
template class DeviceNtkOperand<double>;
template DeviceBuffer assemble_resident_ntk<float>(DeviceResources&, const KernelSpec&,
                                                   ConstMatrixView<float>, const AssemblyOptions&,
                                                   const char*);
template DeviceBuffer assemble_resident_ntk<double>(DeviceResources&, const KernelSpec&,
                                                    ConstMatrixView<double>, const AssemblyOptions&,
                                                    const char*);
template void assemble_diagonal<float>(DeviceResources&, const KernelSpec&, ConstMatrixView<float>,
                                       KernelDiagonal<float>);
template void assemble_diagonal<double>(DeviceResources&, const KernelSpec&, ConstMatrixView<double>,
                                        KernelDiagonal<double>);

}  // namespace ntk::cuda
