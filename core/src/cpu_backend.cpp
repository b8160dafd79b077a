#include "ntk/cpu_backend.hpp"

#include "host_resident.hpp"
#include "ntk/blas.hpp"
#include "ntk/cpu_features.hpp"
#include "ntk/detail/transpose.hpp"
#include "ntk/errors.hpp"
#include "ntk/parallel.hpp"

namespace ntk {

CpuBackend::CpuBackend(const BackendOptions& options)
    : threads_(options.threads > 0 ? options.threads : default_thread_count()),
      thin_workers_(detail::make_thin_product_workers(threads_)) {
  blas::info();  // load and log the BLAS now rather than inside the first request
}

std::string CpuBackend::description() const {
  return "cpu (" + cpu_model_name() + ", " + std::to_string(threads_) + " threads, kernel ISA " +
         kernel_isa() + ", BLAS " + blas::describe() + ")";
}

AssemblyOptions CpuBackend::with_threads(const AssemblyOptions& options) const {
  AssemblyOptions o = options;
  if (o.threads <= 0) o.threads = threads_;
  return o;
}

void CpuBackend::kernel(const KernelSpec& spec, ConstMatrixView<float> x1, const ConstMatrixView<float>* x2,
                        KernelOutputs<float> out, const AssemblyOptions& options) {
  assemble_kernel(spec, x1, x2, out, with_threads(options));
}
void CpuBackend::kernel(const KernelSpec& spec, ConstMatrixView<double> x1, const ConstMatrixView<double>* x2,
                        KernelOutputs<double> out, const AssemblyOptions& options) {
  assemble_kernel(spec, x1, x2, out, with_threads(options));
}
void CpuBackend::kernel_diagonal(const KernelSpec& spec, ConstMatrixView<float> x, KernelDiagonal<float> out,
                                 const AssemblyOptions& options) {
  assemble_diagonal(spec, x, out, with_threads(options));
}
void CpuBackend::kernel_diagonal(const KernelSpec& spec, ConstMatrixView<double> x,
                                 KernelDiagonal<double> out, const AssemblyOptions& options) {
  assemble_diagonal(spec, x, out, with_threads(options));
}

namespace {

std::string shape(std::int64_t r, std::int64_t c) {
  return std::to_string(r) + " x " + std::to_string(c);
}

}  // namespace

void CpuBackend::gemm(bool trans_a, bool trans_b, double alpha, ConstMatrixView<double> a,
                      ConstMatrixView<double> b, double beta, MatrixView<double> c) {
  const std::int64_t m = trans_a ? a.cols : a.rows, k = trans_a ? a.rows : a.cols;
  const std::int64_t kb = trans_b ? b.cols : b.rows, n = trans_b ? b.rows : b.cols;
  if (k != kb || c.rows != m || c.cols != n)
    throw InvalidArgument("gemm shapes do not agree: " + shape(a.rows, a.cols) + (trans_a ? "^T" : "") +
                          " * " + shape(b.rows, b.cols) + (trans_b ? "^T" : "") + " -> " +
                          shape(c.rows, c.cols));
  if (m == 0 || n == 0) return;
  blas::ScopedThreads threads(blas_threads(2.0 * double(m) * double(n) * double(k)));
  blas::gemm<double>(trans_a, trans_b, m, n, k, alpha, a.data, a.ld, b.data, b.ld, beta, c.data, c.ld);
}

void CpuBackend::cholesky(MatrixView<double> a, const char* what) {
  if (a.rows != a.cols) throw InvalidArgument(std::string(what) + " is not square: " + shape(a.rows, a.cols));
  if (a.rows == 0) return;
  int info;
  {
    blas::ScopedThreads threads(blas_threads(double(a.rows) * double(a.rows) * double(a.rows) / 3.0));
    info = blas::potrf_lower(a.rows, a.data, a.ld);
  }
  if (info > 0)
    throw NumericalError(std::string(what) + " is not positive definite (leading minor " +
                         std::to_string(info) + " of " + std::to_string(a.rows) + ")");
  if (info < 0) throw InternalError("potrf argument " + std::to_string(-info) + " invalid");
}

void CpuBackend::spd_inverse(MatrixView<double> a, const char* what) {
  cholesky(a, what);
  int info;
  {
    blas::ScopedThreads threads(blas_threads(2.0 * double(a.rows) * double(a.rows) * double(a.rows) / 3.0));
    info = blas::potri_lower(a.rows, a.data, a.ld);
  }
  if (info != 0)
    throw NumericalError(std::string(what) + ": inverse failed (potri info " + std::to_string(info) + ")");
  detail::mirror_lower_to_upper(a.data, a.rows, a.ld);
}

void CpuBackend::triangular_solve(ConstMatrixView<double> l, MatrixView<double> b, bool transpose) {
  if (l.rows != l.cols || b.rows != l.rows)
    throw InvalidArgument("triangular solve shapes do not agree: " + shape(l.rows, l.cols) + " \\ " +
                          shape(b.rows, b.cols));
  if (b.rows == 0 || b.cols == 0) return;
  blas::ScopedThreads threads(blas_threads(double(l.rows) * double(l.rows) * double(b.cols)));
  blas::trsm_lower(transpose, l.rows, b.cols, l.data, l.ld, b.data, b.ld);
}

void CpuBackend::syrk_lower(double alpha, ConstMatrixView<double> a, double beta, MatrixView<double> c) {
  check_syrk_shapes(a, c);
  if (c.rows == 0) return;
  if (a.cols == 0) {  // OpenBLAS refuses lda = 0
    scale_by_beta(beta, c, true);
    return;
  }
  blas::ScopedThreads threads(blas_threads(double(c.rows) * double(c.rows) * double(a.cols)));
  blas::syrk_lower(c.rows, a.cols, alpha, a.data, a.ld, beta, c.data, c.ld);
}

void CpuBackend::multiply_by_lower(MatrixView<double> b, ConstMatrixView<double> l) {
  check_lower_product_shapes(b, l);
  if (b.rows == 0 || b.cols == 0) return;
  blas::ScopedThreads threads(blas_threads(double(b.rows) * double(l.rows) * double(l.rows)));
  blas::trmm_right_lower(b.rows, b.cols, l.data, l.ld, b.data, b.ld);
}

}  // namespace ntk
