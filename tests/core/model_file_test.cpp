#include "ntk/model_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "ntk/errors.hpp"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

static_assert(std::endian::native == std::endian::little, "the hand-made files below are little-endian");

// ---- Building models ----

// Values that a careless encoder (text, float casts, NaN-canonicalizing copies) would not preserve.
const double kEdgeValues[] = {0.0,
                              -0.0,
                              1e308,
                              -1e308,
                              std::numeric_limits<double>::max(),
                              std::numeric_limits<double>::lowest(),
                              std::numeric_limits<double>::min(),
                              std::numeric_limits<double>::denorm_min(),
                              -std::numeric_limits<double>::denorm_min(),
                              2.2250738585072009e-308,  // largest denormal
                              0.1,
                              1.0 / 3.0,
                              -1e-300};

void fill(ntk::Matrix<double>& m, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-3, 3);
  std::uniform_int_distribution<std::size_t> pick(0, std::size(kEdgeValues) - 1);
  for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = (rng() % 3 == 0) ? kEdgeValues[pick(rng)] : u(rng);
}

struct ModelOptions {
  std::int64_t n = 5, d = 3, c = 4;
  bool readout = false;
  bool custom = false;
  bool factor = true;
  int history = 3;
};

ntk::Model make_model(std::uint64_t seed, const ModelOptions& o = {}) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  ntk::Model m;
  m.spec.depth = 3;
  m.spec.w_std = 1.4142135623730951;
  m.spec.b_std = 0.05;
  if (o.readout) {
    m.spec.w_std_out = -0.0;
    m.spec.b_std_out = std::numeric_limits<double>::denorm_min();
  }
  if (o.custom) {
    m.spec.activation.kind = ntk::Activation::custom;
    m.spec.activation.custom_name = "my_swish \xce\xb2";  // UTF-8 survives as bytes
  } else {
    m.spec.activation.kind = ntk::Activation::erf;
    m.spec.activation.a = 0.5;
    m.spec.activation.c = -1e308;
  }
  m.spec.quadrature_degree = 41;
  m.settings.lambda = u(rng);
  m.settings.label_smoothing = 1e-310;
  m.settings.solver = ntk::SolverKind::matrix_free;
  m.settings.tolerance = 1e-12;
  m.settings.max_newton_steps = 77;
  m.settings.max_cg_iterations = -1;
  m.settings.diag_reg = 1e-6;
  m.settings.time = 12.5;
  m.settings.learning_rate = 0.3;
  m.settings.dtype = ntk::ComputeType::float32;
  m.diagnostics.solver_used = ntk::SolverKind::dynamics;
  m.diagnostics.converged = true;
  m.diagnostics.steps = o.history;
  m.diagnostics.cg_iterations = 123456;
  m.diagnostics.residual = 3.5e-11;
  m.diagnostics.objective = -0.0;
  m.diagnostics.seconds = u(rng);
  m.diagnostics.message = "converged: residual 3.5e-11 <= tolerance";
  for (int i = 0; i < o.history; ++i)
    m.diagnostics.history.push_back({i, u(rng), -u(rng), i * 7, 0.25, 1e-320 * i});
  m.num_classes = o.c;
  m.x_train = ntk::Matrix<double>(o.n, o.d);
  m.targets = ntk::Matrix<double>(o.n, o.c);
  m.coefficients = ntk::Matrix<double>(o.n, o.c);
  m.train_logits = ntk::Matrix<double>(o.n, o.c);
  fill(m.x_train, rng);
  fill(m.targets, rng);
  fill(m.coefficients, rng);
  fill(m.train_logits, rng);
  if (o.factor) {
    m.theta_factor = ntk::Matrix<double>(o.n, o.n);
    fill(m.theta_factor, rng);
    m.f0_train = ntk::Matrix<double>(o.n, o.c);  // the variants with a factor also carry f0
    fill(m.f0_train, rng);
  }
  return m;
}

// ---- Field-by-field bit equality ----

std::uint64_t bits(double v) {
  return std::bit_cast<std::uint64_t>(v);
}

#define EXPECT_SAME_DOUBLE(a, b) EXPECT_EQ(bits(a), bits(b)) << #a << " = " << (a) << " vs " << (b)

void expect_same_optional(const std::optional<double>& a, const std::optional<double>& b, const char* name) {
  ASSERT_EQ(a.has_value(), b.has_value()) << name;
  if (a) {
    EXPECT_EQ(bits(*a), bits(*b)) << name;
  }
}

void expect_same_matrix(const ntk::Matrix<double>& a, const ntk::Matrix<double>& b, const char* name) {
  ASSERT_EQ(a.rows(), b.rows()) << name;
  ASSERT_EQ(a.cols(), b.cols()) << name;
  ASSERT_EQ(a.size(), b.size()) << name;
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(bits(a.data()[i]), bits(b.data()[i])) << name << " element " << i;
}

void expect_same_model(const ntk::Model& a, const ntk::Model& b) {
  EXPECT_EQ(a.spec.depth, b.spec.depth);
  EXPECT_SAME_DOUBLE(a.spec.w_std, b.spec.w_std);
  EXPECT_SAME_DOUBLE(a.spec.b_std, b.spec.b_std);
  expect_same_optional(a.spec.w_std_out, b.spec.w_std_out, "w_std_out");
  expect_same_optional(a.spec.b_std_out, b.spec.b_std_out, "b_std_out");
  EXPECT_EQ(a.spec.activation.kind, b.spec.activation.kind);
  expect_same_optional(a.spec.activation.a, b.spec.activation.a, "activation.a");
  expect_same_optional(a.spec.activation.b, b.spec.activation.b, "activation.b");
  expect_same_optional(a.spec.activation.c, b.spec.activation.c, "activation.c");
  EXPECT_EQ(a.spec.activation.custom_name, b.spec.activation.custom_name);
  EXPECT_EQ(a.spec.quadrature_degree, b.spec.quadrature_degree);

  EXPECT_SAME_DOUBLE(a.settings.lambda, b.settings.lambda);
  EXPECT_SAME_DOUBLE(a.settings.label_smoothing, b.settings.label_smoothing);
  EXPECT_EQ(a.settings.solver, b.settings.solver);
  EXPECT_SAME_DOUBLE(a.settings.tolerance, b.settings.tolerance);
  EXPECT_EQ(a.settings.max_newton_steps, b.settings.max_newton_steps);
  EXPECT_EQ(a.settings.max_cg_iterations, b.settings.max_cg_iterations);
  EXPECT_SAME_DOUBLE(a.settings.diag_reg, b.settings.diag_reg);
  EXPECT_SAME_DOUBLE(a.settings.time, b.settings.time);
  EXPECT_SAME_DOUBLE(a.settings.learning_rate, b.settings.learning_rate);
  EXPECT_EQ(a.settings.dtype, b.settings.dtype);

  EXPECT_EQ(a.diagnostics.solver_used, b.diagnostics.solver_used);
  EXPECT_EQ(a.diagnostics.converged, b.diagnostics.converged);
  EXPECT_EQ(a.diagnostics.steps, b.diagnostics.steps);
  EXPECT_EQ(a.diagnostics.cg_iterations, b.diagnostics.cg_iterations);
  EXPECT_SAME_DOUBLE(a.diagnostics.residual, b.diagnostics.residual);
  EXPECT_SAME_DOUBLE(a.diagnostics.objective, b.diagnostics.objective);
  EXPECT_SAME_DOUBLE(a.diagnostics.seconds, b.diagnostics.seconds);
  EXPECT_EQ(a.diagnostics.message, b.diagnostics.message);
  ASSERT_EQ(a.diagnostics.history.size(), b.diagnostics.history.size());
  for (std::size_t i = 0; i < a.diagnostics.history.size(); ++i) {
    const auto& x = a.diagnostics.history[i];
    const auto& y = b.diagnostics.history[i];
    EXPECT_EQ(x.step, y.step);
    EXPECT_SAME_DOUBLE(x.residual, y.residual);
    EXPECT_SAME_DOUBLE(x.objective, y.objective);
    EXPECT_EQ(x.cg_iterations, y.cg_iterations);
    EXPECT_SAME_DOUBLE(x.step_size, y.step_size);
    EXPECT_SAME_DOUBLE(x.elapsed_seconds, y.elapsed_seconds);
  }

  EXPECT_EQ(a.num_classes, b.num_classes);
  expect_same_matrix(a.x_train, b.x_train, "x_train");
  expect_same_matrix(a.targets, b.targets, "targets");
  expect_same_matrix(a.coefficients, b.coefficients, "coefficients");
  expect_same_matrix(a.train_logits, b.train_logits, "train_logits");
  expect_same_matrix(a.theta_factor, b.theta_factor, "theta_factor");
  expect_same_matrix(a.f0_train, b.f0_train, "f0_train");
}

// ---- Hand-made files: an independent (bitwise) CRC and a section splitter ----

std::uint32_t bitwise_crc32c(const std::uint8_t* p, std::size_t n) {
  std::uint32_t crc = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

template <class T>
void append(Bytes& out, T v) {
  std::uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.insert(out.end(), b, b + sizeof(T));
}

template <class T>
T load(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

struct Section {
  std::uint32_t tag;
  Bytes payload;
};

std::vector<Section> split(const Bytes& file) {
  std::vector<Section> out;
  std::size_t pos = 16;
  while (pos < file.size() - 16) {
    const auto tag = load<std::uint32_t>(&file[pos]);
    const auto len = load<std::uint64_t>(&file[pos + 4]);
    out.push_back({tag, Bytes(file.begin() + static_cast<std::ptrdiff_t>(pos + 12),
                              file.begin() + static_cast<std::ptrdiff_t>(pos + 12 + len))});
    pos += 12 + len;
  }
  EXPECT_EQ(pos, file.size() - 16);
  return out;
}

Bytes assemble(const std::vector<Section>& sections, std::uint32_t version = 1, std::uint32_t flags = 0) {
  Bytes out = {'N', 'T', 'K', 'M', 'O', 'D', 'E', 'L'};
  append(out, version);
  append(out, flags);
  for (const auto& s : sections) {
    append(out, s.tag);
    append(out, static_cast<std::uint64_t>(s.payload.size()));
    out.insert(out.end(), s.payload.begin(), s.payload.end());
  }
  append(out, std::uint32_t{0});
  append(out, std::uint64_t{4});
  append(out, bitwise_crc32c(out.data(), out.size()));
  return out;
}

Bytes matrix_payload(std::uint64_t rows, std::uint64_t cols, const std::vector<double>& values) {
  Bytes out;
  append(out, rows);
  append(out, cols);
  for (double v : values) append(out, v);
  return out;
}

Section* find(std::vector<Section>& sections, std::uint32_t tag) {
  for (auto& s : sections)
    if (s.tag == tag) return &s;
  return nullptr;
}

std::string error_of(const Bytes& bytes) {
  try {
    ntk::deserialize_model(bytes, "'hand.ntk'");
  } catch (const ntk::InvalidArgument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

class ModelFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ntk_model_file_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write_bytes(const std::string& name, const Bytes& b) const {
    std::ofstream out(path(name), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  std::size_t entries() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()));
  }
  fs::path dir_;
};

// ---- CRC ----

TEST(ModelFileCrc, MatchesTheStandardCheckValueAndABitwiseImplementation) {
  const char* check = "123456789";
  EXPECT_EQ(ntk::crc32c(check, 9), 0xE3069283u);
  EXPECT_EQ(ntk::crc32c(nullptr, 0), 0u);
  std::mt19937_64 rng(7);
  for (std::size_t n : {1, 7, 8, 9, 15, 16, 17, 63, 64, 1000, 4099}) {
    Bytes data(n);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const std::uint32_t whole = ntk::crc32c(data.data(), n);
    EXPECT_EQ(whole, bitwise_crc32c(data.data(), n)) << n;
    // Incremental use over any split gives the same value.
    const std::size_t cut = n / 3;
    EXPECT_EQ(ntk::crc32c(data.data() + cut, n - cut, ntk::crc32c(data.data(), cut)), whole) << n;
  }
}

// ---- Round trips ----

TEST_F(ModelFileTest, RoundTripsEveryFieldBitExactly) {
  int variant = 0;
  for (bool readout : {false, true})
    for (bool custom : {false, true})
      for (bool factor : {false, true})
        for (int history : {0, 4}) {
          SCOPED_TRACE(variant);
          ModelOptions o;
          o.readout = readout;
          o.custom = custom;
          o.factor = factor;
          o.history = history;
          const ntk::Model m = make_model(100 + static_cast<std::uint64_t>(variant), o);
          // Appended rather than concatenated: g++ 12 warns falsely (-Wrestrict) on "m" + to_string().
          std::string name = std::to_string(variant++);
          name += ".ntk";
          const std::string file = path(name);
          ntk::save_model(file, m);
          const ntk::Model back = ntk::load_model(file);
          expect_same_model(m, back);
          // The in-memory form is the file's bytes, and re-serializing gives them again.
          const Bytes bytes = ntk::serialize_model(m);
          std::ifstream in(file, std::ios::binary);
          const Bytes on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
          EXPECT_EQ(bytes, on_disk);
          expect_same_model(m, ntk::deserialize_model(bytes, "bytes"));
          EXPECT_EQ(ntk::serialize_model(back), bytes);
        }
  // Only the model files are there: no temporaries.
  EXPECT_EQ(entries(), static_cast<std::size_t>(variant));
}

TEST_F(ModelFileTest, RoundTripsEveryEdgeValue) {
  ModelOptions o;
  o.n = static_cast<std::int64_t>(std::size(kEdgeValues));
  o.d = 1;
  o.c = 1;
  ntk::Model m = make_model(5, o);
  for (std::size_t i = 0; i < std::size(kEdgeValues); ++i) {
    m.x_train.data()[i] = kEdgeValues[i];
    m.coefficients.data()[i] = kEdgeValues[std::size(kEdgeValues) - 1 - i];
  }
  // The upper triangle of the factor is not checked, so even a NaN payload there is kept bit for bit.
  m.theta_factor(0, 1) = std::bit_cast<double>(0x7ff800000000beefULL);
  ntk::save_model(path("edge.ntk"), m);
  expect_same_model(m, ntk::load_model(path("edge.ntk")));
}

TEST_F(ModelFileTest, OverwritesAtomically) {
  ntk::save_model(path("m.ntk"), make_model(1));
  const ntk::Model second = make_model(2);
  ntk::save_model(path("m.ntk"), second);
  expect_same_model(second, ntk::load_model(path("m.ntk")));
  EXPECT_EQ(entries(), 1u);
}

// docs/model_format.md gives these offsets; a change to the layout must change the document too.
TEST_F(ModelFileTest, LayoutMatchesTheDocumentedOffsets) {
  ModelOptions o;
  o.custom = true;
  o.readout = true;
  o.history = 2;
  const ntk::Model m = make_model(9, o);
  const Bytes file = ntk::serialize_model(m);
  EXPECT_EQ(std::string(file.begin(), file.begin() + 8), "NTKMODEL");
  EXPECT_EQ(load<std::uint32_t>(&file[8]), 1u);
  EXPECT_EQ(load<std::uint32_t>(&file[12]), 0u);
  EXPECT_EQ(load<std::uint32_t>(&file[file.size() - 16]), 0u);
  EXPECT_EQ(load<std::uint64_t>(&file[file.size() - 12]), 4u);
  EXPECT_EQ(load<std::uint32_t>(&file[file.size() - 4]), bitwise_crc32c(file.data(), file.size() - 4));
  auto sections = split(file);
  std::vector<std::uint32_t> tags;
  for (const auto& s : sections) tags.push_back(s.tag);
  EXPECT_EQ(tags, (std::vector<std::uint32_t>{1, 2, 3, 4, 16, 17, 18, 19, 20, 21}));

  const Bytes& spec = find(sections, 1)->payload;
  const std::size_t name_len = m.spec.activation.custom_name.size();
  ASSERT_EQ(spec.size(), 77 + name_len);
  EXPECT_EQ(load<std::int32_t>(&spec[0]), 3);
  EXPECT_EQ(load<double>(&spec[4]), m.spec.w_std);
  EXPECT_EQ(spec[20], 1);
  EXPECT_EQ(load<std::uint32_t>(&spec[38]), 11u);  // custom
  EXPECT_EQ(spec[42], 0);                          // a absent
  EXPECT_EQ(load<std::uint32_t>(&spec[69]), name_len);
  EXPECT_EQ(std::string(spec.begin() + 73, spec.begin() + 73 + static_cast<std::ptrdiff_t>(name_len)),
            m.spec.activation.custom_name);
  EXPECT_EQ(load<std::int32_t>(&spec[73 + name_len]), 41);

  const Bytes& settings = find(sections, 2)->payload;
  ASSERT_EQ(settings.size(), 64u);
  EXPECT_EQ(load<double>(&settings[0]), m.settings.lambda);
  EXPECT_EQ(load<std::uint32_t>(&settings[16]), 2u);  // matrix_free
  EXPECT_EQ(load<std::int32_t>(&settings[28]), 77);
  EXPECT_EQ(load<double>(&settings[52]), 0.3);
  EXPECT_EQ(load<std::uint32_t>(&settings[60]), 0u);  // float32

  const Bytes& diag = find(sections, 3)->payload;
  const std::size_t msg = m.diagnostics.message.size();
  ASSERT_EQ(diag.size(), 49 + msg + 2 * 40);
  EXPECT_EQ(load<std::uint32_t>(&diag[0]), 4u);  // dynamics
  EXPECT_EQ(diag[4], 1);
  EXPECT_EQ(load<std::int32_t>(&diag[9]), 123456);
  EXPECT_EQ(load<std::uint32_t>(&diag[37]), msg);
  EXPECT_EQ(load<std::uint32_t>(&diag[41 + msg]), 2u);
  EXPECT_EQ(load<std::uint32_t>(&diag[45 + msg]), 40u);
  EXPECT_EQ(load<std::int32_t>(&diag[49 + msg + 40]), 1);  // second record's step
  EXPECT_EQ(load<std::int32_t>(&diag[49 + msg + 40 + 20]), 7);
  EXPECT_EQ(load<double>(&diag[49 + msg + 40 + 24]), 0.25);

  EXPECT_EQ(find(sections, 4)->payload.size(), 8u);
  const Bytes& x = find(sections, 16)->payload;
  EXPECT_EQ(load<std::uint64_t>(&x[0]), 5u);
  EXPECT_EQ(load<std::uint64_t>(&x[8]), 3u);
  EXPECT_EQ(bits(load<double>(&x[16 + 8 * 4])), bits(m.x_train(1, 1)));  // row-major
}

// ---- Corrupt files ----

Bytes small_file() {
  ModelOptions o;
  o.n = 2;
  o.d = 1;
  o.c = 2;
  o.history = 1;
  return ntk::serialize_model(make_model(3, o));
}

TEST_F(ModelFileTest, EveryTruncationIsRejected) {
  const Bytes full = small_file();
  ASSERT_GT(full.size(), 100u);
  for (std::size_t len = 0; len < full.size(); ++len) {
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(ntk::deserialize_model(prefix, "prefix"), ntk::InvalidArgument) << "length " << len;
    write_bytes("t.ntk", prefix);
    try {
      ntk::load_model(path("t.ntk"));
      ADD_FAILURE() << "length " << len << " loaded";
    } catch (const ntk::InvalidArgument& e) {
      EXPECT_CONTAINS(e.what(), path("t.ntk"));
    }
  }
  EXPECT_CONTAINS(error_of(Bytes(full.begin(), full.begin() + 40)), "truncated");
  EXPECT_CONTAINS(error_of(Bytes(full.begin(), full.begin() + 5)), "truncated");
  EXPECT_CONTAINS(error_of({}), "truncated");
}

TEST_F(ModelFileTest, EverySingleByteChangeIsRejected) {
  const Bytes full = small_file();
  for (std::size_t i = 0; i < full.size(); ++i) {
    for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
      Bytes bad = full;
      bad[i] ^= mask;
      const std::string message = error_of(bad);
      EXPECT_FALSE(message.empty()) << "byte " << i << " mask " << int(mask) << " was accepted";
      EXPECT_EQ(message.rfind("wrong exception type", 0), std::string::npos) << message;
      // Past the magic and the version, the checksum (or, in the trailer, its frame) catches it.
      if (i >= 12 && i < full.size() - 16) {
        EXPECT_CONTAINS(message, "checksum mismatch");
      }
    }
  }
  Bytes flipped_crc = full;
  flipped_crc.back() ^= 1;
  EXPECT_CONTAINS(error_of(flipped_crc), "checksum mismatch");
  Bytes flipped_magic = full;
  flipped_magic[0] = 'X';
  EXPECT_CONTAINS(error_of(flipped_magic), "not a model file");
}

TEST_F(ModelFileTest, RefusesNewerVersionsNamingBoth) {
  const auto sections = split(small_file());
  write_bytes("v2.ntk", assemble(sections, 2));
  try {
    ntk::load_model(path("v2.ntk"));
    ADD_FAILURE() << "version 2 loaded";
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_CONTAINS(e.what(), "model file version 2 is newer than this build supports (1)");
    EXPECT_CONTAINS(e.what(), path("v2.ntk"));
  }
  EXPECT_CONTAINS(error_of(assemble(sections, 7)),
                  "model file version 7 is newer than this build supports (1)");
  EXPECT_CONTAINS(error_of(assemble(sections, 0)), "version 0 is not a valid version");
  // The hand-made version-1 file itself is fine: only the version made the difference.
  EXPECT_EQ(error_of(assemble(sections, 1)), "");
  EXPECT_CONTAINS(error_of(assemble(sections, 1, 0x4)), "flags 0x00000004");
}

TEST_F(ModelFileTest, SkipsUnknownSections) {
  const Bytes full = small_file();
  const ntk::Model original = ntk::deserialize_model(full, "original");
  auto sections = split(full);
  ASSERT_EQ(assemble(sections), full);  // the splitter and the independent CRC agree with the writer
  sections.insert(sections.begin() + 2, Section{999, {1, 2, 3, 4, 5}});
  sections.push_back(Section{0x7fffffff, {}});
  write_bytes("extra.ntk", assemble(sections));
  expect_same_model(original, ntk::load_model(path("extra.ntk")));
}

TEST_F(ModelFileTest, IgnoresFieldsAppendedToKnownSections) {
  const Bytes full = small_file();
  const ntk::Model original = ntk::deserialize_model(full, "original");
  auto sections = split(full);
  for (std::uint32_t tag : {1u, 2u, 3u, 4u}) find(sections, tag)->payload.push_back(42);
  expect_same_model(original, ntk::deserialize_model(assemble(sections), "appended"));
}

TEST_F(ModelFileTest, RejectsInconsistentContentByName) {
  const auto good = split(small_file());  // N = 2, d = 1, C = 2
  auto with = [&](std::uint32_t tag, Bytes payload) {
    auto s = good;
    find(s, tag)->payload = std::move(payload);
    return assemble(s);
  };
  const std::vector<double> six(6, 0.5), four(4, 0.5);
  std::string e = error_of(with(18, matrix_payload(3, 2, six)));
  EXPECT_CONTAINS(e, "'hand.ntk'");
  EXPECT_CONTAINS(e, "coefficients is 3 x 2, expected 2 x 2");
  EXPECT_CONTAINS(error_of(with(17, matrix_payload(2, 3, six))), "targets is 2 x 3, expected 2 x 2");
  EXPECT_CONTAINS(error_of(with(19, matrix_payload(1, 4, four))), "train_logits is 1 x 4");
  EXPECT_CONTAINS(error_of(with(20, matrix_payload(2, 3, six))), "theta_factor is 2 x 3");
  EXPECT_CONTAINS(error_of(with(16, matrix_payload(0, 0, {}))), "x_train is 0 x 0");

  std::vector<double> nan_coefficients = four;
  nan_coefficients[1] = std::nan("");
  EXPECT_CONTAINS(error_of(with(18, matrix_payload(2, 2, nan_coefficients))), "coefficients(0, 1) is NaN");
  std::vector<double> inf_x = {1.0, INFINITY};
  EXPECT_CONTAINS(error_of(with(16, matrix_payload(2, 1, inf_x))), "x_train(1, 0) is infinite");

  // A matrix whose shape does not match its bytes, or whose shape would overflow.
  EXPECT_CONTAINS(error_of(with(18, matrix_payload(2, 2, six))),
                  "section 'coefficients' is 2 x 2 but holds 48");
  EXPECT_CONTAINS(error_of(with(18, matrix_payload(1ull << 62, 4, four))), "section 'coefficients'");
  EXPECT_CONTAINS(error_of(with(18, matrix_payload(~0ull, 0, {}))), "impossible shape");

  Bytes classes;
  append(classes, std::int64_t{0});
  EXPECT_CONTAINS(error_of(with(4, classes)), "num_classes is 0");
  EXPECT_CONTAINS(error_of(with(4, {1, 2, 3})), "section 'num_classes' is shorter than its fields");

  // Sections missing, repeated, or with an unknown enum code.
  auto missing = good;
  missing.erase(missing.begin());
  EXPECT_CONTAINS(error_of(assemble(missing)), "no section 'spec'");
  auto twice = good;
  twice.push_back(good.back());
  EXPECT_CONTAINS(error_of(assemble(twice)), "section 'f0_train' twice");
  auto bad_activation = good;
  std::uint32_t code = 99;
  std::memcpy(&find(bad_activation, 1)->payload[4 + 8 + 8 + 9 + 9], &code, 4);
  EXPECT_CONTAINS(error_of(assemble(bad_activation)), "unknown activation code 99");
  auto bad_history = good;
  Bytes& diag = find(bad_history, 3)->payload;
  const std::size_t count_at = diag.size() - 8 - 40;  // one record of 40 bytes
  const std::uint32_t huge = 0xffffffffu;
  std::memcpy(&diag[count_at], &huge, 4);
  EXPECT_CONTAINS(error_of(assemble(bad_history)), "claims 4294967295 history records");
  // A section that claims more bytes than the file has.
  auto bytes = assemble(good);
  const std::uint64_t too_long = 1ull << 40;
  std::memcpy(&bytes[16 + 4], &too_long, 8);
  const std::uint32_t crc = bitwise_crc32c(bytes.data(), bytes.size() - 4);
  std::memcpy(&bytes[bytes.size() - 4], &crc, 4);
  EXPECT_CONTAINS(error_of(bytes), "claims 1099511627776 bytes");
}

// ---- The file system ----

TEST_F(ModelFileTest, FileSystemErrorsLeaveNothingBehind) {
  const ntk::Model m = make_model(4);
  EXPECT_THROW(ntk::save_model(path("no/such/dir/m.ntk"), m), ntk::IoError);
  EXPECT_EQ(entries(), 0u);
  // The target is a directory: the temporary is written, the rename fails, and it is removed.
  fs::create_directories(dir_ / "taken");
  try {
    ntk::save_model(path("taken"), m);
    ADD_FAILURE() << "saved over a directory";
  } catch (const ntk::IoError& e) {
    EXPECT_CONTAINS(e.what(), path("taken"));
  }
  EXPECT_EQ(entries(), 1u);
  EXPECT_TRUE(fs::is_empty(dir_ / "taken"));
  // A model that would not load is not written.
  ntk::Model bad = m;
  bad.coefficients(0, 0) = std::nan("");
  EXPECT_THROW(ntk::save_model(path("bad.ntk"), bad), ntk::InvalidArgument);
  EXPECT_THROW(ntk::serialize_model(bad), ntk::InvalidArgument);
  EXPECT_EQ(entries(), 1u);
}

TEST_F(ModelFileTest, LoadReportsMissingAndUnreadableFiles) {
  try {
    ntk::load_model(path("missing.ntk"));
    ADD_FAILURE();
  } catch (const ntk::NotFound& e) {
    EXPECT_CONTAINS(e.what(), path("missing.ntk"));
  }
  fs::create_directories(dir_ / "d");
  EXPECT_THROW(ntk::load_model(path("d")), ntk::IoError);
  std::ofstream(path("text.ntk")) << "hello, world, this is not a model";
  try {
    ntk::load_model(path("text.ntk"));
    ADD_FAILURE();
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_CONTAINS(e.what(), path("text.ntk"));
    EXPECT_CONTAINS(e.what(), "not a model file");
  }
}

}  // namespace
