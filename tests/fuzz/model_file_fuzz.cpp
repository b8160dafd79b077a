// libFuzzer target: the portable model file (core/src/model_file.cpp, docs/model_format.md) and the
// server's framed model file around it (server/src/store.cpp).
//
// Input: a model file ("NTKMODEL...") or a server model file ("NTKMSRV1..."). Each is decoded as is,
// then again with its CRC-32C trailer(s) recomputed, so that mutations reach the section parser
// behind the checksum. A model that loads must pass check_model, save again, and load back to the
// same bytes (the format promises a bit-exact round trip).
//
// Every ntk::Error is an expected rejection; anything else (another exception, a crash, a sanitizer
// report, a leak, an allocation beyond -malloc_limit_mb) is a bug.
#include <string>
#include <vector>

#include "files.hpp"
#include "fuzz_support.hpp"
#include "ntk/model_file.hpp"
#include "store.hpp"

namespace {

using ntkfuzz::accepts;
using ntkfuzz::bug;
using ntkfuzz::must;
namespace pb = ::ntkserve::v1;

constexpr char kServerModelMagic[] = "NTKMSRV1";  // store.cpp's kModelMagic

void check_loaded_model(const ntk::Model& m) {
  must("check_model(loaded model)", [&] { ntk::check_model(m, "fuzz"); });
  std::vector<std::uint8_t> bytes;
  must("serialize_model(loaded model)", [&] { bytes = ntk::serialize_model(m); });
  ntk::Model again;
  must("deserialize_model(serialize_model(loaded model))",
       [&] { again = ntk::deserialize_model(bytes, "fuzz"); });
  std::vector<std::uint8_t> bytes2;
  must("serialize_model(reloaded model)", [&] { bytes2 = ntk::serialize_model(again); });
  if (bytes2 != bytes) bug("model file", "save -> load -> save changed the bytes");

  // The server's file around it, as Store::add_model writes it and Store::model reads it.
  pb::ModelInfo info;
  std::vector<std::uint8_t> file;
  must("encode_model_file", [&] {
    info = ntkserver::describe_model(m);
    info.set_model_id("m-0123456789abcdef");
    (void)ntkserver::model_bytes(m);
    file = ntkserver::encode_model_file(info, m);
  });
  pb::ModelInfo info2;
  ntk::Model served;
  must("decode_model_file(encode_model_file(...))",
       [&] { served = ntkserver::decode_model_file(file, "fuzz", info2); });
  ntkfuzz::expect_same_message("server model file: info changed", info, info2);
  std::vector<std::uint8_t> bytes3;
  must("serialize_model(served model)", [&] { bytes3 = ntk::serialize_model(served); });
  if (bytes3 != bytes) bug("server model file", "the model changed");
}

void load_model_file(std::span<const std::uint8_t> bytes) {
  ntk::Model m;
  if (accepts("deserialize_model", [&] { m = ntk::deserialize_model(bytes, "fuzz"); })) check_loaded_model(m);
}

void load_server_model_file(std::span<const std::uint8_t> file) {
  pb::ModelInfo info;
  ntk::Model m;
  if (accepts("decode_model_file", [&] { m = ntkserver::decode_model_file(file, "fuzz", info); }))
    check_loaded_model(m);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ntkfuzz::quiet_protobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  std::vector<std::uint8_t> fixed(data, data + size);
  if (ntkfuzz::starts_with(data, size, kServerModelMagic)) {
    load_server_model_file(input);
    // Recompute the inner model's CRC (when the frame's lengths locate it), then the frame's.
    ntkfuzz::fix_trailing_crc(ntkfuzz::framed_payload(fixed));
    ntkfuzz::fix_trailing_crc(fixed);
    load_server_model_file(fixed);
  } else {
    load_model_file(input);
    ntkfuzz::fix_trailing_crc(fixed);
    load_model_file(fixed);
    // The same bytes inside a server frame with an empty header.
    std::vector<std::uint8_t> framed;
    must("encode_framed_file", [&] { framed = ntkserver::encode_framed_file(kServerModelMagic, "", fixed); });
    load_server_model_file(framed);
  }
  return 0;
}
