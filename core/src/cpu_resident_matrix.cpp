// The CPU backend's resident training kernel: products with thin blocks (Newton-CG's N x C operands) go
// through thin_product (tile_recursion.hpp), which reads the matrix once per product, instead of a BLAS
// GEMM that packs all of it first (on Fashion-MNIST N = 1000, C = 10, OpenBLAS spent ~20% of a fit in that
// packing and in its thread hand-offs); wide blocks still use the BLAS.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "host_resident.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "tile_recursion.hpp"

namespace ntk {
namespace detail {

constexpr std::int64_t kMaxThinColumns = 32;

// Workers kept for the matrix's lifetime: a product takes ~0.1-0.3 ms at N = 1000, and starting threads
// for each one (parallel_for) cost a tenth of that plus page faults on their fresh stacks. Between
// products (Newton-CG does ~0.05 ms of vector work) workers and caller spin briefly before sleeping: a
// sleeping vCPU takes tens of microseconds to wake under a hypervisor.
class WorkerTeam {
 public:
  explicit WorkerTeam(int threads) {
    for (int id = 1; id < threads; ++id) workers_.emplace_back([this, id] { loop(id); });
  }
  ~WorkerTeam() {
    stopping_.store(true);
    { std::lock_guard lock(mutex_); }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // body(part, parts) on every member, the caller being part 0; returns when all are done.
  void run(const std::function<void(int, int)>& body) {
    body_ = &body;
    pending_.store(static_cast<int>(workers_.size()));
    generation_.fetch_add(1, std::memory_order_release);
    {
      std::lock_guard lock(mutex_);  // pairs with the predicate check of a worker about to sleep
    }
    wake_.notify_all();
    body(0, size());
    if (!spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    body_ = nullptr;
  }

 private:
  template <class Ready>
  static bool spin_until(Ready ready) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(100);
    while (!ready()) {
      if (std::chrono::steady_clock::now() > until) return false;
    }
    return true;
  }

  void loop(int id) {
    std::uint64_t seen = 0;
    for (;;) {
      auto started = [&] { return stopping_.load() || generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(started)) {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, started);
      }
      if (stopping_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      (*body_)(id, size());
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard lock(mutex_);
        done_.notify_one();
      }
    }
  }
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* body_ = nullptr;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
};

// One team of workers per CPU backend for the thin products of all its resident matrices: a team per
// matrix put (C + 2) (threads - 1) idle threads into every cached uncertainty context. One product at a
// time (each uses every worker); the team starts on the first thin product.
struct ThinProductWorkers {
  explicit ThinProductWorkers(int thread_count) : threads(thread_count) {}
  const int threads;
  std::mutex mutex;  // held for a product: the team and the matrices' scratch buffers
  std::unique_ptr<WorkerTeam> team;
  WorkerTeam& started() {
    if (!team) team = std::make_unique<WorkerTeam>(threads);
    return *team;
  }
};

std::shared_ptr<ThinProductWorkers> make_thin_product_workers(int threads) {
  return std::make_shared<ThinProductWorkers>(threads);
}

}  // namespace detail

namespace {

using detail::kMaxThinColumns;
using detail::WorkerTeam;

class CpuResidentMatrix final : public ResidentMatrix {
 public:
  CpuResidentMatrix(CpuBackend& backend, std::shared_ptr<detail::ThinProductWorkers> workers,
                    ConstMatrixView<double> a)
      : backend_(backend),
        workers_(std::move(workers)),
        a_(a),
        thin_product_(detail::select_tile_recursion().thin_product),
        thin_product_f32_(detail::select_tile_recursion().thin_product_f32) {}

  std::int64_t rows() const override { return a_.rows; }

  void multiply(double alpha, ConstMatrixView<double> v, double beta, MatrixView<double> out) override {
    if (!check_shapes(v, out)) return;
    if (v.cols > kMaxThinColumns) {
      backend_.gemm(false, false, alpha, a_, v, beta, out);
      return;
    }
    std::lock_guard lock(workers_->mutex);
    thin_multiply_locked(thin_product_, a_.data, a_.ld, alpha, v, beta, out, f64_);
  }

  std::vector<double> diagonal() override { return detail::diagonal_of(a_); }
  double max_abs_row_sum() override { return detail::max_abs_row_sum_of(a_); }
  // A view of the caller's matrix: factored in a copy (resident_kernel's owner moves its own instead).
  Matrix<double> factor_and_solve(Backend& backend, double shift, MatrixView<double> b,
                                  const char* what) override {
    return factor_and_solve_on_host(backend, copy_matrix(a_), shift, b, what);
  }

  // The float32 copy of A is made on first use (N^2 x 4 bytes more while this object lives).
  void multiply_float32(double alpha, ConstMatrixView<double> v, double beta,
                        MatrixView<double> out) override {
    if (!check_shapes(v, out)) return;
    if (v.cols > kMaxThinColumns) {
      multiply(alpha, v, beta, out);
      return;
    }
    const std::int64_t n = a_.rows;
    std::lock_guard lock(workers_->mutex);
    if (a_f32_.rows() != n) {
      a_f32_ = Matrix<float>(n, n);
      workers_->started().run([&](int part, int parts) {
        for (std::int64_t i = n * part / parts; i < n * (part + 1) / parts; ++i)
          for (std::int64_t j = 0; j < n; ++j) a_f32_(i, j) = static_cast<float>(a_(i, j));
      });
    }
    thin_multiply_locked(thin_product_f32_, a_f32_.data(), n, alpha, v, beta, out, f32_);
  }

 private:
  template <class T>
  struct Buffers {
    Matrix<T> vt, product;  // reused: CG multiplies every iteration with the same shapes
  };

  // False when there is nothing to compute.
  bool check_shapes(ConstMatrixView<double> v, MatrixView<double> out) const {
    const std::int64_t n = a_.rows, m = v.cols;
    if (v.rows != n || out.rows != n || out.cols != m)
      throw InvalidArgument("resident product shapes do not agree: " + std::to_string(n) + " x " +
                            std::to_string(n) + " * " + std::to_string(v.rows) + " x " + std::to_string(m) +
                            " -> " + std::to_string(out.rows) + " x " + std::to_string(out.cols));
    return m > 0 && n > 0;
  }

  // Call with workers_->mutex held: the buffers and the team serve one product at a time.
  template <class T>
  void thin_multiply_locked(detail::ThinProductFn<T> product_fn, const T* a, std::int64_t lda, double alpha,
                            ConstMatrixView<double> v, double beta, MatrixView<double> out, Buffers<T>& buf) {
    const std::int64_t n = a_.rows, m = v.cols;
    if (buf.product.rows() != n || buf.product.cols() != m) {
      buf.product = Matrix<T>(n, m);
      buf.vt = Matrix<T>(m, n);
    }
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < m; ++q) buf.vt(q, i) = static_cast<T>(v(i, q));
    // Any errors here would be programming errors: the thin product throws nothing.
    workers_->started().run([&](int part, int parts) {
      // About 256 rows per worker at least: below that, waking one costs more than it saves.
      const int used = static_cast<int>(std::clamp<std::int64_t>(n / 256, 1, parts));
      if (part >= used) return;
      const std::int64_t r0 = n * part / used, r1 = n * (part + 1) / used;
      product_fn(a + r0 * lda, lda, r1 - r0, n, buf.vt.data(), m, buf.product.data() + r0 * m);
    });
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t q = 0; q < m; ++q) {
        const double p = static_cast<double>(buf.product(i, q));
        out(i, q) = beta == 0 ? alpha * p : alpha * p + beta * out(i, q);
      }
  }

  CpuBackend& backend_;
  // Shared with the backend's other resident matrices (which the server may use from several threads:
  // it shares a model's uncertainty context between requests); wide products go to the BLAS without it.
  std::shared_ptr<detail::ThinProductWorkers> workers_;
  ConstMatrixView<double> a_;
  detail::ThinProductFn<double> thin_product_;
  detail::ThinProductFn<float> thin_product_f32_;
  Buffers<double> f64_;
  Buffers<float> f32_;
  Matrix<float> a_f32_;
};

}  // namespace

std::unique_ptr<ResidentMatrix> CpuBackend::make_resident(ConstMatrixView<double> a, const char* what) {
  check_square_matrix(a, what);
  return std::make_unique<CpuResidentMatrix>(*this, thin_workers_, a);
}

}  // namespace ntk
