// Tests of <deepstruct/layer_norm.hpp> against PyTorch (tests/data/torch_training.json).
#include <deepstruct/layer_norm.hpp>

#include "test_support.hpp"

TEMPLATE_TEST_CASE("LayerNorm: forward and backward match PyTorch", "[layer_norm][parity]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  const nlohmann::json f = test::load_json("torch_training.json")["layer_norm"];
  deepstruct::LayerNorm<TestType> norm(7);
  CHECK(norm.weight() == Eigen::Matrix<TestType, -1, 1>::Ones(7));
  CHECK(norm.bias() == Eigen::Matrix<TestType, -1, 1>::Zero(7));
  norm.set_weight(test::vector<TestType>(f["weight"]));
  norm.set_bias(test::vector<TestType>(f["bias"]));
  const Mat x = test::matrix<TestType>(f["x"]).transpose();
  Mat y, gx;
  norm.forward(x, y);
  CHECK(test::max_rel_diff(y.transpose().template cast<double>(), test::matrix<double>(f["y"])) <= test::tol<TestType>(50));
  const Mat g = test::matrix<TestType>(f["grad_output"]).transpose();
  norm.backward(g, gx);
  CHECK(test::max_rel_diff(gx.transpose().template cast<double>(), test::matrix<double>(f["grad_x"])) <= test::tol<TestType>(50));
  CHECK(test::max_rel_diff(norm.weight_grad().template cast<double>(), test::vector<double>(f["grad_weight"])) <= test::tol<TestType>(50));
  CHECK(test::max_rel_diff(norm.bias_grad().template cast<double>(), test::vector<double>(f["grad_bias"])) <= test::tol<TestType>(50));
  // In place (grad_input aliasing grad_output), as the networks call it.
  norm.zero_grad();
  Mat inplace = g;
  norm.backward(inplace, inplace);
  CHECK(test::max_rel_diff(inplace, gx) <= test::tol<TestType>(10));
}

TEST_CASE("LayerNorm: bad inputs throw", "[layer_norm]") {
  CHECK_THROWS_AS(deepstruct::LayerNorm<float>(0), deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::LayerNorm<float>(3, 0.0), deepstruct::value_error);
  deepstruct::LayerNorm<float> norm(3);
  Eigen::MatrixXf y;
  CHECK_THROWS_AS(norm.forward(Eigen::MatrixXf::Zero(4, 2), y), deepstruct::shape_error);
  CHECK_THROWS_AS(norm.set_weight(Eigen::VectorXf::Zero(2)), deepstruct::shape_error);
  norm.forward(Eigen::MatrixXf::Ones(3, 2), y);
  CHECK(y.cwiseAbs().maxCoeff() == 0.0f);  // constant input normalises to 0, not NaN
  CHECK_THROWS_AS(norm.backward(Eigen::MatrixXf::Zero(3, 5), y), deepstruct::shape_error);
}
