#pragma once
#include <cstdint>
#include <functional>

namespace ntk {

// The number of threads to use when a caller asks for 0 ("all"): std::thread::hardware_concurrency().
int default_thread_count();

// Runs body(task, worker) for task in [0, count) on `threads` workers (the calling thread is worker 0),
// handing out tasks dynamically. The first exception thrown by any task is rethrown after all workers
// stop; remaining tasks are skipped.
void parallel_for(std::int64_t count, int threads, const std::function<void(std::int64_t, int)>& body);

}  // namespace ntk
