#pragma once
#include "ntk/cuda/resources.cuh"
#include "ntk/matrix.hpp"

namespace ntk::cuda {

void gemm(DeviceResources& r, bool trans_a, bool trans_b, double alpha, ConstMatrixView<double> a,
          ConstMatrixView<double> b, double beta, MatrixView<double> c);
void cholesky(DeviceResources& r, MatrixView<double> a, const char* what);
void spd_inverse(DeviceResources& r, MatrixView<double> a, const char* what);
void triangular_solve(DeviceResources& r, ConstMatrixView<double> l, MatrixView<double> b, bool transpose);
void cholesky_solve(DeviceResources& r, ConstMatrixView<double> l, MatrixView<double> b);
void syrk_lower(DeviceResources& r, double alpha, ConstMatrixView<double> a, double beta,
                MatrixView<double> c);
void multiply_by_lower(DeviceResources& r, MatrixView<double> b, ConstMatrixView<double> l);

// On matrices already in device memory (row-major, packed), on stream s; each synchronizes s before
// it returns (to read its status).
// The lower Cholesky factor of the n x n matrix d in place (row-major lower = column-major upper: the
// 64-bit API's CUBLAS_FILL_MODE_UPPER); NumericalError naming `what` when it is not positive definite.
void factor_on_device(DeviceResources& r, double* d, std::int64_t n, const char* what, cudaStream_t s);
// d (as factor_on_device leaves it) <- the inverse's lower triangle (row-major; the upper is not written).
void invert_factored_on_device(DeviceResources& r, double* d, std::int64_t n, const char* what,
                               cudaStream_t s);
// rhs (n x m) <- A^-1 rhs with A = L L^T and `factor` as factor_on_device leaves it.
void cholesky_solve_on_device(DeviceResources& r, const double* factor, std::int64_t n, double* rhs,
                              std::int64_t m, cudaStream_t s);
// b (on the host, N x m) <- A^-1 b with A's factor on the device (as factor_on_device leaves it): b up,
// cholesky_solve_on_device, b down, on stream 0. The caller holds what serializes the device's work.
void cholesky_solve_host_rhs(DeviceResources& r, const double* factor, MatrixView<double> b);

}  // namespace ntk::cuda
