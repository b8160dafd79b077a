#include "ntkctl/io.hpp"

#include <unistd.h>

#include <filesystem>

#include "ntk/errors.hpp"
#include "ntk/npy.hpp"

namespace ntkctl {

namespace fs = std::filesystem;

template <class T>
ntk::Matrix<T> load_matrix(const std::string& flag, const std::string& path) {
  ntk::NpyArray array;
  try {
    array = ntk::read_npy(path);
  } catch (const ntk::Error& e) {
    throw ntk::Error(e.code(), "--" + flag + ": " + e.what());
  }
  return ntk::npy_to_matrix<T>(array, "--" + flag + " '" + path + "'");
}
template ntk::Matrix<float> load_matrix<float>(const std::string&, const std::string&);
template ntk::Matrix<double> load_matrix<double>(const std::string&, const std::string&);

std::vector<std::int64_t> load_labels(const std::string& flag, const std::string& path) {
  ntk::NpyArray a;
  try {
    a = ntk::read_npy(path);
  } catch (const ntk::Error& e) {
    throw ntk::Error(e.code(), "--" + flag + ": " + e.what());
  }
  const std::string what = "--" + flag + " '" + path + "'";
  if (!(a.shape.size() == 1 || (a.shape.size() == 2 && a.shape[1] == 1)))
    throw ntk::InvalidArgument(what + " must be a 1-D array of integer labels");
  if (a.dtype != ntk::DType::int32 && a.dtype != ntk::DType::int64)
    throw ntk::InvalidArgument(what + " has dtype " + ntk::dtype_name(a.dtype) +
                               "; labels must be int32 or int64");
  std::vector<std::int64_t> labels(static_cast<std::size_t>(a.shape[0]));
  for (std::size_t i = 0; i < labels.size(); ++i)
    labels[i] = a.dtype == ntk::DType::int32 ? reinterpret_cast<const std::int32_t*>(a.data.data())[i]
                                             : reinterpret_cast<const std::int64_t*>(a.data.data())[i];
  return labels;
}

void check_output_file(const std::string& flag, const std::string& path) {
  const fs::path p(path);
  if (p.filename().empty())
    throw ntk::InvalidArgument("--" + flag + " '" + path + "' names a directory, not a file");
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw ntk::InvalidArgument("--" + flag + " '" + path + "': directory '" + dir.string() +
                               "' does not exist");
  if (access(dir.c_str(), W_OK) != 0)
    throw ntk::InvalidArgument("--" + flag + " '" + path + "': directory '" + dir.string() +
                               "' is not writable");
  if (fs::is_directory(p, ec)) throw ntk::InvalidArgument("--" + flag + " '" + path + "' is a directory");
}

void prepare_output_dir(const std::string& flag, const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw ntk::InvalidArgument("--" + flag + " '" + dir + "' exists and is not a directory");
  fs::create_directories(dir, ec);
  if (ec) throw ntk::InvalidArgument("--" + flag + " '" + dir + "': cannot create it: " + ec.message());
  if (access(dir.c_str(), W_OK) != 0)
    throw ntk::InvalidArgument("--" + flag + " '" + dir + "' is not writable");
}

void write_all(const std::string& dir, const std::vector<NamedArray>& arrays) {
  std::vector<std::string> written;
  try {
    for (const auto& a : arrays) {
      const std::string path = (fs::path(dir) / a.name).string();
      if (a.as_vector)
        ntk::write_npy(path, ntk::DType::float64, {a.matrix->rows()}, a.matrix->data());
      else
        ntk::write_npy(path, *a.matrix);
      written.push_back(path);
    }
  } catch (...) {
    for (const auto& p : written) ::unlink(p.c_str());
    throw;
  }
}

void write_labels(const std::string& path, const std::vector<std::int64_t>& labels) {
  ntk::write_npy(path, ntk::DType::int64, {static_cast<std::int64_t>(labels.size())}, labels.data());
}

std::string rename_subject(const std::string& message, const std::string& core_name,
                           const std::string& replacement) {
  if (message.rfind(core_name + " ", 0) != 0) return message;
  return replacement + message.substr(core_name.size());
}

void write_predictions(const std::string& dir, const ntk::UncertaintyResult& u, bool with_uncertainty) {
  std::vector<NamedArray> arrays = {{"logits.npy", &u.mean_logits}, {"probs.npy", &u.mean_probs}};
  if (with_uncertainty) {
    arrays.push_back({"logit_var.npy", &u.logit_var});
    arrays.push_back({"entropy.npy", &u.predictive_entropy, true});
    arrays.push_back({"expected_entropy.npy", &u.expected_entropy, true});
    arrays.push_back({"mutual_info.npy", &u.mutual_info, true});
  }
  write_all(dir, arrays);
  write_labels(dir + "/classes.npy", u.classes);
}

}  // namespace ntkctl
