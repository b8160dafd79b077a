#pragma once
// Cache-friendly transposition used to mirror symmetric kernels (CPU assembly and the CUDA backend's
// host side).
#include <algorithm>
#include <cstdint>

namespace ntk::detail {

// dst (cols x rows) = src (rows x cols) transposed. Works in blocks of one cache line per row through
// a small contiguous buffer, so every source and destination line is touched once, whole: with a
// power-of-two leading dimension the rows of a block share one cache set, and an element-wise
// transpose evicts each line between its uses (it cost twice the recursion itself).
template <class T>
void transpose_block(const T* src, std::int64_t src_ld, std::int64_t rows, std::int64_t cols, T* dst,
                     std::int64_t dst_ld) {
  constexpr std::int64_t kBlock = 64 / sizeof(T);
  T buffer[kBlock][kBlock];
  for (std::int64_t i0 = 0; i0 < rows; i0 += kBlock) {
    const std::int64_t bi = std::min(kBlock, rows - i0);
    for (std::int64_t j0 = 0; j0 < cols; j0 += kBlock) {
      const std::int64_t bj = std::min(kBlock, cols - j0);
      for (std::int64_t i = 0; i < bi; ++i)
        for (std::int64_t j = 0; j < bj; ++j) buffer[i][j] = src[(i0 + i) * src_ld + j0 + j];
      for (std::int64_t j = 0; j < bj; ++j)
        for (std::int64_t i = 0; i < bi; ++i) dst[(j0 + j) * dst_ld + i0 + i] = buffer[i][j];
    }
  }
}

// Copies the strict upper triangle of a square block (n x n, leading dimension ld) onto its lower one.
template <class T>
void mirror_upper_to_lower(T* a, std::int64_t n, std::int64_t ld) {
  constexpr std::int64_t kBlock = 64 / sizeof(T);
  for (std::int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const std::int64_t bn = std::min(kBlock, n - b0);
    for (std::int64_t i = b0; i < b0 + bn; ++i)
      for (std::int64_t j = i + 1; j < b0 + bn; ++j) a[j * ld + i] = a[i * ld + j];
    if (b0 + bn < n) transpose_block(a + b0 * ld + b0 + bn, ld, bn, n - b0 - bn, a + (b0 + bn) * ld + b0, ld);
  }
}

// Copies the strict lower triangle of a square block (n x n, leading dimension ld) onto its upper one.
template <class T>
void mirror_lower_to_upper(T* a, std::int64_t n, std::int64_t ld) {
  constexpr std::int64_t kBlock = 64 / sizeof(T);
  for (std::int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const std::int64_t bn = std::min(kBlock, n - b0);
    for (std::int64_t i = b0; i < b0 + bn; ++i)
      for (std::int64_t j = i + 1; j < b0 + bn; ++j) a[i * ld + j] = a[j * ld + i];
    if (b0 + bn < n) transpose_block(a + (b0 + bn) * ld + b0, ld, n - b0 - bn, bn, a + b0 * ld + b0 + bn, ld);
  }
}

}  // namespace ntk::detail
