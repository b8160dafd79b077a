// ntkctl against a server (--server HOST:PORT): the SPEC section 4 commands plus upload, datasets,
// models, watch, cancel, health, delete-dataset, delete-model.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <random>

#include "ntk/errors.hpp"
#include "ntk/npy.hpp"
#include "ntkclient/client.hpp"
#include "ntkctl/arch_flags.hpp"
#include "ntkctl/commands.hpp"
#include "ntkctl/io.hpp"
#include "wire/convert.hpp"

namespace ntkctl {

namespace {

namespace pb = ::ntkserve::v1;

ntkclient::ClientOptions client_options(Args& args, const std::string& server) {
  ntkclient::ClientOptions o;
  o.address = server;
  if (auto v = args.get("token")) o.token = *v;
  if (auto v = args.get("token-file")) {
    std::FILE* f = std::fopen(v->c_str(), "r");
    if (!f) throw ntk::InvalidArgument("--token-file " + *v + ": cannot be read");
    char buf[512] = {0};
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    o.token.assign(buf, n);
    while (!o.token.empty() && (o.token.back() == '\n' || o.token.back() == '\r' || o.token.back() == ' '))
      o.token.pop_back();
  }
  if (o.token.empty())
    if (const char* t = std::getenv("NTK_TOKEN")) o.token = t;
  o.tls = args.flag("tls");
  if (auto v = args.get("tls-ca")) o.tls_ca_file = *v;
  if (auto v = args.get("tls-cert")) o.tls_cert_file = *v;
  if (auto v = args.get("tls-key")) o.tls_key_file = *v;
  if (auto v = args.get("tls-server-name")) o.tls_server_name = *v;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty())
    throw ntk::InvalidArgument("--tls-cert and --tls-key go together");
  if (auto v = args.get_double("timeout")) {
    if (!(*v > 0)) throw ntk::InvalidArgument("--timeout must be > 0 seconds");
    o.timeout_seconds = *v;
  }
  return o;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\')
      out += '\\', out += static_cast<char>(c);
    else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

const char* state_name(pb::JobState s) {
  switch (s) {
    case pb::QUEUED:
      return "queued";
    case pb::RUNNING:
      return "running";
    case pb::SUCCEEDED:
      return "succeeded";
    case pb::FAILED:
      return "failed";
    case pb::CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

// A one-line live progress display on a terminal; plain lines otherwise.
void show_progress(const pb::FitProgress& p, bool tty) {
  char line[256];
  // Residual 1e2 (a typical start) is an empty bar, 1e-10 (the default tolerance) a full one.
  double fraction = 0;
  if (p.newton_step() > 0 && p.residual() > 0)
    fraction = std::clamp((2 - std::log10(p.residual())) / 12, 0.0, 1.0);
  if (p.state() == pb::SUCCEEDED) fraction = 1;
  const int width = 24, filled = static_cast<int>(fraction * width + 0.5);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, '.');
  char eta[32] = "";
  if (p.estimated_remaining_seconds() > 0)
    std::snprintf(eta, sizeof eta, " eta %.1fs", p.estimated_remaining_seconds());
  std::snprintf(line, sizeof line, "%-9s [%s] %-8s step %3d  residual %.2e  %6.2fs%s", state_name(p.state()),
                bar.c_str(), p.phase().c_str(), p.newton_step(), p.residual(), p.elapsed_seconds(), eta);
  if (tty)
    std::fprintf(stderr, "\r%-100s", line);
  else
    std::fprintf(stderr, "%s\n", line);
  if (tty && (p.state() == pb::SUCCEEDED || p.state() == pb::FAILED || p.state() == pb::CANCELLED))
    std::fputc('\n', stderr);
}

pb::KernelSpec wire_spec(const Architecture& a) {
  return ntkwire::to_proto(
      a.spec, a.dtype == ComputeDType::float32 ? ntk::ComputeType::float32 : ntk::ComputeType::float64);
}

std::string random_dataset_name() {
  std::mt19937_64 rng{std::random_device{}()};
  char buf[32];
  std::snprintf(buf, sizeof buf, "upload-%012llx",
                static_cast<unsigned long long>(rng() & 0xffffffffffffull));
  return buf;
}

void print_dataset(const pb::DatasetInfo& d, bool json, bool first) {
  if (json) {
    std::printf(
        "%s{\"name\": %s, \"rows\": %lld, \"cols\": %lld, \"dtype\": \"%s\", \"labels\": %s, \"targets\": "
        "%s, "
        "\"num_classes\": %lld, \"bytes\": %lld, \"resident\": %s, \"sha256\": \"%s\"}",
        first ? "" : ", ", json_string(d.name()).c_str(), static_cast<long long>(d.rows()),
        static_cast<long long>(d.cols()), d.dtype() == pb::FLOAT32 ? "float32" : "float64",
        d.has_labels() ? "true" : "false", d.has_targets() ? "true" : "false",
        static_cast<long long>(d.num_classes()), static_cast<long long>(d.bytes()),
        d.resident() ? "true" : "false", d.sha256().c_str());
  } else {
    std::printf("%-32s %8lld x %-6lld %-7s %-7s C=%-4lld %10.1f MiB %s\n", d.name().c_str(),
                static_cast<long long>(d.rows()), static_cast<long long>(d.cols()),
                d.dtype() == pb::FLOAT32 ? "float32" : "float64",
                d.has_labels()    ? "labels"
                : d.has_targets() ? "targets"
                                  : "-",
                static_cast<long long>(d.num_classes()), static_cast<double>(d.bytes()) / (1 << 20),
                d.resident() ? "resident" : "on disk");
  }
}

void print_model(const pb::ModelInfo& m, bool json, bool first) {
  if (json) {
    std::printf(
        "%s{\"model\": \"%s\", \"dataset\": %s, \"lambda\": %.17g, \"solver\": \"%s\", \"converged\": %s, "
        "\"newton_steps\": %d, \"residual\": %.17g, \"fit_seconds\": %.6g, \"train_rows\": %lld, \"cols\": "
        "%lld, "
        "\"num_classes\": %lld, \"bytes\": %lld}",
        first ? "" : ", ", m.model_id().c_str(), json_string(m.dataset()).c_str(), m.lambda(),
        m.solver_used().c_str(), m.converged() ? "true" : "false", m.newton_steps(), m.residual(),
        m.fit_seconds(), static_cast<long long>(m.train_rows()), static_cast<long long>(m.cols()),
        static_cast<long long>(m.num_classes()), static_cast<long long>(m.bytes()));
  } else {
    std::printf("%-20s %-24s N=%-7lld C=%-4lld lambda=%-8g %-11s %s %2d steps %8.2fs\n", m.model_id().c_str(),
                m.dataset().c_str(), static_cast<long long>(m.train_rows()),
                static_cast<long long>(m.num_classes()), m.lambda(), m.solver_used().c_str(),
                m.converged() ? "converged " : "NOT conv. ", m.newton_steps(), m.fit_seconds());
  }
}

pb::UncertaintyMode wire_mode(const std::string& name) {
  if (name == "none") return pb::UNCERTAINTY_NONE;
  if (name == "exact") return pb::UNCERTAINTY_EXACT;
  if (name == "linearized") return pb::UNCERTAINTY_LINEARIZED;
  if (name == "mc") return pb::UNCERTAINTY_MONTE_CARLO;
  throw ntk::InvalidArgument("--uncertainty must be none, exact, linearized or mc, got '" + name + "'");
}

ntkclient::PredictOptions predict_options(Args& args) {
  ntkclient::PredictOptions o;
  o.uncertainty = wire_mode(args.get("uncertainty").value_or("none"));
  if (auto v = args.get_int("samples")) {
    if (*v < 1 || *v > 100000) throw ntk::InvalidArgument("--samples must be in [1, 100000]");
    o.samples = static_cast<int>(*v);
  }
  if (auto v = args.get_int("seed")) {
    if (*v < 0) throw ntk::InvalidArgument("--seed must be >= 0");
    o.seed = static_cast<std::uint64_t>(*v);
  }
  if (auto v = args.get_int("batch-rows")) {
    if (*v < 1 || *v > (1 << 20)) throw ntk::InvalidArgument("--batch-rows must be in [1, 1048576]");
    o.batch_rows = static_cast<int>(*v);
  }
  return o;
}

ntk::UncertaintyResult as_result(const ntkclient::Prediction& p) {
  ntk::UncertaintyResult u;
  u.mean_logits = p.logits;
  u.mean_probs = p.probs;
  u.classes = p.classes;
  u.logit_var = p.logit_var;
  auto column = [](const std::vector<double>& v) {
    ntk::Matrix<double> m(static_cast<std::int64_t>(v.size()), 1);
    std::copy(v.begin(), v.end(), m.data());
    return m;
  };
  u.predictive_entropy = column(p.predictive_entropy);
  u.expected_entropy = column(p.expected_entropy);
  u.mutual_info = column(p.mutual_info);
  return u;
}

int remote_upload(ntkclient::Client& client, Args& args) {
  const std::string name = args.require("name");
  const std::string x = args.require("x");
  const auto labels = args.get("labels");
  const auto targets = args.get("targets");
  const auto classes = args.get_int("classes");
  const bool json = args.flag("json");
  const bool quiet = args.flag("quiet");
  args.reject_unused();
  if (labels && targets) throw ntk::InvalidArgument("give at most one of --labels and --targets");
  const bool tty = ::isatty(2) && !quiet;
  auto info = client.upload_npy(
      name, x, labels, targets, classes.value_or(0), [&](const ntkclient::UploadProgress& p) {
        if (tty)
          std::fprintf(
              stderr, "\rupload %s: %5.1f%% of %.1f MiB", name.c_str(),
              100.0 * static_cast<double>(p.sent) / static_cast<double>(std::max<std::int64_t>(p.total, 1)),
              static_cast<double>(p.total) / 1048576.0);
      });
  if (tty) std::fputc('\n', stderr);
  if (json) {
    print_dataset(info, true, true);
    std::printf("\n");
  } else {
    std::printf("uploaded ");
    print_dataset(info, false, true);
  }
  return 0;
}

int remote_fit(ntkclient::Client& client, Args& args) {
  const Architecture arch = parse_architecture(args);
  pb::FitRequest r;
  *r.mutable_spec() = wire_spec(arch);
  auto dataset = args.get("dataset");
  const auto x = args.get("x");
  const auto labels = args.get("labels");
  const auto targets = args.get("targets");
  const auto upload_name = args.get("name");
  const auto classes = args.get_int("classes");
  const auto lambda = args.get_double("lambda");
  if (!lambda) throw ntk::InvalidArgument("--lambda is required (>= 0)");
  r.set_lambda(*lambda);
  if (auto v = args.get_double("label-smoothing")) r.set_label_smoothing(*v);
  if (auto v = args.get("solver")) {
    if (*v == "auto")
      r.set_solver(pb::SOLVER_AUTO);
    else if (*v == "direct")
      r.set_solver(pb::SOLVER_DIRECT);
    else if (*v == "matrix_free")
      r.set_solver(pb::SOLVER_MATRIX_FREE);
    else
      throw ntk::InvalidArgument("--solver must be auto, direct or matrix_free");
  }
  if (auto v = args.get_double("tolerance")) r.set_tolerance(*v);
  if (auto v = args.get_int("max-steps")) r.set_max_newton_steps(static_cast<int>(*v));
  if (auto v = args.get_double("diag-reg")) r.set_diag_reg(*v);
  if (auto v = args.get_double("time")) r.set_time(*v);
  if (auto v = args.get_double("lr")) r.set_learning_rate(*v);
  if (auto v = args.get("description")) r.set_description(*v);
  const bool no_wait = args.flag("no-wait");
  const bool json = args.flag("json");
  const bool quiet = args.flag("quiet");
  if (args.get("out"))
    throw ntk::InvalidArgument(
        "--out is for in-process fits; with --server the model stays on the server (use its id)");
  args.reject_unused();
  if (dataset.has_value() == x.has_value())
    throw ntk::InvalidArgument("give --dataset NAME or --x X.npy (uploaded first)");
  if (x) {
    if (labels.has_value() == targets.has_value())
      throw ntk::InvalidArgument("give exactly one of --labels and --targets");
    const std::string name = upload_name.value_or(random_dataset_name());
    client.upload_npy(name, *x, labels, targets, classes.value_or(0));
    dataset = name;
  }
  r.set_dataset(*dataset);
  const pb::FitJob job = client.fit(r);
  if (no_wait) {
    if (json)
      std::printf("{\"model\": \"%s\", \"job\": \"%s\", \"state\": \"queued\", \"dataset\": %s}\n",
                  job.model_id().c_str(), job.job_id().c_str(), json_string(*dataset).c_str());
    else
      std::printf("queued %s (dataset %s)\n", job.job_id().c_str(), dataset->c_str());
    return 0;
  }
  const bool tty = ::isatty(2);
  const pb::FitProgress end = client.watch(job.job_id(), [&](const pb::FitProgress& p) {
    if (!quiet) show_progress(p, tty);
  });
  if (end.state() != pb::SUCCEEDED) {
    const std::string message = "fit " + job.job_id() + " " + state_name(end.state()) + ": " + end.message();
    if (end.error_code() == "INVALID_ARGUMENT" || end.error_code() == "FAILED_PRECONDITION" ||
        end.error_code() == "NOT_FOUND" || end.error_code() == "RESOURCE_EXHAUSTED")
      throw ntk::InvalidArgument(message);
    throw ntk::Error(end.state() == pb::CANCELLED ? ntk::ErrorCode::cancelled : ntk::ErrorCode::internal,
                     message);
  }
  const pb::ModelInfo m = client.get_model(job.model_id());
  if (json) {
    std::printf(
        "{\"model\": \"%s\", \"dataset\": %s, \"converged\": %s, \"newton_steps\": %d, \"residual\": %.17g, "
        "\"solver\": \"%s\", \"fit_seconds\": %.6g}\n",
        m.model_id().c_str(), json_string(m.dataset()).c_str(), m.converged() ? "true" : "false",
        m.newton_steps(), m.residual(), m.solver_used().c_str(), m.fit_seconds());
  } else {
    std::printf(
        "model %s: N=%lld d=%lld C=%lld lambda=%g solver=%s, %s after %d steps (residual %.3e), %.3f s\n",
        m.model_id().c_str(), static_cast<long long>(m.train_rows()), static_cast<long long>(m.cols()),
        static_cast<long long>(m.num_classes()), m.lambda(), m.solver_used().c_str(),
        m.converged() ? "converged" : "NOT converged", m.newton_steps(), m.residual(), m.fit_seconds());
  }
  return m.converged() ? 0 : 3;
}

int remote_watch(ntkclient::Client& client, Args& args) {
  const std::string job = args.require("job");
  const bool json = args.flag("json");
  args.reject_unused();
  const bool tty = ::isatty(2);
  const auto end = client.watch(job, [&](const pb::FitProgress& p) {
    if (json)
      std::printf(
          "{\"job\": \"%s\", \"state\": \"%s\", \"phase\": \"%s\", \"newton_step\": %d, \"residual\": %.17g, "
          "\"objective\": %.17g, \"elapsed_seconds\": %.6g, \"estimated_remaining_seconds\": %.6g, "
          "\"message\": %s}\n",
          p.job_id().c_str(), state_name(p.state()), p.phase().c_str(), p.newton_step(), p.residual(),
          p.objective(), p.elapsed_seconds(), p.estimated_remaining_seconds(),
          json_string(p.message()).c_str());
    else
      show_progress(p, tty);
    std::fflush(stdout);
  });
  return end.state() == pb::SUCCEEDED ? 0 : 1;
}

int remote_cancel(ntkclient::Client& client, Args& args) {
  const std::string job = args.require("job");
  const bool json = args.flag("json");
  args.reject_unused();
  const auto p = client.cancel(job);
  if (json)
    std::printf("{\"job\": \"%s\", \"state\": \"%s\"}\n", job.c_str(), state_name(p.state()));
  else
    std::printf("%s: %s%s\n", job.c_str(), state_name(p.state()),
                p.state() == pb::RUNNING ? " (stops after its current Newton step)" : "");
  return 0;
}

int remote_predict(ntkclient::Client& client, Args& args, bool evaluate) {
  const std::string model = args.require("model");
  const std::string x_path = args.require("x");
  const auto options = predict_options(args);
  std::string out_dir, labels_path;
  int bins = 15;
  bool json = false;
  if (evaluate) {
    labels_path = args.require("labels");
    if (auto v = args.get_int("bins")) {
      if (*v < 1 || *v > 1000) throw ntk::InvalidArgument("--bins must be in [1, 1000]");
      bins = static_cast<int>(*v);
    }
    json = args.flag("json");
  } else {
    out_dir = args.require("out-dir");
  }
  args.reject_unused();
  const ntk::Matrix<double> x = load_matrix<double>("x", x_path);
  std::vector<std::int64_t> labels;
  if (evaluate) {
    labels = load_labels("labels", labels_path);
    if (static_cast<std::int64_t>(labels.size()) != x.rows())
      throw ntk::InvalidArgument("--labels has " + std::to_string(labels.size()) + " entries but --x has " +
                                 std::to_string(x.rows()) + " rows");
  }
  const ntkclient::Prediction p = client.predict(model, x.view(), options);
  ntk::UncertaintyResult u = as_result(p);
  const bool uncertain = options.uncertainty != pb::UNCERTAINTY_NONE;
  if (evaluate) return report_evaluation(u, labels, bins, json, uncertain);
  prepare_output_dir("out-dir", out_dir);
  write_predictions(out_dir, u, uncertain);
  std::printf("wrote %lld predictions of %s to %s (%lld batches from %s)\n", static_cast<long long>(x.rows()),
              model.c_str(), out_dir.c_str(), static_cast<long long>(p.batches),
              client.options().address.c_str());
  return 0;
}

int remote_kernel(ntkclient::Client& client, Args& args) {
  const Architecture arch = parse_architecture(args);
  const std::string x1_path = args.require("x1");
  const auto x2_path = args.get("x2");
  const std::string which = args.get("kernel").value_or("ntk");
  const std::string out = args.require("out");
  args.reject_unused();
  if (which != "ntk" && which != "nngp") throw ntk::InvalidArgument("--kernel must be ntk or nngp");
  check_output_file("out", out);
  const auto x1 = load_matrix<double>("x1", x1_path);
  ntk::Matrix<double> x2;
  if (x2_path) x2 = load_matrix<double>("x2", *x2_path);
  const auto k = client.kernel(wire_spec(arch), which == "nngp" ? pb::NNGP : pb::NTK, x1.view(),
                               x2_path ? x2.view() : ntk::ConstMatrixView<double>{});
  if (arch.dtype == ComputeDType::float32)
    ntk::write_npy(out, ntk::convert_matrix<float>(k.view()));
  else
    ntk::write_npy(out, k);
  std::printf("wrote %s: %lld x %lld %s from %s\n", out.c_str(), static_cast<long long>(k.rows()),
              static_cast<long long>(k.cols()), which.c_str(), client.options().address.c_str());
  return 0;
}

int remote_list(ntkclient::Client& client, Args& args, bool models) {
  const bool json = args.flag("json");
  args.reject_unused();
  if (models) {
    const auto list = client.list_models();
    if (json) std::printf("[");
    for (std::size_t i = 0; i < list.size(); ++i) print_model(list[i], json, i == 0);
    if (json)
      std::printf("]\n");
    else if (list.empty())
      std::printf("no models\n");
  } else {
    const auto list = client.list_datasets();
    if (json) std::printf("[");
    for (std::size_t i = 0; i < list.size(); ++i) print_dataset(list[i], json, i == 0);
    if (json)
      std::printf("]\n");
    else if (list.empty())
      std::printf("no datasets\n");
  }
  return 0;
}

int remote_health(ntkclient::Client& client, Args& args) {
  const bool json = args.flag("json");
  const std::string service = args.get("service").value_or("");
  args.reject_unused();
  const std::string status = client.health(service);
  // The server's description needs a token where authentication is on; health itself does not.
  std::optional<pb::ServerInfo> info;
  try {
    info = client.server_info();
  } catch (const ntkclient::RpcError&) {
  }
  if (json) {
    std::printf("{\"server\": \"%s\", \"service\": %s, \"status\": \"%s\"", client.options().address.c_str(),
                json_string(service).c_str(), status.c_str());
    if (info)
      std::printf(
          ", \"version\": \"%s\", \"backend\": \"%s\", \"backend_description\": %s, "
          "\"memory_budget_bytes\": %lld, \"memory_in_use_bytes\": %lld, \"device_memory_budget_bytes\": "
          "%lld, "
          "\"device_memory_in_use_bytes\": %lld, \"device_memory_free_bytes\": %lld, \"queued_jobs\": %d, "
          "\"running_jobs\": %d",
          info->version().c_str(), info->backend().c_str(), json_string(info->backend_description()).c_str(),
          static_cast<long long>(info->memory_budget_bytes()),
          static_cast<long long>(info->memory_in_use_bytes()),
          static_cast<long long>(info->device_memory_budget_bytes()),
          static_cast<long long>(info->device_memory_in_use_bytes()),
          static_cast<long long>(info->device_memory_free_bytes()), info->queued_jobs(),
          info->running_jobs());
    std::printf("}\n");
  } else {
    std::printf("%s%s%s: %s\n", client.options().address.c_str(), service.empty() ? "" : " ", service.c_str(),
                status.c_str());
    if (info)
      std::printf(
          "  ntk-server %s, backend %s (%s)\n  memory %.1f of %.1f MiB, fits: %d running, %d queued\n",
          info->version().c_str(), info->backend().c_str(), info->backend_description().c_str(),
          static_cast<double>(info->memory_in_use_bytes()) / (1 << 20),
          static_cast<double>(info->memory_budget_bytes()) / (1 << 20), info->running_jobs(),
          info->queued_jobs());
    if (info && info->device_memory_budget_bytes() > 0)
      std::printf("  device memory %.1f of %.1f MiB, %.1f MiB free on the card\n",
                  static_cast<double>(info->device_memory_in_use_bytes()) / (1 << 20),
                  static_cast<double>(info->device_memory_budget_bytes()) / (1 << 20),
                  static_cast<double>(info->device_memory_free_bytes()) / (1 << 20));
  }
  return status == "SERVING" ? 0 : 1;
}

}  // namespace

const char* remote_help(const std::string& command) {
  static const std::map<std::string, const char*> help = {
      {"upload",
       "usage: ntkctl --server HOST:PORT upload --name NAME --x X.npy [--labels y.npy | --targets P.npy]\n"
       "                [--classes C] [--json] [--quiet]\n"},
      {"datasets", "usage: ntkctl --server HOST:PORT datasets [--json]\n"},
      {"models", "usage: ntkctl --server HOST:PORT models [--json]\n"},
      {"watch",
       "usage: ntkctl --server HOST:PORT watch --job ID [--json]   (live progress until the job ends)\n"},
      {"cancel", "usage: ntkctl --server HOST:PORT cancel --job ID [--json]\n"},
      {"health",
       "usage: ntkctl --server HOST:PORT health [--service NAME] [--json]   (exit 0 when SERVING)\n"},
      {"delete-dataset", "usage: ntkctl --server HOST:PORT delete-dataset --name NAME\n"},
      {"delete-model", "usage: ntkctl --server HOST:PORT delete-model --model ID\n"},
      {"fit",
       "usage: ntkctl --server HOST:PORT fit (--dataset NAME | --x X.npy (--labels y.npy | --targets P.npy)\n"
       "                [--name NAME]) --lambda LAM [architecture flags] [--label-smoothing EPS] [--solver "
       "S]\n"
       "                [--tolerance T] [--max-steps N] [--diag-reg R] [--time T --lr ETA] [--description "
       "D]\n"
       "                [--no-wait] [--json] [--quiet]\n"
       "  Queues the fit on the server and shows its progress until it ends; --json prints {\"model\": ID, "
       "...}.\n"},
      {"predict",
       "usage: ntkctl --server HOST:PORT predict --model ID --x T.npy --out-dir DIR\n"
       "                [--uncertainty none|exact|linearized|mc --samples S --seed N] [--batch-rows B]\n"},
      {"evaluate",
       "usage: ntkctl --server HOST:PORT evaluate --model ID --x T.npy --labels y.npy [--bins B] [--json]\n"
       "                [--uncertainty ...]\n"},
      {"kernel",
       "usage: ntkctl --server HOST:PORT kernel --x1 A.npy [--x2 B.npy] --kernel ntk|nngp --out K.npy\n"
       "                [architecture flags]\n"},
  };
  const auto it = help.find(command);
  return it == help.end() ? nullptr : it->second;
}

bool is_remote_command(const std::string& command) {
  return remote_help(command) != nullptr;
}

int run_remote(const std::string& command, Args& args, const std::string& server) {
  ntkclient::Client client(client_options(args, server));
  if (command == "upload") return remote_upload(client, args);
  if (command == "datasets") return remote_list(client, args, false);
  if (command == "models") return remote_list(client, args, true);
  if (command == "watch") return remote_watch(client, args);
  if (command == "cancel") return remote_cancel(client, args);
  if (command == "health") return remote_health(client, args);
  if (command == "fit") return remote_fit(client, args);
  if (command == "predict") return remote_predict(client, args, false);
  if (command == "evaluate") return remote_predict(client, args, true);
  if (command == "kernel") return remote_kernel(client, args);
  if (command == "delete-dataset") {
    const std::string name = args.require("name");
    args.reject_unused();
    client.delete_dataset(name);
    std::printf("deleted dataset %s\n", name.c_str());
    return 0;
  }
  if (command == "delete-model") {
    const std::string id = args.require("model");
    args.reject_unused();
    client.delete_model(id);
    std::printf("deleted model %s\n", id.c_str());
    return 0;
  }
  throw ntk::InvalidArgument("unknown command '" + command + "'");
}

}  // namespace ntkctl
