// Tests of <deepstruct/layer_norm.hpp> against PyTorch (tests/data/torch_training.json).
#include <deepstruct/layer_norm.hpp>
#include <deepstruct/random.hpp>

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
  // No forward yet, or a failed one: state_error, not a shape mismatch or a backward of old data.
  deepstruct::LayerNorm<float> fresh(3);
  CHECK_THROWS_AS(fresh.backward(Eigen::MatrixXf::Zero(3, 2), y), deepstruct::state_error);
  CHECK_THROWS_AS(fresh.backward(Eigen::MatrixXf(0, 0), y), deepstruct::state_error);
  CHECK_THROWS_AS(norm.forward(Eigen::MatrixXf::Zero(4, 2), y), deepstruct::shape_error);
  CHECK_THROWS_AS(norm.backward(Eigen::MatrixXf::Zero(3, 2), y), deepstruct::state_error);
}

TEST_CASE("LayerNorm: apply and forward into a matrix the input is part of", "[layer_norm]") {
  deepstruct::LayerNorm<double> norm(4);
  norm.set_weight(Eigen::Vector4d(1.5, -0.5, 2.0, 0.25));
  norm.set_bias(Eigen::Vector4d(0.1, 0.2, -0.3, 0.4));
  const Eigen::MatrixXd m = Eigen::MatrixXd::Random(4, 8);
  Eigen::MatrixXd ref, y;
  norm.apply(m.leftCols(5), ref);
  // x = the first 5 columns of y: y is resized to 4x5 (freeing x) and written over x.
  y = m;
  norm.apply(y.leftCols(5), y);
  CHECK(y == ref);
  y = m;
  norm.apply(y.rightCols(5), y);
  Eigen::MatrixXd ref_right;
  norm.apply(m.rightCols(5), ref_right);
  CHECK(y == ref_right);
  y = m;
  norm.forward(y.leftCols(5), y);
  CHECK(y == ref);
  // y itself, in place.
  y = m.leftCols(5);
  norm.apply(y, y);
  CHECK(y == ref);
}

TEMPLATE_TEST_CASE("LayerNorm: apply gives forward's output and leaves backward's state alone", "[layer_norm]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  using Vec = Eigen::Matrix<TestType, -1, 1>;
  deepstruct::Generator gen(5);
  auto random = [&](Eigen::Index rows, Eigen::Index cols) {
    Mat m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
    return m;
  };
  deepstruct::LayerNorm<TestType> norm(6);
  norm.set_weight(Vec(random(6, 1)));
  norm.set_bias(Vec(random(6, 1)));
  const Mat x1 = random(6, 4), x2 = 3 * random(6, 4), g = random(6, 4);
  // The reference: forward(x1), backward(g).
  Mat y1, gx_ref;
  norm.forward(x1, y1);
  norm.backward(g, gx_ref);
  const Vec gw_ref = norm.weight_grad(), gb_ref = norm.bias_grad();
  // apply() is const and computes what forward() computes, also in place.
  const deepstruct::LayerNorm<TestType>& const_norm = norm;
  Mat y2, y2_forward;
  const_norm.apply(x2, y2);
  Mat in_place = x2;
  const_norm.apply(in_place, in_place);
  deepstruct::LayerNorm<TestType> other = norm;
  other.forward(x2, y2_forward);
  CHECK(y2 == y2_forward);
  CHECK(in_place == y2_forward);
  // forward(x1), apply(x2), backward(g): the backward of forward(x1), as if apply never ran.
  norm.zero_grad();
  norm.forward(x1, y1);
  Mat ignored;
  const_norm.apply(x2, ignored);
  Mat gx;
  norm.backward(g, gx);
  CHECK(gx == gx_ref);
  CHECK(norm.weight_grad() == gw_ref);
  CHECK(norm.bias_grad() == gb_ref);
  CHECK_THROWS_AS(const_norm.apply(Mat::Zero(5, 2), ignored), deepstruct::shape_error);
}
