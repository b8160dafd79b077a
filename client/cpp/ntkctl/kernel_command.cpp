#include <chrono>
#include <cstdio>

#include "ntk/backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/npy.hpp"
#include "ntkctl/arch_flags.hpp"
#include "ntkctl/commands.hpp"
#include "ntkctl/io.hpp"

namespace ntkctl {

const char* const kKernelHelp =
    "usage: ntkctl kernel --x1 A.npy [--x2 B.npy] [--kernel ntk|nngp] --out K.npy [architecture flags]\n"
    "                     [--diagonal] [--backend auto|cpu|cuda:N] [--threads N] [--tile N]\n"
    "  Writes K(x1, x2) (or K(x1, x1)) as a .npy matrix; with --diagonal, K(x, x) for each row of x1.\n";

namespace {

template <class T>
int compute(const Architecture& arch, const std::string& x1_path, const std::optional<std::string>& x2_path,
            ntk::KernelSelection which, bool diagonal, const std::string& out, ntk::Backend& backend,
            const ntk::AssemblyOptions& options) {
  const ntk::Matrix<T> x1 = load_matrix<T>("x1", x1_path);
  ntk::Matrix<T> x2;
  if (x2_path) x2 = load_matrix<T>("x2", *x2_path);
  const auto start = std::chrono::steady_clock::now();
  ntk::Matrix<T> result;
  try {
    if (diagonal) {
      result = ntk::Matrix<T>(x1.rows(), 1);
      std::span<T> s(result.data(), result.size());
      backend.kernel_diagonal(
          arch.spec, x1.view(),
          which == ntk::KernelSelection::nngp ? ntk::KernelDiagonal<T>{s, {}} : ntk::KernelDiagonal<T>{{}, s},
          options);
    } else {
      const ntk::ConstMatrixView<T> x2v = x2.view();
      result = ntk::Matrix<T>(x1.rows(), x2_path ? x2.rows() : x1.rows());
      const ntk::KernelOutputs<T> outputs = which == ntk::KernelSelection::nngp
                                                ? ntk::KernelOutputs<T>{result.view(), {}}
                                                : ntk::KernelOutputs<T>{{}, result.view()};
      backend.kernel(arch.spec, x1.view(), x2_path ? &x2v : nullptr, outputs, options);
    }
  } catch (const ntk::InvalidArgument& e) {
    // Name the files behind the core's "x1"/"x2"/"x" in the message.
    std::string m = e.what();
    if (x2_path) m = rename_subject(m, "x2", "--x2 '" + *x2_path + "'");
    m = rename_subject(rename_subject(m, "x1", "--x1 '" + x1_path + "'"), "x", "--x1 '" + x1_path + "'");
    throw ntk::InvalidArgument(m);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (diagonal)
    ntk::write_npy(out, sizeof(T) == 4 ? ntk::DType::float32 : ntk::DType::float64, {result.rows()},
                   result.data());
  else
    ntk::write_npy(out, result);
  std::printf("wrote %s: %s %s %lld x %lld (%s) in %.3f s on %s\n", out.c_str(),
              which == ntk::KernelSelection::nngp ? "nngp" : "ntk", diagonal ? "diagonal" : "matrix",
              static_cast<long long>(result.rows()), static_cast<long long>(diagonal ? 1 : result.cols()),
              sizeof(T) == 4 ? "float32" : "float64", seconds, backend.name().c_str());
  return 0;
}

}  // namespace

int run_kernel(Args& args) {
  const Architecture arch = parse_architecture(args);
  const std::string x1 = args.require("x1");
  const std::optional<std::string> x2 = args.get("x2");
  const std::string kernel = args.get("kernel").value_or("ntk");
  const std::string out = args.require("out");
  const bool diagonal = args.flag("diagonal");
  const std::string backend_name = args.get("backend").value_or("auto");
  ntk::AssemblyOptions options;
  ntk::BackendOptions backend_options;
  if (auto t = args.get_int("threads")) {
    if (*t < 1 || *t > 1024) throw ntk::InvalidArgument("--threads must be in [1, 1024]");
    backend_options.threads = static_cast<int>(*t);
  }
  if (auto t = args.get_int("tile")) {
    if (*t < 1) throw ntk::InvalidArgument("--tile must be >= 1");
    options.tile_rows = options.tile_cols = *t;
  }
  args.reject_unused();
  if (kernel != "ntk" && kernel != "nngp")
    throw ntk::InvalidArgument("--kernel must be ntk or nngp, got '" + kernel + "'");
  if (diagonal && x2) throw ntk::InvalidArgument("--diagonal takes --x1 only (K(x, x) for each row)");
  check_output_file("out", out);
  const auto which = kernel == "nngp" ? ntk::KernelSelection::nngp : ntk::KernelSelection::ntk;
  auto backend = ntk::make_backend(backend_name, backend_options);
  if (arch.dtype == ComputeDType::float32)
    return compute<float>(arch, x1, x2, which, diagonal, out, *backend, options);
  return compute<double>(arch, x1, x2, which, diagonal, out, *backend, options);
}

}  // namespace ntkctl
