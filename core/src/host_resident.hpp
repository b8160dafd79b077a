#pragma once
// Helpers of the host-side ResidentMatrix implementations (the Backend default and the CPU backend's).
#include <memory>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/matrix.hpp"

namespace ntk::detail {

struct ThinProductWorkers;

std::vector<double> diagonal_of(ConstMatrixView<double> a);
double max_abs_row_sum_of(ConstMatrixView<double> a);

// `a` moved into the result, which multiplies through backend.make_resident(a).
std::unique_ptr<ResidentMatrix> own_resident(Backend& backend, Matrix<double> a, const char* what);

// The CPU backend's workers for its resident matrices' thin products (cpu_resident_matrix.cpp).
std::shared_ptr<ThinProductWorkers> make_thin_product_workers(int threads);

}  // namespace ntk::detail
