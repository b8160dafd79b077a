// The CPU backend's KernelProduct: the training inputs are checked and their layer variances computed
// once (PreparedColumns), so each prediction block only prepares its own rows. Without this a one-row
// prediction spent most of its time re-scanning and re-norming the whole training set.
#include <algorithm>
#include <type_traits>
#include <utility>

#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"

namespace ntk {
namespace {

template <class T>
class CpuKernelProduct final : public KernelProduct {
 public:
  // For T = float the training inputs are rounded into an owned copy; for double they are the caller's.
  CpuKernelProduct(CpuBackend& backend, const KernelSpec& spec, ConstMatrixView<double> x_train,
                   ConstMatrixView<double> b)
      : KernelProduct(x_train.rows),
        backend_(backend),
        rounded_(std::is_same_v<T, float> ? convert_matrix<T>(x_train) : Matrix<T>()),
        columns_(spec, training_view(x_train)),
        b_(b) {}

  void apply(ConstMatrixView<double> x, double beta, MatrixView<double> out,
             const AssemblyOptions& options) override {
    const ConstMatrixView<T> train = columns_.x();
    check_kernel_product_shapes(x, out, train.cols, b_.cols);
    AssemblyOptions o = options;
    if (o.threads <= 0) o.threads = backend_.threads();
    // Row blocks of ~64 MiB of kernel.
    const std::int64_t block =
        std::max<std::int64_t>(1, (std::int64_t(8) << 20) / std::max<std::int64_t>(n_, 1));
    Matrix<T> k;
    Matrix<double> wide;
    for (std::int64_t r0 = 0; r0 < x.rows; r0 += block) {
      const std::int64_t rows = std::min(block, x.rows - r0);
      if (k.rows() != rows) k = Matrix<T>(rows, n_);
      const ConstMatrixView<double> xb = x.block(r0, 0, rows, x.cols);
      if constexpr (std::is_same_v<T, double>) {
        assemble_kernel<double>(xb, columns_, {{}, k.view()}, o);
        backend_.gemm(false, false, 1.0, k.view(), b_, beta, out.block(r0, 0, rows, out.cols));
      } else {
        const Matrix<T> xb_rounded = convert_matrix<T>(xb);
        assemble_kernel<T>(xb_rounded.view(), columns_, {{}, k.view()}, o);
        wide = convert_matrix<double>(std::as_const(k).view());
        backend_.gemm(false, false, 1.0, wide.view(), b_, beta, out.block(r0, 0, rows, out.cols));
      }
    }
  }

 private:
  ConstMatrixView<T> training_view(ConstMatrixView<double> x_train) const {
    if constexpr (std::is_same_v<T, double>)
      return x_train;
    else
      return rounded_.view();
  }

  CpuBackend& backend_;
  Matrix<T> rounded_;  // before columns_, which refers to it
  PreparedColumns<T> columns_;
  ConstMatrixView<double> b_;
};

}  // namespace

std::unique_ptr<KernelProduct> CpuBackend::make_kernel_product(const KernelSpec& spec, bool float32,
                                                               ConstMatrixView<double> x_train,
                                                               ConstMatrixView<double> b) {
  check_kernel_product_operands(x_train, b);
  if (float32) return std::make_unique<CpuKernelProduct<float>>(*this, spec, x_train, b);
  return std::make_unique<CpuKernelProduct<double>>(*this, spec, x_train, b);
}

}  // namespace ntk
