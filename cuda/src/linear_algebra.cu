// Dense float64 linear algebra of the Backend interface on host matrices: upload, cuBLAS/cuSOLVER
// (64-bit API), download. The solvers will keep their matrices resident on the device; until then
// these serve correctness and the differential tests.
#include <algorithm>
#include <limits>
#include <sstream>
#include <vector>

#include "linear_algebra.cuh"
#include "ntk/cuda/errors.cuh"
#include "ntk/detail/transpose.hpp"
#include "transfer.cuh"

namespace ntk::cuda {
namespace {

void download(const DeviceBuffer& b, MatrixView<double> m, cudaStream_t s) {
  copy_to_host(m, b.as<double>(), s);
  NTK_CUDA_CHECK(cudaStreamSynchronize(s));
}

std::string shape(std::int64_t r, std::int64_t c) {
  return std::to_string(r) + " x " + std::to_string(c);
}

void check_square(ConstMatrixView<double> a, const char* what) {
  if (a.rows != a.cols) throw InvalidArgument(std::string(what) + " is not square: " + shape(a.rows, a.cols));
}

// The 64-bit cuSOLVER API's parameter object, destroyed with its scope.
class SolverParams {
 public:
  SolverParams() { NTK_CUSOLVER_CHECK(cusolverDnCreateParams(&params_)); }
  ~SolverParams() { cusolverDnDestroyParams(params_); }
  SolverParams(const SolverParams&) = delete;
  SolverParams& operator=(const SolverParams&) = delete;
  cusolverDnParams_t get() const { return params_; }

 private:
  cusolverDnParams_t params_ = nullptr;
};

// The device copy of a product's output: uploaded when beta makes its old contents count.
DeviceBuffer result_buffer(DeviceResources& r, ConstMatrixView<double> c, double beta, const char* what,
                           cudaStream_t s) {
  return beta != 0 ? upload(r, c, what, s)
                   : r.pool().allocate(std::size_t(c.rows * c.cols) * sizeof(double), what);
}

}  // namespace

void gemm(DeviceResources& r, bool ta, bool tb, double alpha, ConstMatrixView<double> a,
          ConstMatrixView<double> b, double beta, MatrixView<double> c) {
  const std::int64_t m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
  const std::int64_t kb = tb ? b.cols : b.rows, n = tb ? b.rows : b.cols;
  if (k != kb || c.rows != m || c.cols != n)
    throw InvalidArgument("gemm shapes do not agree: " + shape(a.rows, a.cols) + " * " +
                          shape(b.rows, b.cols) + " -> " + shape(c.rows, c.cols));
  if (m == 0 || n == 0) return;
  if (k == 0) {  // cuBLAS refuses the zero leading dimension
    scale_by_beta(beta, c, false);
    return;
  }
  r.activate();
  cudaStream_t s = r.stream(0);
  DeviceBuffer da = upload(r, a, "gemm operand", s), db = upload(r, b, "gemm operand", s);
  DeviceBuffer dc = result_buffer(r, c, beta, "gemm result", s);
  cublasHandle_t h = r.cublas();
  NTK_CUBLAS_CHECK(cublasSetStream(h, s));
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  NTK_CUBLAS_CHECK(cublasDgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(n),
                               int(m), int(k), &alpha, db.as<double>(), int(b.cols), da.as<double>(),
                               int(a.cols), &beta, dc.as<double>(), int(n)));
  download(dc, c, s);
}

void factor_on_device(DeviceResources& r, double* d, std::int64_t n, const char* what, cudaStream_t s) {
  cusolverDnHandle_t h = r.cusolver();
  NTK_CUSOLVER_CHECK(cusolverDnSetStream(h, s));
  const SolverParams params;
  std::size_t device_bytes = 0, host_bytes = 0;
  NTK_CUSOLVER_CHECK(cusolverDnXpotrf_bufferSize(h, params.get(), CUBLAS_FILL_MODE_UPPER, n, CUDA_R_64F, d, n,
                                                 CUDA_R_64F, &device_bytes, &host_bytes));
  DeviceBuffer work = r.pool().allocate(std::max<std::size_t>(device_bytes, 1), "Cholesky workspace");
  DeviceBuffer info = r.pool().allocate(sizeof(int), "Cholesky info");
  std::vector<char> host_work(std::max<std::size_t>(host_bytes, 1));
  NTK_CUSOLVER_CHECK(cusolverDnXpotrf(h, params.get(), CUBLAS_FILL_MODE_UPPER, n, CUDA_R_64F, d, n,
                                      CUDA_R_64F, work.as<void>(), device_bytes, host_work.data(), host_bytes,
                                      info.as<int>()));
  int host_info = 0;
  NTK_CUDA_CHECK(cudaMemcpyAsync(&host_info, info.as<int>(), sizeof(int), cudaMemcpyDeviceToHost, s));
  NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  if (host_info > 0)
    throw NumericalError(std::string(what) + " is not positive definite (leading minor " +
                         std::to_string(host_info) + " of " + std::to_string(n) + ")");
  if (host_info < 0)
    throw InternalError("cusolverDnXpotrf argument " + std::to_string(-host_info) + " invalid");
}

void cholesky(DeviceResources& r, MatrixView<double> a, const char* what) {
  check_square(a, what);
  if (a.rows == 0) return;
  r.activate();
  cudaStream_t s = r.stream(0);
  DeviceBuffer d = upload(r, a, "Cholesky factor", s);
  factor_on_device(r, d.as<double>(), a.rows, what, s);
  download(d, a, s);
}

void invert_factored_on_device(DeviceResources& r, double* d, std::int64_t n, const char* what,
                               cudaStream_t s) {
  if (n > std::numeric_limits<int>::max())
    throw InvalidArgument(std::string(what) + ": " + std::to_string(n) + " rows is beyond cuSOLVER's potri");
  cusolverDnHandle_t h = r.cusolver();
  NTK_CUSOLVER_CHECK(cusolverDnSetStream(h, s));
  // potri has no 64-bit-API form; n fits in int (checked above).
  int work_elems = 0;
  NTK_CUSOLVER_CHECK(cusolverDnDpotri_bufferSize(h, CUBLAS_FILL_MODE_UPPER, int(n), d, int(n), &work_elems));
  DeviceBuffer work =
      r.pool().allocate(std::size_t(std::max(work_elems, 1)) * sizeof(double), "inverse workspace");
  DeviceBuffer info = r.pool().allocate(sizeof(int), "inverse info");
  NTK_CUSOLVER_CHECK(cusolverDnDpotri(h, CUBLAS_FILL_MODE_UPPER, int(n), d, int(n), work.as<double>(),
                                      work_elems, info.as<int>()));
  int host_info = 0;
  NTK_CUDA_CHECK(cudaMemcpyAsync(&host_info, info.as<int>(), sizeof(int), cudaMemcpyDeviceToHost, s));
  NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  if (host_info != 0)
    throw NumericalError(std::string(what) + ": inverse failed (potri info " + std::to_string(host_info) +
                         ")");
}

// Factor and inverse in one upload: the factor never returns to the host in between.
void spd_inverse(DeviceResources& r, MatrixView<double> a, const char* what) {
  check_square(a, what);
  const std::int64_t n = a.rows;
  if (n == 0) return;
  if (n > std::numeric_limits<int>::max())
    throw InvalidArgument(std::string(what) + ": " + std::to_string(n) + " rows is beyond cuSOLVER's potri");
  r.activate();
  cudaStream_t s = r.stream(0);
  DeviceBuffer d = upload(r, a, "inverse", s);
  factor_on_device(r, d.as<double>(), n, what, s);
  invert_factored_on_device(r, d.as<double>(), n, what, s);
  download(d, a, s);
  detail::mirror_lower_to_upper(a.data, n, a.ld);
}

void triangular_solve(DeviceResources& r, ConstMatrixView<double> l, MatrixView<double> b, bool transpose) {
  if (l.rows != l.cols || b.rows != l.rows)
    throw InvalidArgument("triangular solve shapes do not agree: " + shape(l.rows, l.cols) + " \\ " +
                          shape(b.rows, b.cols));
  if (b.rows == 0 || b.cols == 0) return;
  r.activate();
  cudaStream_t s = r.stream(0);
  DeviceBuffer dl = upload(r, l, "triangular factor", s),
               db = upload(r, b, "triangular solve right-hand side", s);
  cublasHandle_t h = r.cublas();
  NTK_CUBLAS_CHECK(cublasSetStream(h, s));
  const double one = 1;
  // Row-major L X = B is column-major X^T L^T = B^T, with L^T upper triangular in column-major storage.
  NTK_CUBLAS_CHECK(cublasDtrsm(h, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_UPPER,
                               transpose ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, int(b.cols),
                               int(b.rows), &one, dl.as<double>(), int(l.cols), db.as<double>(),
                               int(b.cols)));
  download(db, b, s);
}

// cusolverDnXpotrs on the factor as factor_on_device() leaves it (row-major lower = column-major upper,
// A = U^T U). potrs wants B column-major (N x m); rhs is row-major, so it is transposed on the way in and
// out (DGEAM) unless it is a single column, whose memory is the same either way.
void cholesky_solve_on_device(DeviceResources& r, const double* factor, std::int64_t n, double* rhs,
                              std::int64_t m, cudaStream_t s) {
  cublasHandle_t blas = r.cublas();
  NTK_CUBLAS_CHECK(cublasSetStream(blas, s));
  const double one = 1, zero = 0;
  DeviceBuffer column_major;
  double* b = rhs;
  if (m > 1) {
    // Column-major (m x n, ld m) transposed into column-major n x m (ld n).
    column_major = r.pool().allocate(std::size_t(n * m) * sizeof(double), "Cholesky solve right-hand side");
    // beta = 0: B is not read; passing C itself (same ld, no transpose) is cuBLAS's in-place form.
    NTK_CUBLAS_CHECK(cublasDgeam_64(blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, &one, rhs, m, &zero,
                                    column_major.as<double>(), n, column_major.as<double>(), n));
    b = column_major.as<double>();
  }
  cusolverDnHandle_t h = r.cusolver();
  NTK_CUSOLVER_CHECK(cusolverDnSetStream(h, s));
  const SolverParams params;
  DeviceBuffer info = r.pool().allocate(sizeof(int), "Cholesky solve info");
  NTK_CUSOLVER_CHECK(cusolverDnXpotrs(h, params.get(), CUBLAS_FILL_MODE_UPPER, n, m, CUDA_R_64F, factor, n,
                                      CUDA_R_64F, b, n, info.as<int>()));
  if (m > 1)
    NTK_CUBLAS_CHECK(cublasDgeam_64(blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, &one, b, n, &zero, rhs, m, rhs, m));
  int host_info = 0;
  NTK_CUDA_CHECK(cudaMemcpyAsync(&host_info, info.as<int>(), sizeof(int), cudaMemcpyDeviceToHost, s));
  NTK_CUDA_CHECK(cudaStreamSynchronize(s));
  if (host_info != 0)
    throw InternalError("cusolverDnXpotrs argument " + std::to_string(-host_info) + " invalid");
}

void cholesky_solve(DeviceResources& r, ConstMatrixView<double> l, MatrixView<double> b) {
  if (l.rows != l.cols || b.rows != l.rows)
    throw InvalidArgument("Cholesky solve shapes do not agree: " + shape(l.rows, l.cols) + " \\ " +
                          shape(b.rows, b.cols));
  if (b.rows == 0 || b.cols == 0) return;
  r.activate();
  const DeviceBuffer dl = upload(r, l, "Cholesky factor", r.stream(0));
  cholesky_solve_host_rhs(r, dl.as<double>(), b);
}

void cholesky_solve_host_rhs(DeviceResources& r, const double* factor, MatrixView<double> b) {
  if (b.rows == 0 || b.cols == 0) return;
  r.activate();
  cudaStream_t s = r.stream(0);
  DeviceBuffer db = upload(r, b, "Cholesky solve right-hand side", s);
  cholesky_solve_on_device(r, factor, b.rows, db.as<double>(), b.cols, s);
  download(db, b, s);
}

// Row-major c = alpha a a^T + beta c (lower triangle) is column-major C^T = alpha A^T A + beta C^T with
// A = a's memory read column-major (k x n) and the upper triangle of C^T: DSYRK(upper, transposed).
void syrk_lower(DeviceResources& r, double alpha, ConstMatrixView<double> a, double beta,
                MatrixView<double> c) {
  check_syrk_shapes(a, c);
  const std::int64_t n = c.rows, k = a.cols;
  if (n == 0) return;
  if (k == 0) {
    scale_by_beta(beta, c, true);
    return;
  }
  r.activate();
  cudaStream_t s = r.stream(0);
  DeviceBuffer da = upload(r, a, "syrk operand", s);
  DeviceBuffer dc = result_buffer(r, c, beta, "syrk result", s);
  cublasHandle_t h = r.cublas();
  NTK_CUBLAS_CHECK(cublasSetStream(h, s));
  NTK_CUBLAS_CHECK(cublasDsyrk_64(h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, n, k, &alpha, da.as<double>(), k,
                                  &beta, dc.as<double>(), n));
  download(dc, c, s);
}

// Row-major b <- b L is column-major B^T <- L^T B^T, and L's row-major lower triangle read column-major
// is L^T, upper: DTRMM(left, upper, no transpose), in place (cuBLAS's C = B form).
void multiply_by_lower(DeviceResources& r, MatrixView<double> b, ConstMatrixView<double> l) {
  check_lower_product_shapes(b, l);
  const std::int64_t m = b.rows, n = b.cols;
  if (m == 0 || n == 0) return;
  r.activate();
  cudaStream_t s = r.stream(0);
  DeviceBuffer dl = upload(r, l, "triangular factor", s), db = upload(r, b, "triangular product operand", s);
  cublasHandle_t h = r.cublas();
  NTK_CUBLAS_CHECK(cublasSetStream(h, s));
  const double one = 1;
  NTK_CUBLAS_CHECK(cublasDtrmm_64(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                                  CUBLAS_DIAG_NON_UNIT, n, m, &one, dl.as<double>(), n, db.as<double>(), n,
                                  db.as<double>(), n));
  download(db, b, s);
}

}  // namespace ntk::cuda
