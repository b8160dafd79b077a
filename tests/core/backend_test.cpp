// Backend selection, with or without a CUDA device.
#include <gtest/gtest.h>

#include "ntk/backend.hpp"
#include "ntk/errors.hpp"

namespace {

TEST(BackendSelection, CpuAlwaysWorks) {
  auto b = ntk::make_backend("cpu");
  EXPECT_EQ(b->name(), "cpu");
  EXPECT_NE(b->description().find("BLAS"), std::string::npos);
}

TEST(BackendSelection, AutoPicksCudaOnlyWithADevice) {
  auto b = ntk::make_backend("auto");
  if (ntk::cuda_device_count() > 0)
    EXPECT_EQ(b->name(), "cuda:0");
  else
    EXPECT_EQ(b->name(), "cpu");
}

TEST(BackendSelection, CudaWithoutDeviceIsAClearError) {
  if (ntk::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    ntk::make_backend("cuda:0");
    FAIL();
  } catch (const ntk::Unavailable& e) {
    const std::string m = e.what();
    EXPECT_TRUE(m.find("no CUDA") != std::string::npos || m.find("no CUDA backend") != std::string::npos)
        << m;
  }
}

TEST(BackendSelection, RejectsUnknownNames) {
  EXPECT_THROW(ntk::make_backend("tpu"), ntk::InvalidArgument);
  EXPECT_THROW(ntk::make_backend("cuda:x"), ntk::InvalidArgument);
  EXPECT_THROW(ntk::make_backend("cuda:-1"), ntk::InvalidArgument);
}

}  // namespace
