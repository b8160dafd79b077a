#include "memory_budget.hpp"

#include <unistd.h>

#include <utility>

#include "ntk/errors.hpp"

namespace ntkserver {

Reservation::Reservation(Reservation&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

Reservation::~Reservation() {
  release();
}

void Reservation::release() {
  if (budget_ && bytes_) budget_->give_back(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

void Reservation::shrink_to(std::uint64_t bytes) {
  if (!budget_ || bytes >= bytes_) return;
  budget_->give_back(bytes_ - bytes);
  bytes_ = bytes;
}

void MemoryBudget::set_reclaimer(std::function<std::uint64_t(std::uint64_t)> reclaimer) {
  std::lock_guard lock(mutex_);
  reclaimer_ = std::move(reclaimer);
}

Reservation MemoryBudget::reserve(std::uint64_t bytes, const std::string& what) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::function<std::uint64_t(std::uint64_t)> reclaimer;
    std::uint64_t missing = 0;
    {
      std::lock_guard lock(mutex_);
      if (bytes <= total_ - in_use_) {
        in_use_ += bytes;
        peak_ = std::max(peak_, in_use_);
        return Reservation(this, bytes);
      }
      missing = bytes - (total_ - in_use_);
      reclaimer = reclaimer_;
    }
    if (attempt == 0 && reclaimer && bytes <= total_) {
      std::lock_guard reclaim_lock(reclaim_mutex_);
      reclaimer(missing);
      continue;
    }
    break;
  }
  std::lock_guard lock(mutex_);
  throw ntk::ResourceExhausted(
      what + " needs " + std::to_string(bytes) + " bytes of memory, " + std::to_string(total_ - in_use_) +
      " of the budget's " + std::to_string(total_) +
      " bytes are available (free datasets or models, wait for running work, or raise "
      "--memory-budget)");
}

std::uint64_t MemoryBudget::in_use() const {
  std::lock_guard lock(mutex_);
  return in_use_;
}

std::uint64_t MemoryBudget::peak() const {
  std::lock_guard lock(mutex_);
  return peak_;
}

void MemoryBudget::give_back(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  in_use_ -= std::min(bytes, in_use_);
}

std::uint64_t default_host_budget() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 4ull << 30;
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / 2;
}

}  // namespace ntkserver
