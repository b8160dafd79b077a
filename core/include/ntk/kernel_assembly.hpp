#pragma once
// Blocked assembly of NNGP/NTK matrices on the CPU: per tile one GEMM for x.x'/d, then one fused pass
// of the whole layer recursion (see tile_recursion_impl.inc).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "ntk/kernel_spec.hpp"
#include "ntk/matrix.hpp"

namespace ntk {

struct AssemblyOptions {
  std::int64_t tile_rows = 0;  // 0: automatic
  std::int64_t tile_cols = 0;  // 0: automatic
  int threads = 0;             // 0: all hardware threads
  // Bound on the tile buffers of the streaming path (assemble_kernel_tiles), across all workers.
  std::size_t workspace_bytes = std::size_t(256) << 20;
  // Asked before each tile; true stops the assembly with ntk::Cancelled (a server's cancelled job or a
  // passed deadline). The output is then incomplete and must not be used.
  std::function<bool()> should_stop;
};

// Either view may be empty (data == nullptr) when that kernel is not wanted; at least one must not be.
template <class T>
struct KernelOutputs {
  MatrixView<T> nngp;
  MatrixView<T> ntk;
};

template <class T>
struct KernelDiagonal {
  std::span<T> nngp;  // may be empty
  std::span<T> ntk;   // may be empty
};

// Throws InvalidArgument when x has NaN/Inf (naming `name`, the row and the column) or no columns.
template <class T>
void check_kernel_input(ConstMatrixView<T> x, const char* name);

// The checks every backend runs before assembling K(x1, x2) (x2 null: K(x1, x1)): both inputs
// (check_kernel_input), equal feature dimensions, at least one output and each given output
// x1.rows x n2 with ld >= n2. Throws InvalidArgument naming the problem.
template <class T>
void check_kernel_request(ConstMatrixView<T> x1, const ConstMatrixView<T>* x2, const KernelOutputs<T>& out);

// K(x1, x2) into dense outputs of shape x1.rows x x2.rows. When x2 is null the kernel is K(x1, x1):
// one triangle is computed and mirrored, and the diagonal equals assemble_diagonal() bit for bit.
template <class T>
void assemble_kernel(const KernelSpec& spec, ConstMatrixView<T> x1, const ConstMatrixView<T>* x2,
                     KernelOutputs<T> out, const AssemblyOptions& options = {});

// x2 checked and its layer variances computed once, for repeated K(x1, x2) against many x1 (prediction
// against a training set: without it every call re-scans and re-norms all of x2). Refers to x2's memory,
// which must outlive it.
template <class T>
class PreparedColumns {
 public:
  PreparedColumns(const KernelSpec& spec, ConstMatrixView<T> x2);
  const KernelSpec& spec() const { return spec_; }
  ConstMatrixView<T> x() const { return x_; }
  const std::vector<T>& layer_variances() const { return vars_; }  // depth x rows, layer-major

 private:
  KernelSpec spec_;
  ConstMatrixView<T> x_;
  std::vector<T> vars_;
};

// assemble_kernel(spec, x1, &x2, out, options) with x2 prepared; the same values bit for bit.
template <class T>
void assemble_kernel(ConstMatrixView<T> x1, const PreparedColumns<T>& x2, KernelOutputs<T> out,
                     const AssemblyOptions& options = {});

// K(x, x) for every row of x, without forming the matrix.
template <class T>
void assemble_diagonal(const KernelSpec& spec, ConstMatrixView<T> x, KernelDiagonal<T> out,
                       const AssemblyOptions& options = {});

struct TileLocation {
  std::int64_t row0, col0, rows, cols;
};

// Streams K(x1, x2) tile by tile without holding it whole; tile buffers fit options.workspace_bytes.
// sink(location, nngp, ntk) is called once per tile, possibly from several threads at once but never
// concurrently with itself (calls are serialized); views of kernels not selected are empty.
template <class T>
using TileSink = std::function<void(const TileLocation&, ConstMatrixView<T> nngp, ConstMatrixView<T> ntk)>;

template <class T>
void assemble_kernel_tiles(const KernelSpec& spec, ConstMatrixView<T> x1, const ConstMatrixView<T>* x2,
                           KernelSelection selection, const TileSink<T>& sink,
                           const AssemblyOptions& options = {});

// Which instruction set the fused recursion runs on here ("avx512", "avx2", "generic").
std::string kernel_isa();

}  // namespace ntk
