#include "uncertainty_cache.hpp"

#include "cache_entries.hpp"

#include <algorithm>
#include <optional>

namespace ntkserver {

std::uint64_t uncertainty_context_bytes(std::uint64_t n, std::uint64_t c, const ntk::UncertaintyOptions& o) {
  switch (o.mode) {
    case ntk::UncertaintyMode::linearized:  // C factors E_c, M, Q, K_XX
      return 8 * (c + 3) * n * n;
    case ntk::UncertaintyMode::exact:  // K_XX
      return 8 * n * n;
    case ntk::UncertaintyMode::monte_carlo:  // the NNGP factor, z and the coefficients per sample
      return 8 * (n * n + 2 * static_cast<std::uint64_t>(std::max(o.samples, 0)) * n * c);
    case ntk::UncertaintyMode::none:
      return 0;
  }
  return 0;
}

std::uint64_t uncertainty_preparation_bytes(std::uint64_t n, std::uint64_t c,
                                            const ntk::UncertaintyOptions& o) {
  switch (o.mode) {
    case ntk::UncertaintyMode::linearized:  // and Theta, or K_XX's factor and a product for Q
      return uncertainty_context_bytes(n, c, o) + 8 * 2 * n * n;
    case ntk::UncertaintyMode::monte_carlo:  // and Theta
      return uncertainty_context_bytes(n, c, o) + 8 * n * n;
    default:
      return uncertainty_context_bytes(n, c, o);
  }
}

bool UncertaintyCache::matches(const Entry& e, const std::shared_ptr<const ntk::Model>& model,
                               const ntk::UncertaintyOptions& o) const {
  if (e.model != model.get() || e.mode != o.mode || e.alive.lock() != model) return false;
  return o.mode != ntk::UncertaintyMode::monte_carlo || (e.seed == o.seed && e.samples == o.samples);
}

std::shared_ptr<ntk::UncertaintyContext> UncertaintyCache::get(ntk::Backend& backend,
                                                               const std::shared_ptr<const ntk::Model>& model,
                                                               const ntk::UncertaintyOptions& options) {
  drop_expired();
  {
    std::lock_guard lock(mutex_);
    for (Entry& e : entries_)
      if (matches(e, model, options)) {
        e.used = ++clock_;
        return e.context;
      }
  }
  // Reserve, then prepare, both outside the lock: reserving may make the budget reclaim (this cache
  // included), and preparing takes seconds. Two calls may prepare the same context at once; the second to
  // finish uses the first one's.
  const auto n = static_cast<std::uint64_t>(model->x_train.rows());
  const auto c = static_cast<std::uint64_t>(model->num_classes);
  Reservation memory =
      budget_.reserve(uncertainty_preparation_bytes(n, c, options),
                      std::string("uncertainty (") + ntk::uncertainty_mode_name(options.mode) +
                          ") of a model of " + std::to_string(n) + " training points");
  std::shared_ptr<ntk::UncertaintyContext> context = ntk::make_uncertainty_context();
  ntk::prepare_uncertainty(backend, *model, options, *context);
  memory.shrink_to(uncertainty_context_bytes(n, c, options));  // what the cached context keeps
  std::optional<Entry>
      evicted;  // destroyed after the lock is released: giving memory back takes the budget's
  std::lock_guard lock(mutex_);
  for (Entry& e : entries_)
    if (matches(e, model, options)) {  // prepared meanwhile by another call: `memory` goes back at return
      e.used = ++clock_;
      return e.context;
    }
  if (entries_.size() >= capacity_) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                   [](const Entry& a, const Entry& b) { return a.used < b.used; });
    evicted.emplace(std::move(*oldest));
    entries_.erase(oldest);
  }
  entries_.push_back(Entry{model.get(), model, options.mode, options.seed, options.samples, context,
                           std::move(memory), ++clock_});
  return context;
}

std::uint64_t UncertaintyCache::reclaim(std::uint64_t missing) {
  std::vector<Entry> dropped;  // gives the bytes back as it goes out of scope, after the lock
  std::lock_guard lock(mutex_);
  return take_idle_entries(
      entries_, missing, [](const Entry& e) { return e.context.use_count() == 1; },
      [](const Entry& e) { return e.memory.bytes(); }, dropped);
}

void UncertaintyCache::drop_expired() {
  std::vector<Entry> dropped;  // destroyed after the lock is released
  std::lock_guard lock(mutex_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->alive.expired()) {
      dropped.push_back(std::move(*it));
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

std::uint64_t UncertaintyCache::bytes() const {
  std::lock_guard lock(mutex_);
  std::uint64_t total = 0;
  for (const Entry& e : entries_) total += e.memory.bytes();
  return total;
}

std::size_t UncertaintyCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace ntkserver
