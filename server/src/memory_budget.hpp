#pragma once
// Exact accounting of the memory the server holds for datasets and work, per device. Work reserves
// what it will need before it starts; a reservation that does not fit fails at once with
// RESOURCE_EXHAUSTED naming the bytes needed and available, instead of failing half-way.
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace ntkserver {

class MemoryBudget;

class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation();
  std::uint64_t bytes() const { return bytes_; }
  void release();
  // Gives back what exceeds `bytes` (work whose peak is behind it keeps what it still holds).
  void shrink_to(std::uint64_t bytes);

 private:
  friend class MemoryBudget;
  Reservation(MemoryBudget* budget, std::uint64_t bytes) : budget_(budget), bytes_(bytes) {}
  MemoryBudget* budget_ = nullptr;
  std::uint64_t bytes_ = 0;
};

class MemoryBudget {
 public:
  explicit MemoryBudget(std::uint64_t total) : total_(total) {}
  // Called with the bytes still missing when a reservation does not fit; frees what it can (e.g.
  // evicts idle datasets) and returns how much it freed.
  void set_reclaimer(std::function<std::uint64_t(std::uint64_t missing)> reclaimer);
  // Throws ntk::ResourceExhausted("<what> needs N bytes, M of T available ...").
  Reservation reserve(std::uint64_t bytes, const std::string& what);
  std::uint64_t total() const { return total_; }
  std::uint64_t in_use() const;
  std::uint64_t peak() const;

 private:
  friend class Reservation;
  void give_back(std::uint64_t bytes);
  const std::uint64_t total_;
  mutable std::mutex mutex_;
  std::uint64_t in_use_ = 0;
  std::uint64_t peak_ = 0;
  std::function<std::uint64_t(std::uint64_t)> reclaimer_;
  std::mutex reclaim_mutex_;  // one reclaim at a time; never held together with mutex_
};

std::uint64_t default_host_budget();  // half of the physical memory

}  // namespace ntkserver
