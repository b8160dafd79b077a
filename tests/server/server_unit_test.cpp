// Unit tests of the server's pieces that need no running server: settings, the status mapping, the
// memory budget, tokens and names, the dataset codec and the framed files.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "auth.hpp"
#include "dataset_codec.hpp"
#include "files.hpp"
#include "memory_budget.hpp"
#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/errors.hpp"
#include "ntk/targets.hpp"
#include "ntk/uncertainty.hpp"
#include "options.hpp"
#include "product_cache.hpp"
#include "runtime.hpp"
#include "server/server_process.hpp"
#include "status.hpp"
#include "uncertainty_cache.hpp"

namespace {

using namespace ntkserver;

TEST(Options, DefaultsWorkOnALaptop) {
  const ServerOptions o = load_options({});
  EXPECT_EQ(o.listen, "127.0.0.1:50051");
  EXPECT_EQ(o.backend, "auto");
  EXPECT_EQ(o.metrics, "127.0.0.1:9464");
  EXPECT_TRUE(o.token_file.empty());
}

TEST(Options, FlagsOverrideEnvironmentOverrideTheConfigFile) {
  const std::string dir = ntktest::temporary_directory("options");
  {
    std::ofstream yaml(dir + "/server.yaml");
    yaml << "listen: 0.0.0.0:7000\nworkers: 3\nmemory_budget_bytes: 2G\nbackend: cpu\n"
            "tls:\n  cert: /c.pem\n  key: /k.pem\n";
  }
  setenv("NTK_SERVER_WORKERS", "5", 1);
  const ServerOptions o = load_options({"--config", dir + "/server.yaml", "--listen", "127.0.0.1:7001"});
  unsetenv("NTK_SERVER_WORKERS");
  EXPECT_EQ(o.listen, "127.0.0.1:7001");         // flag
  EXPECT_EQ(o.workers, 5);                       // environment over the file
  EXPECT_EQ(o.memory_budget_bytes, 2ull << 30);  // file
  EXPECT_EQ(o.backend, "cpu");
  EXPECT_EQ(o.tls.cert_file, "/c.pem");
}

TEST(Options, BadSettingsNameTheSettingAndWhereItCameFrom) {
  auto message = [](const std::vector<std::string>& args) {
    try {
      load_options(args);
    } catch (const ntk::InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({"--workers", "0"}).find("--workers"), std::string::npos);
  EXPECT_NE(message({"--memory-budget", "12Q"}).find("--memory-budget"), std::string::npos);
  EXPECT_NE(message({"--bogus", "1"}).find("unknown option --bogus"), std::string::npos);
  EXPECT_NE(message({"--listen", "nocolon"}).find("HOST:PORT"), std::string::npos);
  EXPECT_NE(message({"--tls-cert", "a.pem"}).find("both"), std::string::npos);
  const std::string dir = ntktest::temporary_directory("options-bad");
  {
    std::ofstream yaml(dir + "/bad.yaml");
    yaml << "workers: many\n";
  }
  const std::string m = message({"--config", dir + "/bad.yaml"});
  EXPECT_NE(m.find("bad.yaml: workers"), std::string::npos) << m;
  setenv("NTK_SERVER_THREADS", "-4", 1);
  EXPECT_NE(message({}).find("environment NTK_SERVER_THREADS"), std::string::npos);
  unsetenv("NTK_SERVER_THREADS");
  EXPECT_EQ(parse_byte_size("512M", "x"), 512ull << 20);
  EXPECT_EQ(parse_byte_size("1KiB", "x"), 1024u);
}

TEST(StatusMapping, EveryCoreErrorHasOneCode) {
  using grpc::StatusCode;
  auto code = [](auto e) { return to_status(std::make_exception_ptr(e)).error_code(); };
  EXPECT_EQ(code(ntk::InvalidArgument("x")), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(code(ntk::NotFound("x")), StatusCode::NOT_FOUND);
  EXPECT_EQ(code(ntk::AlreadyExists("x")), StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(code(ntk::FailedPrecondition("x")), StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(code(ntk::ResourceExhausted("x")), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(ntk::NumericalError("x")), StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(code(ntk::Unavailable("x")), StatusCode::UNAVAILABLE);
  EXPECT_EQ(code(ntk::Cancelled("x")), StatusCode::CANCELLED);
  EXPECT_EQ(code(ntk::DeadlineExceeded("x")), StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(code(ntk::InternalError("x")), StatusCode::INTERNAL);
  EXPECT_EQ(code(std::bad_alloc()), StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(std::logic_error("bug")), StatusCode::INTERNAL);
  EXPECT_EQ(to_status(std::make_exception_ptr(ntk::NotFound("dataset 'a' not found"))).error_message(),
            "dataset 'a' not found");
}

TEST(MemoryBudget, ReservationsAreExactAndReleaseOnDestruction) {
  MemoryBudget budget(1000);
  {
    Reservation a = budget.reserve(600, "a");
    EXPECT_EQ(budget.in_use(), 600u);
    try {
      budget.reserve(500, "work b");
      ADD_FAILURE();
    } catch (const ntk::ResourceExhausted& e) {
      EXPECT_NE(std::string(e.what()).find("work b needs 500 bytes of memory, 400 of the budget's 1000"),
                std::string::npos)
          << e.what();
    }
    Reservation moved = std::move(a);
    EXPECT_EQ(budget.in_use(), 600u);
  }
  EXPECT_EQ(budget.in_use(), 0u);
  EXPECT_EQ(budget.peak(), 600u);
  // A reclaimer that frees memory lets the reservation succeed.
  auto held = std::make_unique<Reservation>(budget.reserve(900, "held"));
  budget.set_reclaimer([&](std::uint64_t) {
    held.reset();
    return 900;
  });
  Reservation c = budget.reserve(500, "c");
  EXPECT_EQ(budget.in_use(), 500u);
}

TEST(Names, PathsNeverComeFromRequestsUnchecked) {
  for (const char* bad : {"", "../x", "a/b", ".hidden", "a b", "ä", "-x"})
    EXPECT_FALSE(valid_dataset_name(bad)) << bad;
  for (const char* good : {"digits", "a.b-c_d", "X9"}) EXPECT_TRUE(valid_dataset_name(good)) << good;
  EXPECT_FALSE(valid_dataset_name(std::string(129, 'a')));
  EXPECT_TRUE(valid_model_id("m-0123456789abcdef"));
  EXPECT_FALSE(valid_model_id("m-0123456789ABCDEF"));
  EXPECT_FALSE(valid_model_id("m-../../etc/passwd"));
  EXPECT_FALSE(valid_tenant_name("a/b"));
}

TEST(Tokens, FileFormatAndLookups) {
  const std::string dir = ntktest::temporary_directory("tokens");
  {
    std::ofstream f(dir + "/t");
    f << "# comment\n\n0123456789abcdef0 team-a  # trailing comment\n";
  }
  const TokenStore store = TokenStore::from_file(dir + "/t");
  EXPECT_EQ(store.tenant_for("Bearer 0123456789abcdef0"), "team-a");
  EXPECT_FALSE(store.tenant_for("Bearer 0123456789abcdef1"));
  EXPECT_FALSE(store.tenant_for("0123456789abcdef0"));
  EXPECT_FALSE(store.tenant_for(std::nullopt));
  {
    std::ofstream f(dir + "/short");
    f << "abc team\n";
  }
  EXPECT_THROW(TokenStore::from_file(dir + "/short"), ntk::InvalidArgument);
  EXPECT_EQ(TokenStore().tenant_for(std::nullopt), "default");
}

TEST(DatasetCodec, FilesRoundTripAndCorruptionIsDetected) {
  pb::UploadHeader h;
  h.set_name("d");
  h.set_dtype(pb::FLOAT32);
  h.set_rows(2);
  h.set_cols(3);
  h.set_has_labels(true);
  UploadAssembler u(h, 1 << 20);
  const float x[6] = {1, 2, 3, 4, 5, 6};
  const std::int64_t y[2] = {1, 0};
  u.append({reinterpret_cast<const char*>(x), 10});
  u.append({reinterpret_cast<const char*>(x) + 10, 14});
  u.append({reinterpret_cast<const char*>(y), 16});
  pb::DatasetInfo info;
  const DatasetData data = u.finish(info);
  EXPECT_EQ(info.num_classes(), 2);  // inferred
  EXPECT_EQ(data.x(1, 2), 6.0);
  EXPECT_EQ(data.labels[0], 1);
  const auto file = encode_dataset_file(info, u.payload());
  pb::DatasetInfo back;
  std::vector<std::uint8_t> payload;
  decode_dataset_file(file, "f", back, payload);
  EXPECT_EQ(back.sha256(), info.sha256());
  EXPECT_EQ(payload, u.payload());
  for (std::size_t i = 0; i < file.size(); i += 7) {
    auto broken = file;
    broken[i] ^= 0x40;
    EXPECT_THROW(decode_dataset_file(broken, "f", back, payload), ntk::IoError) << i;
  }
  auto truncated = file;
  truncated.resize(file.size() - 5);
  EXPECT_THROW(decode_dataset_file(truncated, "f", back, payload), ntk::IoError);
}

TEST(DurableFiles, WritesAreAtomicAndLeftoversAreSwept) {
  const std::string dir = ntktest::temporary_directory("files");
  write_file_durably(dir + "/a", std::string("hello"));
  write_file_durably(dir + "/a", std::string("world"));  // replaces, never appends
  const auto bytes = read_whole_file(dir + "/a");
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "world");
  { std::ofstream(dir + "/.tmp-a-1-2-3") << "partial"; }
  EXPECT_EQ(list_files(dir, ""), std::vector<std::string>{"a"});  // temporary files are never listed
  EXPECT_EQ(sweep_temporary_files(dir), 1);
  EXPECT_FALSE(std::filesystem::exists(dir + "/.tmp-a-1-2-3"));
  EXPECT_THROW(read_whole_file(dir + "/missing"), ntk::NotFound);
}

}  // namespace

namespace {

std::shared_ptr<const ntk::Model> tiny_model(ntk::Backend& be, std::uint64_t seed) {
  ntk::Matrix<double> x(30, 4);
  std::uint64_t state = seed;
  for (auto& v : x.storage())
    v = double((state = state * 6364136223846793005ULL + 1) >> 40) / double(1 << 24);
  std::vector<std::int64_t> labels(30);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = std::int64_t(i % 3);
  ntk::FitSettings s;
  s.lambda = 1e-2;
  ntk::KernelSpec spec;
  spec.depth = 2;
  return std::make_shared<const ntk::Model>(
      ntk::fit_classifier(be, spec, x.view(), ntk::targets_from_labels(labels, 3, 0.0), s));
}

}  // namespace

TEST(ProductCache, ReusedPerBackendAndModelDroppedWithTheModelAndBounded) {
  ntk::CpuBackend a, b;
  ntkserver::ProductCache cache(2);
  auto m1 = tiny_model(a, 1), m2 = tiny_model(a, 2), m3 = tiny_model(a, 3);
  const auto p1 = cache.get(a, m1);
  EXPECT_EQ(cache.get(a, m1), p1);  // reused across calls
  EXPECT_NE(cache.get(b, m1), p1);  // another backend instance has its own
  EXPECT_EQ(cache.size(), 2u);
  // Its predictions are the model's.
  ntk::Matrix<double> xt(3, 4, 0.25);
  const auto direct = ntk::predict(a, *m1, xt.view());
  const auto cached = ntk::predict_with(*p1, *m1, xt.view());
  for (std::size_t i = 0; i < direct.logits.size(); ++i)
    EXPECT_EQ(direct.logits.data()[i], cached.logits.data()[i]);
  // At most two per backend: the least recently used goes.
  (void)cache.get(a, m2);
  (void)cache.get(a, m1);
  (void)cache.get(a, m3);       // evicts m2's
  EXPECT_EQ(cache.size(), 3u);  // a: m1, m3; b: m1
  EXPECT_EQ(cache.get(a, m1), p1);
  // A model that is gone takes its entries with it at the next lookup.
  m1.reset();
  (void)cache.get(a, m3);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(UncertaintyCache, SharedAcrossCallsReservedAndGivenBackWhenIdle) {
  ntk::CpuBackend cpu;
  ntkserver::MemoryBudget budget(std::uint64_t(1) << 30);
  ntkserver::UncertaintyCache cache(budget, 3);
  auto model = tiny_model(cpu, 4);
  ntk::UncertaintyOptions lin;
  lin.mode = ntk::UncertaintyMode::linearized;
  const std::uint64_t lin_bytes = ntkserver::uncertainty_context_bytes(30, 3, lin);
  auto first = cache.get(cpu, model, lin);
  EXPECT_EQ(budget.in_use(), lin_bytes);  // the context's size; its preparation reserved the peak
  EXPECT_EQ(budget.peak(), ntkserver::uncertainty_preparation_bytes(30, 3, lin));
  EXPECT_GT(ntkserver::uncertainty_preparation_bytes(30, 3, lin), lin_bytes);
  EXPECT_EQ(cache.get(cpu, model, lin), first);  // a later call reuses it
  ntk::UncertaintyOptions mc;
  mc.mode = ntk::UncertaintyMode::monte_carlo;
  mc.samples = 5;
  mc.seed = 1;
  const ntk::UncertaintyContext* mc1 = cache.get(cpu, model, mc).get();  // not held after the "call"
  mc.seed = 2;
  const ntk::UncertaintyContext* mc2 = cache.get(cpu, model, mc).get();
  EXPECT_NE(mc1, mc2);          // Monte Carlo contexts are per seed
  EXPECT_NE(mc1, first.get());  // and per mode: a call that changes modes never refills another's
  EXPECT_EQ(cache.size(), 3u);
  // The cached context gives the uncached result.
  ntk::Matrix<double> xt(4, 4, 0.5);
  const auto plain = ntk::predict_uncertainty(cpu, *model, xt.view(), lin);
  const auto cached = ntk::predict_uncertainty(cpu, *model, xt.view(), lin, first.get());
  for (std::size_t i = 0; i < plain.logit_var.size(); ++i)
    EXPECT_EQ(plain.logit_var.data()[i], cached.logit_var.data()[i]);
  // The budget reclaims idle contexts only: `first` is still held by a "call".
  const std::uint64_t before = budget.in_use();
  EXPECT_EQ(cache.reclaim(before), before - lin_bytes);
  EXPECT_EQ(budget.in_use(), lin_bytes);
  EXPECT_EQ(cache.size(), 1u);
  // A model that is gone takes its contexts with it.
  first.reset();
  model.reset();
  auto other = tiny_model(cpu, 5);
  (void)cache.get(cpu, other, lin);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(budget.in_use(), lin_bytes);
  // A mode that does not fit the model is an error, and nothing stays reserved.
  ntk::UncertaintyOptions exact;
  exact.mode = ntk::UncertaintyMode::exact;
  EXPECT_THROW(cache.get(cpu, other, exact), ntk::InvalidArgument);
  EXPECT_EQ(budget.in_use(), lin_bytes);
}

TEST(DeviceReclaim, IdleProductsThenIdleContextsGiveBackTheirMemoryHeldOnesStay) {
  // What a CUDA backend's pool calls when an allocation does not fit (the CPU backend never does; the
  // pool's side is core's CachingPool tests).
  ServerOptions o;
  o.backend = "cpu";
  o.metrics = "";  // no endpoint
  o.data_dir = ::testing::TempDir() + "reclaim-" + std::to_string(::getpid());
  ntkserver::Runtime rt(o);
  ntk::CpuBackend cpu;
  auto m1 = tiny_model(cpu, 6), m2 = tiny_model(cpu, 7);
  const auto held_product = rt.products.get(cpu, m1);
  (void)rt.products.get(cpu, m2);  // idle
  ntk::UncertaintyOptions lin;
  lin.mode = ntk::UncertaintyMode::linearized;
  const auto held_context = rt.uncertainty_contexts.get(cpu, m1, lin);
  (void)rt.uncertainty_contexts.get(cpu, m2, lin);  // idle
  const std::uint64_t context_bytes = ntkserver::uncertainty_context_bytes(30, 3, lin);
  ASSERT_EQ(rt.budget.in_use(), 2 * context_bytes);

  // A little: the idle product is enough (cheaper to remake than a context).
  const std::uint64_t product_bytes = 30 * (4 + 3) * sizeof(double);
  EXPECT_EQ(rt.reclaim_device_memory(1), product_bytes);
  EXPECT_EQ(rt.products.size(), 1u);
  EXPECT_EQ(rt.uncertainty_contexts.size(), 2u);
  // More: the idle context goes too, and its reservation with it; what calls hold stays.
  EXPECT_EQ(rt.reclaim_device_memory(std::uint64_t(1) << 40), context_bytes);
  EXPECT_EQ(rt.uncertainty_contexts.size(), 1u);
  EXPECT_EQ(rt.budget.in_use(), context_bytes);
  EXPECT_EQ(rt.reclaim_device_memory(std::uint64_t(1) << 40), 0u);  // nothing idle: the pool refuses
  EXPECT_EQ(rt.products.get(cpu, m1), held_product);
  EXPECT_EQ(rt.uncertainty_contexts.get(cpu, m1, lin), held_context);
  std::filesystem::remove_all(o.data_dir);
}

TEST(DeviceReclaim, TheReclaimerReachesTheRuntimeOnlyWhileItLives) {
  // The device pool is shared per card and outlives a Runtime: its reclaimer must not reach a runtime
  // being built or gone.
  ntk::CpuBackend cpu;
  auto model = tiny_model(cpu, 8);
  ntk::MemoryReclaimer reclaimer;
  {
    ServerOptions o;
    o.backend = "cpu";
    o.metrics = "";
    o.data_dir = ::testing::TempDir() + "reclaim-gate-" + std::to_string(::getpid());
    ntkserver::Runtime rt(o);
    reclaimer = ntkserver::gated_device_reclaimer(rt.reclaim_gate);
    (void)rt.products.get(cpu, model);  // idle
    EXPECT_EQ(reclaimer(1), 30u * (4 + 3) * sizeof(double));
    EXPECT_EQ(rt.products.size(), 0u);
    std::filesystem::remove_all(o.data_dir);
  }
  EXPECT_EQ(reclaimer(1), 0u);  // the runtime is gone: nothing to give, nothing touched
}
