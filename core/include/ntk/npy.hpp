#pragma once
// NumPy .npy files (format versions 1-3): little-endian float32/float64/int32/int64, C order.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ntk/matrix.hpp"

namespace ntk {

enum class DType { float32, float64, int32, int64 };
const char* dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);

struct NpyArray {
  DType dtype = DType::float64;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;
  std::int64_t elements() const;
};

// Throws NotFound (missing file), IoError (unreadable, truncated) or InvalidArgument (not a .npy, an
// unsupported dtype, Fortran order), each naming the path.
NpyArray read_npy(const std::string& path);

// Writes atomically: a temporary file in the same directory, fsync, rename. On any failure nothing is
// left at `path` (nor the temporary).
void write_npy(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape,
               const void* data);

template <class T>
void write_npy(const std::string& path, const Matrix<T>& m);

// The 2-D array converted to T; throws InvalidArgument naming `what` unless it is a 2-D float array.
template <class T>
Matrix<T> npy_to_matrix(const NpyArray& array, const std::string& what);

}  // namespace ntk
