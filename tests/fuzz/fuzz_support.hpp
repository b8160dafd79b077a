#pragma once
// Shared by the fuzz targets: a cursor over the input bytes, the rule that separates expected
// rejections (ntk::Error) from bugs (anything else), and CRC fix-ups so that mutated files get past
// the checksum to the parsers behind it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/message_differencer.h>

#include "ntk/errors.hpp"
#include "ntk/model_file.hpp"

namespace ntkfuzz {

// Reads the input front to back; reading past the end yields what is left (possibly nothing).
class Cursor {
 public:
  Cursor(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::size_t remaining() const { return size_ - pos_; }
  std::uint16_t u16() {
    std::uint16_t v = 0;
    if (remaining() >= 1) v = data_[pos_++];
    if (remaining() >= 1) v = static_cast<std::uint16_t>(v | (data_[pos_++] << 8));
    return v;
  }
  std::string_view take(std::size_t n) {
    n = n < remaining() ? n : remaining();
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// A violated invariant: print and abort, which libFuzzer reports as a crash with the input saved.
[[noreturn]] inline void bug(const char* what, const char* detail = "") {
  std::fprintf(stderr, "\n*** fuzz invariant violated: %s %s\n", what, detail);
  std::fflush(stderr);
  std::abort();
}

// Runs f. Every ntk::Error is an expected rejection (returns false); any other exception is a bug.
template <class F>
bool accepts(const char* what, F&& f) {
  try {
    f();
    return true;
  } catch (const ntk::Error&) {
    return false;
  } catch (const std::exception& e) {
    bug(what, (std::string("threw a non-ntk exception: ") + e.what()).c_str());
  } catch (...) {
    bug(what, "threw something that is not a std::exception");
  }
}

// Runs f, which must succeed: any exception at all is a bug.
template <class F>
void must(const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    bug(what, (std::string("threw: ") + e.what()).c_str());
  } catch (...) {
    bug(what, "threw something that is not a std::exception");
  }
}

// Model files and framed files both end in a CRC-32C of everything before it.
inline void fix_trailing_crc(std::span<std::uint8_t> file) {
  if (file.size() < 4) return;
  const std::uint32_t crc = ntk::crc32c(file.data(), file.size() - 4);
  std::memcpy(file.data() + file.size() - 4, &crc, 4);  // little-endian, as both formats
}

// A framed file (server/src/files.hpp): magic, u32 header length, header, u64 payload length,
// payload, CRC. Returns the payload's place when the lengths are consistent.
inline std::span<std::uint8_t> framed_payload(std::span<std::uint8_t> file) {
  if (file.size() < 24) return {};
  std::uint32_t header_size = 0;
  std::memcpy(&header_size, file.data() + 8, 4);
  if (12ull + header_size + 8 + 4 > file.size()) return {};
  std::uint64_t payload_size = 0;
  std::memcpy(&payload_size, file.data() + 12 + header_size, 8);
  if (12ull + header_size + 8 + payload_size + 4 != file.size()) return {};
  return file.subspan(12 + header_size + 8, static_cast<std::size_t>(payload_size));
}

// Protobuf logs every string field with invalid UTF-8 it parses; mutated inputs have plenty.
inline void quiet_protobuf() {
  google::protobuf::SetLogHandler(nullptr);
}

// Two messages must be equal (NaN equal to NaN: doubles are carried bit for bit); a report otherwise.
inline void expect_same_message(const char* what, const google::protobuf::Message& a,
                                const google::protobuf::Message& b) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  std::string report;
  differencer.ReportDifferencesToString(&report);
  if (!differencer.Compare(a, b)) bug(what, report.c_str());
}

inline bool starts_with(const std::uint8_t* data, std::size_t size, const char (&magic)[9]) {
  return size >= 8 && std::memcmp(data, magic, 8) == 0;
}

}  // namespace ntkfuzz
