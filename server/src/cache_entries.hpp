#pragma once
// Bookkeeping shared by the server's caches of per-model work (ProductCache, UncertaintyCache): entries
// stamped with a use clock, given back least recently used first when memory is short.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace ntkserver {

// Moves idle entries (`idle(e)`: no call holds them) out of `entries` into `dropped`, least recently
// used first (`e.used`), until `bytes(e)` of them add up to `missing`; returns the bytes moved. The
// caller holds its lock and lets `dropped` go after releasing it (giving memory back takes other locks).
template <class Entry, class Idle, class Bytes>
std::uint64_t take_idle_entries(std::vector<Entry>& entries, std::uint64_t missing, Idle idle, Bytes bytes,
                                std::vector<Entry>& dropped) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.used < b.used; });
  std::uint64_t freed = 0;
  for (auto it = entries.begin(); it != entries.end() && freed < missing;) {
    if (idle(*it)) {
      freed += bytes(*it);
      dropped.push_back(std::move(*it));
      it = entries.erase(it);
    } else {
      ++it;
    }
  }
  return freed;
}

}  // namespace ntkserver
