#pragma once
// The wire conversions (proto/wire) under the names the server's code uses.
#include "wire/convert.hpp"

namespace ntkserver {

using ntkwire::decode_matrix;
using ntkwire::encode_column;
using ntkwire::encode_int64_column;
using ntkwire::encode_matrix;
using ntkwire::from_proto;
using ntkwire::to_proto;

}  // namespace ntkserver
