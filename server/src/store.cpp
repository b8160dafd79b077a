#include "store.hpp"

#include <filesystem>

#include "auth.hpp"
#include "files.hpp"
#include "ntk/errors.hpp"
#include "ntk/logging.hpp"
#include "ntk/model_file.hpp"
#include "wire.hpp"

namespace ntkserver {

namespace fs = std::filesystem;

namespace {
constexpr char kModelMagic[] = "NTKMSRV1";
constexpr char kJobMagic[] = "NTKJOB01";

void quarantine(const std::string& path, const std::string& why) {
  ntk::log_warning("store: " + path + " is unreadable (" + why + "); moved to " + path +
                   ".corrupt, not served");
  std::error_code ec;
  fs::rename(path, path + ".corrupt", ec);
}
}  // namespace

std::int64_t unix_millis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::size_t model_bytes(const ntk::Model& m) {
  return sizeof(double) * (m.x_train.size() + m.targets.size() + m.coefficients.size() +
                           m.train_logits.size() + m.f0_train.size() + m.theta_factor.size());
}

pb::ModelInfo describe_model(const ntk::Model& m) {
  pb::ModelInfo info;
  *info.mutable_spec() = to_proto(m.spec, m.settings.dtype);
  info.set_lambda(m.settings.lambda);
  info.set_label_smoothing(m.settings.label_smoothing);
  info.set_solver_used(ntk::solver_name(m.diagnostics.solver_used));
  info.set_converged(m.diagnostics.converged);
  info.set_newton_steps(m.diagnostics.steps);
  info.set_residual(m.diagnostics.residual);
  info.set_fit_seconds(m.diagnostics.seconds);
  info.set_train_rows(m.x_train.rows());
  info.set_cols(m.x_train.cols());
  info.set_num_classes(m.num_classes);
  info.set_time(m.settings.time);
  info.set_supports_exact_uncertainty(m.settings.lambda == 0);
  return info;
}

std::vector<std::uint8_t> encode_model_file(const pb::ModelInfo& info, const ntk::Model& model) {
  const auto bytes = ntk::serialize_model(model);
  return encode_framed_file(kModelMagic, info.SerializeAsString(), bytes);
}

ntk::Model decode_model_file(std::span<const std::uint8_t> file, const std::string& what,
                             pb::ModelInfo& info) {
  std::string header;
  std::vector<std::uint8_t> payload;
  decode_framed_file(file, kModelMagic, what, header, payload);
  if (!info.ParseFromString(header)) throw ntk::IoError(what + ": bad model header");
  return ntk::deserialize_model(payload, what);
}

Store::Store(std::string data_dir, MemoryBudget& budget, bool evict_idle)
    : data_dir_(std::move(data_dir)), budget_(budget), evict_idle_(evict_idle) {}

std::string Store::tenant_dir(const std::string& tenant) const {
  if (!valid_tenant_name(tenant)) throw ntk::InternalError("invalid tenant name reached the store");
  return data_dir_ + "/tenants/" + tenant;
}

Store::Tenant& Store::tenant(const std::string& name) {
  return tenants_[name];
}

const Store::Tenant* Store::find_tenant(const std::string& name) const {
  const auto it = tenants_.find(name);
  return it == tenants_.end() ? nullptr : &it->second;
}

void Store::load_index() {
  make_directories(data_dir_ + "/tenants");
  const int swept = sweep_temporary_files(data_dir_);
  if (swept)
    ntk::log_info("store: removed " + std::to_string(swept) + " partial file(s) of interrupted writes");
  std::lock_guard lock(mutex_);
  std::size_t datasets = 0, models = 0;
  for (const auto& entry : fs::directory_iterator(data_dir_ + "/tenants")) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !valid_tenant_name(name)) continue;
    Tenant& t = tenant(name);
    const std::string dir = entry.path().string();
    make_directories(dir + "/datasets");
    make_directories(dir + "/models");
    make_directories(dir + "/jobs");
    for (const auto& ds : list_files(dir + "/datasets", ".ntkd")) {
      const std::string path = dir + "/datasets/" + ds + ".ntkd";
      try {
        // Only the header is needed for the index; the checksum of the whole file is verified here
        // so that a corrupt file is never listed.
        pb::DatasetInfo info;
        std::vector<std::uint8_t> payload;
        decode_dataset_file(read_whole_file(path), path, info, payload);
        if (info.name() != ds) throw ntk::IoError("name in file is '" + info.name() + "'");
        auto e = std::make_shared<DatasetEntry>();
        info.set_resident(false);
        e->info = info;
        e->path = path;
        t.datasets[ds] = e;
        ++datasets;
      } catch (const ntk::Error& err) {
        quarantine(path, err.what());
      }
    }
    for (const auto& id : list_files(dir + "/models", ".ntkm")) {
      const std::string path = dir + "/models/" + id + ".ntkm";
      try {
        pb::ModelInfo info;
        (void)decode_model_file(read_whole_file(path), path, info);
        if (info.model_id() != id) throw ntk::IoError("id in file is '" + info.model_id() + "'");
        auto e = std::make_shared<ModelEntry>();
        e->info = info;
        e->path = path;
        t.models[id] = e;
        ++models;
      } catch (const ntk::Error& err) {
        quarantine(path, err.what());
      }
    }
  }
  ntk::log_info("store: " + data_dir_ + ": " + std::to_string(datasets) + " dataset(s), " +
                std::to_string(models) + " model(s) in " + std::to_string(tenants_.size()) + " tenant(s)");
}

pb::DatasetInfo Store::add_dataset(const std::string& tenant_name, pb::DatasetInfo info,
                                   std::span<const std::uint8_t> payload,
                                   std::shared_ptr<const DatasetData> data, Reservation data_memory) {
  const std::string dir = tenant_dir(tenant_name);
  const std::string path = dir + "/datasets/" + info.name() + ".ntkd";
  info.set_created_unix_ms(unix_millis());
  info.set_resident(false);
  const auto file = encode_dataset_file(info, payload);
  // The name is claimed under the index lock, then written outside it (large files take time);
  // a failed write un-claims it.
  auto e = std::make_shared<DatasetEntry>();
  {
    std::lock_guard lock(mutex_);
    Tenant& t = tenant(tenant_name);
    if (t.datasets.count(info.name()))
      throw ntk::AlreadyExists("dataset '" + info.name() + "' already exists");
    e->info = info;
    e->path = path;
    t.datasets[info.name()] = nullptr;  // claimed, not visible until written
  }
  try {
    make_directories(dir + "/datasets");
    make_directories(dir + "/models");
    make_directories(dir + "/jobs");
    write_file_durably(path, file);
  } catch (...) {
    std::lock_guard lock(mutex_);
    tenant(tenant_name).datasets.erase(info.name());
    throw;
  }
  std::lock_guard lock(mutex_);
  e->data = std::move(data);
  e->memory = std::move(data_memory);
  e->info.set_resident(e->data != nullptr);
  e->last_used = std::chrono::steady_clock::now();
  tenant(tenant_name).datasets[info.name()] = e;
  return e->info;
}

std::shared_ptr<Store::DatasetEntry> Store::find_dataset(const std::string& tenant_name,
                                                         const std::string& name) const {
  std::lock_guard lock(mutex_);
  const Tenant* t = find_tenant(tenant_name);
  if (t) {
    const auto it = t->datasets.find(name);
    if (it != t->datasets.end() && it->second) return it->second;
  }
  throw ntk::NotFound("dataset '" + name.substr(0, 200) + "' not found");
}

std::vector<pb::DatasetInfo> Store::list_datasets(const std::string& tenant_name) const {
  std::lock_guard lock(mutex_);
  std::vector<pb::DatasetInfo> out;
  if (const Tenant* t = find_tenant(tenant_name))
    for (const auto& [name, e] : t->datasets)
      if (e) {
        out.push_back(e->info);
        out.back().set_resident(e->data != nullptr);
      }
  return out;
}

pb::DatasetInfo Store::dataset_info(const std::string& tenant_name, const std::string& name) const {
  auto e = find_dataset(tenant_name, name);
  std::lock_guard lock(mutex_);
  pb::DatasetInfo info = e->info;
  info.set_resident(e->data != nullptr);
  return info;
}

bool Store::dataset_exists(const std::string& tenant_name, const std::string& name) const {
  std::lock_guard lock(mutex_);
  const Tenant* t = find_tenant(tenant_name);
  return t && t->datasets.count(name);
}

std::shared_ptr<const DatasetData> Store::dataset(const std::string& tenant_name, const std::string& name,
                                                  pb::DatasetInfo* info_out) {
  auto e = find_dataset(tenant_name, name);
  {
    std::lock_guard lock(mutex_);
    if (info_out) *info_out = e->info;
    if (e->data) {
      e->last_used = std::chrono::steady_clock::now();
      return e->data;
    }
  }
  std::lock_guard load_lock(load_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (e->data) return e->data;
  }
  Reservation memory =
      budget_.reserve(static_cast<std::uint64_t>(e->info.bytes()), "loading dataset '" + name + "'");
  pb::DatasetInfo stored;
  std::vector<std::uint8_t> payload;
  decode_dataset_file(read_whole_file(e->path), e->path, stored, payload);
  auto data = std::make_shared<const DatasetData>(decode_payload(stored, payload));
  std::lock_guard lock(mutex_);
  e->data = data;
  e->memory = std::move(memory);
  e->last_used = std::chrono::steady_clock::now();
  ntk::log_info("store: loaded dataset '" + name + "' of tenant " + tenant_name + " from disk");
  return data;
}

void Store::delete_dataset(const std::string& tenant_name, const std::string& name) {
  auto e = find_dataset(tenant_name, name);
  remove_file_durably(e->path);
  std::lock_guard lock(mutex_);
  tenant(tenant_name).datasets.erase(name);
  // Memory comes back when the last computation using the contents lets go of them.
}

pb::ModelInfo Store::add_model(const std::string& tenant_name, pb::ModelInfo info, const ntk::Model& model) {
  const std::string dir = tenant_dir(tenant_name);
  if (!valid_model_id(info.model_id())) throw ntk::InternalError("bad model id " + info.model_id());
  const std::string path = dir + "/models/" + info.model_id() + ".ntkm";
  const auto portable = ntk::serialize_model(model);  // what ExportModel sends
  info.set_bytes(static_cast<std::int64_t>(portable.size()));
  make_directories(dir + "/models");
  write_file_durably(path, encode_framed_file(kModelMagic, info.SerializeAsString(), portable));
  auto e = std::make_shared<ModelEntry>();
  e->info = info;
  e->path = path;
  std::lock_guard lock(mutex_);
  tenant(tenant_name).models[info.model_id()] = e;
  return info;
}

std::shared_ptr<Store::ModelEntry> Store::find_model(const std::string& tenant_name,
                                                     const std::string& id) const {
  std::lock_guard lock(mutex_);
  if (const Tenant* t = find_tenant(tenant_name)) {
    const auto it = t->models.find(id);
    if (it != t->models.end()) return it->second;
  }
  throw ntk::NotFound("model '" + id.substr(0, 200) + "' not found");
}

std::vector<pb::ModelInfo> Store::list_models(const std::string& tenant_name) const {
  std::lock_guard lock(mutex_);
  std::vector<pb::ModelInfo> out;
  if (const Tenant* t = find_tenant(tenant_name))
    for (const auto& [id, e] : t->models) out.push_back(e->info);
  return out;
}

pb::ModelInfo Store::model_info(const std::string& tenant_name, const std::string& id) const {
  return find_model(tenant_name, id)->info;
}

std::shared_ptr<const ntk::Model> Store::model(const std::string& tenant_name, const std::string& id,
                                               pb::ModelInfo* info_out) {
  auto e = find_model(tenant_name, id);
  {
    std::lock_guard lock(mutex_);
    if (info_out) *info_out = e->info;
    if (e->model) {
      e->last_used = std::chrono::steady_clock::now();
      return e->model;
    }
  }
  std::lock_guard load_lock(load_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (e->model) return e->model;
  }
  pb::ModelInfo stored;
  auto model =
      std::make_shared<const ntk::Model>(decode_model_file(read_whole_file(e->path), e->path, stored));
  Reservation memory = budget_.reserve(model_bytes(*model), "loading model " + id);
  std::lock_guard lock(mutex_);
  e->model = model;
  e->memory = std::move(memory);
  e->last_used = std::chrono::steady_clock::now();
  return model;
}

std::vector<std::uint8_t> Store::model_file_bytes(const std::string& tenant_name,
                                                  const std::string& id) const {
  auto e = find_model(tenant_name, id);
  pb::ModelInfo info;
  std::string header;
  std::vector<std::uint8_t> payload;
  decode_framed_file(read_whole_file(e->path), kModelMagic, e->path, header, payload);
  return payload;  // the portable model file of docs/model_format.md
}

void Store::delete_model(const std::string& tenant_name, const std::string& id) {
  auto e = find_model(tenant_name, id);
  remove_file_durably(e->path);
  std::lock_guard lock(mutex_);
  tenant(tenant_name).models.erase(id);
}

void Store::save_job(const std::string& tenant_name, const std::string& id,
                     const std::string& request_bytes) {
  const std::string dir = tenant_dir(tenant_name) + "/jobs";
  make_directories(dir);
  write_file_durably(dir + "/" + id + ".job", encode_framed_file(kJobMagic, request_bytes, {}));
}

void Store::remove_job(const std::string& tenant_name, const std::string& id) {
  remove_file_durably(tenant_dir(tenant_name) + "/jobs/" + id + ".job");
}

std::vector<Store::PendingJob> Store::pending_jobs() const {
  std::vector<PendingJob> jobs;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(data_dir_ + "/tenants", ec)) {
    const std::string tenant_name = entry.path().filename().string();
    if (!valid_tenant_name(tenant_name)) continue;
    const std::string dir = entry.path().string() + "/jobs";
    for (const auto& id : list_files(dir, ".job")) {
      const std::string path = dir + "/" + id + ".job";
      try {
        if (!valid_model_id(id)) throw ntk::IoError("not a job id");
        std::string header;
        std::vector<std::uint8_t> payload;
        decode_framed_file(read_whole_file(path), kJobMagic, path, header, payload);
        jobs.push_back({tenant_name, id, header});
      } catch (const ntk::Error& err) {
        quarantine(path, err.what());
      }
    }
  }
  return jobs;
}

std::uint64_t Store::reclaim(std::uint64_t missing) {
  if (!evict_idle_) return 0;
  // Idle: nobody but the store holds the contents (use_count == 1).
  std::uint64_t freed = 0;
  std::lock_guard lock(mutex_);
  struct Candidate {
    std::chrono::steady_clock::time_point used;
    std::function<std::uint64_t()> evict;
  };
  std::vector<Candidate> candidates;
  for (auto& [tname, t] : tenants_) {
    for (auto& [name, e] : t.datasets)
      if (e && e->data && e->data.use_count() == 1)
        candidates.push_back({e->last_used, [e = e, tn = tname, n = name] {
                                const std::uint64_t b = e->memory.bytes();
                                e->data.reset();
                                e->memory.release();
                                ntk::log_info("store: evicted idle dataset '" + n + "' of tenant " + tn +
                                              " from memory (kept on disk)");
                                return b;
                              }});
    for (auto& [id, e] : t.models)
      if (e->model && e->model.use_count() == 1)
        candidates.push_back({e->last_used, [e = e] {
                                const std::uint64_t b = e->memory.bytes();
                                e->model.reset();
                                e->memory.release();
                                return b;
                              }});
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.used < b.used; });
  for (auto& c : candidates) {
    if (freed >= missing) break;
    freed += c.evict();
  }
  return freed;
}

std::size_t Store::dataset_count() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& [name, t] : tenants_)
    for (const auto& [k, e] : t.datasets) n += e != nullptr;
  return n;
}

std::size_t Store::model_count() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& [name, t] : tenants_) n += t.models.size();
  return n;
}

std::size_t Store::resident_bytes() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& [name, t] : tenants_) {
    for (const auto& [k, e] : t.datasets)
      if (e) n += e->memory.bytes();
    for (const auto& [k, e] : t.models) n += e->memory.bytes();
  }
  return n;
}

}  // namespace ntkserver
