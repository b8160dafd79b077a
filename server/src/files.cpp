#include "files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "ntk/errors.hpp"
#include "ntk/model_file.hpp"

namespace ntkserver {

namespace fs = std::filesystem;

namespace {

std::string errno_text() {
  return std::strerror(errno);
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw ntk::IoError("cannot open directory " + dir + ": " + errno_text());
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) throw ntk::IoError("fsync of directory " + dir + " failed: " + std::strerror(saved));
}

std::string temporary_name(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const fs::path p(path);
  return (p.parent_path() / (".tmp-" + p.filename().string() + "-" + std::to_string(::getpid()) + "-" +
                             std::to_string(counter++) + "-" + std::to_string(rng() % 1000000)))
      .string();
}

void write_durably(const std::string& path, const void* data, std::size_t size) {
  const std::string dir = fs::path(path).parent_path().string();
  const std::string tmp = temporary_name(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) throw ntk::IoError("cannot create " + tmp + ": " + errno_text());
  const auto* p = static_cast<const char*>(data);
  std::size_t left = size;
  bool ok = true;
  std::string why;
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      why = "write failed: " + errno_text();
      break;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (ok && ::fsync(fd) != 0) {
    ok = false;
    why = "fsync failed: " + errno_text();
  }
  if (::close(fd) != 0 && ok) {
    ok = false;
    why = "close failed: " + errno_text();
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    why = "rename failed: " + errno_text();
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    throw ntk::IoError("cannot write " + path + ": " + why);
  }
  fsync_directory(dir.empty() ? "." : dir);
}

}  // namespace

void write_file_durably(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  write_durably(path, bytes.data(), bytes.size());
}

void write_file_durably(const std::string& path, const std::string& bytes) {
  write_durably(path, bytes.data(), bytes.size());
}

std::vector<std::uint8_t> read_whole_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw ntk::NotFound("file " + path + " does not exist");
    throw ntk::IoError("cannot open " + path + ": " + errno_text());
  }
  std::vector<std::uint8_t> bytes;
  std::uint8_t buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      ::close(fd);
      throw ntk::IoError("cannot read " + path + ": " + why);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), buffer, buffer + n);
  }
  ::close(fd);
  return bytes;
}

void remove_file_durably(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return;
    throw ntk::IoError("cannot remove " + path + ": " + errno_text());
  }
  const std::string dir = fs::path(path).parent_path().string();
  fsync_directory(dir.empty() ? "." : dir);
}

void make_directories(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw ntk::IoError("cannot create directory " + path + ": " + ec.message());
}

std::vector<std::string> list_files(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0 || !entry.is_regular_file()) continue;
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      names.push_back(name.substr(0, name.size() - suffix.size()));
  }
  if (ec) throw ntk::IoError("cannot list " + dir + ": " + ec.message());
  return names;
}

int sweep_temporary_files(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind(".tmp-", 0) == 0 && entry.is_regular_file()) {
      fs::remove(entry.path(), ec);
      ++removed;
    }
  }
  return removed;
}

std::vector<std::uint8_t> encode_framed_file(const char (&magic)[9], const std::string& header,
                                             std::span<const std::uint8_t> payload) {
  // One allocation of the final size: appending the payload and the CRC must not regrow (and copy) a
  // dataset-sized image.
  std::vector<std::uint8_t> out;
  out.reserve(8 + 4 + header.size() + 8 + payload.size() + 4);
  out.resize(8 + 4 + header.size() + 8);
  std::memcpy(out.data(), magic, 8);
  const auto header_size = static_cast<std::uint32_t>(header.size());
  std::memcpy(out.data() + 8, &header_size, 4);
  std::memcpy(out.data() + 12, header.data(), header.size());
  const auto payload_size = static_cast<std::uint64_t>(payload.size());
  std::memcpy(out.data() + 12 + header.size(), &payload_size, 8);
  out.insert(out.end(), payload.begin(), payload.end());
  const std::uint32_t crc = ntk::crc32c(out.data(), out.size());
  const auto* c = reinterpret_cast<const std::uint8_t*>(&crc);
  out.insert(out.end(), c, c + 4);
  return out;
}

void decode_framed_file(std::span<const std::uint8_t> file, const char (&magic)[9], const std::string& what,
                        std::string& header, std::vector<std::uint8_t>& payload) {
  if (file.size() < 24 || std::memcmp(file.data(), magic, 8) != 0)
    throw ntk::IoError(what + ": not a " + std::string(magic, 8) + " file");
  std::uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, file.data() + file.size() - 4, 4);
  if (ntk::crc32c(file.data(), file.size() - 4) != stored_crc)
    throw ntk::IoError(what + ": checksum mismatch (corrupt file)");
  std::uint32_t header_size = 0;
  std::memcpy(&header_size, file.data() + 8, 4);
  if (12ull + header_size + 8 + 4 > file.size()) throw ntk::IoError(what + ": truncated header");
  header.assign(reinterpret_cast<const char*>(file.data() + 12), header_size);
  std::uint64_t payload_size = 0;
  std::memcpy(&payload_size, file.data() + 12 + header_size, 8);
  if (12ull + header_size + 8 + payload_size + 4 != file.size())
    throw ntk::IoError(what + ": truncated payload");
  const auto* begin = file.data() + 12 + header_size + 8;
  payload.assign(begin, begin + payload_size);
}

}  // namespace ntkserver
