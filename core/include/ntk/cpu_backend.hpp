#pragma once
#include <memory>

#include "ntk/backend.hpp"

namespace ntk {
namespace detail {
struct ThinProductWorkers;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options = {});
  std::string name() const override { return "cpu"; }
  std::string description() const override;
  int threads() const { return threads_; }

  void kernel(const KernelSpec& spec, ConstMatrixView<float> x1, const ConstMatrixView<float>* x2,
              KernelOutputs<float> out, const AssemblyOptions& options) override;
  void kernel(const KernelSpec& spec, ConstMatrixView<double> x1, const ConstMatrixView<double>* x2,
              KernelOutputs<double> out, const AssemblyOptions& options) override;
  void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<float> x, KernelDiagonal<float> out,
                       const AssemblyOptions& options) override;
  void kernel_diagonal(const KernelSpec& spec, ConstMatrixView<double> x, KernelDiagonal<double> out,
                       const AssemblyOptions& options) override;

  void gemm(bool trans_a, bool trans_b, double alpha, ConstMatrixView<double> a, ConstMatrixView<double> b,
            double beta, MatrixView<double> c) override;
  void cholesky(MatrixView<double> a, const char* what) override;
  void spd_inverse(MatrixView<double> a, const char* what) override;
  void triangular_solve(ConstMatrixView<double> l, MatrixView<double> b, bool transpose) override;
  void syrk_lower(double alpha, ConstMatrixView<double> a, double beta, MatrixView<double> c) override;
  void multiply_by_lower(MatrixView<double> b, ConstMatrixView<double> l) override;
  // Keeps a view of `a`; thin products (<= 32 columns) bypass the BLAS (cpu_resident_matrix.cpp).
  std::unique_ptr<ResidentMatrix> make_resident(ConstMatrixView<double> a, const char* what) override;
  // The training inputs prepared once (cpu_kernel_product.cpp).
  std::unique_ptr<KernelProduct> make_kernel_product(const KernelSpec& spec, bool float32,
                                                     ConstMatrixView<double> x_train,
                                                     ConstMatrixView<double> b) override;

 private:
  AssemblyOptions with_threads(const AssemblyOptions& options) const;
  // BLAS/LAPACK threads for a call of `flops`: one below ~64 MFLOP, where OpenBLAS's hand-off costs more
  // than it gains and its idle workers then spin (sched_yield) for a while, taking the cores from whatever
  // runs next (Newton-CG's thin products, between its small preconditioner solves).
  int blas_threads(double flops) const { return flops < 64e6 ? 1 : threads_; }
  int threads_;
  std::shared_ptr<detail::ThinProductWorkers> thin_workers_;  // shared by this backend's resident matrices
};

}  // namespace ntk
