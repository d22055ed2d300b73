// Tests of <deepstruct/loss.hpp> against PyTorch (tests/data/torch_training.json).
#include <deepstruct/loss.hpp>

#include <limits>

#include "test_support.hpp"

namespace {
deepstruct::Labels labels(const nlohmann::json& j) {
  deepstruct::Labels y(static_cast<Eigen::Index>(j.size()));
  for (Eigen::Index i = 0; i < y.size(); ++i) y[i] = j[static_cast<std::size_t>(i)].get<int>();
  return y;
}
}  // namespace

TEMPLATE_TEST_CASE("loss: cross-entropy and its gradient match PyTorch", "[loss][parity]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  const nlohmann::json f = test::load_json("torch_training.json")["cross_entropy"];
  const Mat logits = test::matrix<TestType>(f["logits"]).transpose();  // classes x batch
  Mat grad;
  CHECK(deepstruct::cross_entropy(logits, labels(f["labels"]), &grad) == Approx(f["loss"].get<double>()).epsilon(test::tol<TestType>(10)));
  CHECK(test::max_rel_diff(grad.transpose().template cast<double>(), test::matrix<double>(f["grad"])) <= test::tol<TestType>(10));
  // Logits of +-1000 must neither overflow nor give NaN.
  const Mat big = test::matrix<TestType>(f["large_logits"]).transpose();
  const double loss = deepstruct::cross_entropy(big, labels(f["large_labels"]), &grad);
  CHECK(std::isfinite(loss));
  CHECK(loss == Approx(f["large_loss"].get<double>()).epsilon(1e-6));
  // exp(z - logsumexp) loses about |z| ulps: the tolerance scales with the logits' size.
  CHECK(test::max_rel_diff(grad.transpose().template cast<double>(), test::matrix<double>(f["large_grad"])) <= test::tol<TestType>(10 * 1000));
  const deepstruct::Labels predicted = deepstruct::argmax_columns(logits);
  for (Eigen::Index b = 0; b < logits.cols(); ++b) CHECK(logits(predicted[b], b) == logits.col(b).maxCoeff());
}

TEMPLATE_TEST_CASE("loss: mse and its gradient match PyTorch", "[loss][parity]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  const nlohmann::json f = test::load_json("torch_training.json")["mse"];
  Mat grad;
  const Mat p = test::matrix<TestType>(f["prediction"]).transpose(), t = test::matrix<TestType>(f["target"]).transpose();
  CHECK(deepstruct::mse_loss(p, t, &grad) == Approx(f["loss"].get<double>()).epsilon(test::tol<TestType>(10)));
  CHECK(test::max_rel_diff(grad.transpose().template cast<double>(), test::matrix<double>(f["grad"])) <= test::tol<TestType>(10));
}

TEST_CASE("loss: bad inputs throw", "[loss]") {
  Eigen::MatrixXf logits = Eigen::MatrixXf::Zero(3, 2);
  deepstruct::Labels y(2);
  y << 0, 3;
  try {
    deepstruct::cross_entropy(logits, y);
    FAIL("no exception");
  } catch (const deepstruct::value_error& e) {
    CHECK(std::string(e.what()).find("expected labels in [0, 3), found 3 for sample 1") != std::string::npos);
  }
  CHECK_THROWS_AS(deepstruct::cross_entropy(logits, deepstruct::Labels::Zero(3)), deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::cross_entropy(Eigen::MatrixXf(3, 0), deepstruct::Labels(0)), deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::mse_loss(logits, Eigen::MatrixXf::Zero(2, 3)), deepstruct::shape_error);
  // A bad label leaves the gradient as it was (every label is checked before it is written).
  Eigen::MatrixXf grad = Eigen::MatrixXf::Constant(3, 2, 7.0f);
  CHECK_THROWS_AS(deepstruct::cross_entropy(logits, y, &grad), deepstruct::value_error);
  CHECK(grad == Eigen::MatrixXf::Constant(3, 2, 7.0f));
}

TEST_CASE("loss: argmax_columns takes the first largest, a NaN as the largest (torch.argmax); no rows is a shape_error", "[loss]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Eigen::MatrixXf logits(3, 4);
  logits << 1, 2, nan, 5,  //
      nan, 2, 0, 5,        //
      2, 1, nan, 1;
  deepstruct::Labels expected(4);
  expected << 1, 0, 0, 0;
  CHECK(deepstruct::argmax_columns(logits) == expected);
  CHECK_THROWS_AS(deepstruct::argmax_columns(Eigen::MatrixXf(0, 2)), deepstruct::shape_error);
  CHECK(deepstruct::argmax_columns(Eigen::MatrixXf(3, 0)).size() == 0);
}
