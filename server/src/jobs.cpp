#include "jobs.hpp"

#include "ntk/errors.hpp"
#include "ntk/logging.hpp"

namespace ntkserver {

bool is_final(pb::JobState s) {
  return s == pb::SUCCEEDED || s == pb::FAILED || s == pb::CANCELLED;
}

Job::Job(std::string tenant, std::string id, pb::FitRequest request)
    : tenant_(std::move(tenant)), id_(std::move(id)), request_(std::move(request)) {
  progress_.set_job_id(id_);
  progress_.set_state(pb::QUEUED);
  progress_.set_phase("queued");
  progress_.set_estimated_remaining_seconds(-1);
}

pb::FitProgress Job::progress() const {
  std::lock_guard lock(mutex_);
  return progress_;
}

void Job::update(const std::function<void(pb::FitProgress&)>& update) {
  {
    std::lock_guard lock(mutex_);
    if (is_final(progress_.state())) return;  // a final state is never overwritten
    update(progress_);
    ++version_;
  }
  changed_.notify_all();
}

std::uint64_t Job::wait_change(std::uint64_t seen, std::chrono::steady_clock::time_point deadline,
                               pb::FitProgress& out) const {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return version_ > seen; });
  out = progress_;
  return version_;
}

bool Job::finished() const {
  std::lock_guard lock(mutex_);
  return is_final(progress_.state());
}

JobQueue::JobQueue(Runner runner, int workers, int max_queued)
    : runner_(std::move(runner)), max_queued_(max_queued) {
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
}

JobQueue::~JobQueue() {
  shutdown(std::chrono::milliseconds(0));
}

std::shared_ptr<Job> JobQueue::submit(std::shared_ptr<Job> job) {
  std::lock_guard lock(mutex_);
  if (stopping_)
    throw ntk::Unavailable("the server is shutting down; retry on another replica or after restart");
  if (static_cast<int>(queue_.size()) >= max_queued_)
    throw ntk::ResourceExhausted("the fit queue is full (" + std::to_string(max_queued_) +
                                 " jobs waiting); retry later or raise --max-queued-jobs");
  jobs_[job->id()] = job;
  queue_.push_back(job);
  available_.notify_one();
  return job;
}

std::shared_ptr<Job> JobQueue::find(const std::string& tenant, const std::string& id) const {
  std::lock_guard lock(mutex_);
  const auto it = jobs_.find(id);
  if (it == jobs_.end() || it->second->tenant() != tenant)
    throw ntk::NotFound("fit job '" + id.substr(0, 200) + "' not found");
  return it->second;
}

std::shared_ptr<Job> JobQueue::cancel(const std::string& tenant, const std::string& id) {
  auto job = find(tenant, id);
  job->request_cancel();
  bool was_queued = false;
  {
    std::lock_guard lock(mutex_);
    for (auto it = queue_.begin(); it != queue_.end(); ++it)
      if (*it == job) {
        queue_.erase(it);
        was_queued = true;
        break;
      }
  }
  if (was_queued) {
    // The runner never sees it: the cancellation is final here (the runner's hook removes the job file).
    runner_(*job);
  }
  return job;
}

int JobQueue::queued() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(queue_.size());
}

int JobQueue::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

void JobQueue::shutdown(std::chrono::milliseconds grace) {
  std::vector<std::shared_ptr<Job>> in_flight;
  {
    std::unique_lock lock(mutex_);
    if (workers_.empty()) return;
    stopping_ = true;
    queue_.clear();  // still persisted: they run after the next start
    available_.notify_all();
    if (!idle_.wait_for(lock, grace, [&] { return running_ == 0; })) {
      for (auto& [id, job] : jobs_)
        if (!job->finished()) in_flight.push_back(job);
    }
  }
  for (auto& job : in_flight) job->request_cancel(true);
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void JobQueue::work() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      available_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      ++running_;
    }
    try {
      runner_(*job);
    } catch (const std::exception& e) {  // the runner reports its own errors; this is a last resort
      ntk::log(ntk::LogLevel::error, std::string("job ") + job->id() + ": unexpected error: " + e.what());
    }
    {
      std::lock_guard lock(mutex_);
      --running_;
    }
    idle_.notify_all();
  }
}

}  // namespace ntkserver
