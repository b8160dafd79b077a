#pragma once
// The logic of a device memory pool, apart from the device: a budget with exact accounting (bytes in use,
// cached, peak), freed blocks cached for reuse by later requests of similar size, and reclaimers (the
// server's caches of idle contexts) asked to give blocks back before an allocation is refused. The raw
// allocation (cudaMalloc) belongs to a subclass; this part is plain C++, so the CPU tests run it over a
// host allocator with a capacity and the CUDA backend runs the same code.
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ntk {

class CachingPool;

// Move-only block of a pool; gives its bytes back to the pool when destroyed.
class PoolBlock {
 public:
  PoolBlock() = default;
  PoolBlock(PoolBlock&& other) noexcept { *this = std::move(other); }
  PoolBlock& operator=(PoolBlock&& other) noexcept;
  PoolBlock(const PoolBlock&) = delete;
  PoolBlock& operator=(const PoolBlock&) = delete;
  ~PoolBlock() { reset(); }

  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }
  void reset() noexcept;

 private:
  friend class CachingPool;
  PoolBlock(void* ptr, std::size_t bytes, CachingPool* pool) : ptr_(ptr), bytes_(bytes), pool_(pool) {}
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  CachingPool* pool_ = nullptr;
};

// Asked for room when an allocation does not fit, with the bytes missing: frees what it holds idle (its
// blocks come back to the pool) and returns the bytes it gave back, 0 when it has nothing idle. Called
// without the pool's lock held (it releases blocks of this pool), one call at a time per pool; it must
// not allocate from the pool.
using MemoryReclaimer = std::function<std::uint64_t(std::uint64_t missing)>;

struct PoolCounters {
  std::size_t budget = 0;
  std::size_t in_use = 0;  // bytes of live blocks
  std::size_t cached = 0;  // bytes of freed blocks kept for reuse (in_use + cached <= budget)
  std::size_t peak = 0;    // high-water mark of in_use
};

class CachingPool {
 public:
  CachingPool(std::size_t budget, std::string memory_name);
  virtual ~CachingPool();
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;

  // A block of at least `bytes` (rounded up to 256). When it does not fit, the cache is dropped and the
  // reclaimers are asked for room, as long as they give some back (not for a block larger than the whole
  // budget: nothing they give back would make it fit); then ResourceExhausted naming `what`, the bytes
  // needed and the bytes available.
  PoolBlock allocate(std::size_t bytes, const char* what);
  // Bytes the budget has left, after asking the reclaimers for room when that is fewer than `wanted`
  // (at most the budget): for work that sizes its tiles to what is free.
  std::size_t room_for(std::size_t wanted);
  PoolCounters counters() const;

  // Keeps `reclaimer` registered while the returned handle lives; ending a registration waits for
  // reclaimer calls in flight (so what the reclaimer refers to may go right after; hence never from
  // inside a reclaimer).
  class Registration {
   public:
    Registration() = default;
    Registration(Registration&& other) noexcept { *this = std::move(other); }
    Registration& operator=(Registration&& other) noexcept;
    ~Registration() { reset(); }
    void reset() noexcept;

   private:
    friend class CachingPool;
    Registration(CachingPool* pool, std::uint64_t id) : pool_(pool), id_(id) {}
    CachingPool* pool_ = nullptr;
    std::uint64_t id_ = 0;
  };
  [[nodiscard]] Registration add_reclaimer(MemoryReclaimer reclaimer);

 protected:
  // The memory itself: nullptr when it is exhausted (any other failure throws). Called under the lock.
  virtual void* raw_allocate(std::size_t bytes) = 0;
  virtual void raw_free(void* ptr) noexcept = 0;
  // Before a block is cached while an exception unwinds: the pool's reuse is not ordered with the work
  // that may still be queued on it (CUDA: waits for the device).
  virtual void before_unwinding_release() noexcept {}
  // What the exhaustion message adds after a failed raw allocation ("N bytes free on the device").
  virtual std::string raw_exhaustion_detail() { return {}; }
  // Frees every cached block; a subclass's destructor calls it (raw_free is its own).
  void drop_cache() noexcept;

 private:
  friend class PoolBlock;
  struct Shortage {
    std::uint64_t missing = 0;  // bytes the reclaimers are asked for
    std::size_t available = 0;  // of the budget, for the message
    std::string why;
  };
  // One attempt with mutex_ held: a cached block of similar size or a raw one (its size in `size`), or
  // nullptr with `shortage` filled.
  void* try_allocate_locked(std::size_t bytes, std::size_t& size, Shortage& shortage);
  void release(void* ptr, std::size_t bytes) noexcept;
  void drop_cache_locked() noexcept;
  std::uint64_t reclaim(std::uint64_t missing);

  const std::size_t budget_;
  const std::string memory_name_;
  mutable std::mutex mutex_;
  std::mutex reclaim_serial_;  // one reclaim at a time (taken before mutex_, never while holding it)
  std::size_t in_use_ = 0, cached_ = 0, peak_ = 0;
  std::multimap<std::size_t, void*> cache_;
  std::vector<std::pair<std::uint64_t, std::shared_ptr<const MemoryReclaimer>>> reclaimers_;
  std::uint64_t next_reclaimer_id_ = 1;
  // Reclaimer calls in flight (they run outside mutex_), for Registration::reset to wait on.
  std::mutex calls_mutex_;
  std::condition_variable calls_done_;
  int calls_in_flight_ = 0;
};

}  // namespace ntk
