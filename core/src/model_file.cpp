#include "ntk/model_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>

#include "ntk/errors.hpp"

namespace ntk {
namespace {

// ---- Format constants (docs/model_format.md) -------------------------------------------------------

constexpr char kMagic[8] = {'N', 'T', 'K', 'M', 'O', 'D', 'E', 'L'};
constexpr std::size_t kHeaderBytes = 16;         // magic, version, flags
constexpr std::size_t kSectionHeaderBytes = 12;  // u32 tag, u64 length
constexpr std::size_t kTrailerBytes = 16;        // u32 tag 0, u64 length 4, u32 CRC-32C
constexpr std::uint32_t kKnownFlags = 0;         // version 1 defines no flag bits

enum SectionTag : std::uint32_t {
  kEndTag = 0,  // only as the trailer
  kSpecTag = 1,
  kSettingsTag = 2,
  kDiagnosticsTag = 3,
  kNumClassesTag = 4,
  kXTrainTag = 16,
  kTargetsTag = 17,
  kCoefficientsTag = 18,
  kTrainLogitsTag = 19,
  kThetaFactorTag = 20,
  kF0TrainTag = 21,
};

struct SectionInfo {
  std::uint32_t tag;
  const char* name;
};
constexpr SectionInfo kSections[] = {
    {kSpecTag, "spec"},
    {kSettingsTag, "settings"},
    {kDiagnosticsTag, "diagnostics"},
    {kNumClassesTag, "num_classes"},
    {kXTrainTag, "x_train"},
    {kTargetsTag, "targets"},
    {kCoefficientsTag, "coefficients"},
    {kTrainLogitsTag, "train_logits"},
    {kThetaFactorTag, "theta_factor"},
    {kF0TrainTag, "f0_train"},
};

// The bytes of one history record in version 1; later writers may make records longer (appending
// fields) and record the length, which is why the reader takes it from the file.
constexpr std::uint32_t kStepRecordBytes = 40;

// Enums are stored through explicit tables, not their C++ values, so that reordering an enum in the
// code cannot silently change what an existing file means.
constexpr std::pair<Activation, std::uint32_t> kActivationCodes[] = {
    {Activation::identity, 0},     {Activation::relu, 1},   {Activation::leaky_relu, 2},
    {Activation::abs, 3},          {Activation::abrelu, 4}, {Activation::erf, 5},
    {Activation::sigmoid_like, 6}, {Activation::gelu, 7},   {Activation::tanh, 8},
    {Activation::softplus, 9},     {Activation::sin, 10},   {Activation::custom, 11},
};
constexpr std::pair<SolverKind, std::uint32_t> kSolverCodes[] = {
    {SolverKind::automatic, 0},   {SolverKind::direct, 1},   {SolverKind::matrix_free, 2},
    {SolverKind::closed_form, 3}, {SolverKind::dynamics, 4},
};
constexpr std::pair<ComputeType, std::uint32_t> kDtypeCodes[] = {
    {ComputeType::float32, 0},
    {ComputeType::float64, 1},
};

template <class E, std::size_t N>
std::uint32_t code_of(const std::pair<E, std::uint32_t> (&table)[N], E value, const char* field) {
  for (const auto& [v, code] : table)
    if (v == value) return code;
  throw InvalidArgument(std::string(field) + " has a value the model format has no code for");
}

std::string quote(const std::string& path) {
  return "'" + path + "'";
}
std::string errno_text() {
  return std::strerror(errno);
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

const char* section_name(std::uint32_t tag) {
  for (const auto& s : kSections)
    if (s.tag == tag) return s.name;
  return "unknown";
}

// ---- CRC-32C, slicing by 8 --------------------------------------------------------------------------

constexpr std::array<std::array<std::uint32_t, 256>, 8> make_crc_tables() {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    t[0][i] = c;
  }
  // t[s][i]: the CRC of byte i followed by s zero bytes, so eight bytes fold in one step.
  for (std::size_t s = 1; s < 8; ++s)
    for (std::size_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xffu];
  return t;
}
constexpr auto kCrcTables = make_crc_tables();

// ---- Little-endian encoding -------------------------------------------------------------------------

std::uint32_t load_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t load_u64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(load_u32(p)) | (static_cast<std::uint64_t>(load_u32(p + 4)) << 32);
}
void store_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void store_u64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// Builds the payload of a small section.
class ByteWriter {
 public:
  void u8(std::uint8_t v) { bytes_.push_back(v); }
  void u32(std::uint32_t v) {
    std::uint8_t b[4];
    store_u32(b, v);
    bytes_.insert(bytes_.end(), b, b + 4);
  }
  void u64(std::uint64_t v) {
    std::uint8_t b[8];
    store_u64(b, v);
    bytes_.insert(bytes_.end(), b, b + 8);
  }
  void i32(int v) { u32(static_cast<std::uint32_t>(v)); }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  // Presence byte, then the value (0.0 when absent) so that the layout does not depend on presence.
  void opt(const std::optional<double>& v) {
    u8(v.has_value() ? 1 : 0);
    f64(v.value_or(0.0));
  }
  void str(const std::string& s) {
    if (s.size() > std::numeric_limits<std::uint32_t>::max())
      throw InvalidArgument("a string field of the model is longer than 4 GiB");
    u32(static_cast<std::uint32_t>(s.size()));
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

// Reads the payload of one section; every read is bounds-checked against the section.
class ByteReader {
 public:
  ByteReader(std::span<const std::uint8_t> bytes, const std::string& what, const char* section)
      : bytes_(bytes), what_(what), section_(section) {}

  std::uint8_t u8() { return *take(1); }
  std::uint32_t u32() { return load_u32(take(4)); }
  std::uint64_t u64() { return load_u64(take(8)); }
  int i32() { return static_cast<int>(static_cast<std::int32_t>(u32())); }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  double f64() { return std::bit_cast<double>(u64()); }
  bool flag(const char* field) {
    const std::uint8_t v = u8();
    if (v > 1) fail(std::string(field) + " is " + std::to_string(v) + ", expected 0 or 1");
    return v == 1;
  }
  std::optional<double> opt(const char* field) {
    const bool present = flag(field);
    const double v = f64();
    return present ? std::optional<double>(v) : std::nullopt;
  }
  std::string str() {
    const std::uint32_t n = u32();
    const auto* p = take(n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  const std::uint8_t* take(std::size_t n) {
    if (bytes_.size() - pos_ < n)
      fail("is shorter than its fields (" + std::to_string(bytes_.size()) + " bytes)");
    const auto* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::size_t remaining() const { return bytes_.size() - pos_; }
  [[noreturn]] void fail(const std::string& problem) const {
    throw InvalidArgument(what_ + ": section '" + section_ + "' " + problem);
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t pos_ = 0;
  const std::string& what_;
  const char* section_;
};

template <class E, std::size_t N>
E decode_enum(const std::pair<E, std::uint32_t> (&table)[N], std::uint32_t code, ByteReader& r,
              const char* field) {
  for (const auto& [v, c] : table)
    if (c == code) return v;
  r.fail("has unknown " + std::string(field) + " code " + std::to_string(code));
}

// ---- Writing ----------------------------------------------------------------------------------------

// Where the encoded bytes go; the encoder keeps the running CRC.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void write(const std::uint8_t* p, std::size_t n) = 0;
};

class VectorSink : public Sink {
 public:
  explicit VectorSink(std::vector<std::uint8_t>& out) : out_(out) {}
  void write(const std::uint8_t* p, std::size_t n) override { out_.insert(out_.end(), p, p + n); }

 private:
  std::vector<std::uint8_t>& out_;
};

class Encoder {
 public:
  explicit Encoder(Sink& sink) : sink_(sink) {}
  void put(const void* p, std::size_t n) {
    crc_ = crc32c(p, n, crc_);
    sink_.write(static_cast<const std::uint8_t*>(p), n);
  }
  void section_header(std::uint32_t tag, std::uint64_t length) {
    std::uint8_t b[kSectionHeaderBytes];
    store_u32(b, tag);
    store_u64(b + 4, length);
    put(b, sizeof b);
  }
  void section(std::uint32_t tag, const ByteWriter& payload) {
    section_header(tag, payload.bytes().size());
    put(payload.bytes().data(), payload.bytes().size());
  }
  void matrix(std::uint32_t tag, const Matrix<double>& m) {
    const std::uint64_t data_bytes = static_cast<std::uint64_t>(m.size()) * 8;
    section_header(tag, 16 + data_bytes);
    std::uint8_t dims[16];
    store_u64(dims, static_cast<std::uint64_t>(m.rows()));
    store_u64(dims + 8, static_cast<std::uint64_t>(m.cols()));
    put(dims, sizeof dims);
    if constexpr (std::endian::native == std::endian::little) {
      // The in-memory bytes already are the file's bytes: no copy, even for an N x N factor.
      put(m.data(), data_bytes);
    } else {
      std::uint8_t chunk[8 * 512];
      for (std::size_t i = 0; i < m.size(); i += 512) {
        const std::size_t k = std::min<std::size_t>(512, m.size() - i);
        for (std::size_t j = 0; j < k; ++j)
          store_u64(chunk + 8 * j, std::bit_cast<std::uint64_t>(m.data()[i + j]));
        put(chunk, 8 * k);
      }
    }
  }
  void trailer() {
    std::uint8_t b[kSectionHeaderBytes];
    store_u32(b, kEndTag);
    store_u64(b + 4, 4);
    put(b, sizeof b);  // part of the checksummed bytes
    std::uint8_t c[4];
    store_u32(c, crc_);
    sink_.write(c, 4);
  }

 private:
  Sink& sink_;
  std::uint32_t crc_ = 0;
};

ByteWriter encode_spec(const KernelSpec& s) {
  ByteWriter w;
  w.i32(s.depth);
  w.f64(s.w_std);
  w.f64(s.b_std);
  w.opt(s.w_std_out);
  w.opt(s.b_std_out);
  w.u32(code_of(kActivationCodes, s.activation.kind, "spec.activation.kind"));
  w.opt(s.activation.a);
  w.opt(s.activation.b);
  w.opt(s.activation.c);
  w.str(s.activation.custom_name);
  w.i32(s.quadrature_degree);
  return w;
}

ByteWriter encode_settings(const FitSettings& s) {
  ByteWriter w;
  w.f64(s.lambda);
  w.f64(s.label_smoothing);
  w.u32(code_of(kSolverCodes, s.solver, "settings.solver"));
  w.f64(s.tolerance);
  w.i32(s.max_newton_steps);
  w.i32(s.max_cg_iterations);
  w.f64(s.diag_reg);
  w.f64(s.time);
  w.f64(s.learning_rate);
  w.u32(code_of(kDtypeCodes, s.dtype, "settings.dtype"));
  return w;
}

ByteWriter encode_diagnostics(const FitDiagnostics& d) {
  ByteWriter w;
  w.u32(code_of(kSolverCodes, d.solver_used, "diagnostics.solver_used"));
  w.u8(d.converged ? 1 : 0);
  w.i32(d.steps);
  w.i32(d.cg_iterations);
  w.f64(d.residual);
  w.f64(d.objective);
  w.f64(d.seconds);
  w.str(d.message);
  if (d.history.size() > std::numeric_limits<std::uint32_t>::max())
    throw InvalidArgument("diagnostics.history has more than 2^32 records");
  w.u32(static_cast<std::uint32_t>(d.history.size()));
  w.u32(kStepRecordBytes);
  for (const auto& h : d.history) {
    w.i32(h.step);
    w.f64(h.residual);
    w.f64(h.objective);
    w.i32(h.cg_iterations);
    w.f64(h.step_size);
    w.f64(h.elapsed_seconds);
  }
  return w;
}

void encode_model(const Model& m, Sink& sink) {
  Encoder e(sink);
  std::uint8_t header[kHeaderBytes];
  std::memcpy(header, kMagic, 8);
  store_u32(header + 8, kModelFormatVersion);
  store_u32(header + 12, 0);  // flags
  e.put(header, sizeof header);
  e.section(kSpecTag, encode_spec(m.spec));
  e.section(kSettingsTag, encode_settings(m.settings));
  e.section(kDiagnosticsTag, encode_diagnostics(m.diagnostics));
  ByteWriter classes;
  classes.i64(m.num_classes);
  e.section(kNumClassesTag, classes);
  e.matrix(kXTrainTag, m.x_train);
  e.matrix(kTargetsTag, m.targets);
  e.matrix(kCoefficientsTag, m.coefficients);
  e.matrix(kTrainLogitsTag, m.train_logits);
  e.matrix(kThetaFactorTag, m.theta_factor);
  e.matrix(kF0TrainTag, m.f0_train);
  e.trailer();
}

std::size_t encoded_size_hint(const Model& m) {
  return 4096 + m.diagnostics.history.size() * kStepRecordBytes + m.diagnostics.message.size() +
         8 * (m.x_train.size() + m.targets.size() + m.coefficients.size() + m.train_logits.size() +
              m.theta_factor.size() + m.f0_train.size());
}

// ---- Reading ----------------------------------------------------------------------------------------
// Fields a later writer appends to a small section are ignored (the reader stops at the fields it
// knows); a section shorter than its fields is an error.

KernelSpec decode_spec(ByteReader& r) {
  KernelSpec s;
  s.depth = r.i32();
  s.w_std = r.f64();
  s.b_std = r.f64();
  s.w_std_out = r.opt("w_std_out presence");
  s.b_std_out = r.opt("b_std_out presence");
  s.activation.kind = decode_enum(kActivationCodes, r.u32(), r, "activation");
  s.activation.a = r.opt("activation.a presence");
  s.activation.b = r.opt("activation.b presence");
  s.activation.c = r.opt("activation.c presence");
  s.activation.custom_name = r.str();
  s.quadrature_degree = r.i32();
  return s;
}

FitSettings decode_settings(ByteReader& r) {
  FitSettings s;
  s.lambda = r.f64();
  s.label_smoothing = r.f64();
  s.solver = decode_enum(kSolverCodes, r.u32(), r, "solver");
  s.tolerance = r.f64();
  s.max_newton_steps = r.i32();
  s.max_cg_iterations = r.i32();
  s.diag_reg = r.f64();
  s.time = r.f64();
  s.learning_rate = r.f64();
  s.dtype = decode_enum(kDtypeCodes, r.u32(), r, "dtype");
  return s;
}

FitDiagnostics decode_diagnostics(ByteReader& r) {
  FitDiagnostics d;
  d.solver_used = decode_enum(kSolverCodes, r.u32(), r, "solver_used");
  d.converged = r.flag("converged");
  d.steps = r.i32();
  d.cg_iterations = r.i32();
  d.residual = r.f64();
  d.objective = r.f64();
  d.seconds = r.f64();
  d.message = r.str();
  const std::uint32_t count = r.u32();
  const std::uint32_t record_bytes = r.u32();
  if (record_bytes < kStepRecordBytes)
    r.fail("has history records of " + std::to_string(record_bytes) + " bytes, expected at least " +
           std::to_string(kStepRecordBytes));
  // Checked before reserving, so that a corrupt count cannot make us allocate gigabytes.
  if (static_cast<std::uint64_t>(count) * record_bytes > r.remaining())
    r.fail("claims " + std::to_string(count) + " history records but has " + std::to_string(r.remaining()) +
           " bytes left");
  d.history.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    StepRecord h;
    h.step = r.i32();
    h.residual = r.f64();
    h.objective = r.f64();
    h.cg_iterations = r.i32();
    h.step_size = r.f64();
    h.elapsed_seconds = r.f64();
    r.take(record_bytes - kStepRecordBytes);
    d.history.push_back(h);
  }
  return d;
}

Matrix<double> decode_matrix(ByteReader& r) {
  const std::uint64_t rows = r.u64();
  const std::uint64_t cols = r.u64();
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (rows > kMax || cols > kMax) r.fail("has an impossible shape");
  const std::uint64_t data_bytes = r.remaining();
  const std::uint64_t elements = data_bytes / 8;
  // rows * cols == elements, without overflowing the product.
  const bool fits =
      data_bytes % 8 == 0 &&
      (rows == 0 || cols == 0 ? elements == 0 : rows <= elements / cols && rows * cols == elements);
  if (!fits)
    r.fail("is " + std::to_string(rows) + " x " + std::to_string(cols) + " but holds " +
           std::to_string(data_bytes) + " bytes of data");
  Matrix<double> m(static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols));
  const std::uint8_t* p = r.take(data_bytes);
  if constexpr (std::endian::native == std::endian::little) {
    if (data_bytes > 0) std::memcpy(m.data(), p, data_bytes);
  } else {
    for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = std::bit_cast<double>(load_u64(p + 8 * i));
  }
  return m;
}

Model read_version_1(std::span<const std::uint8_t> bytes, const std::string& what) {
  const std::size_t size = bytes.size();
  if (size < kHeaderBytes + kTrailerBytes)
    throw InvalidArgument(what + ": model file is truncated (" + std::to_string(size) + " bytes)");
  const std::uint8_t* trailer = bytes.data() + size - kTrailerBytes;
  if (load_u32(trailer) != kEndTag || load_u64(trailer + 4) != 4)
    throw InvalidArgument(what + ": model file is truncated or corrupt (no end trailer in its last " +
                          std::to_string(kTrailerBytes) + " bytes)");
  const std::uint32_t stored = load_u32(trailer + 12);
  const std::uint32_t computed = crc32c(bytes.data(), size - 4);
  if (stored != computed)
    throw InvalidArgument(what + ": model file is corrupt (checksum mismatch: stored " + hex32(stored) +
                          ", computed " + hex32(computed) + ")");
  const std::uint32_t flags = load_u32(bytes.data() + 12);
  if (flags & ~kKnownFlags)
    throw InvalidArgument(what + ": model file uses format flags " + hex32(flags & ~kKnownFlags) +
                          " this build does not know");

  Model m;
  bool seen[std::size(kSections)] = {};
  std::size_t pos = kHeaderBytes;
  const std::size_t end = size - kTrailerBytes;
  while (pos < end) {
    if (end - pos < kSectionHeaderBytes)
      throw InvalidArgument(what + ": model file has a truncated section header at offset " +
                            std::to_string(pos));
    const std::uint32_t tag = load_u32(bytes.data() + pos);
    const std::uint64_t length = load_u64(bytes.data() + pos + 4);
    const std::size_t payload = pos + kSectionHeaderBytes;
    if (length > end - payload)
      throw InvalidArgument(what + ": section '" + section_name(tag) + "' (tag " + std::to_string(tag) +
                            ") at offset " + std::to_string(pos) + " claims " + std::to_string(length) +
                            " bytes but only " + std::to_string(end - payload) + " remain");
    if (tag == kEndTag)
      throw InvalidArgument(what + ": model file has an end marker at offset " + std::to_string(pos) +
                            " before its end");
    std::size_t index = std::size(kSections);
    for (std::size_t i = 0; i < std::size(kSections); ++i)
      if (kSections[i].tag == tag) index = i;
    if (index < std::size(kSections)) {
      const char* name = kSections[index].name;
      if (seen[index]) throw InvalidArgument(what + ": model file has section '" + name + "' twice");
      seen[index] = true;
      ByteReader r(bytes.subspan(payload, static_cast<std::size_t>(length)), what, name);
      switch (tag) {
        case kSpecTag:
          m.spec = decode_spec(r);
          break;
        case kSettingsTag:
          m.settings = decode_settings(r);
          break;
        case kDiagnosticsTag:
          m.diagnostics = decode_diagnostics(r);
          break;
        case kNumClassesTag:
          m.num_classes = r.i64();
          break;
        case kXTrainTag:
          m.x_train = decode_matrix(r);
          break;
        case kTargetsTag:
          m.targets = decode_matrix(r);
          break;
        case kCoefficientsTag:
          m.coefficients = decode_matrix(r);
          break;
        case kTrainLogitsTag:
          m.train_logits = decode_matrix(r);
          break;
        case kThetaFactorTag:
          m.theta_factor = decode_matrix(r);
          break;
        case kF0TrainTag:
          m.f0_train = decode_matrix(r);
          break;
        default:
          break;
      }
    }
    // Unknown tags: sections a later writer added within the same version; skipped.
    pos = payload + static_cast<std::size_t>(length);
  }
  for (std::size_t i = 0; i < std::size(kSections); ++i)
    if (!seen[i]) throw InvalidArgument(what + ": model file has no section '" + kSections[i].name + "'");
  check_model(m, what);
  return m;
}

void check_finite(const Matrix<double>& a, const char* name, const std::string& what, bool lower_only) {
  for (std::int64_t i = 0; i < a.rows(); ++i) {
    const std::int64_t cols = lower_only ? std::min(i + 1, a.cols()) : a.cols();
    for (std::int64_t j = 0; j < cols; ++j)
      if (!std::isfinite(a(i, j)))
        throw InvalidArgument(what + ": " + name + "(" + std::to_string(i) + ", " + std::to_string(j) +
                              ") is " + (std::isnan(a(i, j)) ? "NaN" : "infinite"));
  }
}

std::string shape(const Matrix<double>& a) {
  return std::to_string(a.rows()) + " x " + std::to_string(a.cols());
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  const auto& t = kCrcTables;
  crc = ~crc;
  for (; size >= 8; size -= 8, p += 8) {
    const std::uint32_t lo = load_u32(p) ^ crc;
    const std::uint32_t hi = load_u32(p + 4);
    crc = t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^ t[5][(lo >> 16) & 0xffu] ^ t[4][lo >> 24] ^
          t[3][hi & 0xffu] ^ t[2][(hi >> 8) & 0xffu] ^ t[1][(hi >> 16) & 0xffu] ^ t[0][hi >> 24];
  }
  for (; size > 0; --size, ++p) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xffu];
  return ~crc;
}

void check_model(const Model& m, const std::string& what) {
  const std::int64_t n = m.x_train.rows();
  const std::int64_t c = m.num_classes;
  if (c < 1) throw InvalidArgument(what + ": num_classes is " + std::to_string(c) + ", expected >= 1");
  if (n < 1 || m.x_train.cols() < 1)
    throw InvalidArgument(what + ": x_train is " + shape(m.x_train) + "; a model needs at least one point");
  auto expect = [&](const Matrix<double>& a, const char* name, std::int64_t rows, std::int64_t cols,
                    const char* why) {
    if (a.rows() != rows || a.cols() != cols)
      throw InvalidArgument(what + ": " + name + " is " + shape(a) + ", expected " + std::to_string(rows) +
                            " x " + std::to_string(cols) + " (" + why + ")");
  };
  expect(m.targets, "targets", n, c, "x_train rows x num_classes");
  expect(m.coefficients, "coefficients", n, c, "x_train rows x num_classes");
  expect(m.train_logits, "train_logits", n, c, "x_train rows x num_classes");
  if (m.theta_factor.rows() != 0 || m.theta_factor.cols() != 0)
    expect(m.theta_factor, "theta_factor", n, n, "x_train rows squared, or 0 x 0 when none was kept");
  if (m.f0_train.rows() != 0 || m.f0_train.cols() != 0)
    expect(m.f0_train, "f0_train", n, c, "x_train rows x num_classes, or 0 x 0 for f0 = 0");
  check_finite(m.f0_train, "f0_train", what, false);
  check_finite(m.x_train, "x_train", what, false);
  check_finite(m.targets, "targets", what, false);
  check_finite(m.coefficients, "coefficients", what, false);
  check_finite(m.train_logits, "train_logits", what, false);
  // Only the lower triangle of the factor is defined; whatever the upper one holds is stored as is.
  check_finite(m.theta_factor, "theta_factor", what, true);
}

std::vector<std::uint8_t> serialize_model(const Model& m) {
  check_model(m, "model");
  std::vector<std::uint8_t> out;
  out.reserve(encoded_size_hint(m));
  VectorSink sink(out);
  encode_model(m, sink);
  return out;
}

Model deserialize_model(std::span<const std::uint8_t> bytes, const std::string& what) {
  if (bytes.size() < sizeof kMagic) {
    if (bytes.empty() || std::memcmp(bytes.data(), kMagic, bytes.size()) == 0)
      throw InvalidArgument(what + ": model file is truncated (" + std::to_string(bytes.size()) + " bytes)");
    throw InvalidArgument(what + " is not a model file (bad magic)");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw InvalidArgument(what + " is not a model file (bad magic)");
  if (bytes.size() < 12)
    throw InvalidArgument(what + ": model file is truncated (" + std::to_string(bytes.size()) + " bytes)");
  // The version is checked before anything else: a later version may change everything after it,
  // the trailer and checksum included.
  const std::uint32_t version = load_u32(bytes.data() + 8);
  if (version > kModelFormatVersion)
    throw InvalidArgument(what + ": model file version " + std::to_string(version) +
                          " is newer than this build supports (" + std::to_string(kModelFormatVersion) + ")");
  switch (version) {
    case 1:
      return read_version_1(bytes, what);
    default:
      break;
  }
  throw InvalidArgument(what + ": model file version " + std::to_string(version) + " is not a valid version");
}

namespace {

class FdSink : public Sink {
 public:
  FdSink(int fd, std::function<void(const char*)> fail) : fd_(fd), fail_(std::move(fail)) {}
  void write(const std::uint8_t* p, std::size_t n) override {
    while (n > 0) {
      // Bounded chunks: some kernels cap a single write at 2 GiB anyway.
      const ssize_t w = ::write(fd_, p, std::min<std::size_t>(n, std::size_t{1} << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        fail_("write");
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }

 private:
  int fd_;
  std::function<void(const char*)> fail_;
};

}  // namespace

void save_model(const std::string& path, const Model& m) {
  check_model(m, quote(path));
  // pid + counter: unique across processes and across threads of this one saving the same path.
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError("cannot create " + quote(path) + ": " + errno_text());
  auto fail = [&](const char* step) {
    const std::string reason = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError("cannot write " + quote(path) + " (" + step + "): " + reason);
  };
  try {
    FdSink sink(fd, fail);
    encode_model(m, sink);
  } catch (const IoError&) {
    throw;  // fail() has cleaned up
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    const std::string reason = errno_text();
    ::unlink(tmp.c_str());
    throw IoError("cannot write " + quote(path) + ": " + reason);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = errno_text();
    ::unlink(tmp.c_str());
    throw IoError("cannot write " + quote(path) + ": " + reason);
  }
  // Best effort: make the rename itself durable. The file is complete either way, so a failure here
  // is not reported.
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

Model load_model(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw NotFound("model file " + quote(path) + " does not exist");
    throw IoError("cannot open " + quote(path) + ": " + errno_text());
  }
  // One byte more than the size stat reports, so that reading the whole file needs no reallocation
  // (the read that returns 0 lands in it); reading to end of file rather than trusting st_size keeps a
  // file that changes size, or one that is not regular, correct.
  std::size_t capacity = 65536;
  struct stat st {};
  if (::fstat(fd, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      throw IoError("cannot read " + quote(path) + ": it is a directory");
    }
    if (S_ISREG(st.st_mode)) capacity = static_cast<std::size_t>(st.st_size) + 1;
  }
  std::vector<std::uint8_t> bytes(capacity);
  std::size_t used = 0;
  for (;;) {
    if (used == bytes.size()) bytes.resize(2 * bytes.size());
    const ssize_t r = ::read(fd, bytes.data() + used, bytes.size() - used);
    if (r < 0) {
      if (errno == EINTR) continue;
      const std::string reason = errno_text();
      ::close(fd);
      throw IoError("cannot read " + quote(path) + ": " + reason);
    }
    if (r == 0) break;
    used += static_cast<std::size_t>(r);
  }
  ::close(fd);
  bytes.resize(used);
  return deserialize_model(bytes, quote(path));
}

}  // namespace ntk
