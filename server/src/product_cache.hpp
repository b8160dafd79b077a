#pragma once
// Kernel products (ntk::KernelProduct) of recently used models, per backend instance, kept across calls:
// a model's training inputs are then prepared (CPU: checked, normed, layer variances) or uploaded (CUDA)
// once, not for every request. A product is only used under its backend's lease, which is exclusive, so
// entries need no locking of their own. Entries die with their model (weak references: an evicted or
// deleted model drops its entry at the next lookup) and beyond `per_backend` the least recently used goes.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "ntk/backend.hpp"
#include "ntk/model.hpp"

namespace ntkserver {

class ProductCache {
 public:
  explicit ProductCache(std::size_t per_backend = 4) : per_backend_(per_backend) {}
  // The product of `model` on `backend`, made (ntk::make_model_product) when there is none.
  std::shared_ptr<ntk::KernelProduct> get(ntk::Backend& backend,
                                          const std::shared_ptr<const ntk::Model>& model);
  // Drops idle products (held by no call), least recently used first, until about `missing` bytes of
  // device memory are given back; returns that estimate (the training inputs and coefficients each holds).
  std::uint64_t reclaim(std::uint64_t missing);
  std::size_t size() const;

 private:
  struct Entry {
    const ntk::Backend* backend;
    const ntk::Model* model;
    std::weak_ptr<const ntk::Model> alive;
    std::shared_ptr<ntk::KernelProduct> product;
    std::uint64_t bytes;  // estimated
    std::uint64_t used;
  };
  std::size_t per_backend_;
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
  std::uint64_t clock_ = 0;
};

}  // namespace ntkserver
