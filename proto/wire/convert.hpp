#pragma once
// Between the wire types (shared by the server and the clients) (ntkserve.v1) and the core's, with every
// check named after the field.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ntk/kernel_spec.hpp"
#include "ntk/matrix.hpp"
#include "ntk/model.hpp"
#include "ntkserve/v1/common.pb.h"

namespace ntkwire {

namespace pb = ::ntkserve::v1;

// Throws InvalidArgument naming `field` (e.g. "spec.activation.name").
ntk::KernelSpec from_proto(const pb::KernelSpec& spec, ntk::ComputeType& dtype,
                           const std::string& field = "spec");
pb::KernelSpec to_proto(const ntk::KernelSpec& spec, ntk::ComputeType dtype);

// A FLOAT32/FLOAT64 matrix as float64, all values finite. max_cols = 0: any.
ntk::Matrix<double> decode_matrix(const pb::Matrix& m, const std::string& field);
void encode_matrix(ntk::ConstMatrixView<double> m, bool as_float32, pb::Matrix* out);
void encode_column(std::span<const double> v, bool as_float32, pb::Matrix* out);
void encode_int64_column(std::span<const std::int64_t> v, pb::Matrix* out);

}  // namespace ntkwire
