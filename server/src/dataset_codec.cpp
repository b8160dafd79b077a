#include "dataset_codec.hpp"

#include <openssl/evp.h>

#include <cmath>
#include <cstring>

#include "auth.hpp"
#include "files.hpp"
#include "ntk/errors.hpp"
#include "ntk/model_file.hpp"
#include "ntk/targets.hpp"

namespace ntkserver {

namespace {

constexpr char kMagic[] = "NTKDSET1";

std::int64_t element_size(pb::DType dtype) {
  switch (dtype) {
    case pb::FLOAT32:
      return 4;
    case pb::FLOAT64:
      return 8;
    default:
      return 0;
  }
}

std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  if (a != 0 && b > INT64_MAX / a) throw ntk::InvalidArgument(std::string(what) + ": size overflows");
  return a * b;
}

std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* what) {  // a, b >= 0
  if (b > INT64_MAX - a) throw ntk::InvalidArgument(std::string(what) + ": size overflows");
  return a + b;
}

std::string hex(const unsigned char* data, unsigned size) {
  static const char digits[] = "0123456789abcdef";
  std::string s(2 * size, '0');
  for (unsigned i = 0; i < size; ++i) {
    s[2 * i] = digits[data[i] >> 4];
    s[2 * i + 1] = digits[data[i] & 15];
  }
  return s;
}

template <class T>
T read_le(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // x86-64 and aarch64 Linux are little-endian, as the wire format
  return v;
}

void decode_matrix(const std::uint8_t* p, pb::DType dtype, std::int64_t rows, std::int64_t cols,
                   ntk::Matrix<double>& out, const char* what) {
  out = ntk::Matrix<double>(rows, cols);
  const std::int64_t n = rows * cols;
  double* dst = out.data();
  for (std::int64_t i = 0; i < n; ++i) {
    const double v =
        dtype == pb::FLOAT32 ? static_cast<double>(read_le<float>(p + 4 * i)) : read_le<double>(p + 8 * i);
    if (!std::isfinite(v))
      throw ntk::InvalidArgument(std::string(what) + ": non-finite value at row " + std::to_string(i / cols) +
                                 ", column " + std::to_string(i % cols));
    dst[i] = v;
  }
}

}  // namespace

struct UploadAssembler::Hasher {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  Hasher() {
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1)
      throw ntk::InternalError("SHA-256 init failed");
  }
  ~Hasher() { EVP_MD_CTX_free(ctx); }
  void update(const void* p, std::size_t n) {
    if (EVP_DigestUpdate(ctx, p, n) != 1) throw ntk::InternalError("SHA-256 update failed");
  }
  std::string final_hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned size = 0;
    if (EVP_DigestFinal_ex(ctx, digest, &size) != 1) throw ntk::InternalError("SHA-256 final failed");
    return hex(digest, size);
  }
};

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  UploadAssembler::Hasher h;
  h.update(bytes.data(), bytes.size());
  return h.final_hex();
}

std::int64_t check_upload_header(const pb::UploadHeader& h, std::int64_t max_bytes) {
  if (!valid_dataset_name(h.name()))
    throw ntk::InvalidArgument("dataset name '" + h.name().substr(0, 200) +
                               "' must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  const std::int64_t elem = element_size(h.dtype());
  if (elem == 0) throw ntk::InvalidArgument("header.dtype must be FLOAT32 or FLOAT64");
  if (h.rows() < 1)
    throw ntk::InvalidArgument("header.rows must be >= 1 (got " + std::to_string(h.rows()) + ")");
  if (h.cols() < 1)
    throw ntk::InvalidArgument("header.cols must be >= 1 (got " + std::to_string(h.cols()) + ")");
  if (h.has_labels() && h.has_targets())
    throw ntk::InvalidArgument("header: give labels or targets, not both");
  if (h.num_classes() < 0 || (h.has_targets() && h.num_classes() < 2) || h.num_classes() > (1 << 20))
    throw ntk::InvalidArgument(
        "header.num_classes must be >= 2 with targets, 0 (inferred) or >= 2 with labels");
  if (h.has_labels() && h.num_classes() == 1)
    throw ntk::InvalidArgument("header.num_classes must be 0 or >= 2");
  if (!h.sha256().empty()) {
    bool ok = h.sha256().size() == 64;
    for (char c : h.sha256()) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!ok) throw ntk::InvalidArgument("header.sha256 must be 64 lowercase hex digits");
  }
  if (h.metadata_size() > 64) throw ntk::InvalidArgument("header.metadata: at most 64 entries");
  for (const auto& [k, v] : h.metadata())
    if (k.size() > 1024 || v.size() > 1024)
      throw ntk::InvalidArgument("header.metadata: entries are at most 1 KiB");
  std::int64_t bytes = checked_mul(checked_mul(h.rows(), h.cols(), "header.rows x cols"), elem, "x");
  if (h.has_labels()) bytes = checked_add(bytes, checked_mul(h.rows(), 8, "labels"), "x + labels");
  if (h.has_targets())
    bytes =
        checked_add(bytes, checked_mul(checked_mul(h.rows(), h.num_classes(), "targets"), elem, "targets"),
                    "x + targets");
  if (bytes > max_bytes)
    throw ntk::ResourceExhausted("dataset '" + h.name() + "' needs " + std::to_string(bytes) +
                                 " bytes, more than the server's limit of " + std::to_string(max_bytes) +
                                 " bytes per dataset (--max-dataset-bytes)");
  return bytes;
}

UploadAssembler::UploadAssembler(const pb::UploadHeader& header, std::int64_t max_bytes)
    : header_(header),
      expected_(check_upload_header(header, max_bytes)),
      hasher_(std::make_unique<Hasher>()) {
  payload_.reserve(static_cast<std::size_t>(expected_));
}

UploadAssembler::~UploadAssembler() = default;

void UploadAssembler::append(std::string_view chunk) {
  if (static_cast<std::int64_t>(chunk.size()) > kMaxChunkBytes)
    throw ntk::InvalidArgument("upload chunk of " + std::to_string(chunk.size()) +
                               " bytes exceeds the 1 MiB limit");
  if (received() + static_cast<std::int64_t>(chunk.size()) > expected_)
    throw ntk::InvalidArgument(
        "upload overruns the header's shape: " + std::to_string(expected_) + " bytes announced, " +
        std::to_string(received() + static_cast<std::int64_t>(chunk.size())) + " received");
  hasher_->update(chunk.data(), chunk.size());
  payload_.insert(payload_.end(), chunk.begin(), chunk.end());
}

DatasetData UploadAssembler::finish(pb::DatasetInfo& info) {
  if (received() != expected_)
    throw ntk::InvalidArgument("upload incomplete: " + std::to_string(received()) + " of " +
                               std::to_string(expected_) + " bytes announced by the header");
  const std::string digest = hasher_->final_hex();
  if (!header_.sha256().empty() && header_.sha256() != digest)
    throw ntk::InvalidArgument("upload checksum mismatch: header.sha256 " + header_.sha256() + ", received " +
                               digest);
  info.Clear();
  info.set_name(header_.name());
  info.set_dtype(header_.dtype());
  info.set_rows(header_.rows());
  info.set_cols(header_.cols());
  info.set_has_labels(header_.has_labels());
  info.set_has_targets(header_.has_targets());
  info.set_num_classes(header_.num_classes());
  info.set_sha256(digest);
  *info.mutable_metadata() = header_.metadata();
  DatasetData data = decode_payload(info, payload_);
  if (info.has_labels() && info.num_classes() == 0) {
    std::int64_t top = 0;
    for (auto l : data.labels) top = std::max(top, l);
    info.set_num_classes(std::max<std::int64_t>(top + 1, 2));
  }
  info.set_bytes(static_cast<std::int64_t>(data.bytes()));
  return data;
}

DatasetData decode_payload(const pb::DatasetInfo& info, std::span<const std::uint8_t> payload) {
  const std::int64_t elem = element_size(info.dtype());
  const std::int64_t n = info.rows(), d = info.cols();
  // The info comes from a file here too, so every size is checked as check_upload_header does.
  const std::int64_t c = info.num_classes();
  if (elem == 0 || n < 1 || d < 1 || c < 0 || c > (1 << 20) || (info.has_targets() && c < 2))
    throw ntk::InvalidArgument("dataset " + info.name() + ": bad dtype or shape");
  std::int64_t need = checked_mul(checked_mul(n, d, "x"), elem, "x");
  if (info.has_labels()) need = checked_add(need, checked_mul(n, 8, "labels"), "x + labels");
  if (info.has_targets())
    need = checked_add(need, checked_mul(checked_mul(n, c, "targets"), elem, "targets"), "x + targets");
  if (static_cast<std::int64_t>(payload.size()) != need)
    throw ntk::InvalidArgument("dataset " + info.name() + ": payload of " + std::to_string(payload.size()) +
                               " bytes, the shape needs " + std::to_string(need));
  DatasetData data;
  decode_matrix(payload.data(), info.dtype(), n, d, data.x, "x");
  const std::uint8_t* rest = payload.data() + n * d * elem;
  if (info.has_labels()) {
    data.labels.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      const auto l = read_le<std::int64_t>(rest + 8 * i);
      if (l < 0 || (info.num_classes() > 0 && l >= info.num_classes()))
        throw ntk::InvalidArgument(
            "labels[" + std::to_string(i) + "] = " + std::to_string(l) + " is outside [0, " +
            (info.num_classes() > 0 ? std::to_string(info.num_classes()) : std::string("inf")) + ")");
      if (l >= (1 << 20))
        throw ntk::InvalidArgument("labels[" + std::to_string(i) + "] = " + std::to_string(l) +
                                   " is too large");
      data.labels[static_cast<std::size_t>(i)] = l;
    }
  }
  if (info.has_targets()) {
    decode_matrix(rest, info.dtype(), n, info.num_classes(), data.targets, "targets");
    // Same rule as the fit will apply; refusing here keeps bad targets out of storage.
    (void)ntk::targets_from_probabilities(data.targets.view());
  }
  return data;
}

std::vector<std::uint8_t> encode_dataset_file(const pb::DatasetInfo& info,
                                              std::span<const std::uint8_t> payload) {
  return encode_framed_file(kMagic, info.SerializeAsString(), payload);
}

void decode_dataset_file(std::span<const std::uint8_t> file, const std::string& what, pb::DatasetInfo& info,
                         std::vector<std::uint8_t>& payload) {
  std::string header;
  decode_framed_file(file, kMagic, what, header, payload);
  if (!info.ParseFromString(header)) throw ntk::IoError(what + ": bad dataset header");
}

}  // namespace ntkserver
