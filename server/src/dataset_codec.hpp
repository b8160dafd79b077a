#pragma once
// Datasets on the wire and on disk. An upload is a header then raw bytes (x, then labels or
// targets); UploadAssembler checks every byte as it arrives and never holds more than the header
// announced. A stored dataset file is "NTKDSET1", the DatasetInfo message (length-prefixed), the
// same raw payload, and a CRC-32C of everything before it.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ntk/matrix.hpp"
#include "ntkserve/v1/dataset.pb.h"

namespace ntkserver {

namespace pb = ::ntkserve::v1;

// The decoded, validated contents of a dataset, in the form the core computes on.
struct DatasetData {
  ntk::Matrix<double> x;             // N x d
  std::vector<std::int64_t> labels;  // N, when the dataset has labels
  ntk::Matrix<double> targets;       // N x C, when it has soft targets
  std::size_t bytes() const {
    return (x.size() + targets.size()) * sizeof(double) + labels.size() * sizeof(std::int64_t);
  }
};

// Validates an upload header (name, dtype, shape, label/target flags, sha256 syntax, metadata);
// returns the exact number of payload bytes that must follow. Throws InvalidArgument naming the
// field, ResourceExhausted when the payload exceeds max_bytes.
std::int64_t check_upload_header(const pb::UploadHeader& header, std::int64_t max_bytes);

class UploadAssembler {
 public:
  UploadAssembler(const pb::UploadHeader& header, std::int64_t max_bytes);
  ~UploadAssembler();
  // Throws InvalidArgument when the chunk is larger than 1 MiB or overruns the announced size.
  void append(std::string_view chunk);
  std::int64_t received() const { return static_cast<std::int64_t>(payload_.size()); }
  std::int64_t expected() const { return expected_; }
  // Checks completeness, the checksum and the contents (finite values, labels, targets); returns the
  // stored info (sha256 filled in) and the decoded data. The raw payload stays available.
  DatasetData finish(pb::DatasetInfo& info);
  const std::vector<std::uint8_t>& payload() const { return payload_; }

 private:
  pb::UploadHeader header_;
  std::int64_t expected_ = 0;
  std::vector<std::uint8_t> payload_;

 public:
  struct Hasher;  // SHA-256 (OpenSSL EVP), also used by sha256_hex

 private:
  std::unique_ptr<Hasher> hasher_;
};

inline constexpr std::int64_t kMaxChunkBytes = 1 << 20;

// Decodes and validates a payload against its info (used on upload and when loading from disk).
DatasetData decode_payload(const pb::DatasetInfo& info, std::span<const std::uint8_t> payload);

std::vector<std::uint8_t> encode_dataset_file(const pb::DatasetInfo& info,
                                              std::span<const std::uint8_t> payload);
// Throws IoError (named file) for a bad magic, length or checksum.
void decode_dataset_file(std::span<const std::uint8_t> file, const std::string& what, pb::DatasetInfo& info,
                         std::vector<std::uint8_t>& payload);

std::string sha256_hex(std::span<const std::uint8_t> bytes);

}  // namespace ntkserver
