#include "wire/convert.hpp"

#include <cmath>
#include <cstring>

#include "ntk/errors.hpp"

namespace ntkwire {

ntk::KernelSpec from_proto(const pb::KernelSpec& p, ntk::ComputeType& dtype, const std::string& field) {
  ntk::KernelSpec s;
  if (p.depth() < 1 || p.depth() > 1000)
    throw ntk::InvalidArgument(field + ".depth must be in [1, 1000] (got " + std::to_string(p.depth()) + ")");
  s.depth = p.depth();
  s.w_std = p.w_std();
  s.b_std = p.b_std();
  if (p.has_w_std_out()) s.w_std_out = p.w_std_out();
  if (p.has_b_std_out()) s.b_std_out = p.b_std_out();
  const std::string name = p.activation().name().empty() ? "relu" : p.activation().name();
  try {
    s.activation.kind = ntk::parse_activation(name);
  } catch (const ntk::Error& e) {
    throw ntk::InvalidArgument(field + ".activation.name: " + e.what());
  }
  if (p.activation().has_a()) s.activation.a = p.activation().a();
  if (p.activation().has_b()) s.activation.b = p.activation().b();
  if (p.activation().has_c()) s.activation.c = p.activation().c();
  if (p.quadrature_degree() != 0) s.quadrature_degree = p.quadrature_degree();
  switch (p.compute_dtype()) {
    case pb::DTYPE_UNSPECIFIED:
    case pb::FLOAT64:
      dtype = ntk::ComputeType::float64;
      break;
    case pb::FLOAT32:
      dtype = ntk::ComputeType::float32;
      break;
    default:
      throw ntk::InvalidArgument(field + ".compute_dtype must be FLOAT32 or FLOAT64");
  }
  try {
    s.validate();
  } catch (const ntk::Error& e) {
    throw ntk::InvalidArgument(field + ": " + e.what());
  }
  return s;
}

pb::KernelSpec to_proto(const ntk::KernelSpec& s, ntk::ComputeType dtype) {
  pb::KernelSpec p;
  p.set_depth(s.depth);
  p.set_w_std(s.w_std);
  p.set_b_std(s.b_std);
  if (s.w_std_out) p.set_w_std_out(*s.w_std_out);
  if (s.b_std_out) p.set_b_std_out(*s.b_std_out);
  p.mutable_activation()->set_name(std::string(ntk::activation_name(s.activation.kind)));
  if (s.activation.a) p.mutable_activation()->set_a(*s.activation.a);
  if (s.activation.b) p.mutable_activation()->set_b(*s.activation.b);
  if (s.activation.c) p.mutable_activation()->set_c(*s.activation.c);
  p.set_quadrature_degree(s.quadrature_degree);
  p.set_compute_dtype(dtype == ntk::ComputeType::float32 ? pb::FLOAT32 : pb::FLOAT64);
  return p;
}

ntk::Matrix<double> decode_matrix(const pb::Matrix& m, const std::string& field) {
  if (m.rows() < 1 || m.cols() < 1)
    throw ntk::InvalidArgument(field + ": shape " + std::to_string(m.rows()) + " x " +
                               std::to_string(m.cols()) + " (rows and cols must be >= 1)");
  std::size_t elem = 0;
  if (m.dtype() == pb::FLOAT32)
    elem = 4;
  else if (m.dtype() == pb::FLOAT64)
    elem = 8;
  else
    throw ntk::InvalidArgument(field + ".dtype must be FLOAT32 or FLOAT64");
  if (m.cols() > (std::int64_t{1} << 40) / m.rows()) throw ntk::InvalidArgument(field + ": shape too large");
  const auto n = static_cast<std::size_t>(m.rows() * m.cols());
  if (m.data().size() != n * elem)
    throw ntk::InvalidArgument(field + ": " + std::to_string(m.data().size()) + " bytes of data, the shape " +
                               std::to_string(m.rows()) + " x " + std::to_string(m.cols()) + " of " +
                               (elem == 4 ? "FLOAT32" : "FLOAT64") + " needs " + std::to_string(n * elem));
  ntk::Matrix<double> out(m.rows(), m.cols());
  const char* src = m.data().data();
  double* dst = out.data();
  for (std::size_t i = 0; i < n; ++i) {
    double v;
    if (elem == 4) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      v = f;
    } else {
      std::memcpy(&v, src + 8 * i, 8);
    }
    if (!std::isfinite(v))
      throw ntk::InvalidArgument(field + ": non-finite value at row " + std::to_string(i / m.cols()) +
                                 ", column " + std::to_string(i % m.cols()));
    dst[i] = v;
  }
  return out;
}

void encode_matrix(ntk::ConstMatrixView<double> m, bool as_float32, pb::Matrix* out) {
  out->set_rows(m.rows);
  out->set_cols(m.cols);
  out->set_dtype(as_float32 ? pb::FLOAT32 : pb::FLOAT64);
  std::string* data = out->mutable_data();
  const std::size_t elem = as_float32 ? 4 : 8;
  data->resize(static_cast<std::size_t>(m.rows * m.cols) * elem);
  char* dst = data->data();
  for (std::int64_t i = 0; i < m.rows; ++i) {
    const double* row = m.data + i * m.ld;
    if (as_float32) {
      for (std::int64_t j = 0; j < m.cols; ++j) {
        const float f = static_cast<float>(row[j]);
        std::memcpy(dst + 4 * (i * m.cols + j), &f, 4);
      }
    } else {
      std::memcpy(dst + 8 * i * m.cols, row, 8 * static_cast<std::size_t>(m.cols));
    }
  }
}

void encode_column(std::span<const double> v, bool as_float32, pb::Matrix* out) {
  encode_matrix({v.data(), static_cast<std::int64_t>(v.size()), 1, 1}, as_float32, out);
}

void encode_int64_column(std::span<const std::int64_t> v, pb::Matrix* out) {
  out->set_rows(static_cast<std::int64_t>(v.size()));
  out->set_cols(1);
  out->set_dtype(pb::INT64);
  out->mutable_data()->assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(std::int64_t));
}

}  // namespace ntkwire
