#include "ntk/caching_pool.hpp"

#include <algorithm>
#include <exception>
#include <optional>
#include <sstream>
#include <utility>

#include "ntk/errors.hpp"
#include "ntk/logging.hpp"

namespace ntk {

PoolBlock& PoolBlock::operator=(PoolBlock&& other) noexcept {
  if (this != &other) {
    reset();
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    pool_ = std::exchange(other.pool_, nullptr);
  }
  return *this;
}

void PoolBlock::reset() noexcept {
  if (ptr_ && pool_) pool_->release(ptr_, bytes_);
  ptr_ = nullptr;
  bytes_ = 0;
  pool_ = nullptr;
}

CachingPool::Registration& CachingPool::Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::exchange(other.pool_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

void CachingPool::Registration::reset() noexcept {
  if (!pool_) return;
  {
    std::lock_guard lock(pool_->mutex_);
    std::erase_if(pool_->reclaimers_, [&](const auto& r) { return r.first == id_; });
  }
  // A call that copied the reclaimer before it was erased may still be running it.
  std::unique_lock calls(pool_->calls_mutex_);
  pool_->calls_done_.wait(calls, [&] { return pool_->calls_in_flight_ == 0; });
  pool_ = nullptr;
}

CachingPool::CachingPool(std::size_t budget, std::string memory_name)
    : budget_(budget), memory_name_(std::move(memory_name)) {}

CachingPool::~CachingPool() {
  if (in_use_ != 0)
    log_warning(memory_name_ + " pool destroyed with " + std::to_string(in_use_) + " bytes in use");
}

void CachingPool::drop_cache() noexcept {
  std::lock_guard lock(mutex_);
  drop_cache_locked();
}

void CachingPool::drop_cache_locked() noexcept {
  for (auto& [bytes, ptr] : cache_) raw_free(ptr);
  cache_.clear();
  cached_ = 0;
}

CachingPool::Registration CachingPool::add_reclaimer(MemoryReclaimer reclaimer) {
  std::lock_guard lock(mutex_);
  const std::uint64_t id = next_reclaimer_id_++;
  reclaimers_.emplace_back(id, std::make_shared<const MemoryReclaimer>(std::move(reclaimer)));
  return Registration(this, id);
}

std::uint64_t CachingPool::reclaim(std::uint64_t missing) {
  std::vector<std::shared_ptr<const MemoryReclaimer>> reclaimers;
  struct InFlight {
    CachingPool& pool;
    explicit InFlight(CachingPool& p) : pool(p) {
      std::lock_guard lock(pool.calls_mutex_);
      ++pool.calls_in_flight_;
    }
    ~InFlight() {
      {
        std::lock_guard lock(pool.calls_mutex_);
        --pool.calls_in_flight_;
      }
      pool.calls_done_.notify_all();
    }
  };
  std::optional<InFlight> in_flight;
  {
    std::lock_guard lock(mutex_);
    for (const auto& r : reclaimers_) reclaimers.push_back(r.second);
    if (reclaimers.empty()) return 0;
    in_flight.emplace(*this);  // under mutex_: a reset() that erases after this copy waits for it
  }
  std::uint64_t freed = 0;
  for (const auto& r : reclaimers) {
    if (freed >= missing) break;
    freed += (*r)(missing - freed);
  }
  return freed;
}

void* CachingPool::try_allocate_locked(std::size_t bytes, std::size_t& size, Shortage& shortage) {
  auto hit = cache_.lower_bound(bytes);
  if (hit != cache_.end() && hit->first <= bytes + bytes / 4) {
    size = hit->first;
    void* ptr = hit->second;
    cache_.erase(hit);
    cached_ -= size;
    in_use_ += size;
    peak_ = std::max(peak_, in_use_);
    return ptr;
  }
  if (in_use_ + bytes <= budget_) {
    if (in_use_ + cached_ + bytes > budget_) drop_cache_locked();
    void* ptr = raw_allocate(bytes);
    if (!ptr && cached_ > 0) {  // blocks of other sizes may be what stands in the way
      drop_cache_locked();
      ptr = raw_allocate(bytes);
    }
    if (ptr) {
      size = bytes;
      in_use_ += bytes;
      peak_ = std::max(peak_, in_use_);
      return ptr;
    }
    shortage.why = "the allocation failed";
    const std::string detail = raw_exhaustion_detail();
    if (!detail.empty()) shortage.why += "; " + detail;
    shortage.missing = bytes;
  } else {
    shortage.why = "over budget";
    shortage.missing = in_use_ + bytes - budget_;
  }
  shortage.available = budget_ - in_use_;
  return nullptr;
}

PoolBlock CachingPool::allocate(std::size_t bytes, const char* what) {
  if (bytes == 0) return {};
  // 256-byte granularity keeps every block aligned for vector loads and makes cache hits likelier.
  bytes = (bytes + 255) / 256 * 256;
  // A reclaimer that keeps reporting room it does not make must not hold the caller forever.
  constexpr int max_reclaim_rounds = 64;
  for (int round = 0;; ++round) {
    Shortage shortage;
    std::size_t size = 0;
    {
      std::lock_guard lock(mutex_);
      if (void* ptr = try_allocate_locked(bytes, size, shortage)) return PoolBlock(ptr, size, this);
    }
    // A block beyond the whole budget never fits: nothing is evicted for it.
    bool refuse = bytes > budget_ || round == max_reclaim_rounds;
    if (!refuse) {
      // One reclaim at a time, and a caller that waited for another's first tries again: that reclaim
      // may have given back more than its caller needed, and evicting for both would waste work.
      std::lock_guard serial(reclaim_serial_);
      {
        std::lock_guard lock(mutex_);
        if (void* ptr = try_allocate_locked(bytes, size, shortage)) return PoolBlock(ptr, size, this);
      }
      // Outside the lock: the reclaimers release blocks of this pool.
      refuse = reclaim(shortage.missing) == 0;
    }
    if (refuse) {
      std::ostringstream os;
      os << memory_name_ << " exhausted for " << what << ": needs " << bytes << " bytes, "
         << shortage.available << " of the " << budget_ << "-byte budget available (" << shortage.why << ")";
      throw ResourceExhausted(os.str());
    }
  }
}

std::size_t CachingPool::room_for(std::size_t wanted) {
  auto left = [&] {
    std::lock_guard lock(mutex_);
    return budget_ - in_use_;
  };
  wanted = std::min(wanted, budget_);
  std::size_t available = left();
  if (available >= wanted) return available;
  std::lock_guard serial(reclaim_serial_);
  available = left();  // another caller's reclaim may have made the room meanwhile
  if (available < wanted && reclaim(wanted - available) > 0) available = left();
  return available;
}

void CachingPool::release(void* ptr, std::size_t bytes) noexcept {
  if (std::uncaught_exceptions() > 0) before_unwinding_release();
  std::lock_guard lock(mutex_);
  in_use_ -= bytes;
  cache_.emplace(bytes, ptr);
  cached_ += bytes;
}

PoolCounters CachingPool::counters() const {
  std::lock_guard lock(mutex_);
  return PoolCounters{budget_, in_use_, cached_, peak_};
}

}  // namespace ntk
