// Writes the seed corpora of the fuzz targets, made by the project's own code, so that no binary
// file has to be committed and the seeds follow the formats as they change:
//   OUT/model_file/  model files of small fitted models (ntk::serialize_model) and the server's
//                    framed model file around one (ntkserver::encode_model_file)
//   OUT/upload/      uploads in upload_fuzz's input format (header, then chunks) and the dataset
//                    files the store writes for them (ntkserver::encode_dataset_file)
// Usage: make_seeds OUT
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "dataset_codec.hpp"
#include "ntk/classifier.hpp"
#include "ntk/cpu_backend.hpp"
#include "ntk/model_file.hpp"
#include "ntk/targets.hpp"
#include "store.hpp"

namespace fs = std::filesystem;
namespace pb = ::ntkserve::v1;

namespace {

void write(const fs::path& path, const void* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}
void write(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  write(path, bytes.data(), bytes.size());
}

// Two interleaved spirals, n points in 2-D, labels in [0, classes).
void points(int n, int classes, ntk::Matrix<double>& x, std::vector<std::int64_t>& labels) {
  x = ntk::Matrix<double>(n, 2);
  labels.assign(static_cast<std::size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    const double t = 0.3 + 2.5 * i / n;
    const int c = i % classes;
    x(i, 0) = t * std::cos(t + 2.1 * c);
    x(i, 1) = t * std::sin(t + 2.1 * c);
    labels[static_cast<std::size_t>(i)] = c;
  }
}

void model_seeds(const fs::path& dir) {
  ntk::BackendOptions options;
  options.threads = 1;
  ntk::CpuBackend backend(options);
  ntk::Matrix<double> x;
  std::vector<std::int64_t> labels;

  // 20 points, 3 classes, lambda > 0: the Newton solver, a step history, no factor.
  points(20, 3, x, labels);
  ntk::FitSettings newton;
  newton.lambda = 1e-2;
  const ntk::Model a = ntk::fit_classifier(backend, ntk::KernelSpec{}, x.view(),
                                           ntk::targets_from_labels(labels, 3, 0), newton);
  write(dir / "newton_relu.ntk", ntk::serialize_model(a));

  // 8 points, lambda = 0 with label smoothing, a deeper erf network and initial outputs f0: the
  // closed form keeps the Cholesky factor and f0_train, so every section is non-empty.
  points(8, 2, x, labels);
  ntk::KernelSpec erf;
  erf.depth = 2;
  erf.w_std = 1.5;
  erf.b_std = 0.1;
  erf.w_std_out = 1.0;
  erf.activation.kind = ntk::Activation::erf;
  ntk::FitSettings closed;
  closed.lambda = 0;
  closed.label_smoothing = 0.1;
  ntk::Matrix<double> f0(8, 2);
  for (std::size_t i = 0; i < f0.size(); ++i) f0.data()[i] = 0.01 * static_cast<double>(i % 5) - 0.02;
  const ntk::Model b = ntk::fit_classifier(backend, erf, x.view(), ntk::targets_from_labels(labels, 2, 0.1),
                                           closed, {}, f0.view());
  write(dir / "closed_form_erf_f0.ntk", ntk::serialize_model(b));

  // The server's model file (the store's framing and a ModelInfo header) around the first.
  pb::ModelInfo info = ntkserver::describe_model(a);
  info.set_model_id("m-00112233445566ff");
  info.set_dataset("spirals");
  write(dir / "server_newton_relu.ntkm", ntkserver::encode_model_file(info, a));
}

// One upload in upload_fuzz's format: u16 header length, header, then (u16 length, bytes) chunks.
std::vector<std::uint8_t> upload_input(const pb::UploadHeader& header,
                                       const std::vector<std::uint8_t>& payload, std::size_t chunk) {
  const std::string h = header.SerializeAsString();
  std::vector<std::uint8_t> out;
  auto u16 = [&](std::size_t v) {
    out.push_back(static_cast<std::uint8_t>(v & 0xff));
    out.push_back(static_cast<std::uint8_t>(v >> 8));
  };
  u16(h.size());
  out.insert(out.end(), h.begin(), h.end());
  for (std::size_t pos = 0; pos < payload.size(); pos += chunk) {
    const std::size_t n = std::min(chunk, payload.size() - pos);
    u16(n);
    out.insert(out.end(), payload.begin() + static_cast<std::ptrdiff_t>(pos),
               payload.begin() + static_cast<std::ptrdiff_t>(pos + n));
  }
  return out;
}

template <class T>
void append(std::vector<std::uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

void upload_seed(const fs::path& dir, const std::string& name, pb::UploadHeader header,
                 const std::vector<std::uint8_t>& payload, std::size_t chunk, bool with_sha) {
  if (with_sha) header.set_sha256(ntkserver::sha256_hex(payload));
  // Checked through the real assembler, so that a seed is an upload the server accepts.
  ntkserver::UploadAssembler assembler(header, 1 << 20);
  for (std::size_t pos = 0; pos < payload.size(); pos += chunk)
    assembler.append(std::string_view(reinterpret_cast<const char*>(payload.data()) + pos,
                                      std::min(chunk, payload.size() - pos)));
  pb::DatasetInfo info;
  (void)assembler.finish(info);
  info.set_created_unix_ms(1700000000000);
  write(dir / (name + ".upload"), upload_input(header, payload, chunk));
  write(dir / (name + ".ntkd"), ntkserver::encode_dataset_file(info, assembler.payload()));
}

void upload_seeds(const fs::path& dir) {
  {  // float64 x (4 x 2) with labels (classes inferred), a checksum and metadata, two chunks
    pb::UploadHeader h;
    h.set_name("spirals.v1");
    h.set_dtype(pb::FLOAT64);
    h.set_rows(4);
    h.set_cols(2);
    h.set_has_labels(true);
    (*h.mutable_metadata())["source"] = "fuzz";
    std::vector<std::uint8_t> p;
    for (int i = 0; i < 8; ++i) append(p, 0.25 * i - 1.0);
    for (std::int64_t l : {0, 1, 2, 1}) append(p, l);
    upload_seed(dir, "float64_labels", h, p, 40, true);
  }
  {  // float32 x (3 x 2) with soft targets over 2 classes, one chunk
    pb::UploadHeader h;
    h.set_name("soft");
    h.set_dtype(pb::FLOAT32);
    h.set_rows(3);
    h.set_cols(2);
    h.set_has_targets(true);
    h.set_num_classes(2);
    std::vector<std::uint8_t> p;
    for (float v : {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.25f}) append(p, v);
    for (float v : {1.0f, 0.0f, 0.25f, 0.75f, 0.5f, 0.5f}) append(p, v);
    upload_seed(dir, "float32_targets", h, p, 1 << 16, false);
  }
  {  // float32 x (5 x 1) alone (no labels, no targets), three chunks
    pb::UploadHeader h;
    h.set_name("x-only_5");
    h.set_dtype(pb::FLOAT32);
    h.set_rows(5);
    h.set_cols(1);
    std::vector<std::uint8_t> p;
    for (float v : {1.0f, 2.0f, 3.0f, 4.0f, 5.0f}) append(p, v);
    upload_seed(dir, "float32_x_only", h, p, 8, true);
  }
  {  // float64 with labels and num_classes given
    pb::UploadHeader h;
    h.set_name("L");
    h.set_dtype(pb::FLOAT64);
    h.set_rows(2);
    h.set_cols(1);
    h.set_has_labels(true);
    h.set_num_classes(4);
    std::vector<std::uint8_t> p;
    append(p, 3.5);
    append(p, -7.0);
    append(p, std::int64_t{3});
    append(p, std::int64_t{0});
    upload_seed(dir, "float64_labels_classes", h, p, 7, false);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  try {
    const fs::path out = argv[1];
    fs::create_directories(out / "model_file");
    fs::create_directories(out / "upload");
    model_seeds(out / "model_file");
    upload_seeds(out / "upload");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
