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

}  // namespace ntk::cuda
