#pragma once
// Per-entry arithmetic of the GPML 3.3 Laplace factors (newton.hpp), shared by the host (newton.cpp)
// and the CUDA kernels that form them on the device (cuda/src/laplace_factors.cu). K = k Theta,
// D_c = diag(p_c), sd = sqrt(p_c).
#include "ntk/hd.hpp"

namespace ntk::laplace {

// Entry (i, q) of B_c = I + D_c^1/2 K D_c^1/2.
NTK_HD double b_entry(bool diagonal, double sd_i, double k, double theta_iq, double sd_q) {
  return (diagonal ? 1.0 : 0.0) + sd_i * k * theta_iq * sd_q;
}

// Entry (i, q) of E_c = D_c^1/2 B_c^-1 D_c^1/2 from the entry of B_c^-1.
NTK_HD double e_entry(double b_inverse_iq, double sd_i, double sd_q) {
  return b_inverse_iq * (sd_i * sd_q);
}

}  // namespace ntk::laplace
