#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "ntk/errors.hpp"
#include "ntk/npy.hpp"

namespace {

namespace fs = std::filesystem;

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ntk_npy_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write_raw(const std::string& name, const std::string& header, std::size_t payload) const {
    std::string h = header;
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::ofstream out(path(name), std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    const char len[2] = {static_cast<char>(h.size() & 0xff), static_cast<char>(h.size() >> 8)};
    out.write(len, 2);
    out << h << std::string(payload, '\0');
  }
  fs::path dir_;
};

TEST_F(NpyTest, RoundTripsBitExactly) {
  ntk::Matrix<double> m(3, 4);
  for (std::size_t i = 0; i < m.size(); ++i) m.data()[i] = 1.0 / (double(i) + 0.3);
  ntk::write_npy(path("a.npy"), m);
  const auto a = ntk::read_npy(path("a.npy"));
  EXPECT_EQ(a.dtype, ntk::DType::float64);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3, 4}));
  const auto back = ntk::npy_to_matrix<double>(a, "a");
  EXPECT_EQ(back.storage(), m.storage());
  // No temporary file is left beside it.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(NpyTest, OneDimensionalShape) {
  const float v[3] = {1, 2, 3};
  ntk::write_npy(path("v.npy"), ntk::DType::float32, {3}, v);
  const auto a = ntk::read_npy(path("v.npy"));
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3}));
  EXPECT_THROW(ntk::npy_to_matrix<float>(a, "v"), ntk::InvalidArgument);
}

TEST_F(NpyTest, ConvertsFloat32ToFloat64) {
  write_raw("f.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", 0);
  std::ofstream(path("f.npy"), std::ios::app | std::ios::binary).write("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);
  const auto m = ntk::npy_to_matrix<double>(ntk::read_npy(path("f.npy")), "f");
  EXPECT_EQ(m(0, 0), 1.0);
  EXPECT_EQ(m(0, 1), 2.0);
}

TEST_F(NpyTest, RejectsBadFilesWithTheirName) {
  auto message = [&](const std::string& name) -> std::string {
    try {
      ntk::read_npy(path(name));
    } catch (const ntk::Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_THROW(ntk::read_npy(path("missing.npy")), ntk::NotFound);
  EXPECT_NE(message("missing.npy").find("missing.npy"), std::string::npos);

  std::ofstream(path("text.npy")) << "hello";
  EXPECT_NE(message("text.npy").find("not a .npy file"), std::string::npos);

  write_raw("big_endian.npy", "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }", 32);
  EXPECT_NE(message("big_endian.npy").find("dtype >f8"), std::string::npos);

  write_raw("complex.npy", "{'descr': '<c16', 'fortran_order': False, 'shape': (2, 2), }", 64);
  EXPECT_NE(message("complex.npy").find("dtype <c16"), std::string::npos);

  write_raw("fortran.npy", "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", 32);
  EXPECT_NE(message("fortran.npy").find("Fortran order"), std::string::npos);

  write_raw("short.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 31);
  EXPECT_THROW(ntk::read_npy(path("short.npy")), ntk::IoError);
  EXPECT_NE(message("short.npy").find("truncated"), std::string::npos);
}

TEST_F(NpyTest, IntegerArraysAreNotFeatureMatrices) {
  write_raw("labels.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", 32);
  const auto a = ntk::read_npy(path("labels.npy"));
  EXPECT_EQ(a.dtype, ntk::DType::int64);
  try {
    ntk::npy_to_matrix<double>(a, "--x1 'labels.npy'");
    FAIL();
  } catch (const ntk::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("--x1 'labels.npy' has dtype int64"), std::string::npos);
  }
}

TEST_F(NpyTest, FailedWriteLeavesNothing) {
  const double v = 1;
  EXPECT_THROW(ntk::write_npy(path("no_such_dir/out.npy"), ntk::DType::float64, {1}, &v), ntk::IoError);
  EXPECT_FALSE(fs::exists(path("no_such_dir")));
}

}  // namespace
