#include "ntk/errors.hpp"
#include "ntk/kernel_assembly.hpp"
#include "services.hpp"
#include "wire.hpp"

namespace ntkserver {

namespace {
struct KernelMatrixInput {
  std::shared_ptr<const DatasetData> dataset;
  ntk::Matrix<double> inline_x;
  ntk::ConstMatrixView<double> x;
};

KernelMatrixInput resolve(Runtime& rt, const Call& call, const pb::KernelInput& in,
                          const std::string& field) {
  KernelMatrixInput r;
  if (in.has_x()) {
    r.inline_x = decode_matrix(in.x(), field + ".x");
    r.x = r.inline_x.view();
  } else if (in.source_case() == pb::KernelInput::kDataset) {
    r.dataset = rt.store.dataset(call.tenant(), in.dataset());
    r.x = r.dataset->x.view();
  } else {
    throw ntk::InvalidArgument(field + ": give x (a matrix) or dataset (a name)");
  }
  return r;
}
}  // namespace

grpc::Status KernelServiceImpl::ComputeKernel(grpc::ServerContext* ctx,
                                              const pb::ComputeKernelRequest* request,
                                              grpc::ServerWriter<pb::KernelTile>* writer) {
  return handle(rt_, ctx, "ComputeKernel", [&](Call& call) {
    ntk::ComputeType dtype = ntk::ComputeType::float64;
    const ntk::KernelSpec spec = from_proto(request->spec(), dtype, "spec");
    const bool nngp = request->kind() == pb::NNGP;
    const KernelMatrixInput x1 = resolve(rt_, call, request->x1(), "x1");
    KernelMatrixInput x2;
    if (request->has_x2()) {
      if (request->diagonal_only())
        throw ntk::InvalidArgument("diagonal_only is K(x, x) of x1; do not give x2");
      x2 = resolve(rt_, call, request->x2(), "x2");
      if (x2.x.cols != x1.x.cols)
        throw ntk::InvalidArgument("x1 has " + std::to_string(x1.x.cols) + " columns, x2 has " +
                                   std::to_string(x2.x.cols));
    }
    const ntk::ConstMatrixView<double> right = request->has_x2() ? x2.x : x1.x;
    if (request->tile_rows() < 0 || request->tile_cols() < 0)
      throw ntk::InvalidArgument("tile sizes must be >= 0");
    const std::int64_t tile_rows = request->tile_rows() > 0 ? request->tile_rows() : 1024;
    const std::int64_t tile_cols = request->tile_cols() > 0 ? request->tile_cols() : right.rows;
    const bool f32 = request->float32_results();
    auto backend = rt_.backends.acquire([&] { call.check_alive(); });
    ntk::AssemblyOptions options;
    options.threads = rt_.options.threads;
    if (request->diagonal_only()) {
      for (std::int64_t r0 = 0; r0 < x1.x.rows; r0 += tile_rows) {
        call.check_alive();
        const std::int64_t rows = std::min(tile_rows, x1.x.rows - r0);
        Reservation memory =
            rt_.budget.reserve(static_cast<std::uint64_t>(16 * rows), "kernel diagonal tile");
        std::vector<double> nngp_diag(static_cast<std::size_t>(rows)),
            ntk_diag(static_cast<std::size_t>(rows));
        backend->kernel_diagonal(spec, x1.x.block(r0, 0, rows, x1.x.cols), {nngp_diag, ntk_diag}, options);
        pb::KernelTile tile;
        tile.set_row_offset(r0);
        encode_column(nngp ? nngp_diag : ntk_diag, f32, tile.mutable_values());
        if (!writer->Write(tile)) throw ntk::Cancelled("ComputeKernel: the client stopped reading");
      }
      return;
    }
    for (std::int64_t r0 = 0; r0 < x1.x.rows; r0 += tile_rows) {
      const std::int64_t rows = std::min(tile_rows, x1.x.rows - r0);
      for (std::int64_t c0 = 0; c0 < right.rows; c0 += tile_cols) {
        call.check_alive();
        const std::int64_t cols = std::min(tile_cols, right.rows - c0);
        Reservation memory =
            rt_.budget.reserve(static_cast<std::uint64_t>(8 * rows * cols * 2),
                               "kernel tile " + std::to_string(rows) + " x " + std::to_string(cols));
        ntk::Matrix<double> block(rows, cols);
        const ntk::ConstMatrixView<double> b = right.block(c0, 0, cols, right.cols);
        // The whole symmetric matrix in one tile: the symmetric path (exact diagonal, half the work).
        const bool symmetric = !request->has_x2() && rows == x1.x.rows && cols == right.rows;
        const ntk::KernelOutputs<double> out = nngp ? ntk::KernelOutputs<double>{block.view(), {}}
                                                    : ntk::KernelOutputs<double>{{}, block.view()};
        if (dtype == ntk::ComputeType::float32) {
          const auto a32 = ntk::convert_matrix<float>(x1.x.block(r0, 0, rows, x1.x.cols));
          const auto b32 = ntk::convert_matrix<float>(b);
          ntk::Matrix<float> block32(rows, cols);
          const auto b32v = b32.view();
          const ntk::KernelOutputs<float> out32 = nngp ? ntk::KernelOutputs<float>{block32.view(), {}}
                                                       : ntk::KernelOutputs<float>{{}, block32.view()};
          backend->kernel(spec, a32.view(), symmetric ? nullptr : &b32v, out32, options);
          block = ntk::convert_matrix<double>(block32.view());
        } else {
          backend->kernel(spec, x1.x.block(r0, 0, rows, x1.x.cols), symmetric ? nullptr : &b, out, options);
        }
        pb::KernelTile tile;
        tile.set_row_offset(r0);
        tile.set_col_offset(c0);
        encode_matrix(block.view(), f32, tile.mutable_values());
        if (!writer->Write(tile)) throw ntk::Cancelled("ComputeKernel: the client stopped reading");
      }
    }
  });
}

}  // namespace ntkserver
