// Streaming order and completeness, large uploads, cancellation and deadlines mid-work, concurrent
// clients, graceful drain, health and metrics.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/test_data.hpp"
#include "server/http_get.hpp"
#include "server/server_process.hpp"
#include "wire/convert.hpp"

namespace {

namespace pb = ::ntkserve::v1;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

pb::FitRequest fit_request(const std::string& dataset, double lambda = 1e-2) {
  pb::FitRequest f;
  f.set_dataset(dataset);
  f.mutable_spec()->set_depth(2);
  f.mutable_spec()->set_w_std(1.4);
  f.mutable_spec()->set_b_std(0.1);
  f.set_lambda(lambda);
  return f;
}

// Uploads x with random labels as dataset "d" and fits it; the job of a SUCCEEDED fit.
pb::FitJob fit_random_model(ntkclient::Client& client, const ntk::Matrix<double>& x, std::int64_t classes) {
  const auto y = random_labels(x.rows(), classes, 2);
  client.upload("d", x.view(), &y);
  const auto job = client.fit(fit_request("d"));
  const auto end = client.watch(job.job_id());
  if (end.state() != pb::SUCCEEDED) throw std::runtime_error("fit failed: " + end.message());
  return job;
}

std::string sha256_of(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr);
  static const char hex[] = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < size; ++i) s += {hex[digest[i] >> 4], hex[digest[i] & 15]};
  return s;
}

TEST(Streaming, BatchesArriveInOrderAndCoverEveryRow) {
  ntktest::ServerProcess server(ntktest::temporary_directory("order"));
  ntkclient::Client client(server.client_options());
  const auto x = random_inputs(90, 6, 1);
  const auto job = fit_random_model(client, x, 3);
  const auto t = random_inputs(1001, 6, 3);
  pb::PredictRequest r;
  r.set_model_id(job.model_id());
  ntkwire::encode_matrix(t.view(), false, r.mutable_x());
  r.set_batch_rows(100);
  auto stub = pb::PredictService::NewStub(client.channel());
  auto ctx = client.context();
  auto reader = stub->Predict(ctx.get(), r);
  pb::PredictResponse response;
  std::int64_t expected_offset = 0;
  int batches = 0;
  while (reader->Read(&response)) {
    EXPECT_EQ(response.row_offset(), expected_offset);
    EXPECT_EQ(response.rows(), std::min<std::int64_t>(100, 1001 - expected_offset));
    EXPECT_EQ(response.logits().rows(), response.rows());
    EXPECT_EQ(response.classes().rows(), response.rows());
    expected_offset += response.rows();
    ++batches;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(expected_offset, 1001);
  EXPECT_EQ(batches, 11);
  ntkclient::PredictOptions po;
  po.batch_rows = 1001;
  const auto whole = client.predict(job.model_id(), t.view(), po);

  // PredictStream: each request its response, in order.
  auto stream_ctx = client.context();
  auto stream = stub->PredictStream(stream_ctx.get());
  std::vector<std::int64_t> sizes = {1, 5, 64, 3, 200};
  std::thread writer([&] {
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      pb::PredictRequest q;
      if (i == 0) q.set_model_id(job.model_id());
      ntkwire::encode_matrix(t.view().block(offset, 0, sizes[i], 6), false, q.mutable_x());
      offset += sizes[i];
      stream->Write(q);
    }
    stream->WritesDone();
  });
  std::int64_t offset = 0;
  std::size_t k = 0;
  while (stream->Read(&response)) {
    ASSERT_LT(k, sizes.size());
    EXPECT_EQ(response.row_offset(), offset);
    EXPECT_EQ(response.rows(), sizes[k]);
    // BLAS may take another code path for another row count (e.g. gemv for one row): equal to rounding.
    const auto logits = ntkwire::decode_matrix(response.logits(), "logits");
    for (std::int64_t i = 0; i < logits.rows(); ++i)
      for (std::int64_t j = 0; j < logits.cols(); ++j)
        EXPECT_NEAR(logits(i, j), whole.logits(offset + i, j), 1e-12 * (1 + std::abs(logits(i, j))));
    offset += sizes[k++];
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(k, sizes.size());
}

TEST(Streaming, UploadsLargerThan64MiBArriveIntact) {
  ntktest::ServerProcess server(ntktest::temporary_directory("large"));
  ntkclient::Client client(server.client_options());
  const auto x = random_inputs(9000, 1000, 7);  // 72 MB of float64
  std::int64_t calls = 0;
  const auto info = client.upload("large", x.view(), nullptr, {}, pb::FLOAT64, 0,
                                  [&](const ntkclient::UploadProgress&) { ++calls; });
  EXPECT_EQ(info.rows(), 9000);
  EXPECT_EQ(info.cols(), 1000);
  EXPECT_GE(calls, 69);  // 1 MiB chunks
  EXPECT_EQ(info.sha256(), sha256_of(std::string(reinterpret_cast<const char*>(x.data()), x.size() * 8)));
  server.restart();  // and it is durable: the file reloads with the same checksum
  ntkclient::Client again(server.client_options());
  EXPECT_EQ(again.get_dataset("large").sha256(), info.sha256());
}

TEST(Streaming, CancellationStopsARunningFitBetweenNewtonSteps) {
  ntktest::ServerProcess server(ntktest::temporary_directory("cancel"), {"--threads", "2"});
  ntkclient::Client client(server.client_options());
  const auto x = random_inputs(1500, 20, 1);
  const auto y = random_labels(1500, 10, 2);
  client.upload("d", x.view(), &y);
  auto f = fit_request("d", 1e-4);
  f.set_solver(pb::SOLVER_DIRECT);
  f.set_tolerance(1e-15);  // never reached: the fit runs until it is cancelled
  f.set_max_newton_steps(1000);
  const auto job = client.fit(f);
  std::atomic<bool> cancelled{false};
  int steps_seen = 0;
  const auto end = client.watch(job.job_id(), [&](const pb::FitProgress& p) {
    steps_seen = std::max(steps_seen, p.newton_step());
    if (p.newton_step() >= 1 && !cancelled.exchange(true)) client.cancel(job.job_id());
  });
  EXPECT_EQ(end.state(), pb::CANCELLED) << end.message();
  EXPECT_EQ(end.error_code(), "CANCELLED");
  EXPECT_LE(steps_seen, 3);
  EXPECT_TRUE(client.list_models().empty());
  // The job file is gone: a restart does not run it again.
  server.restart();
  ntkclient::Client again(server.client_options());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(again.list_models().empty());
}

TEST(Streaming, DeadlinesEndLongPredictionsWithDeadlineExceeded) {
  ntktest::ServerProcess server(ntktest::temporary_directory("deadline"));
  ntkclient::Client client(server.client_options());
  // Sized so that the whole prediction takes seconds (3.6e8 kernel entries), far beyond the deadline, on
  // any machine this runs on: 40000 x 1500 once finished within 0.3 s on a quiet 2-vCPU host.
  const auto x = random_inputs(3000, 20, 1);
  const auto job = fit_random_model(client, x, 3);
  client.upload("t", random_inputs(120000, 20, 3).view(), nullptr);
  auto options = server.client_options();
  options.timeout_seconds = 0.3;
  ntkclient::Client hurried(options);
  ntkclient::PredictOptions po;
  po.batch_rows = 256;
  const auto start = std::chrono::steady_clock::now();
  try {
    hurried.predict_dataset(job.model_id(), "t", po);
    ADD_FAILURE() << "expected DEADLINE_EXCEEDED";
  } catch (const ntkclient::RpcError& e) {
    EXPECT_EQ(e.status_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  // The server is still healthy and answers the next call.
  EXPECT_EQ(client.health(), "SERVING");
  EXPECT_EQ(client.predict(job.model_id(), x.view().block(0, 0, 5, 20)).logits.rows(), 5);
}

TEST(Streaming, EightConcurrentClientsMixingAllCallsSeeOnlyExpectedErrorsAndNoLeakedMemory) {
  const int metrics_port = ntktest::free_port();
  ntktest::ServerProcess server(ntktest::temporary_directory("concurrent"),
                                {"--metrics", "127.0.0.1:" + std::to_string(metrics_port), "--workers", "2",
                                 "--predict-slots", "3", "--threads", "1"});
  ntkclient::Client setup(server.client_options());
  const auto x = random_inputs(120, 8, 1);
  const auto y = random_labels(120, 3, 2);
  setup.upload("base", x.view(), &y);
  const auto base_job = setup.fit(fit_request("base"));
  ASSERT_EQ(setup.watch(base_job.job_id()).state(), pb::SUCCEEDED);
  setup.predict(base_job.model_id(), x.view());  // the model is resident from here on
  auto memory_in_use = [&] {
    return ntktest::metric_value(ntktest::http_get(metrics_port, "/metrics"), "ntkserve_memory_in_use_bytes");
  };
  setup.list_datasets();  // the gauges are refreshed at the end of every call
  const double baseline = memory_in_use();
  ASSERT_GT(baseline, 0);

  std::atomic<int> unexpected{0}, calls{0};
  std::mutex log_mutex;
  std::vector<std::string> failures;
  const auto stop_at = std::chrono::steady_clock::now() + std::chrono::seconds(6);
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      ntkclient::Client client(server.client_options());
      std::mt19937 rng(static_cast<unsigned>(c));
      int serial = 0;
      std::vector<std::string> mine, models;
      while (std::chrono::steady_clock::now() < stop_at) {
        const int op = static_cast<int>(rng() % 9);
        try {
          ++calls;
          if (op == 0) {
            const std::string name = "c" + std::to_string(c) + "-" + std::to_string(serial++);
            const auto d = random_inputs(30 + static_cast<int>(rng() % 50), 8, rng());
            const auto l = random_labels(d.rows(), 3, rng());
            client.upload(name, d.view(), &l);
            mine.push_back(name);
          } else if (op == 1) {
            client.list_datasets();
            client.list_models();
          } else if (op == 2) {
            client.predict(base_job.model_id(), x.view().block(0, 0, 1 + static_cast<int>(rng() % 100), 8));
          } else if (op == 3 && !mine.empty()) {
            const auto job = client.fit(fit_request(mine.back(), 0.1));
            const auto end = client.watch(job.job_id());
            if (end.state() != pb::SUCCEEDED) throw std::runtime_error("fit ended " + end.message());
            models.push_back(job.model_id());
          } else if (op == 4 && !mine.empty()) {
            client.delete_dataset(mine.back());
            mine.pop_back();
          } else if (op == 5) {
            try {
              client.get_dataset("no-such-dataset");
              throw std::runtime_error("a missing dataset was found");
            } catch (const ntkclient::RpcError& e) {
              if (e.status_code() != grpc::StatusCode::NOT_FOUND) throw;
            }
          } else if (op == 6) {
            pb::KernelSpec s;
            s.set_depth(2);
            s.set_w_std(1);
            client.kernel(s, pb::NTK, x.view().block(0, 0, 20, 8));
          } else if (op == 7) {
            ntkclient::PredictOptions po;
            po.uncertainty = pb::UNCERTAINTY_LINEARIZED;
            client.predict(base_job.model_id(), x.view().block(0, 0, 10, 8), po);
          } else if (op == 8 && !models.empty()) {
            client.delete_model(models.back());
            models.pop_back();
          }
        } catch (const std::exception& e) {
          ++unexpected;
          std::lock_guard lock(log_mutex);
          failures.push_back(e.what());
        }
      }
      for (const auto& m : models) client.delete_model(m);
      for (const auto& d : mine) client.delete_dataset(d);
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(unexpected.load(), 0) << (failures.empty() ? "" : failures.front());
  EXPECT_GT(calls.load(), 40);
  EXPECT_EQ(setup.list_datasets().size(), 1u);
  EXPECT_EQ(setup.list_models().size(), 1u);
  // Everything the clients made is gone, and so is its memory, but for the uncertainty contexts of the
  // model that stays (cached across calls and reported as such).
  ntkclient::PredictOptions linearized;
  linearized.uncertainty = pb::UNCERTAINTY_LINEARIZED;
  setup.predict(base_job.model_id(), x.view().block(0, 0, 5, 8), linearized);
  setup.list_datasets();
  const double cached =
      ntktest::metric_value(ntktest::http_get(metrics_port, "/metrics"), "ntkserve_uncertainty_cache_bytes");
  EXPECT_GT(cached, 0);
  EXPECT_EQ(memory_in_use() - cached, baseline);
  // Deleting that model gives its contexts back too.
  setup.delete_model(base_job.model_id());
  setup.list_datasets();
  EXPECT_EQ(
      ntktest::metric_value(ntktest::http_get(metrics_port, "/metrics"), "ntkserve_uncertainty_cache_bytes"),
      0.0);
  const std::string metrics = ntktest::http_get(metrics_port, "/metrics");
  EXPECT_NE(metrics.find("ntkserve_requests_total{code=\"OK\",method=\"Predict\"}"), std::string::npos);
  EXPECT_NE(metrics.find("ntkserve_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.find("ntkserve_fit_newton_steps_count"), std::string::npos);
  // The device pool's gauges are there: 0 on the CPU backend (no device pool); on a GPU ("auto" picks
  // it) nothing the clients made is left on the device either.
  const double device_budget = ntktest::metric_value(metrics, "ntkserve_device_memory_budget_bytes");
  const double device_peak = ntktest::metric_value(metrics, "ntkserve_device_memory_peak_bytes");
  EXPECT_GE(device_budget, 0.0);
  EXPECT_GE(ntktest::metric_value(metrics, "ntkserve_device_reclaims_total"), 0.0);
  if (device_budget == 0.0) {
    EXPECT_EQ(device_peak, 0.0);
    EXPECT_EQ(ntktest::metric_value(metrics, "ntkserve_device_memory_in_use_bytes"), 0.0);
  } else {
    EXPECT_LE(device_peak, device_budget);
  }
}

TEST(Streaming, SigtermDrainsInFlightCallsThenStops) {
  ntktest::ServerProcess server(ntktest::temporary_directory("drain"));
  ntkclient::Client client(server.client_options());
  const auto x = random_inputs(1000, 20, 1);
  const auto job = fit_random_model(client, x, 3);
  const auto t = random_inputs(20000, 20, 3);
  std::int64_t rows = -1;
  std::thread long_call([&] {
    ntkclient::PredictOptions po;
    po.batch_rows = 500;
    rows = client.predict(job.model_id(), t.view(), po).logits.rows();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(server.stop(SIGTERM), 0);
  long_call.join();
  EXPECT_EQ(rows, 20000);  // the call in flight finished
}

}  // namespace
