// GEMM rate for one BLAS (bench/blas_compare/run.sh builds it against OpenBLAS, BLIS and Eigen).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>
#ifdef USE_EIGEN
#include <Eigen/Dense>
#else
#include <cblas.h>
#endif
template <class T>
double run(int n, int d, int reps) {
  std::vector<T> a(size_t(n) * d), c(size_t(n) * n);
  std::mt19937 g(1);
  std::normal_distribution<double> nd;
  for (auto& x : a) x = nd(g);
  auto body = [&] {
#ifdef USE_EIGEN
    using M = Eigen::Matrix<T, -1, -1, Eigen::RowMajor>;
    Eigen::Map<M> A(a.data(), n, d);
    Eigen::Map<M> C(c.data(), n, n);
    C.noalias() = A * A.transpose();
#else
    if constexpr (sizeof(T) == 4)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, 1.f, (float*)a.data(), d,
                  (float*)a.data(), d, 0.f, (float*)c.data(), n);
    else
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, 1., (double*)a.data(), d,
                  (double*)a.data(), d, 0., (double*)c.data(), n);
#endif
  };
  body();
  double best = 1e9;
  for (int r = 0; r < reps; r++) {
    auto t0 = std::chrono::steady_clock::now();
    body();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best) best = s;
  }
  return 2.0 * n * n * d / best / 1e9;
}
int main(int argc, char** argv) {
  int n = atoi(argv[1]);
  printf("n=%d sgemm %.1f GF/s dgemm %.1f GF/s\n", n, run<float>(n, 784, 3), run<double>(n, 784, 3));
}
