// Every bad input gets its status code and a message naming it; auth and tenants; the memory budget.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "core/test_data.hpp"
#include "server/server_process.hpp"
#include "wire/convert.hpp"

namespace {

namespace pb = ::ntkserve::v1;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

struct RawUpload {
  pb::UploadHeader header;
  std::vector<std::string> chunks;
};

grpc::Status raw_upload(ntkclient::Client& client, const RawUpload& u) {
  auto stub = pb::DatasetService::NewStub(client.channel());
  auto ctx = client.context();
  pb::DatasetInfo info;
  auto writer = stub->UploadDataset(ctx.get(), &info);
  pb::UploadDatasetRequest m;
  *m.mutable_header() = u.header;
  writer->Write(m);
  for (const auto& c : u.chunks) {
    pb::UploadDatasetRequest chunk;
    chunk.set_chunk(c);
    if (!writer->Write(chunk)) break;
  }
  writer->WritesDone();
  return writer->Finish();
}

std::string doubles(std::vector<double> v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * 8};
}
std::string int64s(std::vector<std::int64_t> v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * 8};
}

pb::UploadHeader header(const std::string& name, std::int64_t rows, std::int64_t cols, bool labels = true) {
  pb::UploadHeader h;
  h.set_name(name);
  h.set_dtype(pb::FLOAT64);
  h.set_rows(rows);
  h.set_cols(cols);
  h.set_has_labels(labels);
  return h;
}

class Errors : public ::testing::Test {
 protected:
  Errors() : server_(ntktest::temporary_directory("errors")), client_(server_.client_options()) {}
  void expect(const grpc::Status& s, grpc::StatusCode code, const std::string& fragment) {
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(fragment), std::string::npos) << "message: " << s.error_message();
  }
  template <class F>
  void expect_rpc(F&& f, grpc::StatusCode code, const std::string& fragment) {
    try {
      f();
      ADD_FAILURE() << "expected " << fragment;
    } catch (const ntkclient::RpcError& e) {
      EXPECT_EQ(e.status_code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << "message: " << e.what();
    }
  }
  ntktest::ServerProcess server_;
  ntkclient::Client client_;
};

TEST_F(Errors, BadUploadsAreRejectedWithTheFieldNamedAndNothingStored) {
  using C = grpc::StatusCode;
  expect(raw_upload(client_, {header("../etc", 1, 1), {doubles({1}) + int64s({0})}}), C::INVALID_ARGUMENT,
         "dataset name");
  expect(raw_upload(client_, {header("", 1, 1), {}}), C::INVALID_ARGUMENT, "dataset name");
  auto h = header("a", 2, 2);
  h.set_dtype(pb::DTYPE_UNSPECIFIED);
  expect(raw_upload(client_, {h, {}}), C::INVALID_ARGUMENT, "dtype");
  expect(raw_upload(client_, {header("a", 0, 2), {}}), C::INVALID_ARGUMENT, "rows");
  expect(raw_upload(client_, {header("a", 2, 2), {doubles({1, 2, 3})}}), C::INVALID_ARGUMENT, "incomplete");
  expect(raw_upload(client_, {header("a", 1, 2), {doubles({1, 2}) + int64s({0}) + "x"}}), C::INVALID_ARGUMENT,
         "overruns");
  expect(raw_upload(client_, {header("a", 2, 1), {doubles({1, std::nan("")}) + int64s({0, 1})}}),
         C::INVALID_ARGUMENT, "non-finite value at row 1");
  expect(raw_upload(client_, {header("a", 2, 1), {doubles({1, 2}) + int64s({0, -3})}}), C::INVALID_ARGUMENT,
         "labels[1] = -3");
  auto hs = header("a", 1, 1);
  hs.set_sha256(std::string(64, '0'));
  expect(raw_upload(client_, {hs, {doubles({1}) + int64s({0})}}), C::INVALID_ARGUMENT, "checksum mismatch");
  expect(raw_upload(client_, {header("a", 200000, 1, false), {std::string((1 << 20) + 8, '\0')}}),
         C::INVALID_ARGUMENT, "1 MiB");
  auto ht = header("a", 2, 1, false);
  ht.set_has_targets(true);
  ht.set_num_classes(2);
  expect(raw_upload(client_, {ht, {doubles({1, 2}) + doubles({0.5, 0.5, 0.9, 0.3})}}), C::INVALID_ARGUMENT,
         "");
  auto huge = header("a", 1ll << 40, 1ll << 20);
  expect(raw_upload(client_, {huge, {}}), C::INVALID_ARGUMENT, "overflow");
  auto big = header("a", 1ll << 30, 64);
  expect(raw_upload(client_, {big, {}}), C::RESOURCE_EXHAUSTED, "bytes");
  EXPECT_TRUE(client_.list_datasets().empty());
  EXPECT_TRUE(std::filesystem::is_empty(server_.data_dir() + "/tenants") ||
              !std::filesystem::exists(server_.data_dir() + "/tenants/default/datasets") ||
              std::filesystem::is_empty(server_.data_dir() + "/tenants/default/datasets"));
}

TEST_F(Errors, NamesFitsAndPredictionsAreChecked) {
  using C = grpc::StatusCode;
  const auto x = random_inputs(30, 3, 1);
  const auto y = random_labels(30, 3, 2);
  client_.upload("d", x.view(), &y);
  expect_rpc([&] { client_.upload("d", x.view(), &y); }, C::ALREADY_EXISTS, "already exists");
  expect_rpc([&] { client_.get_dataset("missing"); }, C::NOT_FOUND, "missing");
  client_.upload("nolabels", x.view(), nullptr);
  pb::FitRequest f;
  f.set_dataset("d");
  f.mutable_spec()->set_depth(2);
  f.mutable_spec()->set_w_std(1);
  f.set_lambda(-1);
  expect_rpc([&] { client_.fit(f); }, C::INVALID_ARGUMENT, "lambda");
  f.set_lambda(0);
  expect_rpc([&] { client_.fit(f); }, C::FAILED_PRECONDITION, "label_smoothing");
  f.set_lambda(1e-2);
  f.mutable_spec()->mutable_activation()->set_name("swish");
  expect_rpc([&] { client_.fit(f); }, C::INVALID_ARGUMENT, "spec.activation.name");
  f.mutable_spec()->mutable_activation()->set_name("relu");
  f.mutable_spec()->set_depth(0);
  expect_rpc([&] { client_.fit(f); }, C::INVALID_ARGUMENT, "spec.depth");
  f.mutable_spec()->set_depth(2);
  f.set_label_smoothing(1.5);
  expect_rpc([&] { client_.fit(f); }, C::INVALID_ARGUMENT, "label_smoothing");
  f.set_label_smoothing(0);
  f.set_dataset("nolabels");
  expect_rpc([&] { client_.fit(f); }, C::FAILED_PRECONDITION, "neither labels nor targets");
  f.set_dataset("nope");
  expect_rpc([&] { client_.fit(f); }, C::NOT_FOUND, "nope");
  f.set_dataset("d");
  const auto job = client_.fit(f);
  ASSERT_EQ(client_.watch(job.job_id()).state(), pb::SUCCEEDED);
  const auto wrong = random_inputs(4, 5, 3);
  expect_rpc([&] { client_.predict(job.model_id(), wrong.view()); }, C::INVALID_ARGUMENT, "5 columns");
  ntkclient::PredictOptions po;
  po.uncertainty = pb::UNCERTAINTY_EXACT;
  expect_rpc([&] { client_.predict(job.model_id(), x.view(), po); }, C::FAILED_PRECONDITION, "EXACT");
  expect_rpc([&] { client_.predict("m-0000000000000000", x.view()); }, C::NOT_FOUND, "m-0000000000000000");
  expect_rpc([&] { client_.watch("m-0123456789abcdef"); }, C::NOT_FOUND, "not found");
  // A matrix whose bytes do not match its shape.
  auto stub = pb::PredictService::NewStub(client_.channel());
  pb::PredictRequest r;
  r.set_model_id(job.model_id());
  r.mutable_x()->set_rows(2);
  r.mutable_x()->set_cols(3);
  r.mutable_x()->set_dtype(pb::FLOAT64);
  r.mutable_x()->set_data(std::string(40, '\0'));
  auto ctx = client_.context();
  auto reader = stub->Predict(ctx.get(), r);
  pb::PredictResponse response;
  EXPECT_FALSE(reader->Read(&response));
  expect(reader->Finish(), C::INVALID_ARGUMENT, "x: 40 bytes");
  expect_rpc([&] { client_.import_model({1, 2, 3, 4}); }, C::INVALID_ARGUMENT, "imported model");
}

TEST(Queue, QueuedJobsBeyondTheLimitAreRefused) {
  ntktest::ServerProcess server(ntktest::temporary_directory("queue2"),
                                {"--workers", "1", "--max-queued-jobs", "1"});
  ntkclient::Client client(server.client_options());
  const auto x = random_inputs(1200, 10, 1);
  const auto y = random_labels(1200, 10, 2);
  client.upload("d", x.view(), &y);
  pb::FitRequest f;
  f.set_dataset("d");
  f.mutable_spec()->set_depth(2);
  f.mutable_spec()->set_w_std(1);
  f.set_lambda(1e-4);
  f.set_solver(pb::SOLVER_DIRECT);
  f.set_tolerance(1e-15);
  f.set_max_newton_steps(1000);
  const auto first = client.fit(f);
  // Wait until the worker runs the first job, so that exactly one more fits in the queue.
  std::string first_state;
  for (int i = 0; i < 100; ++i) {
    bool running = false;
    try {
      client.watch(first.job_id(), [&](const pb::FitProgress& p) {
        if (p.state() == pb::RUNNING) {
          running = true;
          throw std::runtime_error("running");
        }
      });
    } catch (const std::runtime_error&) {
    }
    if (running) break;
  }
  const auto second = client.fit(f);
  EXPECT_EQ(second.state(), pb::QUEUED);
  try {
    client.fit(f);
    ADD_FAILURE() << "expected RESOURCE_EXHAUSTED";
  } catch (const ntkclient::RpcError& e) {
    EXPECT_EQ(e.status_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(std::string(e.what()).find("queue is full"), std::string::npos) << e.what();
  }
  EXPECT_EQ(client.cancel(second.job_id()).state(), pb::CANCELLED);  // a queued job ends at once
  client.cancel(first.job_id());
  EXPECT_EQ(client.watch(first.job_id()).state(), pb::CANCELLED);
}

TEST(Auth, TokensMapToTenantsAndTenantsAreIsolated) {
  const std::string dir = ntktest::temporary_directory("auth");
  {
    std::ofstream tokens(dir + "/tokens");
    tokens << "# token tenant\nalice-secret-token-0001 alice\nbob-secret-token-000002 bob\n";
  }
  ntktest::ServerProcess server(dir + "/data", {"--token-file", dir + "/tokens"});
  auto options = server.client_options();
  options.retries = 0;
  const auto x = random_inputs(10, 2, 1);
  const auto y = random_labels(10, 2, 2);
  auto expect_code = [](auto&& f, grpc::StatusCode code) {
    try {
      f();
      ADD_FAILURE() << "expected status " << code;
    } catch (const ntkclient::RpcError& e) {
      EXPECT_EQ(e.status_code(), code) << e.what();
    }
  };
  ntkclient::Client anonymous(options);
  expect_code([&] { anonymous.list_datasets(); }, grpc::StatusCode::UNAUTHENTICATED);
  options.token = "not-a-known-token-at-all";
  ntkclient::Client wrong(options);
  expect_code([&] { wrong.upload("d", x.view(), &y); }, grpc::StatusCode::UNAUTHENTICATED);
  options.token = "alice-secret-token-0001";
  ntkclient::Client alice(options);
  options.token = "bob-secret-token-000002";
  ntkclient::Client bob(options);
  alice.upload("shared-name", x.view(), &y);
  bob.upload("shared-name", x.view(), nullptr);  // the same name in another tenant is another dataset
  EXPECT_TRUE(alice.get_dataset("shared-name").has_labels());
  EXPECT_FALSE(bob.get_dataset("shared-name").has_labels());
  alice.upload("alice-only", x.view(), &y);
  expect_code([&] { bob.get_dataset("alice-only"); }, grpc::StatusCode::NOT_FOUND);
  expect_code([&] { bob.delete_dataset("alice-only"); }, grpc::StatusCode::NOT_FOUND);
  pb::FitRequest f;
  f.set_dataset("alice-only");
  f.mutable_spec()->set_depth(1);
  f.mutable_spec()->set_w_std(1);
  f.set_lambda(0.1);
  const auto job = alice.fit(f);
  expect_code([&] { bob.watch(job.job_id()); }, grpc::StatusCode::NOT_FOUND);
  expect_code([&] { bob.cancel(job.job_id()); }, grpc::StatusCode::NOT_FOUND);
  ASSERT_EQ(alice.watch(job.job_id()).state(), pb::SUCCEEDED);
  expect_code([&] { bob.predict(job.model_id(), x.view()); }, grpc::StatusCode::NOT_FOUND);
  expect_code([&] { bob.export_model(job.model_id()); }, grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(bob.list_models().size(), 0u);
  EXPECT_EQ(alice.list_models().size(), 1u);
  // Health needs no token (load balancers and Kubernetes probes have none).
  EXPECT_EQ(anonymous.health(), "SERVING");
}

TEST(Budget, WorkThatDoesNotFitIsRefusedWithBytesNeededAndAvailable) {
  ntktest::ServerProcess server(ntktest::temporary_directory("budget"),
                                {"--memory-budget", "3500K", "--no-evict"});
  ntkclient::Client client(server.client_options());
  const auto small = random_inputs(1000, 100, 1);  // 0.8 MB decoded + 0.8 MB staging
  client.upload("small", small.view(), nullptr);
  const auto big = random_inputs(2000, 100, 2);  // 1.6 MB + 1.6 MB > what is left
  try {
    client.upload("big", big.view(), nullptr);
    ADD_FAILURE() << "expected RESOURCE_EXHAUSTED";
  } catch (const ntkclient::RpcError& e) {
    EXPECT_EQ(e.status_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(std::string(e.what()).find("needs 1600000 bytes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("available"), std::string::npos) << e.what();
  }
  client.delete_dataset("small");
  client.upload("big", big.view(), nullptr);  // fits once the first is gone
}

std::vector<double> remote_diagonal(ntkclient::Client& client, const pb::KernelInput& input) {
  auto stub = pb::KernelService::NewStub(client.channel());
  pb::ComputeKernelRequest r;
  r.mutable_spec()->set_depth(2);
  r.mutable_spec()->set_w_std(1.2);
  r.set_kind(pb::NTK);
  r.set_diagonal_only(true);
  *r.mutable_x1() = input;
  auto ctx = client.context();
  auto reader = stub->ComputeKernel(ctx.get(), r);
  std::vector<double> diag;
  pb::KernelTile tile;
  while (reader->Read(&tile)) {
    const auto part = ntkwire::decode_matrix(tile.values(), "tile");
    diag.insert(diag.end(), part.data(), part.data() + part.size());
  }
  const auto status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return diag;
}

TEST(Budget, IdleDatasetsAreEvictedToDiskAndReloadedOnUse) {
  ntktest::ServerProcess server(ntktest::temporary_directory("evict"), {"--memory-budget", "4M"});
  ntkclient::Client client(server.client_options());
  const auto a = random_inputs(1500, 100, 1);  // 1.2 MB
  const auto y = random_labels(1500, 2, 1);
  client.upload("a", a.view(), &y);
  const auto b = random_inputs(2000, 100, 2);  // 1.6 MB plus 1.6 MB of staging: 'a' must make room
  client.upload("b", b.view(), nullptr);
  EXPECT_FALSE(client.get_dataset("a").resident());
  EXPECT_TRUE(client.get_dataset("b").resident());
  // Using 'a' reloads it from disk: the same rows come back (the kernel diagonal of the stored rows
  // equals that of the rows sent inline).
  pb::KernelInput by_name;
  by_name.set_dataset("a");
  const auto stored = remote_diagonal(client, by_name);
  pb::KernelInput inline_rows;
  ntkwire::encode_matrix(a.view(), false, inline_rows.mutable_x());
  EXPECT_EQ(stored, remote_diagonal(client, inline_rows));
  EXPECT_EQ(stored.size(), 1500u);
  EXPECT_TRUE(client.get_dataset("a").resident());
}

}  // namespace
