#pragma once
// Fit jobs: a bounded queue served by N workers. Each job carries its latest progress; watchers
// block on a version counter so that every change reaches them and none is sent twice.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ntkserve/v1/model.pb.h"

namespace ntkserver {

namespace pb = ::ntkserve::v1;

class Job {
 public:
  Job(std::string tenant, std::string id, pb::FitRequest request);
  const std::string& tenant() const { return tenant_; }
  const std::string& id() const { return id_; }
  const pb::FitRequest& request() const { return request_; }

  pb::FitProgress progress() const;
  // Applies `update` to the progress and wakes the watchers.
  void update(const std::function<void(pb::FitProgress&)>& update);
  // Blocks until the progress version exceeds `seen` or `deadline`; returns the new version (or
  // `seen` on timeout) and the progress.
  std::uint64_t wait_change(std::uint64_t seen, std::chrono::steady_clock::time_point deadline,
                            pb::FitProgress& out) const;
  bool finished() const;
  // by_shutdown: the server is stopping; the job stays persisted and runs again after a restart.
  void request_cancel(bool by_shutdown = false) {
    if (by_shutdown) by_shutdown_ = true;
    cancel_requested_ = true;
  }
  bool cancel_requested() const { return cancel_requested_; }
  bool cancelled_by_shutdown() const { return by_shutdown_; }
  std::chrono::steady_clock::time_point submitted() const { return submitted_; }

 private:
  const std::string tenant_, id_;
  const pb::FitRequest request_;
  const std::chrono::steady_clock::time_point submitted_ = std::chrono::steady_clock::now();
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  pb::FitProgress progress_;
  std::uint64_t version_ = 1;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> by_shutdown_{false};
};

class JobQueue {
 public:
  using Runner = std::function<void(Job&)>;  // runs a fit; reports through Job::update
  JobQueue(Runner runner, int workers, int max_queued);
  ~JobQueue();

  // Throws ResourceExhausted when the queue is full, Unavailable when shutting down.
  std::shared_ptr<Job> submit(std::shared_ptr<Job> job);
  // NotFound for an unknown id or another tenant's job.
  std::shared_ptr<Job> find(const std::string& tenant, const std::string& id) const;
  // Cancels a queued job at once; a running one stops at its next Newton step.
  std::shared_ptr<Job> cancel(const std::string& tenant, const std::string& id);
  int queued() const;
  int running() const;
  // Stops taking jobs; waits up to `grace` for running ones, then asks them to cancel. Queued jobs stay
  // persisted and run after the next start.
  void shutdown(std::chrono::milliseconds grace);

 private:
  void work();
  Runner runner_;
  const int max_queued_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::condition_variable idle_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // every job this process has seen, by id
  int running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

bool is_final(pb::JobState state);

}  // namespace ntkserver
