#pragma once
#include "ntk/uncertainty.hpp"
// Reading the .npy inputs of a subcommand and writing its outputs, with errors that name the flag.
#include <cstdint>
#include <string>
#include <vector>

#include "ntk/matrix.hpp"

namespace ntkctl {

// A 2-D float32/float64 array as T; errors name --flag and the path.
template <class T>
ntk::Matrix<T> load_matrix(const std::string& flag, const std::string& path);

// A 1-D int32/int64 label array (an N x 1 array is accepted too).
std::vector<std::int64_t> load_labels(const std::string& flag, const std::string& path);

// Fails early (before any work) when the output file could not be written.
void check_output_file(const std::string& flag, const std::string& path);
// Creates the directory when needed; fails when it cannot.
void prepare_output_dir(const std::string& flag, const std::string& dir);

// Writes several arrays into dir; either all appear or none (files written before a failure are
// removed again).
struct NamedArray {
  std::string name;
  const ntk::Matrix<double>* matrix = nullptr;
  bool as_vector = false;  // write an N x 1 matrix as 1-D
};
void write_all(const std::string& dir, const std::vector<NamedArray>& arrays);
void write_labels(const std::string& path, const std::vector<std::int64_t>& labels);
// logits.npy, probs.npy, classes.npy and, with_uncertainty, logit_var.npy, entropy.npy,
// expected_entropy.npy, mutual_info.npy (SPEC section 4), into an existing directory.
void write_predictions(const std::string& dir, const ntk::UncertaintyResult& u, bool with_uncertainty);

// Names the command-line input behind a core argument name that starts an error message:
// ("x2 contains NaN ...", "x2", "--x2 'b.npy'") -> "--x2 'b.npy' contains NaN ...". Other messages are
// returned unchanged.
std::string rename_subject(const std::string& message, const std::string& core_name,
                           const std::string& replacement);

}  // namespace ntkctl
