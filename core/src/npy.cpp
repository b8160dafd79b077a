#include "ntk/npy.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ntk/errors.hpp"

namespace ntk {
namespace {

struct DTypeCode {
  const char* descr;
  DType dtype;
};
constexpr DTypeCode kCodes[] = {
    {"<f4", DType::float32}, {"<f8", DType::float64}, {"<i4", DType::int32}, {"<i8", DType::int64}};

std::string quote(const std::string& path) {
  return "'" + path + "'";
}

// The value that follows 'key': in the header dictionary, up to the next comma at nesting level 0.
std::string dict_value(const std::string& header, const std::string& key, const std::string& path) {
  const std::string needle = "'" + key + "'";
  auto pos = header.find(needle);
  if (pos == std::string::npos)
    throw InvalidArgument(quote(path) + " is not a valid .npy file (no " + key + ")");
  pos = header.find(':', pos + needle.size());
  if (pos == std::string::npos) throw InvalidArgument(quote(path) + " is not a valid .npy file");
  ++pos;
  int depth = 0;
  std::string value;
  for (; pos < header.size(); ++pos) {
    const char c = header[pos];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if ((c == ',' || c == '}') && depth == 0) break;
    value += c;
  }
  const auto b = value.find_first_not_of(" \t");
  const auto e = value.find_last_not_of(" \t");
  return b == std::string::npos ? "" : value.substr(b, e - b + 1);
}

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) {
  return dtype == DType::float32 || dtype == DType::int32 ? 4 : 8;
}

std::int64_t NpyArray::elements() const {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

NpyArray read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (access(path.c_str(), F_OK) != 0) throw NotFound("file " + quote(path) + " does not exist");
    throw IoError("cannot open " + quote(path) + ": " + errno_text());
  }
  char magic[8];
  if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw InvalidArgument(quote(path) + " is not a .npy file");
  const int major = static_cast<unsigned char>(magic[6]);
  if (major < 1 || major > 3)
    throw InvalidArgument(quote(path) + " has unsupported .npy format version " + std::to_string(major));
  std::uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!in.read(reinterpret_cast<char*>(b), 2)) throw IoError(quote(path) + " is truncated (header)");
    header_len = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4)) throw IoError(quote(path) + " is truncated (header)");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  }
  if (header_len > (1u << 20)) throw InvalidArgument(quote(path) + " has an implausible .npy header");
  std::string header(header_len, '\0');
  if (!in.read(header.data(), header_len)) throw IoError(quote(path) + " is truncated (header)");

  NpyArray array;
  std::string descr = dict_value(header, "descr", path);
  if (descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"'))
    descr = descr.substr(1, descr.size() - 2);
  if (descr.size() == 3 && descr[0] == '|') descr[0] = '<';  // single-byte types carry no byte order
  bool known = false;
  for (const auto& c : kCodes) {
    if (descr == c.descr) {
      array.dtype = c.dtype;
      known = true;
    }
  }
  if (!known)
    throw InvalidArgument(quote(path) + " has dtype " + descr +
                          "; expected little-endian float32, float64, int32 or int64");
  if (dict_value(header, "fortran_order", path) != "False")
    throw InvalidArgument(quote(path) + " is in Fortran order; save it in C order (np.ascontiguousarray)");
  const std::string shape = dict_value(header, "shape", path);
  if (shape.empty() || shape.front() != '(' || shape.back() != ')')
    throw InvalidArgument(quote(path) + " has a malformed shape " + shape);
  std::stringstream dims(shape.substr(1, shape.size() - 2));
  std::string item;
  while (std::getline(dims, item, ',')) {
    const auto b = item.find_first_not_of(' ');
    if (b == std::string::npos) continue;
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item.substr(b), &used);
      if (v < 0) throw std::invalid_argument("negative");
      array.shape.push_back(v);
    } catch (const std::exception&) {
      throw InvalidArgument(quote(path) + " has a malformed shape " + shape);
    }
  }
  const std::int64_t n = array.elements();
  const std::size_t bytes = static_cast<std::size_t>(n) * dtype_size(array.dtype);
  array.data.resize(bytes);
  if (bytes > 0 && !in.read(reinterpret_cast<char*>(array.data.data()), static_cast<std::streamsize>(bytes)))
    throw IoError(quote(path) + " is truncated: expected " + std::to_string(bytes) + " bytes of data");
  return array;
}

void write_npy(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape,
               const void* data) {
  std::string descr;
  for (const auto& c : kCodes)
    if (c.dtype == dtype) descr = c.descr;
  std::string dims;  // "(5,)" for one dimension, "(3, 4)" for two, as numpy writes them
  for (std::size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad with spaces so that magic + length + header is a multiple of 64, ending in a newline.
  const std::size_t prefix = 10;
  const std::size_t total = ((prefix + header.size() + 1 + 63) / 64) * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  const std::size_t bytes = static_cast<std::size_t>(n) * dtype_size(dtype);

  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError("cannot create " + quote(path) + ": " + errno_text());
  auto fail = [&](const std::string& what) {
    const std::string reason = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError("cannot write " + quote(path) + " (" + what + "): " + reason);
  };
  auto write_all = [&](const void* p, std::size_t len) {
    const char* c = static_cast<const char*>(p);
    while (len > 0) {
      const ssize_t w = ::write(fd, c, len);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write");
      }
      c += w;
      len -= static_cast<std::size_t>(w);
    }
  };
  const unsigned char head[10] = {0x93,
                                  'N',
                                  'U',
                                  'M',
                                  'P',
                                  'Y',
                                  1,
                                  0,
                                  static_cast<unsigned char>((total - prefix) & 0xff),
                                  static_cast<unsigned char>((total - prefix) >> 8)};
  write_all(head, sizeof head);
  write_all(header.data(), header.size());
  write_all(data, bytes);
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw IoError("cannot write " + quote(path) + ": " + errno_text());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = errno_text();
    ::unlink(tmp.c_str());
    throw IoError("cannot write " + quote(path) + ": " + reason);
  }
}

template <class T>
void write_npy(const std::string& path, const Matrix<T>& m) {
  write_npy(path, sizeof(T) == 4 ? DType::float32 : DType::float64, {m.rows(), m.cols()}, m.data());
}

template <class T>
Matrix<T> npy_to_matrix(const NpyArray& array, const std::string& what) {
  if (array.shape.size() != 2)
    throw InvalidArgument(what + " must be a 2-D array, got " + std::to_string(array.shape.size()) + "-D");
  if (array.dtype != DType::float32 && array.dtype != DType::float64)
    throw InvalidArgument(what + " has dtype " + dtype_name(array.dtype) + "; expected float32 or float64");
  Matrix<T> m(array.shape[0], array.shape[1]);
  const std::size_t n = m.size();
  if (array.dtype == DType::float32) {
    const auto* src = reinterpret_cast<const float*>(array.data.data());
    for (std::size_t i = 0; i < n; ++i) m.data()[i] = static_cast<T>(src[i]);
  } else {
    const auto* src = reinterpret_cast<const double*>(array.data.data());
    for (std::size_t i = 0; i < n; ++i) m.data()[i] = static_cast<T>(src[i]);
  }
  return m;
}

template void write_npy<float>(const std::string&, const Matrix<float>&);
template void write_npy<double>(const std::string&, const Matrix<double>&);
template Matrix<float> npy_to_matrix<float>(const NpyArray&, const std::string&);
template Matrix<double> npy_to_matrix<double>(const NpyArray&, const std::string&);

}  // namespace ntk
