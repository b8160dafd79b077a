#pragma once
// The uncertainty modes' per-model work (ntk::UncertaintyContext: linearized C + 3 matrices of N x N kept,
// C + 5 while it is prepared; Monte Carlo the NNGP factor and every sample's trained coefficients) kept
// across calls, so that a client sending many small uncertainty requests pays it once. Each entry holds a
// reservation of the memory budget for its size; idle entries (in use by no call) are given back when the
// budget needs room and when their model is gone, and beyond `capacity` the least recently used goes. A
// filled context is only read, so calls share it.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "memory_budget.hpp"
#include "ntk/backend.hpp"
#include "ntk/model.hpp"
#include "ntk/uncertainty.hpp"

namespace ntkserver {

// Bytes a context of this mode keeps for a model of n training points and c classes, and the peak while
// it is prepared (Theta, or for linearized K_XX's factor and a product for Q, held for a while): an entry
// reserves the peak and gives back the difference once prepared.
std::uint64_t uncertainty_context_bytes(std::uint64_t n, std::uint64_t c,
                                        const ntk::UncertaintyOptions& options);
std::uint64_t uncertainty_preparation_bytes(std::uint64_t n, std::uint64_t c,
                                            const ntk::UncertaintyOptions& options);

class UncertaintyCache {
 public:
  UncertaintyCache(MemoryBudget& budget, std::size_t capacity = 8) : budget_(budget), capacity_(capacity) {}
  // The context of `model` for options' mode (Monte Carlo: and seed and sample count), prepared on
  // `backend` when there is none (reserving its memory first: ResourceExhausted when it does not fit).
  // The context is filled: callers only read it (through ntk::predict_uncertainty).
  std::shared_ptr<ntk::UncertaintyContext> get(ntk::Backend& backend,
                                               const std::shared_ptr<const ntk::Model>& model,
                                               const ntk::UncertaintyOptions& options);
  // Drops idle entries, oldest first, until `missing` bytes are given back; returns the bytes given back.
  std::uint64_t reclaim(std::uint64_t missing);
  // Drops the entries whose model is gone (they would otherwise wait for the next lookup or reclaim).
  void drop_expired();
  std::size_t size() const;
  std::uint64_t bytes() const;  // reserved by the entries

 private:
  struct Entry {
    const ntk::Model* model;
    std::weak_ptr<const ntk::Model> alive;
    ntk::UncertaintyMode mode;
    std::uint64_t seed;
    int samples;
    std::shared_ptr<ntk::UncertaintyContext> context;
    Reservation memory;
    std::uint64_t used;
  };
  bool matches(const Entry& e, const std::shared_ptr<const ntk::Model>& model,
               const ntk::UncertaintyOptions& options) const;
  MemoryBudget& budget_;
  std::size_t capacity_;
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
  std::uint64_t clock_ = 0;
};

}  // namespace ntkserver
