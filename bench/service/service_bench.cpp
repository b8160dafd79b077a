// Service overhead of ntk-server on loopback (issue 5): Predict throughput and p50/p99 latency for
// batches of 1, 64 and 4096 rows against the in-process ntk::predict of the same model on the same
// backend settings, and upload MB/s of a 256 MiB float64 dataset.
//
//   build/bin/service_bench [--server PATH] [--threads T] [--json FILE] [--seconds S] [--batches 1,64,4096]
//                           [--upload-rows R] [--upload-cols C] [--no-upload] [--no-breakdown]
//                           [--no-concurrent]
//
// A real ntk-server child process is started (--listen 127.0.0.1:0, a fresh --data-dir, --metrics off,
// --threads T) and stopped with SIGTERM at the end. The model: N = 2000 training rows of a 10-class
// Gaussian mixture in d = 784 (seeded, as fit_bench), depth-3 ReLU (W_std 1.5, b_std 0.1), lambda 1e-3,
// fitted once by the server (Upload, Fit, WatchFit) and once in this process with the same data and
// settings; the server's predictions must equal the in-process ones bit for bit.
//
// Everything shares the machine's cores: the server's compute threads, its gRPC threads and this
// client. With 2 vCPUs the "service" numbers therefore include the client's own encoding and decoding
// competing with the server for the same cores, as a co-located client would.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dataset_codec.hpp"
#include "files.hpp"
#include "grpc/health/v1/health.grpc.pb.h"
#include "ntk/backend.hpp"
#include "ntk/blas.hpp"
#include "ntk/classifier.hpp"
#include "ntk/cpu_features.hpp"
#include "ntk/logging.hpp"
#include "ntk/model_file.hpp"
#include "ntk/targets.hpp"
#include "ntkclient/client.hpp"
#include "wire/convert.hpp"

#ifndef NTK_SERVER_PATH
#define NTK_SERVER_PATH "ntk-server"
#endif

namespace {

namespace pb = ::ntkserve::v1;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kTrain = 2000, kDim = 784, kClasses = 10, kTestRows = 4096;
constexpr double kLambda = 1e-3;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------------
// Data: the Gaussian mixture of fit_bench, so this model is the one whose fit time docs/benchmarks.md
// already reports.

struct Data {
  ntk::Matrix<double> x;
  std::vector<std::int64_t> y;
};

Data mixture(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  ntk::Matrix<double> means(kClasses, kDim);
  for (auto& v : means.storage()) v = 0.5 * normal(rng);
  Data d{ntk::Matrix<double>(n, kDim), std::vector<std::int64_t>(static_cast<std::size_t>(n))};
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t c = static_cast<std::int64_t>(rng() % kClasses);
    d.y[static_cast<std::size_t>(i)] = c;
    for (std::int64_t k = 0; k < kDim; ++k) d.x(i, k) = means(c, k) + normal(rng);
  }
  return d;
}

ntk::KernelSpec bench_spec() {
  ntk::KernelSpec spec;
  spec.depth = 3;
  spec.w_std = 1.5;
  spec.b_std = 0.1;
  return spec;
}

// ---------------------------------------------------------------------------------------------------
// The server as a child process.

class ServerProcess {
 public:
  ServerProcess(const std::string& binary, const std::vector<std::string>& flags,
                const std::string& stderr_path) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      if (!stderr_path.empty()) {
        const int fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, STDERR_FILENO);
      }
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(binary.c_str()));
      for (const auto& f : flags) argv.push_back(const_cast<char*>(f.c_str()));
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      std::fprintf(stderr, "service_bench: cannot run %s: %s\n", binary.c_str(), std::strerror(errno));
      _exit(127);
    }
    close(out[1]);
    // The port is only known from the server's own line on stdout (it listens on port 0).
    std::string line;
    char c;
    while (read(out[0], &c, 1) == 1) {
      if (c != '\n') {
        line += c;
        continue;
      }
      const std::string prefix = "ntk-server: listening on port ";
      if (line.rfind(prefix, 0) == 0) {
        port_ = std::atoi(line.c_str() + prefix.size());
        break;
      }
      line.clear();
    }
    stdout_fd_ = out[0];
    if (port_ <= 0) {
      stop();
      throw std::runtime_error("ntk-server did not report its port (see its stderr)");
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (stdout_fd_ >= 0) close(stdout_fd_);
    stdout_fd_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int stdout_fd_ = -1;
};

// ---------------------------------------------------------------------------------------------------
// Latency statistics.

struct Stats {
  std::int64_t batch = 0;
  std::int64_t requests = 0;
  double wall_s = 0;  // from the first request's start to the last one's end
  double rows_per_s = 0, p50_ms = 0, p99_ms = 0, mean_ms = 0, min_ms = 0;
};

double percentile(std::vector<double> v, double p) {
  // Nearest rank: with 50 samples p99 is the largest, which is what 50 samples can say.
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

Stats summarize(std::int64_t batch, const std::vector<double>& latencies_s, double wall_s) {
  Stats s;
  s.batch = batch;
  s.requests = static_cast<std::int64_t>(latencies_s.size());
  s.wall_s = wall_s;
  s.rows_per_s = static_cast<double>(batch) * static_cast<double>(s.requests) / wall_s;
  s.p50_ms = 1e3 * percentile(latencies_s, 0.50);
  s.p99_ms = 1e3 * percentile(latencies_s, 0.99);
  double sum = 0;
  for (double x : latencies_s) sum += x;
  s.mean_ms = 1e3 * sum / static_cast<double>(latencies_s.size());
  s.min_ms = 1e3 * *std::min_element(latencies_s.begin(), latencies_s.end());
  return s;
}

// Warm-up requests, then timed ones: at least min_count, more while the time budget lasts, at most
// max_count. The count is fixed from the warm-up's speed so that every mode of one batch size gets a
// comparable sample.
struct Plan {
  int warmup = 3, min_count = 50, max_count = 2000;
};

Plan plan_for(std::int64_t batch) {
  if (batch >= 1024) return {2, 10, 40};
  if (batch >= 64) return {5, 50, 1000};
  return {20, 50, 3000};
}

std::vector<double> run_timed(const Plan& plan, double budget_s, const std::function<void()>& once,
                              double* wall_s) {
  double warm = 0;
  for (int i = 0; i < plan.warmup; ++i) {
    const auto t0 = Clock::now();
    once();
    warm = seconds_since(t0);  // the last warm-up request is the estimate
  }
  const int count =
      std::clamp(static_cast<int>(budget_s / std::max(warm, 1e-6)), plan.min_count, plan.max_count);
  std::vector<double> lat;
  lat.reserve(static_cast<std::size_t>(count));
  const auto start = Clock::now();
  for (int i = 0; i < count; ++i) {
    const auto t0 = Clock::now();
    once();
    lat.push_back(seconds_since(t0));
  }
  *wall_s = seconds_since(start);
  return lat;
}

// After a multi-threaded GEMM, OpenBLAS's worker threads spin for some 30-40 ms before they sleep
// (measured here: a 64-row prediction with 2 threads leaves ~30 ms of CPU burnt while idle). On 2
// vCPUs that steals a core from whichever process runs next, so modes that alternate request by
// request slow each other down. The modes of one batch size therefore take turns in blocks of about
// block_s, with a pause longer than the spin between blocks: each block starts on a quiet machine,
// and within a block a process's own spinning workers are reused, as in steady service. Turns still
// alternate (in process, Predict, PredictStream, in process, ...) so that a change in the machine's
// background load (it is shared) hits every mode alike. Each mode gets the same request count:
// budget_s per mode, fixed from the warm-up.
constexpr double kBlockSeconds = 0.5, kPauseSeconds = 0.15;

std::vector<std::vector<double>> run_interleaved(const Plan& plan, double budget_s,
                                                 const std::vector<std::function<void()>>& modes) {
  std::vector<double> warm(modes.size(), 0);
  for (std::size_t m = 0; m < modes.size(); ++m) {
    for (int i = 0; i < plan.warmup; ++i) {
      const auto t0 = Clock::now();
      modes[m]();
      warm[m] = seconds_since(t0);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(kPauseSeconds));
  }
  double round = 0;
  for (double w : warm) round += w;
  const int count =
      std::clamp(static_cast<int>(budget_s * static_cast<double>(modes.size()) / std::max(round, 1e-6)),
                 plan.min_count, plan.max_count);
  std::vector<int> block(modes.size());
  for (std::size_t m = 0; m < modes.size(); ++m)
    block[m] = std::clamp(static_cast<int>(kBlockSeconds / std::max(warm[m], 1e-6)), 1, count);
  std::vector<std::vector<double>> lat(modes.size());
  for (auto& l : lat) l.reserve(static_cast<std::size_t>(count));
  for (bool more = true; more;) {
    more = false;
    for (std::size_t m = 0; m < modes.size(); ++m) {
      const int todo = std::min<int>(block[m], count - static_cast<int>(lat[m].size()));
      for (int i = 0; i < todo; ++i) {
        const auto t0 = Clock::now();
        modes[m]();
        lat[m].push_back(seconds_since(t0));
      }
      if (todo > 0) std::this_thread::sleep_for(std::chrono::duration<double>(kPauseSeconds));
      more = more || static_cast<int>(lat[m].size()) < count;
    }
  }
  return lat;
}

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

// ---------------------------------------------------------------------------------------------------
// PredictStream through the generated stub: one stream, one request per batch, each answered before the
// next is sent (the sequential latency, like the unary-style Predict calls).

class StreamSession {
 public:
  StreamSession(ntkclient::Client& client, std::string model_id)
      : stub_(pb::PredictService::NewStub(client.channel())),
        ctx_(client.context()),
        model_id_(std::move(model_id)) {
    stream_ = stub_->PredictStream(ctx_.get());
  }
  ~StreamSession() {
    stream_->WritesDone();
    const grpc::Status s = stream_->Finish();
    if (!s.ok())
      std::fprintf(stderr, "service_bench: PredictStream ended with %s\n", s.error_message().c_str());
  }
  ntk::Matrix<double> predict(ntk::ConstMatrixView<double> x) {
    pb::PredictRequest request;
    request.set_model_id(model_id_);
    ntkwire::encode_matrix(x, false, request.mutable_x());
    if (!stream_->Write(request)) throw std::runtime_error("PredictStream: write failed");
    pb::PredictResponse response;
    if (!stream_->Read(&response)) throw std::runtime_error("PredictStream: the stream ended early");
    // Decoded as Client::predict decodes, so both modes pay the same client-side cost.
    ntk::Matrix<double> logits = ntkwire::decode_matrix(response.logits(), "logits");
    (void)ntkwire::decode_matrix(response.probs(), "probs");
    return logits;
  }

 private:
  std::unique_ptr<pb::PredictService::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::PredictRequest, pb::PredictResponse>> stream_;
  std::string model_id_;
};

// ---------------------------------------------------------------------------------------------------

struct Options {
  std::string server = NTK_SERVER_PATH;
  int threads = 0;
  std::string json;
  double seconds = 4;  // time budget per (batch size, mode)
  std::int64_t upload_rows = 32768, upload_cols = 1024;
  bool upload = true, breakdown = true, concurrent = true;
  std::vector<std::int64_t> batches = {1, 64, 4096};
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + ": missing value");
      return argv[++i];
    };
    if (a == "--server")
      o.server = value();
    else if (a == "--threads")
      o.threads = std::atoi(value().c_str());
    else if (a == "--json")
      o.json = value();
    else if (a == "--seconds")
      o.seconds = std::atof(value().c_str());
    else if (a == "--upload-rows")
      o.upload_rows = std::atoll(value().c_str());
    else if (a == "--upload-cols")
      o.upload_cols = std::atoll(value().c_str());
    else if (a == "--no-upload")
      o.upload = false;
    else if (a == "--no-breakdown")
      o.breakdown = false;
    else if (a == "--no-concurrent")
      o.concurrent = false;
    else if (a == "--batches") {
      o.batches.clear();
      std::stringstream list(value());
      for (std::string item; std::getline(list, item, ',');) {
        const long long rows = std::atoll(item.c_str());
        if (rows < 1 || rows > kTestRows) throw std::runtime_error("--batches: rows in [1, 4096]");
        o.batches.push_back(rows);
      }
      if (o.batches.empty()) throw std::runtime_error("--batches: give at least one size");
    } else
      throw std::runtime_error("unknown option " + a);
  }
  return o;
}

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/ntk-service-bench-XXXXXX";
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

std::vector<std::string> server_flags(const std::string& data_dir, int threads,
                                      const std::string& log_level) {
  std::vector<std::string> f = {"--listen", "127.0.0.1:0", "--data-dir", data_dir,    "--metrics",
                                "off",      "--log-level", log_level,    "--backend", "cpu"};
  if (threads > 0) f.insert(f.end(), {"--threads", std::to_string(threads)});
  return f;
}

void wait_serving(ntkclient::Client& client) {
  for (int i = 0; i < 100; ++i) {
    try {
      if (client.health() == "SERVING") return;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("ntk-server is not SERVING");
}

bool bit_equal(const ntk::Matrix<double>& a, const ntk::Matrix<double>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

double max_abs_diff(const ntk::Matrix<double>& a, const ntk::Matrix<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.data()[i] - b.data()[i]));
  return m;
}

// Durable write of `bytes` to dir (write + fsync + close + unlink): what the server's store has to
// pay for an upload at the least, measured here on the same file system.
double local_durable_write_s(const std::string& dir, const std::string& bytes) {
  const std::string path = dir + "/fsync-probe.bin";
  const auto t0 = Clock::now();
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + path);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = write(fd, bytes.data() + done, std::min<std::size_t>(bytes.size() - done, 8 << 20));
    if (w <= 0) throw std::runtime_error("write failed on " + path);
    done += static_cast<std::size_t>(w);
  }
  fsync(fd);
  close(fd);
  const double s = seconds_since(t0);
  unlink(path.c_str());
  return s;
}

std::string json_stats(const Stats& s) {
  char buf[256];
  std::snprintf(
      buf, sizeof buf,
      "{\"batch\": %lld, \"requests\": %lld, \"rows_per_s\": %.6g, \"p50_ms\": %.6g, \"p99_ms\": %.6g, "
      "\"mean_ms\": %.6g, \"min_ms\": %.6g}",
      static_cast<long long>(s.batch), static_cast<long long>(s.requests), s.rows_per_s, s.p50_ms, s.p99_ms,
      s.mean_ms, s.min_ms);
  return buf;
}

double load_average_1min() {
  std::ifstream in("/proc/loadavg");
  double l = -1;
  in >> l;
  return l;
}

}  // namespace

int main(int argc, char** argv) try {
  const Options opt = parse(argc, argv);
  ntk::BackendOptions bo;
  bo.threads = opt.threads;
  auto backend = ntk::make_backend("cpu", bo);
  ntk::set_log_level(ntk::LogLevel::warning);  // the backend's description once, not once per backend
  const double load_start = load_average_1min();
  std::printf("CPU: %s, %u hardware threads, compute threads %d (0 = all), BLAS %s\n",
              ntk::cpu_model_name().c_str(), std::thread::hardware_concurrency(), opt.threads,
              ntk::blas::describe().c_str());
  std::printf("backend: %s\nload average (1 min) at start: %.2f\n", backend->description().c_str(),
              load_start);
  std::fflush(stdout);

  // --- The model, in process --------------------------------------------------------------------
  const Data train = mixture(kTrain, 2026);
  const Data test = mixture(kTestRows, 7);
  const ntk::KernelSpec spec = bench_spec();
  ntk::FitSettings settings;
  settings.lambda = kLambda;
  auto t0 = Clock::now();
  const ntk::Model model = ntk::fit_classifier(*backend, spec, train.x.view(),
                                               ntk::targets_from_labels(train.y, kClasses, 0.0), settings);
  const double local_fit_s = seconds_since(t0);
  std::printf("in-process fit: %.2f s (%s, %d Newton steps, residual %.1e)\n", local_fit_s,
              ntk::solver_name(model.diagnostics.solver_used), model.diagnostics.steps,
              model.diagnostics.residual);

  // --- The model, in the server -----------------------------------------------------------------
  const std::string tmp = make_temp_dir();
  const std::string data_dir = tmp + "/data";
  ServerProcess server(opt.server, server_flags(data_dir, opt.threads, "warning"), "");
  ntkclient::ClientOptions co;
  co.address = server.address();
  co.retries = 0;  // a failure here is a result, not something to hide behind a retry
  ntkclient::Client client(co);
  wait_serving(client);
  t0 = Clock::now();
  client.upload("train", train.x.view(), &train.y, {}, pb::FLOAT64, kClasses);
  const double train_upload_s = seconds_since(t0);
  pb::FitRequest fit;
  fit.set_dataset("train");
  *fit.mutable_spec() = ntkwire::to_proto(spec, ntk::ComputeType::float64);
  fit.set_lambda(kLambda);
  t0 = Clock::now();
  const pb::FitJob job = client.fit(fit);
  const pb::FitProgress done = client.watch(job.job_id());
  const double server_fit_s = seconds_since(t0);
  if (done.state() != pb::SUCCEEDED) throw std::runtime_error("server fit failed: " + done.message());
  const std::string model_id = job.model_id();
  std::printf("server: port %d, train upload %.3f s, fit + watch %.2f s\n", server.port(), train_upload_s,
              server_fit_s);

  // Sanity: the server's model and predictions are the in-process ones, bit for bit.
  const ntk::Model served = ntk::deserialize_model(client.export_model(model_id), "exported model");
  const bool coefficients_equal = bit_equal(served.coefficients, model.coefficients);
  const ntk::ConstMatrixView<double> check_x = test.x.view().block(0, 0, 64, kDim);
  ntkclient::PredictOptions popt;
  popt.batch_rows = 64;
  const ntkclient::Prediction remote = client.predict(model_id, check_x, popt);
  const ntk::Prediction local = ntk::predict(*backend, model, check_x);
  const bool predictions_equal = bit_equal(remote.logits, local.logits) &&
                                 bit_equal(remote.probs, local.probs) && remote.classes == local.classes;
  std::printf("sanity: coefficients %s (max |diff| %.1e), 64-row predictions %s (max |logit diff| %.1e)\n",
              coefficients_equal ? "bit-equal" : "DIFFER",
              max_abs_diff(served.coefficients, model.coefficients),
              predictions_equal ? "bit-equal" : "DIFFER", max_abs_diff(remote.logits, local.logits));
  std::fflush(stdout);

  // --- Predict: in process, Predict, PredictStream ---------------------------------------------------
  const std::vector<std::int64_t>& batches = opt.batches;
  std::map<std::string, std::vector<Stats>> results;  // mode -> one entry per batch size
  for (const std::int64_t b : batches) {
    const ntk::ConstMatrixView<double> xb = test.x.view().block(0, 0, b, kDim);
    ntkclient::PredictOptions po;
    po.batch_rows = static_cast<int>(b);
    StreamSession stream(client, model_id);
    const auto lat =
        run_interleaved(plan_for(b), opt.seconds,
                        {[&] { (void)ntk::predict(*backend, model, xb); },
                         [&] { (void)client.predict(model_id, xb, po); }, [&] { (void)stream.predict(xb); }});
    results["in_process"].push_back(summarize(b, lat[0], sum(lat[0])));
    results["predict"].push_back(summarize(b, lat[1], sum(lat[1])));
    results["predict_stream"].push_back(summarize(b, lat[2], sum(lat[2])));
    std::printf("batch %lld: in-process p50 %.3f ms, Predict p50 %.3f ms, PredictStream p50 %.3f ms\n",
                static_cast<long long>(b), results["in_process"].back().p50_ms,
                results["predict"].back().p50_ms, results["predict_stream"].back().p50_ms);
    std::fflush(stdout);
  }

  // --- Two concurrent clients (each its own channel), against two in-process threads with a backend
  // each (the server's default --predict-slots is 2, so it runs two predictions at once too).
  if (opt.concurrent) {
    for (std::size_t bi = 0; bi < batches.size(); ++bi) {
      const std::int64_t b = batches[bi];
      const Plan plan = plan_for(b);
      const ntk::ConstMatrixView<double> xb = test.x.view().block(0, 0, b, kDim);
      // Half the sequential run's request count per thread, so the total work is alike.
      const int per_thread =
          std::max<int>(plan.min_count / 2, static_cast<int>(results["predict"][bi].requests / 2));
      // Two threads issue per_thread requests each; the wall time of the whole is the throughput's.
      struct Run {
        std::vector<double> lat;
        double wall = 0;
      };
      auto concurrent = [&](const std::vector<std::function<void()>>& work, int requests, Run& run) {
        std::vector<std::vector<double>> lat(2);
        const auto start = Clock::now();
        std::vector<std::thread> threads;
        for (std::size_t w = 0; w < 2; ++w)
          threads.emplace_back([&, w] {
            for (int i = 0; i < requests; ++i) {
              const auto r0 = Clock::now();
              work[w]();
              lat[w].push_back(seconds_since(r0));
            }
          });
        for (auto& t : threads) t.join();
        run.wall += seconds_since(start);
        for (const auto& l : lat) run.lat.insert(run.lat.end(), l.begin(), l.end());
      };
      std::vector<std::unique_ptr<ntk::Backend>> backends;
      backends.push_back(ntk::make_backend("cpu", bo));
      backends.push_back(ntk::make_backend("cpu", bo));
      const std::vector<std::function<void()>> local_work = {
          [&] { (void)ntk::predict(*backends[0], model, xb); },
          [&] { (void)ntk::predict(*backends[1], model, xb); }};
      std::vector<std::unique_ptr<ntkclient::Client>> clients;
      for (int w = 0; w < 2; ++w) clients.push_back(std::make_unique<ntkclient::Client>(co));
      ntkclient::PredictOptions po;
      po.batch_rows = static_cast<int>(b);
      const std::vector<std::function<void()>> remote_work = {
          [&] { (void)clients[0]->predict(model_id, xb, po); },
          [&] { (void)clients[1]->predict(model_id, xb, po); }};
      for (int i = 0; i < plan.warmup; ++i)
        for (const auto* work : {&local_work, &remote_work})
          for (const auto& f : *work) f();
      std::this_thread::sleep_for(std::chrono::duration<double>(kPauseSeconds));
      // In blocks that alternate (local, remote, local, remote), for the same reason as run_interleaved.
      Run local_run, remote_run;
      const int blocks = per_thread >= 10 ? 4 : 1;
      for (int k = 0; k < blocks; ++k) {
        concurrent(local_work, per_thread / blocks, local_run);
        std::this_thread::sleep_for(std::chrono::duration<double>(kPauseSeconds));
        concurrent(remote_work, per_thread / blocks, remote_run);
        std::this_thread::sleep_for(std::chrono::duration<double>(kPauseSeconds));
      }
      results["in_process_2"].push_back(summarize(b, local_run.lat, local_run.wall));
      results["predict_2"].push_back(summarize(b, remote_run.lat, remote_run.wall));
    }
  }

  // --- Where a request's time goes (single client, sequential): pieces timed here with the same code
  // the client and the server run, and an empty RPC for gRPC's own round trip.
  struct Breakdown {
    std::int64_t batch;
    double client_encode_ms, request_serialize_ms, request_parse_ms, server_decode_ms, response_encode_ms,
        response_serialize_ms, response_parse_ms, client_decode_ms, empty_rpc_ms, server_handler_ms;
    // From the interleaved run against the debug-logging server: its Predict p50 and the in-process
    // p50 of the same rounds, so that the three are measured under the same load.
    double debug_predict_ms, debug_in_process_ms;
    // The same call through the stub, split: request start to the response read, then to the status.
    double stub_to_response_ms, stub_to_status_ms;
  };
  std::vector<Breakdown> breakdown;
  if (opt.breakdown) {
    // A trivial unary RPC: gRPC's floor on this machine (GetModel: one lookup under a mutex).
    double wall = 0;
    auto lat = run_timed(
        {20, 200, 2000}, 1.0, [&] { (void)client.get_model(model_id); }, &wall);
    const double empty_rpc_ms = summarize(1, lat, wall).p50_ms;
    // The server's own time per Predict call, from its request log (debug level) on a second server
    // that has the same model imported: the handler's time from the call's start to its status, so
    // the transport and the request's parsing are outside it.
    const std::string log_path = tmp + "/debug-server.log";
    std::map<std::int64_t, double> handler_ms, debug_predict_ms, debug_in_process_ms, to_response_ms,
        to_status_ms;
    {
      ServerProcess debug_server(opt.server, server_flags(tmp + "/data-debug", opt.threads, "debug"),
                                 log_path);
      ntkclient::ClientOptions cd = co;
      cd.address = debug_server.address();
      ntkclient::Client dclient(cd);
      wait_serving(dclient);
      const pb::ModelInfo imported = dclient.import_model(ntk::serialize_model(model));
      auto stub = pb::PredictService::NewStub(dclient.channel());
      for (const std::int64_t b : batches) {
        Plan plan = plan_for(b);
        plan.max_count = plan.min_count;  // the sample only has to place the pieces
        ntkclient::PredictOptions po;
        po.batch_rows = static_cast<int>(b);
        const ntk::ConstMatrixView<double> xb = test.x.view().block(0, 0, b, kDim);
        std::vector<double> first, last;
        auto stub_call = [&] {
          pb::PredictRequest request;
          request.set_model_id(imported.model_id());
          request.set_batch_rows(static_cast<int>(b));
          ntkwire::encode_matrix(xb, false, request.mutable_x());
          auto ctx = dclient.context();
          const auto r0 = Clock::now();
          auto reader = stub->Predict(ctx.get(), request);
          pb::PredictResponse response;
          if (!reader->Read(&response)) throw std::runtime_error("Predict through the stub: no response");
          const auto r1 = Clock::now();
          const grpc::Status status = reader->Finish();
          if (!status.ok()) throw std::runtime_error("Predict through the stub: " + status.error_message());
          first.push_back(std::chrono::duration<double>(r1 - r0).count());
          last.push_back(seconds_since(r1));
        };
        const auto turns =
            run_interleaved(plan, 0,
                            {[&] { (void)ntk::predict(*backend, model, xb); },
                             [&] { (void)dclient.predict(imported.model_id(), xb, po); }, stub_call});
        debug_in_process_ms[b] = 1e3 * percentile(turns[0], 0.5);
        debug_predict_ms[b] = 1e3 * percentile(turns[1], 0.5);
        // The warm-up's calls are in first/last too; the timed ones are the last turns[2].size().
        first.erase(first.begin(), first.end() - static_cast<std::ptrdiff_t>(turns[2].size()));
        last.erase(last.begin(), last.end() - static_cast<std::ptrdiff_t>(turns[2].size()));
        to_response_ms[b] = 1e3 * percentile(first, 0.5);
        to_status_ms[b] = 1e3 * percentile(last, 0.5);
        const std::size_t count = turns[1].size();
        // This batch size's lines: {"...","method":"Predict",...,"ms":X,"detail":"m-..: B rows"}.
        std::ifstream in(log_path);
        std::string line;
        std::vector<double> ms;
        const std::string want = ": " + std::to_string(b) + " rows\"";
        while (std::getline(in, line)) {
          if (line.find("\"method\":\"Predict\"") == std::string::npos ||
              line.find(want) == std::string::npos)
            continue;
          const auto at = line.find("\"ms\":");
          if (at != std::string::npos) ms.push_back(std::atof(line.c_str() + at + 5));
        }
        // The last 2 * count lines of this batch size are the timed calls of both Predict modes (the
        // warm-up ones come first).
        if (ms.size() > 2 * count) ms.erase(ms.begin(), ms.end() - static_cast<std::ptrdiff_t>(2 * count));
        if (!ms.empty()) handler_ms[b] = percentile(ms, 0.5);
      }
    }
    for (const std::int64_t b : batches) {
      const ntk::ConstMatrixView<double> xb = test.x.view().block(0, 0, b, kDim);
      const int reps = b >= 1024 ? 10 : 200;
      auto median_ms = [&](const std::function<void()>& f) {
        std::vector<double> v;
        for (int i = 0; i < reps; ++i) {
          const auto r0 = Clock::now();
          f();
          v.push_back(seconds_since(r0));
        }
        return 1e3 * percentile(v, 0.5);
      };
      Breakdown d{};
      d.batch = b;
      pb::PredictRequest request;
      d.client_encode_ms = median_ms([&] {
        request.Clear();
        request.set_model_id(model_id);
        ntkwire::encode_matrix(xb, false, request.mutable_x());
      });
      std::string wire;
      d.request_serialize_ms = median_ms([&] { request.SerializeToString(&wire); });
      pb::PredictRequest parsed;
      d.request_parse_ms = median_ms([&] { parsed.ParseFromString(wire); });
      d.server_decode_ms = median_ms([&] { (void)ntkwire::decode_matrix(parsed.x(), "x"); });
      const ntk::Prediction p = ntk::predict(*backend, model, xb);
      pb::PredictResponse response;
      d.response_encode_ms = median_ms([&] {
        response.Clear();
        response.set_rows(b);
        ntkwire::encode_matrix(p.logits.view(), false, response.mutable_logits());
        ntkwire::encode_matrix(p.probs.view(), false, response.mutable_probs());
        ntkwire::encode_int64_column(p.classes, response.mutable_classes());
      });
      std::string rwire;
      d.response_serialize_ms = median_ms([&] { response.SerializeToString(&rwire); });
      pb::PredictResponse rparsed;
      d.response_parse_ms = median_ms([&] { rparsed.ParseFromString(rwire); });
      d.client_decode_ms = median_ms([&] {
        (void)ntkwire::decode_matrix(rparsed.logits(), "logits");
        (void)ntkwire::decode_matrix(rparsed.probs(), "probs");
      });
      d.empty_rpc_ms = empty_rpc_ms;
      d.server_handler_ms = handler_ms.count(b) ? handler_ms[b] : NAN;
      d.debug_predict_ms = debug_predict_ms[b];
      d.debug_in_process_ms = debug_in_process_ms[b];
      d.stub_to_response_ms = to_response_ms[b];
      d.stub_to_status_ms = to_status_ms[b];
      breakdown.push_back(d);
    }
  }

  // --- Upload ---------------------------------------------------------------------------------------
  struct Upload {
    double bytes = 0, seconds = 0, best_seconds = 1e300;
    int reps = 0;
    // One more upload through the stub, split where the client can see: building the payload, streaming
    // the chunks, and the wait after the last chunk (the server's finishing work and durable write).
    double raw_encode_s = 0, raw_stream_s = 0, raw_tail_s = 0;
    // The server's steps repeated here with its own code on the same bytes (ntk_server_lib).
    double srv_append_sha_s = 0, srv_finish_decode_s = 0, srv_encode_file_s = 0, srv_write_durably_s = 0;
    double local_write_s = 0;           // plain write + fsync of the payload, for the disk's share
    double memcpy_s = 0, crc32c_s = 0;  // a copy into a fresh vector; ntk::crc32c over it
  } up;
  if (opt.upload) {
    ntk::Matrix<double> big(opt.upload_rows, opt.upload_cols);
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> uniform(-1, 1);
    for (auto& v : big.storage()) v = uniform(rng);
    up.bytes = static_cast<double>(big.size() * sizeof(double));
    const int reps = 3;
    for (int r = 0; r < reps; ++r) {
      const std::string name = "upload-" + std::to_string(r);
      const auto u0 = Clock::now();
      client.upload(name, big.view(), nullptr);
      const double s = seconds_since(u0);
      up.seconds += s;
      up.best_seconds = std::min(up.best_seconds, s);
      client.delete_dataset(name);
    }
    up.reps = reps;
    up.seconds /= reps;

    pb::UploadHeader header;
    header.set_name("upload-raw");
    header.set_dtype(pb::FLOAT64);
    header.set_rows(big.rows());
    header.set_cols(big.cols());
    {
      // As Client::upload does it: encode once, then 1 MiB substr chunks.
      auto u0 = Clock::now();
      pb::Matrix xm;
      ntkwire::encode_matrix(big.view(), false, &xm);
      std::string payload = std::move(*xm.mutable_data());
      up.raw_encode_s = seconds_since(u0);
      auto stub = pb::DatasetService::NewStub(client.channel());
      auto ctx = client.context();
      pb::DatasetInfo info;
      u0 = Clock::now();
      auto writer = stub->UploadDataset(ctx.get(), &info);
      pb::UploadDatasetRequest first;
      *first.mutable_header() = header;
      bool ok = writer->Write(first);
      constexpr std::size_t chunk_bytes = 1 << 20;
      for (std::size_t offset = 0; ok && offset < payload.size(); offset += chunk_bytes) {
        pb::UploadDatasetRequest chunk;
        chunk.set_chunk(payload.substr(offset, chunk_bytes));
        ok = writer->Write(chunk);
      }
      writer->WritesDone();
      up.raw_stream_s = seconds_since(u0);
      u0 = Clock::now();
      const grpc::Status status = writer->Finish();
      up.raw_tail_s = seconds_since(u0);
      if (!status.ok()) throw std::runtime_error("raw upload: " + status.error_message());
      client.delete_dataset("upload-raw");

      // The server's pipeline, step by step, on the same payload.
      u0 = Clock::now();
      ntkserver::UploadAssembler assembler(header, std::int64_t{1} << 40);
      for (std::size_t offset = 0; offset < payload.size(); offset += chunk_bytes)
        assembler.append(std::string_view(payload).substr(offset, chunk_bytes));
      up.srv_append_sha_s = seconds_since(u0);
      u0 = Clock::now();
      pb::DatasetInfo stored;
      const ntkserver::DatasetData decoded = assembler.finish(stored);
      up.srv_finish_decode_s = seconds_since(u0);
      u0 = Clock::now();
      const std::vector<std::uint8_t> file = ntkserver::encode_dataset_file(stored, assembler.payload());
      up.srv_encode_file_s = seconds_since(u0);
      // The disk's speed drifts (the upload just before left dirty pages and freed blocks): the durable
      // write and a plain write + fsync take turns, twice, and each keeps its best.
      up.srv_write_durably_s = up.local_write_s = 1e300;
      for (int r = 0; r < 2; ++r) {
        u0 = Clock::now();
        ntkserver::write_file_durably(data_dir + "/bench-probe.ntkd", file);
        up.srv_write_durably_s = std::min(up.srv_write_durably_s, seconds_since(u0));
        std::filesystem::remove(data_dir + "/bench-probe.ntkd");
        up.local_write_s = std::min(up.local_write_s, local_durable_write_s(data_dir, payload));
      }
      // encode_dataset_file's parts: one copy of the payload and a CRC-32C over it.
      u0 = Clock::now();
      std::vector<std::uint8_t> copy(payload.begin(), payload.end());
      up.memcpy_s = seconds_since(u0);
      u0 = Clock::now();
      volatile std::uint32_t crc = ntk::crc32c(copy.data(), copy.size());
      (void)crc;
      up.crc32c_s = seconds_since(u0);
    }
  }
  server.stop();
  const double load_end = load_average_1min();
  std::filesystem::remove_all(tmp);

  // --- Report -------------------------------------------------------------------------------------
  const auto& in = results["in_process"];
  std::printf("\n### %d compute thread%s\n\n", opt.threads, opt.threads == 1 ? "" : "s");
  std::printf(
      "| rows / request | mode | requests | rows/s | p50 ms | p99 ms | vs in-process rows/s | p50 overhead "
      "ms |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  const char* modes[] = {"in_process", "predict", "predict_stream", "in_process_2", "predict_2"};
  const char* labels[] = {"in-process `ntk::predict`", "Predict (ntkclient)", "PredictStream (stub)",
                          "in-process, 2 threads", "Predict, 2 clients"};
  for (std::size_t bi = 0; bi < batches.size(); ++bi) {
    for (int m = 0; m < 5; ++m) {
      if (!results.count(modes[m])) continue;
      const Stats& s = results[modes[m]][bi];
      const bool two = m >= 3;
      const Stats& ref = two ? results["in_process_2"][bi] : in[bi];
      std::string ratio = "", overhead = "";
      if (m != 0 && m != 3) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.0f%%", 100 * s.rows_per_s / ref.rows_per_s);
        ratio = buf;
        std::snprintf(buf, sizeof buf, "%+.3f", s.p50_ms - ref.p50_ms);
        overhead = buf;
      }
      std::printf("| %lld | %s | %lld | %.0f | %.3f | %.3f | %s | %s |\n", static_cast<long long>(s.batch),
                  labels[m], static_cast<long long>(s.requests), s.rows_per_s, s.p50_ms, s.p99_ms,
                  ratio.c_str(), overhead.c_str());
    }
  }
  if (!breakdown.empty()) {
    std::printf(
        "\nWhere a sequential Predict's time goes (p50 / medians, ms). A: in process; B: the server's own "
        "time for the call (its debug request log); C: Predict as the client sees it; A, B, C from one "
        "interleaved "
        "run against a debug-logging server. Then the pieces, timed here with the code the client and the "
        "server "
        "run:\n\n");
    std::printf(
        "| rows | A in-process | B server handler | C Predict | B - A (in the handler) | C - B (outside it) "
        "| "
        "client encode x | request serialize | request parse | server decode x | response encode | "
        "response serialize + parse | client decode | empty RPC | stub: to response | stub: response to "
        "status |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& d : breakdown) {
      std::printf(
          "| %lld | %.3f | %.3f | %.3f | %+.3f | %+.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | "
          "%.3f | %.3f | %.3f |\n",
          static_cast<long long>(d.batch), d.debug_in_process_ms, d.server_handler_ms, d.debug_predict_ms,
          d.server_handler_ms - d.debug_in_process_ms, d.debug_predict_ms - d.server_handler_ms,
          d.client_encode_ms, d.request_serialize_ms, d.request_parse_ms, d.server_decode_ms,
          d.response_encode_ms, d.response_serialize_ms + d.response_parse_ms, d.client_decode_ms,
          d.empty_rpc_ms, d.stub_to_response_ms, d.stub_to_status_ms);
    }
  }
  if (opt.upload) {
    const double mb = up.bytes / 1e6;
    std::printf(
        "\nUpload of %lld x %lld float64 (%.0f MiB), %d runs of Client::upload: mean %.2f s = %.0f MB/s "
        "(best "
        "%.0f MB/s)\n",
        static_cast<long long>(opt.upload_rows), static_cast<long long>(opt.upload_cols),
        up.bytes / (1 << 20), up.reps, up.seconds, mb / up.seconds, mb / up.best_seconds);
    std::printf(
        "  through the stub: client encode %.3f s, streaming the chunks %.3f s, wait after the last chunk "
        "%.3f s\n",
        up.raw_encode_s, up.raw_stream_s, up.raw_tail_s);
    std::printf(
        "  the server's steps here: append + SHA-256 %.3f s, finish (decode, checks) %.3f s, "
        "encode_dataset_file (copy + CRC-32C) %.3f s, write_file_durably %.3f s; plain write + fsync %.3f s; "
        "a copy into a fresh vector %.3f s, ntk::crc32c %.3f s\n",
        up.srv_append_sha_s, up.srv_finish_decode_s, up.srv_encode_file_s, up.srv_write_durably_s,
        up.local_write_s, up.memcpy_s, up.crc32c_s);
  }
  std::printf("\nload average (1 min): %.2f at start, %.2f at end\n", load_start, load_end);

  if (!opt.json.empty()) {
    std::ofstream j(opt.json);
    j << "{\n  \"threads\": " << opt.threads
      << ",\n  \"hardware_threads\": " << std::thread::hardware_concurrency() << ",\n  \"cpu\": \""
      << ntk::cpu_model_name() << "\",\n  \"load_average_start\": " << load_start
      << ",\n  \"load_average_end\": " << load_end << ",\n  \"model\": {\"n\": " << kTrain
      << ", \"d\": " << kDim << ", \"classes\": " << kClasses << ", \"depth\": 3, \"lambda\": " << kLambda
      << ", \"in_process_fit_s\": " << local_fit_s << ", \"server_fit_s\": " << server_fit_s << "},\n"
      << "  \"sanity\": {\"coefficients_bit_equal\": " << (coefficients_equal ? "true" : "false")
      << ", \"predictions_bit_equal\": " << (predictions_equal ? "true" : "false") << "},\n  \"predict\": {";
    bool first_mode = true;
    for (const auto& [mode, list] : results) {
      j << (first_mode ? "\n" : ",\n") << "    \"" << mode << "\": [";
      for (std::size_t i = 0; i < list.size(); ++i) j << (i ? ", " : "") << json_stats(list[i]);
      j << "]";
      first_mode = false;
    }
    j << "\n  },\n  \"breakdown\": [";
    for (std::size_t i = 0; i < breakdown.size(); ++i) {
      const auto& d = breakdown[i];
      char buf[800];
      std::snprintf(
          buf, sizeof buf,
          "%s\n    {\"batch\": %lld, \"client_encode_ms\": %.6g, \"request_serialize_ms\": %.6g, "
          "\"request_parse_ms\": %.6g, \"server_decode_ms\": %.6g, \"response_encode_ms\": %.6g, "
          "\"response_serialize_ms\": %.6g, \"response_parse_ms\": %.6g, \"client_decode_ms\": %.6g, "
          "\"empty_rpc_ms\": %.6g, \"server_handler_ms\": %.6g, \"debug_predict_ms\": %.6g, "
          "\"debug_in_process_ms\": %.6g, \"stub_to_response_ms\": %.6g, \"stub_to_status_ms\": %.6g}",
          i ? "," : "", static_cast<long long>(d.batch), d.client_encode_ms, d.request_serialize_ms,
          d.request_parse_ms, d.server_decode_ms, d.response_encode_ms, d.response_serialize_ms,
          d.response_parse_ms, d.client_decode_ms, d.empty_rpc_ms,
          std::isnan(d.server_handler_ms) ? -1.0 : d.server_handler_ms, d.debug_predict_ms,
          d.debug_in_process_ms, d.stub_to_response_ms, d.stub_to_status_ms);
      j << buf;
    }
    j << "\n  ]";
    if (opt.upload) {
      j << ",\n  \"upload\": {\"rows\": " << opt.upload_rows << ", \"cols\": " << opt.upload_cols
        << ", \"bytes\": " << static_cast<long long>(up.bytes) << ", \"runs\": " << up.reps
        << ", \"mean_s\": " << up.seconds << ", \"best_s\": " << up.best_seconds
        << ", \"mb_per_s\": " << up.bytes / up.seconds / 1e6
        << ", \"best_mb_per_s\": " << up.bytes / up.best_seconds / 1e6
        << ", \"raw_encode_s\": " << up.raw_encode_s << ", \"raw_stream_s\": " << up.raw_stream_s
        << ", \"raw_tail_s\": " << up.raw_tail_s << ", \"server_append_sha256_s\": " << up.srv_append_sha_s
        << ", \"server_finish_decode_s\": " << up.srv_finish_decode_s
        << ", \"server_encode_file_s\": " << up.srv_encode_file_s
        << ", \"server_write_durably_s\": " << up.srv_write_durably_s << ", \"memcpy_s\": " << up.memcpy_s
        << ", \"crc32c_s\": " << up.crc32c_s << ", \"local_write_fsync_s\": " << up.local_write_s << "}";
    }
    j << "\n}\n";
  }
  return coefficients_equal && predictions_equal ? 0 : 3;
} catch (const std::exception& e) {
  std::fprintf(stderr, "service_bench: %s\n", e.what());
  return 1;
}
