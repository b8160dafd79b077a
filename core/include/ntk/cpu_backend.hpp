#pragma once
#include "ntk/backend.hpp"

namespace ntk {

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

 private:
  AssemblyOptions with_threads(const AssemblyOptions& options) const;
  int threads_;
};

}  // namespace ntk
