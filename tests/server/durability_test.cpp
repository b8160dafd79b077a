// kill -9 during uploads and fits: after a restart every acknowledged dataset and model is intact and
// nothing partial is visible; acknowledged fit jobs run to completion after the restart.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/test_data.hpp"
#include "server/server_process.hpp"
#include "wire/convert.hpp"

namespace {

namespace pb = ::ntkserve::v1;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

TEST(Durability, KillNineLosesNothingAcknowledgedAndShowsNothingPartial) {
  const std::string dir = ntktest::temporary_directory("kill9");
  ntktest::ServerProcess server(dir, {"--threads", "1"});
  {
    ntkclient::Client client(server.client_options());
    const auto x = random_inputs(400, 10, 1);
    const auto y = random_labels(400, 4, 2);
    client.upload("base", x.view(), &y);
  }
  std::map<std::string, std::string> acknowledged_datasets;  // name -> sha256
  std::vector<std::string> acknowledged_jobs;
  std::mt19937 rng(42);
  for (int round = 0; round < 3; ++round) {
    std::atomic<bool> stop{false};
    std::mutex mutex;
    auto options = server.client_options();
    options.retries = 0;
    std::thread uploader([&] {
      ntkclient::Client client(options);
      for (int i = 0; !stop; ++i) {
        const std::string name = "r" + std::to_string(round) + "-" + std::to_string(i);
        const auto x = random_inputs(2000 + 500 * (i % 4), 200, static_cast<std::uint64_t>(100 * round + i));
        try {
          const auto info = client.upload(name, x.view(), nullptr);
          std::lock_guard lock(mutex);
          acknowledged_datasets[name] = info.sha256();
        } catch (const std::exception&) {
          return;  // the server died mid-upload: not acknowledged
        }
      }
    });
    std::thread fitter([&] {
      ntkclient::Client client(options);
      while (!stop) {
        pb::FitRequest f;
        f.set_dataset("base");
        f.mutable_spec()->set_depth(3);
        f.mutable_spec()->set_w_std(1.5);
        f.set_lambda(1e-3);
        f.set_solver(pb::SOLVER_DIRECT);
        try {
          const auto job = client.fit(f);
          std::lock_guard lock(mutex);
          acknowledged_jobs.push_back(job.job_id());
        } catch (const std::exception&) {
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 900));
    const pid_t killed = server.pid();
    server.restart();  // SIGKILL, then start again on the same data directory
    stop = true;
    uploader.join();
    fitter.join();

    ntkclient::Client client(server.client_options());
    // Every acknowledged dataset is there with its checksum; every listed one is complete and loads.
    const auto listed = client.list_datasets();
    std::map<std::string, pb::DatasetInfo> by_name;
    for (const auto& d : listed) by_name[d.name()] = d;
    for (const auto& [name, sha] : acknowledged_datasets) {
      ASSERT_TRUE(by_name.count(name)) << "acknowledged dataset " << name << " lost in round " << round;
      EXPECT_EQ(by_name[name].sha256(), sha);
    }
    for (const auto& d : listed) {
      pb::ComputeKernelRequest r;
      r.mutable_spec()->set_depth(1);
      r.mutable_spec()->set_w_std(1);
      r.set_diagonal_only(true);
      r.set_tile_rows(1 << 20);
      r.mutable_x1()->set_dataset(d.name());
      auto stub = pb::KernelService::NewStub(client.channel());
      auto ctx = client.context();
      auto reader = stub->ComputeKernel(ctx.get(), r);
      pb::KernelTile tile;
      std::int64_t rows = 0;
      while (reader->Read(&tile)) rows += tile.values().rows();
      EXPECT_TRUE(reader->Finish().ok()) << d.name();
      EXPECT_EQ(rows, d.rows()) << d.name();
    }
    // No temporary file of the killed process's interrupted writes survives the restart (the new process
    // may be writing its own: re-queued fits save their models). Temporary names carry the writer's pid.
    const std::string marker = "-" + std::to_string(killed) + "-";
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      EXPECT_FALSE(name.rfind(".tmp-", 0) == 0 && name.find(marker) != std::string::npos) << e.path();
    }
  }
  // Every acknowledged fit job ends with a model (re-run after the crash when it was interrupted).
  ntkclient::Client client(server.client_options());
  ASSERT_FALSE(acknowledged_jobs.empty());
  for (const auto& id : acknowledged_jobs) {
    const auto end = client.watch(id);
    EXPECT_EQ(end.state(), pb::SUCCEEDED) << id << ": " << end.message();
    EXPECT_EQ(client.get_model(id).model_id(), id);
  }
}

}  // namespace
