#pragma once
// Durable files: written to a temporary name in the same directory, fsynced, renamed over the final
// name, and the directory fsynced, so that a crash at any moment leaves either the old state or the
// whole new file, never a partial one. Temporary names start with ".tmp-" and are swept at start-up.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ntkserver {

void write_file_durably(const std::string& path, const std::vector<std::uint8_t>& bytes);
void write_file_durably(const std::string& path, const std::string& bytes);
std::vector<std::uint8_t> read_whole_file(const std::string& path);
void remove_file_durably(const std::string& path);  // no error when it does not exist
void make_directories(const std::string& path);
std::vector<std::string> list_files(const std::string& dir, const std::string& suffix);
// Removes ".tmp-*" leftovers of interrupted writes; returns how many.
int sweep_temporary_files(const std::string& dir);

// Framed record files: an 8-byte magic, a length-prefixed header (a serialized message), a
// length-prefixed payload and a CRC-32C of everything before it. decode_framed_file throws IoError
// naming `what` for a wrong magic, a truncation or a checksum mismatch.
std::vector<std::uint8_t> encode_framed_file(const char (&magic)[9], const std::string& header,
                                             std::span<const std::uint8_t> payload);
void decode_framed_file(std::span<const std::uint8_t> file, const char (&magic)[9], const std::string& what,
                        std::string& header, std::vector<std::uint8_t>& payload);

}  // namespace ntkserver
