// The device memory pool's logic (ntk::CachingPool, which the CUDA backend's pool runs over cudaMalloc)
// over a host arena with a capacity: exact accounting, reuse of cached blocks, the budget, the cache
// dropped before a refusal, reclaimers asked for room (outside the lock) and a refusal that names what
// and how much.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ntk/caching_pool.hpp"
#include "ntk/errors.hpp"

namespace {

using ntk::PoolBlock;

// Raw memory from malloc, at most `capacity` bytes at a time: the device.
class ArenaPool final : public ntk::CachingPool {
 public:
  ArenaPool(std::size_t budget, std::size_t capacity)
      : CachingPool(budget, "test memory"), capacity_(capacity) {}
  ~ArenaPool() override { drop_cache(); }

  std::size_t raw_held() const { return held_; }
  int raw_allocations() const { return allocations_; }
  int raw_frees() const { return frees_; }

 private:
  void* raw_allocate(std::size_t bytes) override {
    if (held_ + bytes > capacity_) return nullptr;
    void* p = std::malloc(bytes);
    sizes_[p] = bytes;
    held_ += bytes;
    ++allocations_;
    return p;
  }
  void raw_free(void* p) noexcept override {
    held_ -= sizes_[p];
    sizes_.erase(p);
    ++frees_;
    std::free(p);
  }
  std::string raw_exhaustion_detail() override {
    return std::to_string(capacity_ - held_) + " bytes free in the arena";
  }

  std::size_t capacity_, held_ = 0;
  int allocations_ = 0, frees_ = 0;
  std::unordered_map<void*, std::size_t> sizes_;
};

// Idle blocks kept by a "cache" (the server's uncertainty contexts), given back oldest first on request.
struct IdleBlocks {
  std::mutex mutex;
  std::deque<PoolBlock> blocks;
  std::vector<std::uint64_t> asked;  // the `missing` of every call
  std::uint64_t reclaim(std::uint64_t missing) {
    std::deque<PoolBlock> dropped;  // released after the lock, like the server's caches
    std::uint64_t freed = 0;
    {
      std::lock_guard lock(mutex);
      asked.push_back(missing);
      while (freed < missing && !blocks.empty()) {
        freed += blocks.front().bytes();
        dropped.push_back(std::move(blocks.front()));
        blocks.pop_front();
      }
    }
    return freed;
  }
};

std::string refusal(ntk::CachingPool& pool, std::size_t bytes, const char* what) {
  try {
    pool.allocate(bytes, what);
  } catch (const ntk::ResourceExhausted& e) {
    return e.what();
  }
  ADD_FAILURE() << "allocation of " << bytes << " bytes was not refused";
  return {};
}

TEST(CachingPool, AccountsExactlyAndReusesFreedBlocksOfSimilarSize) {
  ArenaPool pool(1 << 20, 1 << 20);
  {
    PoolBlock a = pool.allocate(1000, "a");
    EXPECT_EQ(a.bytes(), 1024u);  // 256-byte granularity
    EXPECT_NE(a.as<char>(), nullptr);
    PoolBlock b = pool.allocate(5000, "b");
    EXPECT_EQ(pool.counters().in_use, 1024u + 5120u);
    EXPECT_EQ(pool.counters().peak, 1024u + 5120u);
  }
  ntk::PoolCounters c = pool.counters();
  EXPECT_EQ(c.in_use, 0u);
  EXPECT_EQ(c.cached, 1024u + 5120u);
  EXPECT_EQ(c.peak, 1024u + 5120u);
  EXPECT_EQ(pool.raw_allocations(), 2);

  PoolBlock again = pool.allocate(4500, "again");  // the 5120 block is within 25% of 4608
  EXPECT_EQ(again.bytes(), 5120u);
  EXPECT_EQ(pool.raw_allocations(), 2);
  PoolBlock small = pool.allocate(256, "small");  // the cached 1024 is too big to hand out for 256
  EXPECT_EQ(small.bytes(), 256u);
  EXPECT_EQ(pool.raw_allocations(), 3);
  EXPECT_EQ(pool.counters().in_use, 5120u + 256u);
  EXPECT_EQ(pool.counters().cached, 1024u);

  PoolBlock moved = std::move(again);  // moving transfers the block, not a second release
  EXPECT_EQ(again.bytes(), 0u);
  moved.reset();
  moved.reset();
  EXPECT_EQ(pool.counters().in_use, 256u);
  EXPECT_TRUE(pool.allocate(0, "nothing").as<void>() == nullptr);
}

TEST(CachingPool, RefusesOverBudgetNamingWhatAndHowMuchAndChangesNothing) {
  ArenaPool pool(4096, 1 << 20);
  PoolBlock held = pool.allocate(3072, "held");
  const std::string message = refusal(pool, 2048, "the float32 copy of Theta");
  EXPECT_NE(message.find("test memory exhausted for the float32 copy of Theta"), std::string::npos)
      << message;
  EXPECT_NE(message.find("needs 2048 bytes, 1024 of the 4096-byte budget available"), std::string::npos)
      << message;
  EXPECT_NE(message.find("over budget"), std::string::npos) << message;
  EXPECT_EQ(pool.counters().in_use, 3072u);
  EXPECT_EQ(pool.raw_allocations(), 1);
}

TEST(CachingPool, DropsTheCacheToStayWithinTheBudget) {
  ArenaPool pool(4096, 1 << 20);
  pool.allocate(4096, "first");  // freed at once: cached
  EXPECT_EQ(pool.counters().cached, 4096u);
  PoolBlock b = pool.allocate(2048, "second");  // 4096 is no reuse for 2048, and both exceed the budget
  EXPECT_EQ(pool.raw_frees(), 1);
  EXPECT_EQ(pool.counters().cached, 0u);
  EXPECT_EQ(pool.raw_held(), 2048u);
}

TEST(CachingPool, DropsTheCacheWhenTheDeviceIsFullThenNamesWhatIsFree) {
  ArenaPool pool(1 << 20, 3072);  // the device has less than the budget
  PoolBlock a = pool.allocate(1024, "a");
  pool.allocate(2048, "b");  // cached, and in the way of what comes next
  PoolBlock c = pool.allocate(1536, "c");
  EXPECT_EQ(pool.raw_frees(), 1);
  EXPECT_EQ(pool.raw_held(), 1024u + 1536u);

  const std::string message = refusal(pool, 1024, "kernel tile");
  EXPECT_NE(message.find("the allocation failed; 512 bytes free in the arena"), std::string::npos) << message;
  EXPECT_EQ(pool.counters().in_use, 1024u + 1536u);
}

TEST(CachingPool, AsksReclaimersForTheMissingBytesThenAllocates) {
  ArenaPool pool(8192, 1 << 20);
  IdleBlocks idle;
  for (int i = 0; i < 3; ++i) idle.blocks.push_back(pool.allocate(2048, "cached context"));
  auto registration = pool.add_reclaimer([&](std::uint64_t missing) { return idle.reclaim(missing); });

  PoolBlock big = pool.allocate(4096, "resident Theta");  // 6144 in use: 2048 missing
  ASSERT_EQ(idle.asked.size(), 1u);
  EXPECT_EQ(idle.asked[0], 2048u);
  EXPECT_EQ(idle.blocks.size(), 2u);  // only the oldest went
  EXPECT_EQ(pool.counters().in_use, 2048u * 2 + 4096u);

  // The raw allocation failing (not the budget) asks for the whole request.
  ArenaPool full(1 << 20, 4096);
  IdleBlocks idle_full;
  idle_full.blocks.push_back(full.allocate(4096, "cached context"));
  auto r2 = full.add_reclaimer([&](std::uint64_t missing) { return idle_full.reclaim(missing); });
  PoolBlock fits = full.allocate(3000, "tile");
  EXPECT_EQ(idle_full.asked, std::vector<std::uint64_t>{3072});
  EXPECT_EQ(full.raw_held(), 3072u);  // the reclaimed block was freed for the new one, not kept cached
}

TEST(CachingPool, RefusesOnceReclaimersHaveNothingLeftAndAfterARegistrationEnds) {
  ArenaPool pool(4096, 1 << 20);
  PoolBlock held = pool.allocate(4096, "held");
  IdleBlocks idle;
  std::optional<ntk::CachingPool::Registration> registration =
      pool.add_reclaimer([&](std::uint64_t missing) { return idle.reclaim(missing); });
  EXPECT_FALSE(refusal(pool, 1024, "x").empty());
  EXPECT_EQ(idle.asked.size(), 1u);  // asked once, gave nothing: refused

  registration.reset();
  EXPECT_FALSE(refusal(pool, 1024, "x").empty());
  EXPECT_EQ(idle.asked.size(), 1u);

  // A reclaimer that reports room it never makes does not hold the caller forever.
  int calls = 0;
  auto liar = pool.add_reclaimer([&](std::uint64_t) {
    ++calls;
    return std::uint64_t{1};
  });
  EXPECT_FALSE(refusal(pool, 1024, "x").empty());
  EXPECT_EQ(calls, 64);
}

TEST(CachingPool, NothingIsEvictedForABlockBeyondTheWholeBudget) {
  ArenaPool pool(8192, 1 << 20);
  IdleBlocks idle;
  idle.blocks.push_back(pool.allocate(4096, "cached context"));
  auto registration = pool.add_reclaimer([&](std::uint64_t missing) { return idle.reclaim(missing); });
  EXPECT_NE(refusal(pool, 8448, "too big").find("over budget"), std::string::npos);
  EXPECT_TRUE(idle.asked.empty());
  EXPECT_EQ(idle.blocks.size(), 1u);
  // Nor more than the budget for room_for: 4096 free, so 4096 are asked for, not 1 MiB.
  EXPECT_EQ(pool.room_for(1 << 20), 8192u);
  EXPECT_EQ(idle.asked, std::vector<std::uint64_t>{4096});
}

TEST(CachingPool, EndingARegistrationWaitsForItsCallsInFlight) {
  ArenaPool pool(4096, 1 << 20);
  PoolBlock held = pool.allocate(4096, "held");
  std::atomic<bool> entered{false}, finished{false};
  std::optional<ntk::CachingPool::Registration> registration = pool.add_reclaimer([&](std::uint64_t) {
    entered = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    finished = true;
    return std::uint64_t{0};
  });
  std::thread allocating([&] { EXPECT_FALSE(refusal(pool, 1024, "x").empty()); });
  while (!entered) std::this_thread::yield();
  registration.reset();  // what the reclaimer refers to could go now: it must have returned
  EXPECT_TRUE(finished);
  allocating.join();
}

TEST(CachingPool, CallersShortAtOnceDoNotEvictTwice) {
  // Two idle 4096-byte blocks fill the budget; two callers need 2048 each. The first reclaim gives back
  // 4096, room for both: the second caller, which waited for it, must not evict the other block.
  ArenaPool pool(8192, 1 << 20);
  IdleBlocks idle;
  for (int i = 0; i < 2; ++i) idle.blocks.push_back(pool.allocate(4096, "cached context"));
  std::atomic<int> calls{0};
  auto registration = pool.add_reclaimer([&](std::uint64_t missing) {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the other caller arrives meanwhile
    return idle.reclaim(missing);
  });
  std::vector<PoolBlock> got(2);
  std::thread first([&] { got[0] = pool.allocate(2048, "first"); });
  std::thread second([&] { got[1] = pool.allocate(2048, "second"); });
  first.join();
  second.join();
  EXPECT_EQ(got[0].bytes() + got[1].bytes(), 4096u);
  EXPECT_EQ(idle.blocks.size(), 1u);
  EXPECT_EQ(calls.load(), 1);
}

TEST(CachingPool, ReclaimersRunOutsideThePoolsLock) {
  // The reclaimer releases blocks of this very pool and reads its counters: with the lock held it would
  // deadlock (ctest's timeout ends the test).
  ArenaPool pool(4096, 1 << 20);
  std::optional<PoolBlock> idle = pool.allocate(4096, "idle");
  auto registration = pool.add_reclaimer([&](std::uint64_t) -> std::uint64_t {
    if (!idle) return 0;
    const std::uint64_t bytes = idle->bytes();
    idle.reset();
    EXPECT_EQ(pool.counters().in_use, 0u);
    return bytes;
  });
  PoolBlock b = pool.allocate(4096, "b");
  EXPECT_FALSE(idle.has_value());
  EXPECT_EQ(pool.raw_allocations(), 1);  // the reclaimed block itself was reused
}

TEST(CachingPool, RoomForAsksReclaimersOnlyWhenShort) {
  ArenaPool pool(8192, 1 << 20);
  IdleBlocks idle;
  for (int i = 0; i < 3; ++i) idle.blocks.push_back(pool.allocate(2048, "cached context"));
  auto registration = pool.add_reclaimer([&](std::uint64_t missing) { return idle.reclaim(missing); });
  EXPECT_EQ(pool.room_for(1024), 2048u);
  EXPECT_TRUE(idle.asked.empty());
  EXPECT_EQ(pool.room_for(4096), 4096u);
  EXPECT_EQ(idle.asked, std::vector<std::uint64_t>{2048});
}

TEST(CachingPool, ConcurrentAllocationsWithReclaimKeepExactAccounts) {
  constexpr std::size_t budget = 64 * 1024;
  ArenaPool pool(budget, budget);
  IdleBlocks idle;
  auto registration = pool.add_reclaimer([&](std::uint64_t missing) { return idle.reclaim(missing); });
  std::atomic<int> refused{0};
  std::atomic<bool> broken{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::uniform_int_distribution<std::size_t> size(1, 8192);
      for (int i = 0; i < 2000; ++i) {
        try {
          PoolBlock b = pool.allocate(size(rng), "block");
          if (rng() % 4 == 0) {  // kept idle by the "cache"
            std::lock_guard lock(idle.mutex);
            idle.blocks.push_back(std::move(b));
          }
        } catch (const ntk::ResourceExhausted&) {
          ++refused;
        }
        const ntk::PoolCounters c = pool.counters();
        if (c.in_use + c.cached > budget) broken = true;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_FALSE(broken);
  idle.blocks.clear();
  const ntk::PoolCounters c = pool.counters();
  EXPECT_EQ(c.in_use, 0u);
  EXPECT_EQ(c.cached, pool.raw_held());
  EXPECT_LE(c.peak, budget);
  // 4 threads hold at most one 8 KiB block each beyond the idle ones, which reclaim can always free.
  EXPECT_EQ(refused.load(), 0);
}

}  // namespace
