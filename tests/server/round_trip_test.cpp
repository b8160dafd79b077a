// upload -> fit -> predict through a real server equals the in-process library, bit for bit.
#include <gtest/gtest.h>

#include <cstring>

#include "core/test_data.hpp"
#include "ntk/backend.hpp"
#include "ntk/classifier.hpp"
#include "ntk/model_file.hpp"
#include "ntk/uncertainty.hpp"
#include "server/server_process.hpp"
#include "wire/convert.hpp"

namespace {

namespace pb = ::ntkserve::v1;
using ntk::testing::random_inputs;
using ntk::testing::random_labels;

pb::KernelSpec relu3() {
  pb::KernelSpec s;
  s.set_depth(3);
  s.set_w_std(1.5);
  s.set_b_std(0.1);
  s.mutable_activation()->set_name("relu");
  return s;
}

bool bitwise_equal(const ntk::Matrix<double>& a, const ntk::Matrix<double>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

class RoundTrip : public ::testing::Test {
 protected:
  RoundTrip()
      : server_(ntktest::temporary_directory("roundtrip"), {"--threads", "2"}),
        client_(server_.client_options()) {}
  ntktest::ServerProcess server_;
  ntkclient::Client client_;
};

TEST_F(RoundTrip, FitAndPredictEqualTheInProcessLibraryBitForBit) {
  const auto x = random_inputs(180, 12, 1);
  const auto y = random_labels(180, 4, 2);
  const auto t = random_inputs(77, 12, 3);
  client_.upload("train", x.view(), &y);
  pb::FitRequest fit;
  fit.set_dataset("train");
  *fit.mutable_spec() = relu3();
  fit.set_lambda(1e-2);
  fit.set_solver(pb::SOLVER_MATRIX_FREE);
  const auto job = client_.fit(fit);
  const auto end = client_.watch(job.job_id());
  ASSERT_EQ(end.state(), pb::SUCCEEDED) << end.message();

  // The same fit in this process, on the same backend kind and thread count.
  ntk::BackendOptions bo;
  bo.threads = 2;
  auto backend = ntk::make_backend("cpu", bo);
  ntk::ComputeType dtype;
  const ntk::KernelSpec spec = ntkwire::from_proto(relu3(), dtype);
  ntk::FitSettings settings;
  settings.lambda = 1e-2;
  settings.solver = ntk::SolverKind::matrix_free;
  const ntk::Model local =
      ntk::fit_classifier(*backend, spec, x.view(), ntk::targets_from_labels(y, 4, 0), settings);

  // The exported model file holds the same coefficients.
  const ntk::Model remote = ntk::deserialize_model(client_.export_model(job.model_id()), "exported");
  EXPECT_TRUE(bitwise_equal(remote.coefficients, local.coefficients));
  EXPECT_EQ(remote.diagnostics.steps, local.diagnostics.steps);

  // Predictions in several batches (batch_rows 10: 8 responses) equal the library's on the same
  // batches bit for bit (BLAS may round differently for another row count, e.g. gemv for one row).
  ntkclient::PredictOptions po;
  po.batch_rows = 10;
  const auto p = client_.predict(job.model_id(), t.view(), po);
  EXPECT_EQ(p.batches, 8);
  for (std::int64_t r0 = 0; r0 < 77; r0 += 10) {
    const std::int64_t rows = std::min<std::int64_t>(10, 77 - r0);
    const ntk::Prediction b = ntk::predict(*backend, local, t.view().block(r0, 0, rows, 12));
    EXPECT_EQ(0, std::memcmp(b.logits.data(), p.logits.row_data(r0), b.logits.size() * sizeof(double))) << r0;
    EXPECT_EQ(0, std::memcmp(b.probs.data(), p.probs.row_data(r0), b.probs.size() * sizeof(double))) << r0;
  }
  const ntk::Prediction lp = ntk::predict(*backend, local, t.view());
  po.batch_rows = 0;
  const auto one = client_.predict(job.model_id(), t.view(), po);
  EXPECT_TRUE(bitwise_equal(one.logits, lp.logits));
  EXPECT_TRUE(bitwise_equal(one.probs, lp.probs));
  EXPECT_EQ(one.classes, lp.classes);

  // Linearized uncertainty, one batch, equal to the library's.
  po.batch_rows = 0;
  po.uncertainty = pb::UNCERTAINTY_LINEARIZED;
  const auto pu = client_.predict(job.model_id(), t.view(), po);
  ntk::UncertaintyOptions uo;
  uo.mode = ntk::UncertaintyMode::linearized;
  const auto lu = ntk::predict_uncertainty(*backend, local, t.view(), uo);
  EXPECT_TRUE(bitwise_equal(pu.logit_var, lu.logit_var));
  ASSERT_EQ(pu.mutual_info.size(), 77u);
  for (std::size_t i = 0; i < 77; ++i)
    EXPECT_EQ(pu.mutual_info[i], lu.mutual_info(static_cast<std::int64_t>(i), 0));

  // A dataset id as the test input gives the same rows as sending them inline.
  client_.upload("test", t.view(), nullptr);
  const auto pd = client_.predict_dataset(job.model_id(), "test");
  EXPECT_TRUE(bitwise_equal(pd.logits, lp.logits));
}

TEST_F(RoundTrip, ClosedFormAndKernelTilesMatchTheLibrary) {
  const auto x = random_inputs(60, 5, 4);
  const auto y = random_labels(60, 3, 5);
  client_.upload("small", x.view(), &y);
  pb::FitRequest fit;
  fit.set_dataset("small");
  *fit.mutable_spec() = relu3();
  fit.set_lambda(0);
  fit.set_label_smoothing(0.1);
  const auto end = client_.watch(client_.fit(fit).job_id());
  ASSERT_EQ(end.state(), pb::SUCCEEDED) << end.message();
  const auto info = client_.list_models().at(0);
  EXPECT_EQ(info.solver_used(), "closed_form");
  EXPECT_TRUE(info.supports_exact_uncertainty());
  ntkclient::PredictOptions po;
  po.uncertainty = pb::UNCERTAINTY_EXACT;
  const auto p = client_.predict(info.model_id(), x.view(), po);
  EXPECT_EQ(p.logits.rows(), 60);
  for (double v : p.mutual_info) EXPECT_GE(v, -1e-12);

  ntk::BackendOptions bo;
  bo.threads = 2;
  auto backend = ntk::make_backend("cpu", bo);
  ntk::ComputeType dtype;
  const ntk::KernelSpec spec = ntkwire::from_proto(relu3(), dtype);
  ntk::Matrix<double> k(60, 60);
  ntk::AssemblyOptions ao;
  ao.threads = 2;
  backend->kernel(spec, x.view(), nullptr, {{}, k.view()}, ao);
  const auto remote = client_.kernel(relu3(), pb::NTK, x.view());
  EXPECT_TRUE(bitwise_equal(remote, k));
}

TEST_F(RoundTrip, ExportedModelImportsAsANewModelWithTheSamePredictions) {
  const auto x = random_inputs(50, 4, 6);
  const auto y = random_labels(50, 2, 7);
  client_.upload("d", x.view(), &y);
  pb::FitRequest fit;
  fit.set_dataset("d");
  *fit.mutable_spec() = relu3();
  fit.set_lambda(1e-1);
  const auto job = client_.fit(fit);
  ASSERT_EQ(client_.watch(job.job_id()).state(), pb::SUCCEEDED);
  const auto bytes = client_.export_model(job.model_id());
  const auto imported = client_.import_model(bytes);
  EXPECT_NE(imported.model_id(), job.model_id());
  const auto a = client_.predict(job.model_id(), x.view());
  const auto b = client_.predict(imported.model_id(), x.view());
  EXPECT_TRUE(bitwise_equal(a.logits, b.logits));
  client_.delete_model(imported.model_id());
  EXPECT_EQ(client_.list_models().size(), 1u);
}

}  // namespace
