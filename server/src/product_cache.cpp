#include "product_cache.hpp"

#include <algorithm>

#include "cache_entries.hpp"
#include "ntk/classifier.hpp"

namespace ntkserver {

std::shared_ptr<ntk::KernelProduct> ProductCache::get(ntk::Backend& backend,
                                                      const std::shared_ptr<const ntk::Model>& model) {
  {
    std::lock_guard lock(mutex_);
    std::erase_if(entries_, [](const Entry& e) { return e.alive.expired(); });
    for (Entry& e : entries_)
      if (e.backend == &backend && e.model == model.get() && e.alive.lock() == model) {
        e.used = ++clock_;
        return e.product;
      }
  }
  // Made outside the lock (it may take a while: a device upload); the caller holds the backend's lease,
  // so nobody else makes one for this backend meanwhile.
  std::shared_ptr<ntk::KernelProduct> product = ntk::make_model_product(backend, *model);
  std::lock_guard lock(mutex_);
  const auto mine = [&](const Entry& e) { return e.backend == &backend; };
  if (static_cast<std::size_t>(std::count_if(entries_.begin(), entries_.end(), mine)) >= per_backend_) {
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (mine(*it) && (oldest == entries_.end() || it->used < oldest->used)) oldest = it;
    if (oldest != entries_.end()) entries_.erase(oldest);
  }
  const auto bytes = static_cast<std::uint64_t>(model->x_train.rows()) *
                     static_cast<std::uint64_t>(model->x_train.cols() + model->num_classes) * sizeof(double);
  entries_.push_back({&backend, model.get(), model, product, bytes, ++clock_});
  return product;
}

std::uint64_t ProductCache::reclaim(std::uint64_t missing) {
  std::vector<Entry> dropped;  // destroyed after the lock is released
  std::lock_guard lock(mutex_);
  return take_idle_entries(
      entries_, missing, [](const Entry& e) { return e.product.use_count() == 1; },
      [](const Entry& e) { return e.bytes; }, dropped);
}

std::size_t ProductCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace ntkserver
