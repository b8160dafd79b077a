#pragma once
// Datasets and models per tenant: the in-memory index, the durable files under the data directory,
// and the lazily loaded contents. Layout: DATA/tenants/TENANT/{datasets/NAME.ntkd,
// models/ID.ntkm, jobs/ID.job}. Everything is on disk before it is acknowledged; contents are
// loaded into memory (within the budget) on first use and may be evicted when idle.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dataset_codec.hpp"
#include "memory_budget.hpp"
#include "ntk/model.hpp"
#include "ntkserve/v1/model.pb.h"

namespace ntkserver {

class Store {
 public:
  Store(std::string data_dir, MemoryBudget& budget, bool evict_idle);

  // Scans the data directory (sweeping leftovers of interrupted writes). Corrupt files are logged,
  // moved aside to *.corrupt and skipped, never served.
  void load_index();

  // Datasets. add_dataset writes the file durably, then indexes it; AlreadyExists when taken.
  pb::DatasetInfo add_dataset(const std::string& tenant, pb::DatasetInfo info,
                              std::span<const std::uint8_t> payload, std::shared_ptr<const DatasetData> data,
                              Reservation data_memory);
  std::vector<pb::DatasetInfo> list_datasets(const std::string& tenant) const;
  pb::DatasetInfo dataset_info(const std::string& tenant, const std::string& name) const;  // NotFound
  bool dataset_exists(const std::string& tenant, const std::string& name) const;
  // The contents, loaded from disk if they were evicted (reserving memory).
  std::shared_ptr<const DatasetData> dataset(const std::string& tenant, const std::string& name,
                                             pb::DatasetInfo* info = nullptr);
  void delete_dataset(const std::string& tenant, const std::string& name);

  // Models.
  pb::ModelInfo add_model(const std::string& tenant, pb::ModelInfo info, const ntk::Model& model);
  std::vector<pb::ModelInfo> list_models(const std::string& tenant) const;
  pb::ModelInfo model_info(const std::string& tenant, const std::string& id) const;  // NotFound
  std::shared_ptr<const ntk::Model> model(const std::string& tenant, const std::string& id,
                                          pb::ModelInfo* info = nullptr);
  std::vector<std::uint8_t> model_file_bytes(const std::string& tenant, const std::string& id) const;
  void delete_model(const std::string& tenant, const std::string& id);

  // Jobs persisted until their model is written (re-run after a crash).
  void save_job(const std::string& tenant, const std::string& id, const std::string& request_bytes);
  void remove_job(const std::string& tenant, const std::string& id);
  struct PendingJob {
    std::string tenant, id, request_bytes;
  };
  std::vector<PendingJob> pending_jobs() const;

  // Evicts idle contents, least recently used first, until `missing` bytes are freed.
  std::uint64_t reclaim(std::uint64_t missing);

  std::size_t dataset_count() const;
  std::size_t model_count() const;
  std::size_t resident_bytes() const;
  const std::string& data_dir() const { return data_dir_; }

 private:
  struct DatasetEntry {
    pb::DatasetInfo info;
    std::string path;
    std::shared_ptr<const DatasetData> data;
    Reservation memory;
    std::chrono::steady_clock::time_point last_used;
  };
  struct ModelEntry {
    pb::ModelInfo info;
    std::string path;
    std::shared_ptr<const ntk::Model> model;
    Reservation memory;
    std::chrono::steady_clock::time_point last_used;
  };
  struct Tenant {
    std::map<std::string, std::shared_ptr<DatasetEntry>> datasets;
    std::map<std::string, std::shared_ptr<ModelEntry>> models;
  };
  std::string tenant_dir(const std::string& tenant) const;
  Tenant& tenant(const std::string& name);  // caller holds mutex_
  const Tenant* find_tenant(const std::string& name) const;
  std::shared_ptr<DatasetEntry> find_dataset(const std::string& tenant, const std::string& name) const;
  std::shared_ptr<ModelEntry> find_model(const std::string& tenant, const std::string& id) const;

  const std::string data_dir_;
  MemoryBudget& budget_;
  const bool evict_idle_;
  mutable std::mutex mutex_;  // the index; loading happens outside it, under load_mutex_
  std::mutex load_mutex_;
  std::map<std::string, Tenant> tenants_;
};

// Model contents and their memory footprint.
std::size_t model_bytes(const ntk::Model& model);
pb::ModelInfo describe_model(const ntk::Model& model);
std::vector<std::uint8_t> encode_model_file(const pb::ModelInfo& info, const ntk::Model& model);
ntk::Model decode_model_file(std::span<const std::uint8_t> file, const std::string& what,
                             pb::ModelInfo& info);

std::int64_t unix_millis();

}  // namespace ntkserver
