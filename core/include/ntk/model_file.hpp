#pragma once
// The on-disk form of a fitted Model (docs/model_format.md has the byte layout): magic "NTKMODEL", a
// format version, flags, tagged sections and a CRC-32C trailer. Doubles are stored as their raw
// little-endian bit patterns, so save/load round-trips every field bit for bit.
//
// Errors: a missing file is NotFound, a file that cannot be read or written is IoError; everything
// wrong with the content (truncated, bad magic, newer version, bad checksum, inconsistent shapes,
// non-finite numbers) is InvalidArgument. Every message names the path (or `what`) and the problem.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ntk/model.hpp"

namespace ntk {

// The newest format version this build writes and reads. Older versions are read too.
inline constexpr std::uint32_t kModelFormatVersion = 1;

// Writes atomically, as write_npy: a temporary file in the same directory, fsync, rename. On failure
// nothing is left at `path` (nor the temporary). Throws InvalidArgument for a model that fails the
// checks load_model makes, so that a file that was written can always be read back.
void save_model(const std::string& path, const Model& m);
Model load_model(const std::string& path);

// The same bytes as a file, for streaming models over the wire. `what` names the source in messages.
std::vector<std::uint8_t> serialize_model(const Model& m);
Model deserialize_model(std::span<const std::uint8_t> bytes, const std::string& what);

// The structural checks both directions make: shapes consistent with num_classes and x_train, finite
// numbers. Throws InvalidArgument naming `what` and the field.
void check_model(const Model& m, const std::string& what);

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the trailer. `crc` is the
// value returned for the bytes before, 0 to start: crc32c(ab) == crc32c(b, crc32c(a)).
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);

}  // namespace ntk
