// The Backend interface's default operations. They live in ntk_core (not with make_backend in
// ntk_backends) because every backend's vtable refers to them, the CPU backend's included.
#include <random>

#include "ntk/backend.hpp"
#include "ntk/errors.hpp"

namespace ntk {
namespace {

class HostResidentMatrix final : public ResidentMatrix {
 public:
  HostResidentMatrix(Backend& backend, ConstMatrixView<double> a) : backend_(backend), a_(a) {}
  std::int64_t rows() const override { return a_.rows; }
  void multiply(double alpha, ConstMatrixView<double> v, double beta, MatrixView<double> out) override {
    backend_.gemm(false, false, alpha, a_, v, beta, out);
  }

 private:
  Backend& backend_;
  ConstMatrixView<double> a_;
};

}  // namespace

std::unique_ptr<ResidentMatrix> Backend::make_resident(ConstMatrixView<double> a, const char* what) {
  if (a.rows != a.cols)
    throw InvalidArgument(std::string(what) + " must be square, is " + std::to_string(a.rows) + " x " +
                          std::to_string(a.cols));
  return std::make_unique<HostResidentMatrix>(*this, a);
}

void Backend::normal_draws(std::uint64_t seed, MatrixView<double> out) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (std::int64_t i = 0; i < out.rows; ++i)
    for (std::int64_t j = 0; j < out.cols; ++j) out(i, j) = normal(rng);
}

}  // namespace ntk
