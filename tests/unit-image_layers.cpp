// Tests of the image layers: <deepstruct/masked_conv2d.hpp>, <deepstruct/batch_norm2d.hpp>,
// <deepstruct/pooling.hpp> against PyTorch (tests/data/image_layers.json, made by
// tools/make_image_layers.py) and by finite differences; channel pruning against
// torch.nn.utils.prune.ln_structured.
#include <deepstruct/batch_norm2d.hpp>
#include <deepstruct/masked_conv2d.hpp>
#include <deepstruct/model_io.hpp>
#include <deepstruct/pooling.hpp>
#include <deepstruct/prune.hpp>
#include <deepstruct/sparse_training.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using Mat = Eigen::MatrixXd;
using deepstruct::ImageShape;

ImageShape shape_of(const nlohmann::json& t) {
  return ImageShape{static_cast<Eigen::Index>(t[0].size()), static_cast<Eigen::Index>(t[0][0].size()),
                    static_cast<Eigen::Index>(t[0][0][0].size())};
}

deepstruct::Conv2dOptions conv_options(const nlohmann::json& c) {
  deepstruct::Conv2dOptions o;
  for (int a = 0; a < 2; ++a) {
    o.kernel[a] = c["kernel"][a].get<Eigen::Index>();
    o.stride[a] = c["stride"][a].get<Eigen::Index>();
    o.padding[a] = c["padding"][a].get<Eigen::Index>();
    o.dilation[a] = c["dilation"][a].get<Eigen::Index>();
  }
  o.groups = c["groups"].get<Eigen::Index>();
  o.bias = c["bias"].get<bool>();
  return o;
}

template <typename Scalar>
deepstruct::MaskedConv2d<Scalar> conv_from(const nlohmann::json& c) {
  deepstruct::MaskedConv2d<Scalar> conv(c["in_channels"].get<Eigen::Index>(), c["out_channels"].get<Eigen::Index>(), conv_options(c));
  std::vector<Eigen::Index> dims;
  conv.set_weight(test::flattened<Scalar>(c["weight"], dims));
  CHECK(dims == conv.weight_shape(0));
  conv.set_mask(test::flattened_mask(c["mask"]));
  if (c["bias"].get<bool>()) conv.set_bias(test::vector<Scalar>(c["bias_value"]));
  return conv;
}

/// Central differences of sum(grad_y o f(x)) with respect to one value.
template <typename F>
double numeric(F&& loss, double& value, double h = 1e-6) {
  const double saved = value;
  value = saved + h;
  const double up = loss();
  value = saved - h;
  const double down = loss();
  value = saved;
  return (up - down) / (2 * h);
}

}  // namespace

TEST_CASE("MaskedConv2d: PyTorch's output and gradients on both paths (image_layers.json)", "[conv2d][parity]") {
  const auto fixture = test::load_json("image_layers.json");
  int index = 0;
  for (const auto& c : fixture["conv2d"]) {
    for (const auto path : {deepstruct::Execution::dense, deepstruct::Execution::sparse}) {
      INFO("case " << index << (path == deepstruct::Execution::sparse ? " sparse" : " dense"));
      auto conv = conv_from<double>(c);
      conv.set_execution(path);
      const ImageShape in = shape_of(c["x"]);
      const Mat x = test::images<double>(c["x"]);
      Mat y;
      conv.forward(x, in, y);
      const ImageShape out = conv.output_shape(in);
      CHECK(out == shape_of(c["y"]));
      CHECK(test::max_rel_diff(y, test::images<double>(c["y"])) < 1e-12);
      Mat gx;
      conv.backward(x, in, test::images<double>(c["grad_y"]), &gx);
      CHECK(test::max_rel_diff(gx, test::images<double>(c["grad_x"])) < 1e-12);
      std::vector<Eigen::Index> dims;
      CHECK(test::max_rel_diff(conv.weight_grad(), test::flattened<double>(c["grad_weight"], dims)) < 1e-12);
      if (c["bias"].get<bool>()) CHECK(test::max_rel_diff(Mat(conv.bias_grad()), Mat(test::vector<double>(c["grad_bias"]))) < 1e-12);
      // float: the same within float rounding.
      auto convf = conv_from<float>(c);
      convf.set_execution(path);
      Eigen::MatrixXf yf;
      convf.forward(x.cast<float>(), in, yf);
      CHECK(test::max_rel_diff(yf, y) < 1e-5);
    }
    ++index;
  }
}

TEST_CASE("MaskedConv2d: finite-difference gradients with stride, padding, dilation and groups", "[conv2d][gradient]") {
  deepstruct::Conv2dOptions o;
  o.kernel = {3, 2};
  o.stride = {2, 1};
  o.padding = {1, 1};
  o.dilation = {1, 2};
  o.groups = 2;
  for (const auto path : {deepstruct::Execution::dense, deepstruct::Execution::sparse}) {
    deepstruct::MaskedConv2d<double> conv(4, 6, o, 3);
    deepstruct::Generator gen(5);
    auto m = conv.mask();
    for (Eigen::Index i = 0; i < m.size(); ++i) m(i) = deepstruct::random::bernoulli(gen, 0.6);
    conv.set_mask(m);
    conv.set_execution(path);
    const ImageShape in{4, 5, 6};
    Mat x = Mat::Random(in.size(), 3);
    const Mat g = Mat::Random(conv.output_shape(in).size(), 3);
    auto loss = [&]() {
      Mat y;
      conv.forward(x, in, y);
      return (y.array() * g.array()).sum();
    };
    Mat gx;
    conv.zero_grad();
    conv.backward(x, in, g, &gx);
    for (Eigen::Index i = 0; i < x.size(); i += 7) CHECK(gx(i) == Approx(numeric(loss, x(i))).epsilon(1e-6).margin(1e-8));
    for (Eigen::Index i = 0; i < conv.weight().size(); ++i) {
      Mat w = conv.weight();
      auto wloss = [&]() {
        conv.set_weight(w);
        return loss();
      };
      const double expected = m(i) ? numeric(wloss, w(i)) : 0.0;
      CHECK(conv.weight_grad()(i) == Approx(expected).margin(1e-7));
    }
  }
}

TEST_CASE("MaskedConv2d: shapes, PyTorch's initialisation bound, named errors", "[conv2d]") {
  deepstruct::MaskedConv2d<float> conv(3, 8, deepstruct::Conv2dOptions::square(5, 2, 2), 1);
  CHECK(conv.fan_in() == 75);
  CHECK(conv.weight_shape(0) == std::vector<Eigen::Index>{8, 3, 5, 5});
  const double bound = 1.0 / std::sqrt(75.0);
  CHECK(conv.weight().cwiseAbs().maxCoeff() <= bound);
  CHECK(conv.weight().cwiseAbs().maxCoeff() > 0.9 * bound);
  CHECK(conv.bias().cwiseAbs().maxCoeff() <= bound);
  CHECK(conv.output_shape({3, 28, 28}) == ImageShape{8, 14, 14});
  CHECK_THROWS_AS(conv.output_shape({2, 28, 28}), deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::MaskedConv2d<float>(3, 4, [] {
                    auto o = deepstruct::Conv2dOptions::square(3);
                    o.groups = 2;
                    return o;
                  }()),
                  deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::MaskedConv2d<float>(3, 4, deepstruct::Conv2dOptions::square(0)), deepstruct::value_error);
  Eigen::MatrixXf x(10, 2), y;
  CHECK_THROWS_AS(conv.forward(x, {3, 28, 28}, y), deepstruct::shape_error);
  deepstruct::MaskedConv2d<float> small(1, 1, deepstruct::Conv2dOptions::square(5));
  CHECK_THROWS_AS(small.output_shape({1, 3, 3}), deepstruct::shape_error);
  // Too large for memory: refused by name.
  CHECK_THROWS_AS(deepstruct::MaskedConv2d<float>(Eigen::Index(1) << 31, Eigen::Index(1) << 31, deepstruct::Conv2dOptions::square(3)),
                  deepstruct::shape_error);
}

TEST_CASE("MaskedConv2d: a dilation or padding whose arithmetic overflows is a shape_error, not a negative size", "[conv2d]") {
  // dilation 2^62 * (3 - 1) + 1 wraps to a negative reach: without the check output_shape gave a
  // negative height and forward aborted in Eigen's resize.
  const Eigen::Index big = Eigen::Index(1) << 62;
  deepstruct::Conv2dOptions o;
  o.dilation = {big, 1};
  deepstruct::MaskedConv2d<float> dilated(1, 1, o);
  CHECK_THROWS_AS(dilated.output_shape({1, 5, 5}), deepstruct::shape_error);
  Eigen::MatrixXf x = Eigen::MatrixXf::Ones(25, 1), y;
  CHECK_THROWS_AS(dilated.forward(x, {1, 5, 5}, y), deepstruct::shape_error);
  o = deepstruct::Conv2dOptions{};
  o.padding = {0, big};
  deepstruct::MaskedConv2d<float> padded(1, 1, o);
  CHECK_THROWS_AS(padded.output_shape({1, 5, 5}), deepstruct::shape_error);
  // An output of more than 2^63 values: 2^21 channels x (2^21 x 2^21) positions.
  o = deepstruct::Conv2dOptions::square(1, 1, Eigen::Index(1) << 20);
  deepstruct::MaskedConv2d<float> wide(1, Eigen::Index(1) << 21, o);
  CHECK_THROWS_AS(wide.output_shape({1, 1, 1}), deepstruct::shape_error);
}

TEST_CASE("Image layers: an output sharing memory with an input is a shape_error, and nothing changes", "[conv2d][pool]") {
  const ImageShape in{2, 6, 6};
  // The same size (stride 1, padding 1): in place, the convolution would read what it has written.
  deepstruct::MaskedConv2d<double> same(2, 2, deepstruct::Conv2dOptions::square(3, 1, 1), 3);
  // A smaller output (stride 2): resizing y would free x.
  deepstruct::MaskedConv2d<double> reduce(2, 2, deepstruct::Conv2dOptions::square(3, 2, 1), 3);
  Mat m = Mat::Random(in.size(), 3);
  const Mat before = m;
  for (auto* conv : {&same, &reduce}) {
    CHECK_THROWS_WITH(conv->forward(m, in, m), test::contains("MaskedConv2d::forward: expected y not to share memory with x"));
    CHECK(m == before);
    Mat wide = Mat::Random(in.size(), 6);  // x a view of y's first columns
    CHECK_THROWS_AS(conv->forward(wide.leftCols(3), in, wide), deepstruct::shape_error);
    Mat y;
    conv->forward(m, in, y);
    Mat g = Mat::Random(y.rows(), y.cols()), gx;
    const Mat g_before = g;
    CHECK_THROWS_WITH(conv->backward(m, in, g, &m), test::contains("grad_x not to share memory with x"));
    CHECK_THROWS_WITH(conv->backward(m, in, g, &g), test::contains("grad_x not to share memory with grad_y"));
    CHECK(m == before);
    CHECK(g == g_before);
    conv->backward(m, in, g, &gx);  // matrices of their own
    CHECK(gx.rows() == in.size());
  }
  // The pooling layers, each in place forward and backward (an expression as input is not memory).
  auto check_pool = [&](const auto& pool, const char* name) {
    CAPTURE(name);
    Mat x = before;
    CHECK_THROWS_WITH(pool.forward(x, in, x), test::contains(std::string(name) + "::forward: expected y not to share memory with x"));
    CHECK(x == before);
    Mat y, gx;
    pool.forward(x, in, y);
    Mat g = Mat::Random(y.rows(), y.cols());
    CHECK_THROWS_AS(pool.backward(x, in, g, x), deepstruct::shape_error);
    CHECK_THROWS_AS(pool.backward(x, in, g, g), deepstruct::shape_error);
    CHECK(x == before);
    Mat from_expression;
    pool.forward(x * 1.0, in, from_expression);
    CHECK(from_expression == y);
  };
  check_pool(deepstruct::MaxPool2d(deepstruct::Pool2dOptions::square(2)), "MaxPool2d");
  check_pool(deepstruct::AvgPool2d(deepstruct::Pool2dOptions::square(2)), "AvgPool2d");
  check_pool(deepstruct::AdaptiveAvgPool2d(2, 3), "AdaptiveAvgPool2d");
}

TEST_CASE("MaskedConv2d: state_dict with the 4-d shape, _mask only when pruned, npz round trip", "[conv2d][model_io]") {
  deepstruct::MaskedConv2d<double> conv(2, 3, deepstruct::Conv2dOptions::square(3), 4);
  deepstruct::StateDict<double> sd;
  conv.state_dict(sd, "c.");
  CHECK(sd.matrices.count("c.weight") == 1);
  CHECK(sd.shapes.at("c.weight") == std::vector<Eigen::Index>{3, 2, 3, 3});
  CHECK(sd.masks.count("c._mask") == 0);  // unpruned: PyTorch's keys
  auto m = conv.mask();
  m(1, 4) = false;
  conv.set_mask(m);
  deepstruct::StateDict<double> pruned;
  conv.state_dict(pruned, "c.");
  CHECK(pruned.masks.count("c._mask") == 1);
  // Through an npz archive: 4-d arrays, and back.
  const auto archive = deepstruct::to_npz(pruned);
  CHECK(archive.at("c.weight").shape == std::vector<std::size_t>{3, 2, 3, 3});
  CHECK(archive.at("c._mask").shape == std::vector<std::size_t>{3, 2, 3, 3});
  const auto back = deepstruct::state_dict_from_npz<double>(archive);
  deepstruct::MaskedConv2d<double> other(2, 3, deepstruct::Conv2dOptions::square(3), 9);
  std::vector<std::string> expected;
  other.check_state_dict(back, "c.", expected);
  other.load_state_dict(back, "c.");
  CHECK(other.weight() == conv.weight());
  CHECK(other.mask() == conv.mask());
  CHECK(other.nnz() == 53);
  // Without _mask: every weight active.
  other.load_state_dict(sd, "c.");
  CHECK(other.nnz() == 54);
  // A wrong 4-d shape with the right matrix size is refused.
  auto wrong = back;
  wrong.shapes["c.weight"] = {3, 3, 2, 3};
  std::vector<std::string> keys;
  CHECK_THROWS_AS(other.check_state_dict(wrong, "c.", keys), deepstruct::shape_error);
}

TEST_CASE("MaskedConv2d: a NaN behind the mask affects neither path; RigL's dense gradient", "[conv2d]") {
  deepstruct::MaskedConv2d<double> conv(2, 2, deepstruct::Conv2dOptions::square(3, 1, 1), 2);
  auto m = conv.mask();
  m(0, 0) = false;
  conv.set_mask(m);
  Mat w = conv.weight();
  w(0, 0) = std::numeric_limits<double>::quiet_NaN();
  conv.set_weight(w);
  const ImageShape in{2, 4, 4};
  const Mat x = Mat::Random(in.size(), 2), g = Mat::Random(conv.output_shape(in).size(), 2);
  Mat y[2], gx[2];
  int i = 0;
  for (const auto path : {deepstruct::Execution::dense, deepstruct::Execution::sparse}) {
    conv.set_execution(path);
    conv.set_dense_gradient(true);
    conv.zero_grad();
    conv.forward(x, in, y[i]);
    conv.backward(x, in, g, &gx[i]);
    CHECK(y[i].allFinite());
    CHECK(gx[i].allFinite());
    CHECK(conv.weight_grad()(0, 0) == 0.0);
    REQUIRE(conv.dense_gradient(0) != nullptr);
    CHECK((*conv.dense_gradient(0))(0, 0) != 0.0);  // the gradient behind the mask, for growth
    ++i;
  }
  CHECK(test::max_rel_diff(y[0], y[1]) < 1e-12);
  CHECK(test::max_rel_diff(gx[0], gx[1]) < 1e-12);
}

TEST_CASE("BatchNorm2d: PyTorch's training and evaluation modes (image_layers.json)", "[batch_norm2d][parity]") {
  const auto fixture = test::load_json("image_layers.json");
  for (const auto& c : fixture["batch_norm2d"]) {
    const Eigen::Index C = c["channels"].get<Eigen::Index>();
    deepstruct::BatchNorm2d<double> bn(C);
    bn.weight() = test::vector<double>(c["weight"]);
    bn.bias() = test::vector<double>(c["bias"]);
    deepstruct::StateDict<double> sd;
    bn.state_dict(sd, "");
    sd.vectors["running_mean"] = test::vector<double>(c["before"]["running_mean"]);
    sd.vectors["running_var"] = test::vector<double>(c["before"]["running_var"]);
    bn.load_state_dict(sd, "");
    const ImageShape in = shape_of(c["x"]);
    const Mat x = test::images<double>(c["x"]);
    Mat y, gx;
    bn.forward(x, in, y, true);
    CHECK(test::max_rel_diff(y, test::images<double>(c["y"])) < 1e-12);
    bn.backward(x, in, test::images<double>(c["grad_y"]), &gx);
    CHECK(test::max_rel_diff(gx, test::images<double>(c["grad_x"])) < 1e-10);
    CHECK(test::max_rel_diff(Mat(bn.running_mean()), Mat(test::vector<double>(c["after"]["running_mean"]))) < 1e-12);
    CHECK(test::max_rel_diff(Mat(bn.running_var()), Mat(test::vector<double>(c["after"]["running_var"]))) < 1e-12);
    CHECK(bn.num_batches_tracked() == c["after"]["num_batches_tracked"].get<std::int64_t>());
    // Evaluation: forward in eval mode, its backward, and predict.
    const Mat xe = test::images<double>(c["x_eval"]);
    Mat ye, gxe, yp;
    bn.forward(xe, in, ye, false);
    CHECK(test::max_rel_diff(ye, test::images<double>(c["y_eval"])) < 1e-12);
    bn.backward(xe, in, test::images<double>(c["grad_y_eval"]), &gxe);
    CHECK(test::max_rel_diff(gxe, test::images<double>(c["grad_x_eval"])) < 1e-12);
    bn.predict(xe, in, yp);
    CHECK(yp == ye);
    CHECK(bn.num_batches_tracked() == 1);
  }
  deepstruct::BatchNorm2d<float> one(2);
  Eigen::MatrixXf single = Eigen::MatrixXf::Ones(2, 1), out;
  CHECK_THROWS_AS(one.forward(single, {2, 1, 1}, out, true), deepstruct::value_error);
  CHECK(one.num_batches_tracked() == 0);
}

TEST_CASE("BatchNorm2d: backward only for the images of a completed forward; outputs sharing memory with inputs", "[batch_norm2d]") {
  deepstruct::BatchNorm2d<double> bn(2);
  bn.weight() << 1.5, -0.5;
  bn.bias() << 0.1, 0.2;
  const ImageShape in{2, 2, 2};
  const Mat x4 = Mat::Random(in.size(), 4), x2 = x4.leftCols(2), g4 = Mat::Random(in.size(), 4);
  Mat y, gx;
  CHECK_THROWS_AS(bn.backward(x4, in, g4, &gx), deepstruct::state_error);  // no forward
  bn.forward(x4, in, y, true);
  // Another batch or another shape of the same size than the forward's: its statistics do not apply.
  CHECK_THROWS_WITH(bn.backward(x2, in, g4.leftCols(2), &gx), test::contains("expected the images of the last forward, 4 of"));
  CHECK_THROWS_AS(bn.backward(x4, {2, 1, 4}, g4, &gx), deepstruct::shape_error);
  CHECK(bn.weight_grad().isZero());
  // A forward that throws (one value per channel in training mode) leaves no forward behind.
  CHECK_THROWS_AS(bn.forward(Mat::Random(2, 1), {2, 1, 1}, y, true), deepstruct::value_error);
  CHECK_THROWS_AS(bn.backward(x4, in, g4, &gx), deepstruct::state_error);

  // Reference results, then the same calls with outputs that are, or are part of, their inputs.
  deepstruct::BatchNorm2d<double> ref = bn;
  Mat y_ref, gx_ref, p_ref;
  ref.forward(x4, in, y_ref, true);
  ref.backward(x4, in, g4, &gx_ref);
  ref.predict(x4.leftCols(3), in, p_ref);
  deepstruct::BatchNorm2d<double> run = bn;
  Mat m(in.size(), 6);
  m << x4, Mat::Random(in.size(), 2);
  Mat part = m;
  run.forward(part.leftCols(4), in, part, true);  // y resized to 4 columns: x was its first 4
  CHECK(part == y_ref);
  Mat g = g4;
  run.backward(x4, in, g, &g);  // grad_x is grad_y's matrix: in place
  CHECK(g == gx_ref);
  run = bn;
  run.forward(x4, in, y, true);
  Mat gbig(in.size(), 6);
  gbig << g4, Mat::Random(in.size(), 2);
  run.backward(x4, in, gbig.leftCols(4), &gbig);  // grad_y is part of grad_x's matrix
  CHECK(gbig == gx_ref);
  part = m;
  run.predict(part.leftCols(3), in, part);
  CHECK(part == p_ref);
  part = m.leftCols(3);
  run.predict(part, in, part);  // in place
  CHECK(part == p_ref);
}

TEST_CASE("BatchNorm2d: finite-difference gradients in training mode", "[batch_norm2d][gradient]") {
  deepstruct::BatchNorm2d<double> bn(3);
  bn.weight() << 1.5, 0.7, -0.3;
  bn.bias() << 0.1, -0.2, 0.4;
  const ImageShape in{3, 2, 3};
  Mat x = Mat::Random(in.size(), 4);
  const Mat g = Mat::Random(in.size(), 4);
  auto loss = [&]() {
    deepstruct::BatchNorm2d<double> copy = bn;
    Mat y;
    copy.forward(x, in, y, true);
    return (y.array() * g.array()).sum();
  };
  Mat y, gx;
  deepstruct::BatchNorm2d<double> run = bn;
  run.forward(x, in, y, true);
  run.backward(x, in, g, &gx);
  for (Eigen::Index i = 0; i < x.size(); i += 5) CHECK(gx(i) == Approx(numeric(loss, x(i))).epsilon(1e-6).margin(1e-8));
  for (Eigen::Index c = 0; c < 3; ++c) {
    CHECK(run.weight_grad()[c] == Approx(numeric(loss, bn.weight()[c])).epsilon(1e-6).margin(1e-8));
    CHECK(run.bias_grad()[c] == Approx(numeric(loss, bn.bias()[c])).epsilon(1e-6).margin(1e-8));
  }
}

TEST_CASE("Pooling: MaxPool2d, AvgPool2d and AdaptiveAvgPool2d as PyTorch (image_layers.json)", "[pool][parity]") {
  const auto fixture = test::load_json("image_layers.json");
  for (const auto& c : fixture["pool"]) {
    const std::string kind = c["kind"];
    INFO(kind);
    const ImageShape in = shape_of(c["x"]);
    const Mat x = test::images<double>(c["x"]), gy = test::images<double>(c["grad_y"]);
    Mat y, gx;
    if (kind == "adaptive") {
      deepstruct::AdaptiveAvgPool2d pool(c["kernel"][0].get<Eigen::Index>(), c["kernel"][1].get<Eigen::Index>());
      pool.forward(x, in, y);
      pool.backward(x, in, gy, gx);
    } else {
      deepstruct::Pool2dOptions o;
      for (int a = 0; a < 2; ++a) {
        o.kernel[a] = c["kernel"][a].get<Eigen::Index>();
        o.stride[a] = c["stride"][a].get<Eigen::Index>();
        o.padding[a] = c["padding"][a].get<Eigen::Index>();
      }
      if (kind == "max") {
        deepstruct::MaxPool2d pool(o);
        pool.forward(x, in, y);
        pool.backward(x, in, gy, gx);
      } else {
        deepstruct::AvgPool2d pool(o);
        pool.forward(x, in, y);
        pool.backward(x, in, gy, gx);
      }
    }
    CHECK(test::max_rel_diff(y, test::images<double>(c["y"])) < 1e-12);
    CHECK(test::max_rel_diff(gx, test::images<double>(c["grad_x"])) < 1e-12);
  }
  CHECK_THROWS_AS(deepstruct::MaxPool2d(deepstruct::Pool2dOptions::square(2, 2, 2)), deepstruct::value_error);
  deepstruct::AvgPool2d pool(deepstruct::Pool2dOptions::square(4));
  CHECK_THROWS_AS(pool.output_shape({1, 3, 3}), deepstruct::shape_error);
}

TEST_CASE("Pooling: MaxPool2d's gradient goes to the first of tied values and to the last NaN, as PyTorch's", "[pool][parity]") {
  // torch.nn.functional.max_pool2d(x, (1, 4)) on one 1x1x8 image, two windows, and the gradient of
  // y.sum() (torch 1.13): [nan, 1, nan, 0] -> nan, gradient on the last NaN (index 2);
  // [2, 2, 1, 2] -> 2, gradient on the first 2 (index 4).
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const ImageShape in{1, 1, 8};
  Mat x(8, 1);
  x << nan, 1, nan, 0, 2, 2, 1, 2;
  deepstruct::Pool2dOptions o;
  o.kernel = {1, 4};
  deepstruct::MaxPool2d pool(o);
  Mat y, gx;
  pool.forward(x, in, y);
  REQUIRE(y.rows() == 2);
  CHECK(std::isnan(y(0)));
  CHECK(y(1) == 2);
  pool.backward(x, in, Mat::Ones(2, 1), gx);
  Mat expected(8, 1);
  expected << 0, 0, 1, 0, 1, 0, 0, 0;
  CHECK(gx == expected);
}

TEST_CASE("Pooling: a kernel longer than 2^20 is a layer like any other; an adaptive output too large to count is a shape_error",
          "[pool]") {
  // torch.nn.functional.max_pool2d(torch.arange(2.**21 + 3).reshape(1, 1, 1, -1), (1, 2**21)) is
  // [[[[2097151.]]]]: one window over a long row. The constructors used to try the window on a
  // 2^20 x 2^20 image and threw shape_error for any longer kernel.
  deepstruct::Pool2dOptions o;
  o.kernel = {1, Eigen::Index(1) << 21};
  deepstruct::MaxPool2d max(o);
  deepstruct::AvgPool2d avg(o);
  const ImageShape in{1, 1, (Eigen::Index(1) << 21) + 3};
  CHECK(max.output_shape(in) == ImageShape{1, 1, 1});
  Mat x(in.size(), 1), y;
  for (Eigen::Index i = 0; i < x.size(); ++i) x(i) = static_cast<double>(i);
  max.forward(x, in, y);
  CHECK(y(0) == 2097151.0);
  avg.forward(x, in, y);
  CHECK(y(0) == Approx(1048575.5));
  CHECK_THROWS_AS(max.output_shape({1, 1, 5}), deepstruct::shape_error);  // checked where the image is known
  // Bad options are still refused at construction, without overflowing 2 * padding.
  o.kernel = {3, std::numeric_limits<Eigen::Index>::max()};
  o.padding = {0, (Eigen::Index(1) << 62) + 1};
  CHECK_THROWS_AS(deepstruct::MaxPool2d(o), deepstruct::value_error);
  // 2^40 x 2^40 outputs per channel: more than 2^63 values, which wrapped to 0 rows before.
  deepstruct::AdaptiveAvgPool2d huge(Eigen::Index(1) << 40, Eigen::Index(1) << 40);
  CHECK_THROWS_AS(huge.output_shape({1, 5, 5}), deepstruct::shape_error);
  Mat small = Mat::Ones(25, 1);
  CHECK_THROWS_AS(huge.forward(small, {1, 5, 5}, y), deepstruct::shape_error);
}

TEST_CASE("Pooling: finite-difference gradients", "[pool][gradient]") {
  const ImageShape in{2, 5, 6};
  Mat x = Mat::Random(in.size(), 2);
  deepstruct::AvgPool2d avg(deepstruct::Pool2dOptions::square(3, 2, 1));
  deepstruct::AdaptiveAvgPool2d adaptive(2, 4);
  deepstruct::MaxPool2d max(deepstruct::Pool2dOptions::square(2));
  auto check = [&](const auto& pool) {
    const Mat g = Mat::Random(pool.output_shape(in).size(), 2);
    auto loss = [&]() {
      Mat y;
      pool.forward(x, in, y);
      return (y.array() * g.array()).sum();
    };
    Mat gx;
    pool.backward(x, in, g, gx);
    for (Eigen::Index i = 0; i < x.size(); ++i) CHECK(gx(i) == Approx(numeric(loss, x(i))).margin(1e-7));
  };
  check(avg);
  check(adaptive);
  check(max);  // random values: no ties, differentiable
}

TEST_CASE("Channel pruning: prune_neurons on a convolution is torch's ln_structured(dim=0)", "[conv2d][prune][parity]") {
  const auto fixture = test::load_json("image_layers.json");
  for (const auto& c : fixture["ln_structured"]) {
    deepstruct::MaskedConv2d<double> conv(4, 10, deepstruct::Conv2dOptions::square(3));
    std::vector<Eigen::Index> dims;
    conv.set_weight(test::flattened<double>(c["weight"], dims));
    const double p = c["n"].is_string() ? std::numeric_limits<double>::infinity() : c["n"].get<double>();
    const auto amount = c["amount"].is_number_integer() ? deepstruct::PruneAmount::count(c["amount"].get<Eigen::Index>())
                                                        : deepstruct::PruneAmount::fraction(c["amount"].get<double>());
    INFO("p " << p);
    deepstruct::prune_neurons(conv, amount, p);
    CHECK(conv.mask() == test::flattened_mask(c["mask"]));
  }
}

TEST_CASE("MaskedConv2d: ERK allocation counts the kernel dimensions (weight_shape)", "[conv2d][sparse_training]") {
  deepstruct::MaskedConv2d<double> a(8, 16, deepstruct::Conv2dOptions::square(3), 1), b(16, 16, deepstruct::Conv2dOptions::square(1), 2);
  const auto sa = a.weight_shape(0), sb = b.weight_shape(0);
  const auto d = deepstruct::allocate_densities({sa, sb}, 0.3);
  // RigL's ERK by hand: raw = sum(shape) / prod(shape), one factor so that the active weights
  // total what 30% leaves of each (n - floor(0.7 n), RigL's counting).
  const double na = 16 * 8 * 9, nb = 16 * 16, ra = (16 + 8 + 3 + 3) / na, rb = (16 + 16 + 1 + 1) / nb;
  const double eps = (na - std::floor(0.7 * na) + nb - std::floor(0.7 * nb)) / (ra * na + rb * nb);
  CHECK(d[0] == Approx(eps * ra));
  CHECK(d[1] == Approx(eps * rb));
}

TEST_CASE("MaskedConv2d: batches large enough for threads give the same bits on 1 and 2 threads, and the per-image results",
          "[conv2d][threads]") {
  // 32 -> 32 channels, 3x3, 28x28 images, batch 48: every path carries more than twice the work
  // threshold (threads.hpp), so with OpenMP the chunks of images go to 2 threads and the backward
  // sums its gradients in 2 groups. The reference: the same layer called image by image.
  const test::RestoreThreads restore;
  using Matf = Eigen::MatrixXf;
  const ImageShape in{32, 28, 28};
  const Eigen::Index batch = 48;
  deepstruct::Generator gen(21);
  auto random = [&](Eigen::Index rows, Eigen::Index cols) {
    Matf m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(deepstruct::random::uniform(gen, -1.0, 1.0));
    return m;
  };
  struct Case {
    const char* name;
    Eigen::Index stride;
    double density;
    bool dense_gradient;
  };
  for (const Case& c : {Case{"stride 1, dense (padded rows)", 1, 1.0, false}, Case{"stride 1, sparse (direct)", 1, 0.6, false},
                        Case{"stride 1, sparse with RigL's dense gradient", 1, 0.6, true}, Case{"stride 2, dense (im2col)", 2, 1.0, false},
                        Case{"stride 2, sparse (im2col)", 2, 0.6, false}}) {
    INFO(c.name);
    deepstruct::MaskedConv2d<float> conv(32, 32, deepstruct::Conv2dOptions::square(3, c.stride, 1), 5);
    if (c.density < 1.0) {
      auto m = conv.mask();
      for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, c.density);
      conv.set_mask(m);
      conv.set_execution(deepstruct::Execution::sparse);
    }
    conv.set_dense_gradient(c.dense_gradient);
    const ImageShape out = conv.output_shape(in);
    const Matf x = random(in.size(), batch), g = random(out.size(), batch);
    struct Result {
      Matf y, gx, w, b, dense;
    };
    auto run = [&](int threads) {
      deepstruct::set_num_threads(threads);
      deepstruct::MaskedConv2d<float> layer = conv;
      Result r;
      layer.zero_grad();
      layer.forward(x, in, r.y);
      layer.backward(x, in, g, &r.gx);
      r.w = layer.weight_grad();
      r.b = layer.bias_grad();
      if (c.dense_gradient) r.dense = *layer.dense_gradient(0);
      return r;
    };
    const Result one = run(1), two = run(2);
    CHECK(one.y == two.y);
    CHECK(one.gx == two.gx);
    CHECK(one.w == two.w);
    CHECK(one.b == two.b);
    CHECK(one.dense == two.dense);
    // Image by image (each call below the threshold: one thread, one group).
    deepstruct::MaskedConv2d<float> layer = conv;
    layer.zero_grad();
    Matf y(out.size(), batch), gx(in.size(), batch), yb, gxb;
    for (Eigen::Index b = 0; b < batch; ++b) {
      layer.forward(x.col(b), in, yb);
      layer.backward(x.col(b), in, g.col(b), &gxb);
      y.col(b) = yb;
      gx.col(b) = gxb;
    }
    CHECK(test::max_rel_diff(one.y, y) < 1e-5);
    CHECK(test::max_rel_diff(one.gx, gx) < 1e-5);
    CHECK(test::max_rel_diff(one.w, layer.weight_grad()) < 1e-4);
    CHECK(test::max_rel_diff(one.b, layer.bias_grad()) < 1e-4);
    if (c.dense_gradient) CHECK(test::max_rel_diff(one.dense, *layer.dense_gradient(0)) < 1e-4);
    CHECK(one.w.cwiseAbs().sum() > 0);
  }
}
