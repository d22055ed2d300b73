// Tests of <deepstruct/activation.hpp> against PyTorch (tests/data/torch_training.json).
#include <deepstruct/activation.hpp>

#include <limits>

#include "test_support.hpp"

TEMPLATE_TEST_CASE("activation: values and derivatives match PyTorch", "[activation][parity]", float, double) {
  using Vec = Eigen::Matrix<TestType, -1, 1>;
  const nlohmann::json fixture = test::load_json("torch_training.json")["activations"];
  const Vec x = test::vector<TestType>(fixture["x"]);
  for (auto it = fixture["cases"].begin(); it != fixture["cases"].end(); ++it) {
    INFO("activation " << it.key());
    const deepstruct::Activation a = deepstruct::activation_from_string(it.key());
    CHECK(std::string(deepstruct::to_string(a)) == it.key());
    Vec y(x.size()), g(x.size());
    deepstruct::activate(a, x, y);
    CHECK(test::max_rel_diff(y.template cast<double>(), test::vector<double>(it.value()["y"])) <= test::tol<TestType>(10));
    const Vec ones = Vec::Ones(x.size());
    deepstruct::activation_backward(a, x, y, ones, g);
    CHECK(test::max_rel_diff(g.template cast<double>(), test::vector<double>(it.value()["dy_dx"])) <= test::tol<TestType>(10));
    // In place, as the networks use it.
    Vec inplace = x;
    deepstruct::activate(a, inplace, inplace);
    CHECK(inplace == y);
  }
  Vec id(3), out(3);
  id << -1, 0, 2;
  deepstruct::activate(deepstruct::Activation::identity, id, out);
  CHECK(out == id);
  CHECK_THROWS_AS(deepstruct::activation_from_string("swish"), deepstruct::value_error);
  // ReLU's derivative at NaN passes the gradient, as PyTorch's (threshold_backward tests the
  // output, NaN <= 0 is false); at 0 it is 0.
  Vec pre(4), post(4), grad(4);
  pre << std::numeric_limits<TestType>::quiet_NaN(), -1, 0, 2;
  deepstruct::activate(deepstruct::Activation::relu, pre, post);
  deepstruct::activation_backward(deepstruct::Activation::relu, pre, post, Vec::Ones(4).eval(), grad);
  CHECK(grad == Vec(Eigen::Matrix<TestType, 4, 1>(1, 0, 0, 1)));
}

TEMPLATE_TEST_CASE("activation: a value's activation does not depend on where it is in a matrix", "[activation]", float, double) {
  // Eigen evaluates the last size % packet values of an array without SIMD, whose tanh and exp
  // are not the SIMD ones; activate_values puts them through a zero-padded packet instead, so
  // that a batch tile and a whole matrix (predict and forward) agree bit for bit.
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  deepstruct::Generator gen(3);
  const Mat values = test::random_matrix<TestType>(37, 1, gen) * TestType(3);
  for (const deepstruct::Activation a : {deepstruct::Activation::relu, deepstruct::Activation::tanh, deepstruct::Activation::sigmoid,
                                         deepstruct::Activation::gelu, deepstruct::Activation::leaky_relu, deepstruct::Activation::identity}) {
    INFO(deepstruct::to_string(a));
    // Each value alone, at the start of a full packet (the SIMD path).
    Mat alone(64, values.size());
    for (Eigen::Index j = 0; j < values.size(); ++j) alone.col(j).setConstant(values(j));
    deepstruct::activate(a, alone, alone);
    // All 37 in one column: most in packets, the last few in the tail.
    Mat column = values, out;
    deepstruct::activate(a, column, out);
    REQUIRE(out.rows() == 37);  // resized
    for (Eigen::Index j = 0; j < values.size(); ++j) CHECK(out(j) == alone(0, j));
    // activate_values on a part of a buffer, and activate on an expression (a block).
    std::vector<TestType> buf(values.data(), values.data() + values.size());
    deepstruct::activate_values(a, buf.data() + 5, buf.data() + 5, 30);
    for (Eigen::Index j = 5; j < 35; ++j) CHECK(buf[static_cast<std::size_t>(j)] == alone(0, j));
    CHECK(buf[0] == values(0));
    CHECK(buf[36] == values(36));
    Mat big = Mat::Zero(40, 2), block_out(37, 1);
    big.topLeftCorner(37, 1) = values;
    deepstruct::activate(a, big.topLeftCorner(37, 1), block_out);
    if (a != deepstruct::Activation::tanh && a != deepstruct::Activation::sigmoid) CHECK(block_out == out);
    else CHECK((block_out - out).cwiseAbs().maxCoeff() <= 4 * std::numeric_limits<TestType>::epsilon());
    // Plain matrices of different storage orders: element by element, not memory order.
    const Mat square = test::random_matrix<TestType>(5, 7, gen);
    const Eigen::Matrix<TestType, -1, -1, Eigen::RowMajor> row_major = square;
    Mat from_row_major, from_col_major;
    deepstruct::activate(a, row_major, from_row_major);
    deepstruct::activate(a, square, from_col_major);
    CHECK((from_row_major - from_col_major).cwiseAbs().maxCoeff() <= 4 * std::numeric_limits<TestType>::epsilon());
  }
}
