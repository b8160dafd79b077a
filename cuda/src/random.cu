#include "ntk/cuda/errors.cuh"
#include "random.cuh"

namespace ntk::cuda {

void normal_draws(DeviceResources& r, std::uint64_t seed, MatrixView<double> out) {
  const std::size_t count = std::size_t(out.rows) * std::size_t(out.cols);
  if (count == 0) return;
  r.activate();
  cudaStream_t s = r.stream(0);
  // cuRAND's pseudo-random normal generators produce pairs (Box-Muller): round the count up to even.
  const std::size_t drawn = (count + 1) / 2 * 2;
  DeviceBuffer buffer = r.pool().allocate(drawn * sizeof(double), "normal draws");
  curandGenerator_t g = r.curand();
  NTK_CURAND_CHECK(curandSetStream(g, s));
  NTK_CURAND_CHECK(curandSetPseudoRandomGeneratorSeed(g, seed));
  NTK_CURAND_CHECK(curandSetGeneratorOffset(g, 0));
  NTK_CURAND_CHECK(curandGenerateNormalDouble(g, buffer.as<double>(), drawn, 0.0, 1.0));
  NTK_CUDA_CHECK(cudaMemcpy2DAsync(out.data, std::size_t(out.ld) * sizeof(double), buffer.as<double>(),
                                   std::size_t(out.cols) * sizeof(double),
                                   std::size_t(out.cols) * sizeof(double), std::size_t(out.rows),
                                   cudaMemcpyDeviceToHost, s));
  NTK_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace ntk::cuda
