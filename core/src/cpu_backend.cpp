#include "ntk/cpu_backend.hpp"

#include "ntk/blas.hpp"
#include "ntk/cpu_features.hpp"
#include "ntk/parallel.hpp"

namespace ntk {

CpuBackend::CpuBackend(const BackendOptions& options)
    : threads_(options.threads > 0 ? options.threads : default_thread_count()) {
  blas::info();  // load and log the BLAS now rather than inside the first request
}

std::string CpuBackend::description() const {
  return "cpu (" + cpu_model_name() + ", " + std::to_string(threads_) + " threads, kernel ISA " + kernel_isa() +
         ", BLAS " + blas::describe() + ")";
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
void CpuBackend::kernel_diagonal(const KernelSpec& spec, ConstMatrixView<double> x, KernelDiagonal<double> out,
                                 const AssemblyOptions& options) {
  assemble_diagonal(spec, x, out, with_threads(options));
}

}  // namespace ntk
