#pragma once
// One interface, several implementations (CPU; CUDA when built): every algorithm reaches the hardware
// only through a Backend, and the CPU backend is the test oracle for the others.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "ntk/kernel_assembly.hpp"

namespace ntk {

class Backend {
 public:
  virtual ~Backend() = default;
  // "cpu" or "cuda:N".
  virtual std::string name() const = 0;
  // What runs underneath (BLAS and kernel ISA, device name and memory), for logs and health output.
  virtual std::string description() const = 0;

  virtual void kernel(const KernelSpec& spec, ConstMatrixView<float> x1, const ConstMatrixView<float>* x2,
                      KernelOutputs<float> out, const AssemblyOptions& options) = 0;
  virtual void kernel(const KernelSpec& spec, ConstMatrixView<double> x1, const ConstMatrixView<double>* x2,
                      KernelOutputs<double> out, const AssemblyOptions& options) = 0;
  virtual void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<float> x, KernelDiagonal<float> out,
                               const AssemblyOptions& options) = 0;
  virtual void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<double> x, KernelDiagonal<double> out,
                               const AssemblyOptions& options) = 0;

  // Dense float64 linear algebra for the solvers, on host row-major matrices.
  // c = alpha op(a) op(b) + beta c.
  virtual void gemm(bool trans_a, bool trans_b, double alpha, ConstMatrixView<double> a,
                    ConstMatrixView<double> b, double beta, MatrixView<double> c) = 0;
  // In place: the lower triangle becomes L with A = L L^T (the strict upper triangle is left as is).
  // Throws NumericalError naming `what` and the leading minor that is not positive definite.
  virtual void cholesky(MatrixView<double> a, const char* what) = 0;
  // In place: a (symmetric positive definite) becomes a^-1, both triangles. Throws like cholesky().
  virtual void spd_inverse(MatrixView<double> a, const char* what) = 0;
  // b <- L^-1 b (transpose = false) or L^-T b (transpose = true), L lower triangular.
  virtual void triangular_solve(ConstMatrixView<double> l, MatrixView<double> b, bool transpose) = 0;
};

struct BackendOptions {
  int threads = 0;                       // CPU worker threads; 0 = all hardware threads
  std::size_t device_memory_budget = 0;  // bytes a CUDA backend may hold; 0 = 90% of the device's memory
};

// "cpu", "cuda" / "cuda:N", or "auto" (the first usable CUDA device, else the CPU). Logs the choice and
// the reason. Throws InvalidArgument for an unknown name, Unavailable when CUDA is asked for and absent.
std::unique_ptr<Backend> make_backend(std::string_view name, const BackendOptions& options = {});

// Whether this build contains the CUDA backend, and how many devices it can use right now.
bool cuda_backend_built();
int cuda_device_count();

}  // namespace ntk
