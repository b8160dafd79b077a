#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace ntk {

// A non-owning row-major view: element (i, j) lives at data[i * ld + j].
template <class T>
struct MatrixView {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;

  T& operator()(std::int64_t i, std::int64_t j) const { return data[i * ld + j]; }
  T* row(std::int64_t i) const { return data + i * ld; }
  bool empty() const { return data == nullptr; }
  MatrixView<const T> as_const() const { return {data, rows, cols, ld}; }
  // A template so that MatrixView<const T> does not declare a conversion to itself.
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  operator MatrixView<const U>() const {
    return {data, rows, cols, ld};
  }
  MatrixView block(std::int64_t i0, std::int64_t j0, std::int64_t r, std::int64_t c) const {
    return {data + i0 * ld + j0, r, c, ld};
  }
};

template <class T>
using ConstMatrixView = MatrixView<const T>;

// A dense row-major matrix that owns its storage.
template <class T>
class Matrix {
 public:
  Matrix() = default;
  Matrix(std::int64_t rows, std::int64_t cols, T fill = T(0))
      : rows_(rows), cols_(cols), data_(static_cast<std::size_t>(rows * cols), fill) {}

  std::int64_t rows() const { return rows_; }
  std::int64_t cols() const { return cols_; }
  std::size_t size() const { return data_.size(); }
  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  T& operator()(std::int64_t i, std::int64_t j) { return data_[static_cast<std::size_t>(i * cols_ + j)]; }
  const T& operator()(std::int64_t i, std::int64_t j) const {
    return data_[static_cast<std::size_t>(i * cols_ + j)];
  }
  T* row_data(std::int64_t i) { return data_.data() + i * cols_; }
  const T* row_data(std::int64_t i) const { return data_.data() + i * cols_; }
  MatrixView<T> view() { return {data_.data(), rows_, cols_, cols_}; }
  ConstMatrixView<T> view() const { return {data_.data(), rows_, cols_, cols_}; }
  std::vector<T>& storage() { return data_; }
  const std::vector<T>& storage() const { return data_; }

 private:
  std::int64_t rows_ = 0;
  std::int64_t cols_ = 0;
  std::vector<T> data_;
};

// An owning copy of a (possibly strided) view, converted to element type To.
template <class To, class T>
Matrix<To> convert_matrix(MatrixView<T> v) {
  Matrix<To> m(v.rows, v.cols);
  for (std::int64_t i = 0; i < v.rows; ++i)
    for (std::int64_t j = 0; j < v.cols; ++j) m(i, j) = static_cast<To>(v(i, j));
  return m;
}

// An owning copy of a (possibly strided) view.
template <class T>
Matrix<std::remove_const_t<T>> copy_matrix(MatrixView<T> v) {
  return convert_matrix<std::remove_const_t<T>>(v);
}

}  // namespace ntk
