// libFuzzer target: dataset uploads (a header, then chunks) and stored dataset files.
//
// Input, when it does not start with "NTKDSET1" (an upload):
//   u16 little-endian n, then n bytes of a serialized ntkserve.v1.UploadHeader, then chunks, each
//   a u16 length followed by that many bytes (a short last chunk takes what is left). The length
//   0xFFFF stands for a chunk of 1 MiB + 1 zero bytes, over the server's limit, without the input
//   having to carry it.
// Input starting with "NTKDSET1": a stored dataset file (server/src/dataset_codec.hpp), decoded as
//   is and again with its CRC-32C recomputed, so that mutations reach the parser behind the checksum.
//
// Every ntk::Error is an expected rejection; anything else (another exception, a crash, a sanitizer
// report, a leak, an allocation beyond -malloc_limit_mb) is a bug. Accepted uploads must also
// round-trip through the dataset file format unchanged.
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dataset_codec.hpp"
#include "files.hpp"
#include "fuzz_support.hpp"

namespace {

using ntkfuzz::accepts;
using ntkfuzz::bug;
using ntkfuzz::must;
namespace pb = ::ntkserve::v1;

// The per-dataset limit the assembler enforces. The server's default is 16 GiB, but it reserves the
// memory budget for the announced size before it builds an assembler (dataset_service.cpp), so the
// reservation an assembler makes is bounded by configuration; the fuzzer uses a limit that keeps it
// under -malloc_limit_mb while still letting headers announce more than the limit.
constexpr std::int64_t kMaxBytes = 4 << 20;

bool same_bits(const ntk::Matrix<double>& a, const ntk::Matrix<double>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

void check_accepted_upload(const pb::UploadHeader& header, const ntkserver::UploadAssembler& assembler,
                           const pb::DatasetInfo& info, const ntkserver::DatasetData& data) {
  const auto& payload = assembler.payload();
  if (static_cast<std::int64_t>(payload.size()) != assembler.expected())
    bug("finish", "accepted a short payload");
  if (info.sha256() != ntkserver::sha256_hex(payload)) bug("finish", "info.sha256 is not the payload's");
  if (!header.sha256().empty() && header.sha256() != info.sha256()) bug("finish", "accepted a wrong sha256");
  if (data.x.rows() != header.rows() || data.x.cols() != header.cols())
    bug("finish", "x has the wrong shape");
  if (data.labels.size() != (header.has_labels() ? static_cast<std::size_t>(header.rows()) : 0))
    bug("finish", "labels do not match the header");
  if (header.has_targets() &&
      (data.targets.rows() != header.rows() || data.targets.cols() != header.num_classes()))
    bug("finish", "targets have the wrong shape");
  if (info.bytes() != static_cast<std::int64_t>(data.bytes()))
    bug("finish", "info.bytes is not the decoded size");

  // What the store does with it: write the dataset file, later read it back and decode it.
  std::vector<std::uint8_t> file;
  must("encode_dataset_file", [&] { file = ntkserver::encode_dataset_file(info, payload); });
  pb::DatasetInfo info2;
  std::vector<std::uint8_t> payload2;
  must("decode_dataset_file(encode_dataset_file(...))",
       [&] { ntkserver::decode_dataset_file(file, "fuzz", info2, payload2); });
  ntkfuzz::expect_same_message("dataset file: info changed", info, info2);
  if (payload2 != payload) bug("dataset file", "payload changed");
  ntkserver::DatasetData data2;
  must("decode_payload(stored upload)", [&] { data2 = ntkserver::decode_payload(info2, payload2); });
  if (!same_bits(data.x, data2.x) || data.labels != data2.labels || !same_bits(data.targets, data2.targets))
    bug("dataset file", "decoded contents changed");
}

void fuzz_upload(const std::uint8_t* bytes, std::size_t size) {
  ntkfuzz::Cursor in(bytes, size);
  const std::string_view header_bytes = in.take(in.u16());
  pb::UploadHeader header;
  if (!header.ParseFromArray(header_bytes.data(), static_cast<int>(header_bytes.size()))) return;

  std::int64_t expected = -1;
  if (!accepts("check_upload_header",
               [&] { expected = ntkserver::check_upload_header(header, kMaxBytes); })) {
    // The assembler makes the same check and must refuse the same header.
    if (accepts("UploadAssembler(rejected header)", [&] { ntkserver::UploadAssembler a(header, kMaxBytes); }))
      bug("UploadAssembler", "accepted a header check_upload_header refuses");
    return;
  }
  if (expected < 0 || expected > kMaxBytes) bug("check_upload_header", std::to_string(expected).c_str());

  std::optional<ntkserver::UploadAssembler> assembler;
  must("UploadAssembler(accepted header)", [&] { assembler.emplace(header, kMaxBytes); });
  if (assembler->expected() != expected)
    bug("UploadAssembler", "expected() differs from check_upload_header");

  static const std::string oversized(static_cast<std::size_t>(ntkserver::kMaxChunkBytes) + 1, '\0');
  while (in.remaining() > 0) {
    const std::uint16_t n = in.u16();
    const std::string_view chunk = n == 0xFFFF ? std::string_view(oversized) : in.take(n);
    const std::int64_t before = assembler->received();
    // The server ends the upload at the first refused chunk.
    if (!accepts("UploadAssembler::append", [&] { assembler->append(chunk); })) {
      if (assembler->received() != before) bug("append", "a refused chunk was kept");
      return;
    }
    if (assembler->received() > assembler->expected()) bug("append", "received more than announced");
  }
  pb::DatasetInfo info;
  ntkserver::DatasetData data;
  if (accepts("UploadAssembler::finish", [&] { data = assembler->finish(info); }))
    check_accepted_upload(header, *assembler, info, data);
}

void decode_stored_dataset(std::span<const std::uint8_t> file) {
  pb::DatasetInfo info;
  std::vector<std::uint8_t> payload;
  if (!accepts("decode_dataset_file", [&] { ntkserver::decode_dataset_file(file, "fuzz", info, payload); }))
    return;
  // Store::dataset decodes the payload of a file that passed decode_dataset_file.
  ntkserver::DatasetData data;
  if (!accepts("decode_payload(stored file)", [&] { data = ntkserver::decode_payload(info, payload); }))
    return;
  if (data.x.rows() != info.rows() || data.x.cols() != info.cols())
    bug("decode_payload", "x has the wrong shape");
  std::vector<std::uint8_t> again;
  must("encode_dataset_file(decoded file)", [&] { again = ntkserver::encode_dataset_file(info, payload); });
  pb::DatasetInfo info2;
  std::vector<std::uint8_t> payload2;
  must("decode_dataset_file(re-encoded file)",
       [&] { ntkserver::decode_dataset_file(again, "fuzz", info2, payload2); });
  if (payload2 != payload) bug("dataset file", "payload changed on re-encoding");
}

void fuzz_dataset_file(const std::uint8_t* bytes, std::size_t size) {
  decode_stored_dataset({bytes, size});
  std::string header;
  std::vector<std::uint8_t> payload;
  (void)accepts("decode_framed_file", [&] {
    ntkserver::decode_framed_file({bytes, size}, "NTKDSET1", "fuzz", header, payload);
  });
  std::vector<std::uint8_t> fixed(bytes, bytes + size);
  ntkfuzz::fix_trailing_crc(fixed);
  decode_stored_dataset(fixed);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ntkfuzz::quiet_protobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (ntkfuzz::starts_with(data, size, "NTKDSET1"))
    fuzz_dataset_file(data, size);
  else
    fuzz_upload(data, size);
  return 0;
}
