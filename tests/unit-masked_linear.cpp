// Tests of <deepstruct/masked_linear.hpp>.
#include <deepstruct/masked_linear.hpp>

#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "allocation_guard.hpp"
#include "test_support.hpp"

#include <cstdint>

using deepstruct::Execution;
using deepstruct::MaskedLinear;

namespace {

template <typename Scalar>
typename MaskedLinear<Scalar>::Mask random_mask(Eigen::Index out, Eigen::Index in, double density, std::mt19937_64& gen) {
  typename MaskedLinear<Scalar>::Mask m(out, in);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, density);
  return m;
}

template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> uniform_matrix(Eigen::Index r, Eigen::Index c, std::mt19937_64& gen) {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(r, c);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(deepstruct::random::uniform(gen, -1, 1));
  return m;
}

// The definition, written out: y = (W o M) x + b, one multiply-add at a time, in double.
template <typename Scalar>
Eigen::MatrixXd reference_forward(const MaskedLinear<Scalar>& layer, const Eigen::Matrix<Scalar, -1, -1>& x) {
  Eigen::MatrixXd y(layer.out_features(), x.cols());
  for (Eigen::Index b = 0; b < x.cols(); ++b)
    for (Eigen::Index o = 0; o < layer.out_features(); ++o) {
      double s = layer.has_bias() ? double(layer.bias()[o]) : 0.0;
      for (Eigen::Index i = 0; i < layer.in_features(); ++i)
        if (layer.mask()(o, i)) s += double(layer.weight()(o, i)) * double(x(i, b));
      y(o, b) = s;
    }
  return y;
}

}  // namespace

TEMPLATE_TEST_CASE("MaskedLinear: construction and PyTorch's default initialisation", "[masked_linear]", float, double) {
  MaskedLinear<TestType> layer(50, 20, true, 42);
  CHECK(layer.in_features() == 50);
  CHECK(layer.out_features() == 20);
  CHECK(layer.weight().rows() == 20);
  CHECK(layer.weight().cols() == 50);
  CHECK(layer.bias().size() == 20);
  CHECK(layer.nnz() == 1000);
  CHECK(layer.density() == 1.0);
  const double bound = 1.0 / std::sqrt(50.0);
  CHECK(layer.weight().cwiseAbs().maxCoeff() <= bound);
  CHECK(layer.bias().cwiseAbs().maxCoeff() <= bound);
  // Uniform over the whole interval, not a corner of it.
  CHECK(layer.weight().maxCoeff() > 0.8 * bound);
  CHECK(layer.weight().minCoeff() < -0.8 * bound);
  CHECK(std::abs(double(layer.weight().mean())) < 0.1 * bound);

  MaskedLinear<TestType> same(50, 20, true, 42);
  CHECK(same.weight() == layer.weight());
  CHECK(same.bias() == layer.bias());
  MaskedLinear<TestType> other(50, 20, true, 43);
  CHECK(other.weight() != layer.weight());

  deepstruct::Generator gen(42);
  MaskedLinear<TestType> from_gen(50, 20, true, gen);
  CHECK(from_gen.weight() == layer.weight());
  MaskedLinear<TestType> next(50, 20, true, gen);  // the generator moved on
  CHECK(next.weight() != layer.weight());

  MaskedLinear<TestType> no_bias(5, 3, false, 1);
  CHECK_FALSE(no_bias.has_bias());
  CHECK(no_bias.bias().size() == 0);
}

TEMPLATE_TEST_CASE("MaskedLinear: forward is (W o M) x + b", "[masked_linear]", float, double) {
  std::mt19937_64 gen(7);
  for (const double density : {0.0, 0.05, 0.3, 1.0})
    for (const Eigen::Index batch : {1, 3, 64, 65, 130}) {
      const Eigen::Index in = 1 + static_cast<Eigen::Index>(gen() % 70), out = 1 + static_cast<Eigen::Index>(gen() % 40);
      MaskedLinear<TestType> layer(uniform_matrix<TestType>(out, in, gen), uniform_matrix<TestType>(out, 1, gen),
                                   random_mask<TestType>(out, in, density, gen));
      const Eigen::Matrix<TestType, -1, -1> x = uniform_matrix<TestType>(in, batch, gen);
      const Eigen::MatrixXd expected = reference_forward(layer, x);
      for (const Execution path : {Execution::dense, Execution::sparse}) {
        layer.set_execution(path);
        const Eigen::Matrix<TestType, -1, -1> y = layer.forward(x);
        INFO("density " << density << " batch " << batch << " " << in << "->" << out << " path " << int(path));
        CHECK(test::max_rel_diff(y.template cast<double>(), expected) <= test::tol<TestType>(4.0 * double(in)));
      }
    }
}

TEMPLATE_TEST_CASE("MaskedLinear: dense and sparse paths agree on a block of a larger matrix", "[masked_linear]", float, double) {
  std::mt19937_64 gen(11);
  MaskedLinear<TestType> layer(uniform_matrix<TestType>(9, 13, gen), uniform_matrix<TestType>(9, 1, gen),
                               random_mask<TestType>(9, 13, 0.4, gen));
  const Eigen::Matrix<TestType, -1, -1> big = uniform_matrix<TestType>(20, 70, gen);
  Eigen::Matrix<TestType, -1, -1> y_dense, y_sparse;
  layer.set_execution(Execution::dense);
  layer.forward(big.block(3, 2, 13, 67), y_dense);  // outer stride 20, not 13
  layer.set_execution(Execution::sparse);
  layer.forward(big.block(3, 2, 13, 67), y_sparse);
  CHECK(test::max_rel_diff(y_sparse, y_dense) <= test::tol<TestType>(100));
}

TEMPLATE_TEST_CASE("MaskedLinear: soft masks, apply_mask, recompute_mask, counts", "[masked_linear]", float, double) {
  using Layer = MaskedLinear<TestType>;
  Eigen::Matrix<TestType, -1, -1> w(2, 3);
  w << 0.5, -0.0005, 2.0, -1.5, 0.25, 0.002;
  Eigen::Matrix<TestType, -1, 1> b(2);
  b << 0.1, -0.2;
  typename Layer::Mask m(2, 3);
  m << true, false, true, false, true, true;
  Layer layer(w, b, m);
  CHECK(layer.nnz() == 4);
  CHECK(layer.numel() == 6);
  CHECK(layer.density() == Approx(4.0 / 6.0));
  // Behind the mask the weights are kept but unused.
  CHECK(layer.weight()(1, 0) == TestType(-1.5));
  Eigen::Matrix<TestType, -1, -1> x(3, 1);
  x << 1, 10, 100;
  for (const Execution path : {Execution::dense, Execution::sparse}) {
    layer.set_execution(path);
    const Eigen::Matrix<TestType, -1, -1> y = layer.forward(x);
    CHECK(double(y(0, 0)) == Approx(0.5 + 200.0 + 0.1));
    CHECK(double(y(1, 0)) == Approx(2.5 + 0.2 - 0.2));
  }
  CHECK(layer.effective_weight()(1, 0) == TestType(0));

  layer.apply_mask();
  CHECK(layer.weight()(1, 0) == TestType(0));
  CHECK(layer.weight()(0, 1) == TestType(0));
  CHECK(layer.weight()(0, 0) == TestType(0.5));

  // |W| >= theta, with deepstruct's default theta 1e-3.
  layer.set_weight(w);
  layer.recompute_mask();
  typename Layer::Mask expected(2, 3);
  expected << true, false, true, true, true, true;
  CHECK(layer.mask() == expected);
  CHECK(layer.nnz() == 5);
  layer.recompute_mask(0.3);
  expected << true, false, true, true, false, false;
  CHECK(layer.mask() == expected);
  layer.recompute_mask(0.0);
  CHECK(layer.nnz() == 6);
  CHECK_THROWS_AS(layer.recompute_mask(-0.1), deepstruct::value_error);
  CHECK_THROWS_AS(layer.recompute_mask(std::nan("")), deepstruct::value_error);
}

TEMPLATE_TEST_CASE("MaskedLinear: caches follow changes of weights and mask", "[masked_linear]", float, double) {
  std::mt19937_64 gen(3);
  MaskedLinear<TestType> layer(12, 7, true, 5);
  const Eigen::Matrix<TestType, -1, -1> x = uniform_matrix<TestType>(12, 5, gen);
  for (const Execution path : {Execution::dense, Execution::sparse}) {
    layer.set_execution(path);
    (void)layer.forward(x);  // fills the caches
    layer.update_weight([](auto& w) { w *= TestType(2); });
    CHECK(test::max_rel_diff(layer.forward(x).template cast<double>(), reference_forward(layer, x)) <= test::tol<TestType>(200));
    layer.set_mask(random_mask<TestType>(7, 12, 0.5, gen));
    CHECK(test::max_rel_diff(layer.forward(x).template cast<double>(), reference_forward(layer, x)) <= test::tol<TestType>(200));
    layer.set_weight(uniform_matrix<TestType>(7, 12, gen));
    CHECK(test::max_rel_diff(layer.forward(x).template cast<double>(), reference_forward(layer, x)) <= test::tol<TestType>(200));
    layer.update_bias([](auto& b) { b.setConstant(TestType(3)); });
    CHECK(test::max_rel_diff(layer.forward(x).template cast<double>(), reference_forward(layer, x)) <= test::tol<TestType>(200));
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: saliency and reset_parameters", "[masked_linear]", float, double) {
  using Layer = MaskedLinear<TestType>;
  Layer layer(6, 4, true, 9);
  CHECK(layer.saliency() == layer.weight().cwiseAbs());
  CHECK_FALSE(layer.has_custom_saliency());
  Eigen::Matrix<TestType, -1, -1> s = Eigen::Matrix<TestType, -1, -1>::Constant(4, 6, TestType(0.5));
  layer.set_saliency(s);
  CHECK(layer.saliency() == s);
  CHECK_THROWS_AS(layer.set_saliency(Eigen::Matrix<TestType, -1, -1>::Zero(6, 4)), deepstruct::shape_error);
  layer.clear_saliency();
  CHECK(layer.saliency() == layer.weight().cwiseAbs());

  typename Layer::Mask m = Layer::Mask::Constant(4, 6, true);
  m(1, 2) = false;
  layer.set_mask(m);
  const auto before = layer.weight();
  layer.reset_parameters(10, /*keep_mask=*/true);
  CHECK(layer.mask() == m);
  CHECK(layer.weight() != before);
  layer.reset_parameters(10);
  CHECK(layer.nnz() == 24);
  Layer fresh(6, 4, true, 10);  // same seed, same draw as reset_parameters(10)
  CHECK(fresh.weight() == layer.weight());
}

TEMPLATE_TEST_CASE("MaskedLinear: bad inputs throw with expected and found shapes", "[masked_linear]", float, double) {
  using Layer = MaskedLinear<TestType>;
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  Layer layer(5, 3, true, 1);
  try {
    (void)layer.forward(Mat::Zero(4, 2));
    FAIL("no exception");
  } catch (const deepstruct::shape_error& e) {
    const std::string what = e.what();
    CHECK(what.find("expected input with 5 rows") != std::string::npos);
    CHECK(what.find("found 4x2") != std::string::npos);
    CHECK(what.find("masked_linear.hpp:") != std::string::npos);
  }
  try {
    layer.set_mask(Layer::Mask::Constant(5, 3, true));
    FAIL("no exception");
  } catch (const deepstruct::shape_error& e) {
    const std::string what = e.what();
    CHECK(what.find("3x5") != std::string::npos);
    CHECK(what.find("found 5x3") != std::string::npos);
  }
  CHECK_THROWS_AS(layer.set_weight(Mat::Zero(3, 4)), deepstruct::shape_error);
  CHECK_THROWS_AS(layer.set_bias(Eigen::Matrix<TestType, -1, 1>::Zero(4)), deepstruct::shape_error);
  CHECK_THROWS_AS(Layer(0, 3), deepstruct::shape_error);
  CHECK_THROWS_AS(Layer(3, 0), deepstruct::shape_error);
  CHECK_THROWS_AS(Layer(Mat::Zero(0, 0), Eigen::Matrix<TestType, -1, 1>()), deepstruct::shape_error);
  CHECK_THROWS_AS(Layer(Mat::Zero(3, 4), Eigen::Matrix<TestType, -1, 1>::Zero(2)), deepstruct::shape_error);
  CHECK_THROWS_AS(layer.set_sparse_threshold(1.5), deepstruct::value_error);
  Layer fresh(5, 3, true, 1);
  const Mat x = Mat::Zero(5, 2);
  CHECK_THROWS_AS(fresh.backward(x, Mat::Zero(3, 3)), deepstruct::shape_error);  // batch of x is 2
  CHECK_THROWS_AS(fresh.backward(x, Mat::Zero(2, 2)), deepstruct::shape_error);  // out_features is 3
  CHECK_THROWS_AS(fresh.backward(Mat::Zero(4, 2), Mat::Zero(3, 2)), deepstruct::shape_error);
  // A batch of zero samples is not an error.
  CHECK(fresh.forward(Mat::Zero(5, 0)).cols() == 0);
}

TEST_CASE("MaskedLinear: finite-difference gradients, dense and sparse", "[masked_linear][gradient]") {
  using Layer = MaskedLinear<double>;
  using Mat = Eigen::MatrixXd;
  std::mt19937_64 gen(2024);
  for (const double density : {0.0, 0.2, 0.7, 1.0})
    for (int trial = 0; trial < 3; ++trial) {
      const Eigen::Index in = 1 + static_cast<Eigen::Index>(gen() % 9), out = 1 + static_cast<Eigen::Index>(gen() % 7),
                         batch = 1 + static_cast<Eigen::Index>(gen() % 70);
      const bool bias = trial != 1;
      Layer layer(uniform_matrix<double>(out, in, gen),
                  bias ? Eigen::VectorXd(uniform_matrix<double>(out, 1, gen)) : Eigen::VectorXd(),
                  random_mask<double>(out, in, density, gen));
      const Mat x = uniform_matrix<double>(in, batch, gen);
      const Mat c = uniform_matrix<double>(out, batch, gen);  // loss L = sum(c o y)
      for (const Execution path : {Execution::dense, Execution::sparse}) {
        INFO("density " << density << " trial " << trial << " path " << int(path));
        layer.set_execution(path);
        layer.zero_grad();
        (void)layer.forward(x);
        const Mat gx = layer.backward(x, c);
        const Mat gw = layer.weight_grad();
        const Eigen::VectorXd gb = layer.bias_grad();
        auto loss = [&](Layer& l, const Mat& input) { return c.cwiseProduct(l.forward(input)).sum(); };
        const double h = 1e-6;
        for (Eigen::Index i = 0; i < x.size(); ++i) {
          Mat xp = x, xm = x;
          xp.data()[i] += h;
          xm.data()[i] -= h;
          CHECK(gx.data()[i] == Approx((loss(layer, xp) - loss(layer, xm)) / (2 * h)).margin(1e-7));
        }
        for (Eigen::Index i = 0; i < layer.weight().size(); ++i) {
          Layer lp = layer, lm = layer;
          lp.update_weight([&](Mat& w) { w.data()[i] += h; });
          lm.update_weight([&](Mat& w) { w.data()[i] -= h; });
          const double fd = (loss(lp, x) - loss(lm, x)) / (2 * h);
          CHECK(gw.data()[i] == Approx(fd).margin(1e-7));
          if (!layer.mask().data()[i]) CHECK(gw.data()[i] == 0.0);  // exactly zero behind the mask
        }
        for (Eigen::Index i = 0; i < gb.size(); ++i) {
          Layer lp = layer, lm = layer;
          lp.update_bias([&](Eigen::VectorXd& b) { b[i] += h; });
          lm.update_bias([&](Eigen::VectorXd& b) { b[i] -= h; });
          CHECK(gb[i] == Approx((loss(lp, x) - loss(lm, x)) / (2 * h)).margin(1e-7));
        }
      }
    }
}

TEMPLATE_TEST_CASE("MaskedLinear: gradients accumulate until zero_grad, on both paths", "[masked_linear][gradient]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(5);
  MaskedLinear<TestType> layer(30, 20, true, 3);
  layer.set_mask(random_mask<TestType>(20, 30, 0.3, gen));
  const Mat x = uniform_matrix<TestType>(30, 17, gen), g = uniform_matrix<TestType>(20, 17, gen);
  layer.set_execution(Execution::dense);
  layer.backward(x, g, nullptr);
  const Mat once = layer.weight_grad();
  const Eigen::Matrix<TestType, -1, 1> bias_once = layer.bias_grad();
  layer.set_execution(Execution::sparse);
  Mat gx_sparse;
  layer.backward(x, g, &gx_sparse);
  CHECK(test::max_rel_diff(layer.weight_grad(), Mat(2 * once)) <= test::tol<TestType>(200));
  CHECK(test::max_rel_diff(layer.bias_grad(), Eigen::Matrix<TestType, -1, 1>(2 * bias_once)) <= test::tol<TestType>(200));
  layer.set_execution(Execution::dense);
  Mat gx_dense;
  layer.backward(x, g, &gx_dense);
  CHECK(test::max_rel_diff(gx_sparse, gx_dense) <= test::tol<TestType>(200));
  layer.zero_grad();
  CHECK(layer.weight_grad().cwiseAbs().maxCoeff() == TestType(0));
  CHECK(layer.bias_grad().cwiseAbs().maxCoeff() == TestType(0));
  // Sparse-only accumulation, then the cheap zero_grad that clears only active positions.
  layer.set_execution(Execution::sparse);
  layer.backward(x, g, nullptr);
  CHECK(test::max_rel_diff(layer.weight_grad(), once) <= test::tol<TestType>(200));
  layer.zero_grad();
  CHECK(layer.weight_grad().cwiseAbs().maxCoeff() == TestType(0));
  // A mask change clears gradients that would sit behind the new mask.
  layer.backward(x, g, nullptr);
  layer.set_mask(random_mask<TestType>(20, 30, 0.3, gen));
  for (Eigen::Index i = 0; i < layer.weight_grad().size(); ++i)
    if (!layer.mask().data()[i]) CHECK(layer.weight_grad().data()[i] == TestType(0));
}

TEST_CASE("MaskedLinear: the automatic path follows density and threshold", "[masked_linear]") {
  std::mt19937_64 gen(1);
  MaskedLinear<float> layer(100, 100, true, 1);
  CHECK_FALSE(layer.uses_sparse_path());
  layer.set_mask(random_mask<float>(100, 100, 0.05, gen));
  CHECK(layer.uses_sparse_path());
  layer.set_sparse_threshold(0.01);
  CHECK_FALSE(layer.uses_sparse_path());
  layer.set_execution(Execution::sparse);
  CHECK(layer.uses_sparse_path());
  CHECK(layer.sparse_threshold() == 0.01);
  CHECK(deepstruct::default_sparse_threshold > 0.0);
}

TEMPLATE_TEST_CASE("MaskedLinear: parity with PyTorch on the first layer of masked_ffn.json", "[masked_linear][parity]", float, double) {
  const nlohmann::json fixture = test::load_json("masked_ffn.json");
  REQUIRE(fixture["cases"].size() == 2);
  for (const auto& c : fixture["cases"]) {
    const auto& sd = c["state_dict"];
    MaskedLinear<TestType> layer(test::matrix<TestType>(sd["_layer_first.weight"]),
                                 test::vector<TestType>(sd["_layer_first.bias"]), test::mask(sd["_layer_first._mask"]));
    // PyTorch's x is [batch][features]: its transpose is our features x batch.
    const Eigen::Matrix<TestType, -1, -1> x = test::matrix<TestType>(c["x"]).transpose();
    // Pre-activation in double from the same float32 parameters (what PyTorch computes).
    const Eigen::MatrixXd w = test::matrix<double>(sd["_layer_first.weight"]).cwiseProduct(test::mask(sd["_layer_first._mask"]).cast<double>());
    const Eigen::MatrixXd expected = (w * test::matrix<double>(c["x"]).transpose()).colwise() + test::vector<double>(sd["_layer_first.bias"]);
    for (const Execution path : {Execution::dense, Execution::sparse}) {
      layer.set_execution(path);
      const Eigen::Matrix<TestType, -1, -1> y = layer.forward(x);
      CHECK(test::max_rel_diff(y.template cast<double>(), expected) <= test::tol<TestType>(64));
    }
    CHECK(layer.nnz() == test::mask(sd["_layer_first._mask"]).count());
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: sparse kernels on every partial tile width, odd shapes and strided blocks",
                   "[masked_linear][sparse]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  constexpr Eigen::Index T = deepstruct::detail::batch_tile<TestType>;
  std::mt19937_64 gen(99);
  std::vector<Eigen::Index> batches;
  for (Eigen::Index b = 1; b <= T + 1; ++b) batches.push_back(b);  // every width of a last tile
  batches.push_back(2 * T + 3);
  // Shapes below, at and above a SIMD packet, with empty rows and columns at low density.
  const std::vector<std::pair<Eigen::Index, Eigen::Index>> shapes{{1, 1}, {3, 2}, {19, 13}, {33, 17}};
  for (const auto& [in, out] : shapes)
    for (const double density : {0.1, 0.6, 1.0})
      for (const Eigen::Index batch : batches) {
        const bool bias = batch % 2 == 0;
        MaskedLinear<TestType> layer(uniform_matrix<TestType>(out, in, gen),
                                     bias ? Eigen::Matrix<TestType, -1, 1>(uniform_matrix<TestType>(out, 1, gen))
                                          : Eigen::Matrix<TestType, -1, 1>(),
                                     random_mask<TestType>(out, in, density, gen));
        layer.set_execution(Execution::sparse);
        // x and g as blocks of larger matrices: outer strides differ from the row counts.
        const Mat x_big = uniform_matrix<TestType>(in + 5, batch + 2, gen), g_big = uniform_matrix<TestType>(out + 3, batch + 1, gen);
        const auto x = x_big.block(2, 1, in, batch);
        const auto g = g_big.block(1, 0, out, batch);
        Mat y, gx;
        layer.forward(x, y);
        layer.backward(x, g, &gx);
        // The definitions in double.
        const Eigen::MatrixXd wm = layer.effective_weight().template cast<double>();
        const Eigen::MatrixXd xd = x.template cast<double>(), gd = g.template cast<double>();
        Eigen::MatrixXd y_ref = wm * xd;
        if (bias) y_ref.colwise() += layer.bias().template cast<double>();
        const Eigen::MatrixXd gw_ref = (gd * xd.transpose()).cwiseProduct(layer.mask().template cast<double>());
        const Eigen::MatrixXd gx_ref = wm.transpose() * gd;
        INFO(in << "->" << out << " density " << density << " batch " << batch << " bias " << bias);
        const double t = test::tol<TestType>(8.0 * double(in + out + batch));
        CHECK(test::max_rel_diff(y.template cast<double>(), y_ref) <= t);
        CHECK(test::max_rel_diff(gx.template cast<double>(), gx_ref) <= t);
        CHECK(test::max_rel_diff(layer.weight_grad().template cast<double>(), gw_ref) <= t);
        for (Eigen::Index i = 0; i < layer.weight_grad().size(); ++i)
          if (!layer.mask().data()[i]) CHECK(layer.weight_grad().data()[i] == TestType(0));
        if (bias) {
          const Eigen::VectorXd gb_ref = gd.rowwise().sum();
          CHECK(test::max_rel_diff(layer.bias_grad().template cast<double>(), gb_ref) <= t);
        }
      }
}

namespace {

// dL/dx = (W o M)^T g in double, from the layer's current parameters.
template <typename Scalar>
Eigen::MatrixXd reference_grad_input(const MaskedLinear<Scalar>& layer, const Eigen::Matrix<Scalar, -1, -1>& g) {
  return layer.effective_weight().template cast<double>().transpose() * g.template cast<double>();
}

// forward and backward on both paths against the definitions in double: the dense product W o M,
// the CSR (forward) and the CSC (input gradient) must all follow the layer's current parameters.
template <typename Scalar>
void check_both_paths(MaskedLinear<Scalar>& layer, const Eigen::Matrix<Scalar, -1, -1>& x,
                      const Eigen::Matrix<Scalar, -1, -1>& g, const char* after) {
  const Eigen::MatrixXd y_ref = reference_forward(layer, x), gx_ref = reference_grad_input(layer, g);
  const double t = test::tol<Scalar>(8.0 * double(layer.in_features() + layer.out_features()));
  for (const Execution path : {Execution::dense, Execution::sparse}) {
    INFO("after " << after << ", path " << (path == Execution::dense ? "dense" : "sparse"));
    layer.set_execution(path);
    Eigen::Matrix<Scalar, -1, -1> y, gx;
    layer.forward(x, y);
    layer.backward(x, g, &gx);
    CHECK(test::max_rel_diff(y.template cast<double>(), y_ref) <= t);
    CHECK(test::max_rel_diff(gx.template cast<double>(), gx_ref) <= t);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("MaskedLinear: an output that shares memory with the input throws, on both paths",
                   "[masked_linear][alias]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(17);
  MaskedLinear<TestType> square(uniform_matrix<TestType>(6, 6, gen), uniform_matrix<TestType>(6, 1, gen),
                                random_mask<TestType>(6, 6, 0.5, gen));
  MaskedLinear<TestType> narrow(uniform_matrix<TestType>(4, 6, gen), uniform_matrix<TestType>(4, 1, gen),
                                random_mask<TestType>(4, 6, 0.5, gen));
  const Mat x = uniform_matrix<TestType>(6, 5, gen), g6 = uniform_matrix<TestType>(6, 5, gen),
            g4 = uniform_matrix<TestType>(4, 5, gen);
  for (const Execution path : {Execution::dense, Execution::sparse}) {
    INFO("path " << (path == Execution::dense ? "dense" : "sparse"));
    square.set_execution(path);
    narrow.set_execution(path);
    // y is x (same shape: the dense path would write the bias into x before reading it).
    Mat buf = x;
    try {
      square.forward(buf, buf);
      FAIL("no exception for forward(x, x)");
    } catch (const deepstruct::shape_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains("forward: expected y not to share memory with x"));
      CHECK_THAT(std::string(e.what()), test::contains("found y (6x5) overlapping x (6x5)"));
    }
    CHECK(buf == x);  // nothing written
    // y is x but must be resized: resizing would free the memory x refers to.
    CHECK_THROWS_AS(narrow.forward(buf, buf), deepstruct::shape_error);
    CHECK(buf == x);
    // x is a block of y.
    Mat big = uniform_matrix<TestType>(6, 12, gen);
    const Mat big_before = big;
    CHECK_THROWS_AS(square.forward(big.middleCols(3, 5), big), deepstruct::shape_error);
    CHECK_THROWS_AS(narrow.forward(big.block(0, 7, 6, 5), big), deepstruct::shape_error);
    CHECK(big == big_before);
    // Separate buffers, also a block of another matrix, are fine.
    Mat y;
    square.forward(big.middleCols(3, 5), y);
    CHECK(test::max_rel_diff(y.template cast<double>(), reference_forward(square, Mat(big.middleCols(3, 5)))) <=
          test::tol<TestType>(50));

    // backward: grad_input is grad_output, or is x.
    square.zero_grad();
    Mat g = g6;
    CHECK_THROWS_AS(square.backward(x, g, &g), deepstruct::shape_error);
    CHECK(g == g6);
    Mat xm = x;
    try {
      square.backward(xm, g6, &xm);
      FAIL("no exception for backward(x, g, &x)");
    } catch (const deepstruct::shape_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains("backward: expected grad_input not to share memory with x"));
    }
    CHECK(xm == x);
    Mat g4m = g4;
    CHECK_THROWS_AS(narrow.backward(x, g4m, &g4m), deepstruct::shape_error);  // would be resized to 6x5
    CHECK(g4m == g4);
    // A rejected call adds no gradient.
    CHECK(square.weight_grad().cwiseAbs().maxCoeff() == TestType(0));
    Mat gx;
    square.backward(x, g6, &gx);
    CHECK(test::max_rel_diff(gx.template cast<double>(), reference_grad_input(square, g6)) <= test::tol<TestType>(50));
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: stateless about its input; copies are independent layers", "[masked_linear]", float,
                   double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(23);
  MaskedLinear<TestType> layer(7, 5, true, 4);
  layer.set_mask(random_mask<TestType>(5, 7, 0.5, gen));
  const Mat x = uniform_matrix<TestType>(7, 3, gen), other = uniform_matrix<TestType>(7, 3, gen),
            g = uniform_matrix<TestType>(5, 3, gen);
  for (const Execution path : {Execution::dense, Execution::sparse}) {
    layer.set_execution(path);
    // The gradients of x do not depend on what forward ran last: backward reads the x it is given.
    MaskedLinear<TestType> reference = layer;
    reference.zero_grad();
    (void)reference.forward(x);
    Mat gx_ref;
    reference.backward(x, g, &gx_ref);
    layer.zero_grad();
    (void)layer.forward(x);
    (void)layer.forward(other);
    Mat gx;
    layer.backward(x, g, &gx);
    CHECK(gx == gx_ref);
    CHECK(layer.weight_grad() == reference.weight_grad());
    CHECK(layer.bias_grad() == reference.bias_grad());
    CHECK(test::max_rel_diff(gx.template cast<double>(), reference_grad_input(layer, g)) <= test::tol<TestType>(50));
    // A copy (rule of zero) is an independent layer: changing it leaves the original as it was.
    MaskedLinear<TestType> copy = layer;
    copy.update_weight([](Mat& w) { w.array() += TestType(1); });
    copy.set_mask(MaskedLinear<TestType>::Mask::Constant(5, 7, true));
    CHECK(copy.forward(x) != layer.forward(x));
    CHECK(layer.weight() == reference.weight());
    CHECK(layer.mask() == reference.mask());
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: update_weight and update_bias with a throwing or resizing fn",
                   "[masked_linear]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  using Vec = Eigen::Matrix<TestType, -1, 1>;
  std::mt19937_64 gen(31);
  const Mat x = uniform_matrix<TestType>(10, 6, gen), g = uniform_matrix<TestType>(8, 6, gen);
  for (const Execution path : {Execution::dense, Execution::sparse}) {
    INFO("path " << (path == Execution::dense ? "dense" : "sparse"));
    MaskedLinear<TestType> layer(uniform_matrix<TestType>(8, 10, gen), uniform_matrix<TestType>(8, 1, gen),
                                 random_mask<TestType>(8, 10, 0.5, gen));
    layer.set_execution(path);
    (void)layer.forward(x);  // warm caches
    const Mat before = layer.weight();

    // fn changes half of W, then throws: forward must see the half that changed.
    const Eigen::Index half = before.size() / 2;
    CHECK_THROWS_AS(layer.update_weight([&](Mat& w) {
                      for (Eigen::Index i = 0; i < half; ++i) w.data()[i] += TestType(1);
                      throw std::runtime_error("optimizer failed halfway");
                    }),
                    std::runtime_error);
    CHECK(layer.weight().data()[0] == before.data()[0] + TestType(1));
    CHECK(layer.weight().data()[before.size() - 1] == before.data()[before.size() - 1]);
    check_both_paths(layer, x, g, "a throwing update_weight");

    // fn resizes W: shape_error naming both shapes, and the layer keeps its shape (zero weights).
    layer.set_execution(path);
    (void)layer.forward(x);
    try {
      layer.update_weight([](Mat& w) { w.resize(3, 4); });
      FAIL("no exception for a resizing update_weight");
    } catch (const deepstruct::shape_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains("expected fn to keep the weight's shape 8x10"));
      CHECK_THAT(std::string(e.what()), test::contains("found 3x4"));
    }
    REQUIRE(layer.weight().rows() == 8);
    REQUIRE(layer.weight().cols() == 10);
    CHECK(layer.weight().cwiseAbs().maxCoeff() == TestType(0));
    check_both_paths(layer, x, g, "a resizing update_weight");
    // Resizing and then throwing: fn's exception passes, the shape is restored all the same.
    CHECK_THROWS_AS(layer.update_weight([](Mat& w) {
                      w.resize(2, 2);
                      throw std::runtime_error("resized, then failed");
                    }),
                    std::runtime_error);
    REQUIRE(layer.weight().rows() == 8);
    REQUIRE(layer.weight().cols() == 10);

    // The bias: a throw halfway keeps what changed; a resize throws.
    layer.set_weight(before);
    const Vec b_before = layer.bias();
    CHECK_THROWS_AS(layer.update_bias([](Vec& b) {
                      b[0] += TestType(2);
                      throw std::runtime_error("halfway");
                    }),
                    std::runtime_error);
    CHECK(layer.bias()[0] == b_before[0] + TestType(2));
    check_both_paths(layer, x, g, "a throwing update_bias");
    try {
      layer.update_bias([](Vec& b) { b.resize(3); });
      FAIL("no exception for a resizing update_bias");
    } catch (const deepstruct::shape_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains("expected fn to keep the bias size 8"));
      CHECK_THAT(std::string(e.what()), test::contains("found 3"));
    }
    REQUIRE(layer.bias().size() == 8);
    check_both_paths(layer, x, g, "a resizing update_bias");

    MaskedLinear<TestType> no_bias(10, 8, false, 2);
    CHECK_THROWS_AS(no_bias.update_bias([](Vec& b) { b.setZero(8); }), deepstruct::shape_error);
    CHECK(no_bias.bias().size() == 0);
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: the constructor from parameters names itself for a mask of another shape", "[masked_linear]",
                   float, double) {
  using Mask = typename MaskedLinear<TestType>::Mask;
  std::mt19937_64 gen(41);
  // It said "MaskedLinear::set_mask: expected a mask of shape 8x10", a function the caller never called.
  try {
    MaskedLinear<TestType> layer(uniform_matrix<TestType>(8, 10, gen), uniform_matrix<TestType>(8, 1, gen), Mask::Constant(10, 8, true));
    FAIL("no exception for a mask of another shape");
  } catch (const deepstruct::shape_error& e) {
    CHECK_THAT(std::string(e.what()), test::contains("MaskedLinear(weight, bias, mask): expected a mask of the weight's shape 8x10"));
    CHECK_THAT(std::string(e.what()), test::contains("found 10x8"));
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: update_mask whose fn resizes the mask names update_mask and keeps the mask",
                   "[masked_linear]", float, double) {
  using Mask = typename MaskedLinear<TestType>::Mask;
  std::mt19937_64 gen(37);
  MaskedLinear<TestType> layer(uniform_matrix<TestType>(8, 10, gen), uniform_matrix<TestType>(8, 1, gen),
                               random_mask<TestType>(8, 10, 0.5, gen));
  const Mask before = layer.mask();
  const Eigen::Index nnz = layer.nnz();
  // Both forms (with and without the index): the message names the function the caller called
  // (it said "set_mask: expected a mask of shape 8x10"), both shapes, and that nothing changed.
  for (int form = 0; form < 2; ++form) {
    INFO("form " << (form == 0 ? "update_mask(0, fn)" : "update_mask(fn)"));
    try {
      if (form == 0)
        layer.update_mask(0, [](Mask& m) { m.resize(3, 4); });
      else
        layer.update_mask([](Mask& m) { m.resize(3, 4); });
      FAIL("no exception for a resizing update_mask");
    } catch (const deepstruct::shape_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains("MaskedLinear::update_mask: expected fn to keep the mask's shape 8x10"));
      CHECK_THAT(std::string(e.what()), test::contains("found 3x4"));
    }
    CHECK(layer.mask() == before);
    CHECK(layer.nnz() == nnz);
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: every mutator refreshes the dense product, the CSR and the CSC",
                   "[masked_linear]", float, double) {
  using Layer = MaskedLinear<TestType>;
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  using Vec = Eigen::Matrix<TestType, -1, 1>;
  std::mt19937_64 gen(37);
  const Eigen::Index in = 13, out = 9;
  const Mat x = uniform_matrix<TestType>(in, 7, gen), g = uniform_matrix<TestType>(out, 7, gen);
  Layer layer(uniform_matrix<TestType>(out, in, gen), uniform_matrix<TestType>(out, 1, gen),
              random_mask<TestType>(out, in, 0.5, gen));
  // Each step starts from warm caches on both paths (check_both_paths runs both).
  check_both_paths(layer, x, g, "construction");
  layer.set_weight(uniform_matrix<TestType>(out, in, gen));
  check_both_paths(layer, x, g, "set_weight");
  layer.set_mask(random_mask<TestType>(out, in, 0.5, gen));
  check_both_paths(layer, x, g, "set_mask");
  layer.update_weight([](Mat& w) { w *= TestType(-1.5); });
  check_both_paths(layer, x, g, "update_weight");
  layer.update_bias([](Vec& b) { b.array() += TestType(1); });
  check_both_paths(layer, x, g, "update_bias");
  layer.set_bias(Vec(uniform_matrix<TestType>(out, 1, gen)));
  check_both_paths(layer, x, g, "set_bias");
  layer.apply_mask();
  check_both_paths(layer, x, g, "apply_mask");
  layer.set_mask(Layer::Mask::Constant(out, in, true));  // the weights apply_mask zeroed are back, as zeros
  check_both_paths(layer, x, g, "set_mask after apply_mask");
  layer.set_weight(uniform_matrix<TestType>(out, in, gen));
  check_both_paths(layer, x, g, "set_weight, all active");
  layer.recompute_mask(0.4);
  REQUIRE(layer.nnz() > 0);
  REQUIRE(layer.nnz() < layer.numel());
  check_both_paths(layer, x, g, "recompute_mask");
  layer.reset_parameters(5, /*keep_mask=*/true);
  check_both_paths(layer, x, g, "reset_parameters(keep_mask = true)");
  layer.reset_parameters(6, /*keep_mask=*/false);
  CHECK(layer.nnz() == layer.numel());
  check_both_paths(layer, x, g, "reset_parameters(keep_mask = false)");
  layer.set_mask(random_mask<TestType>(out, in, 0.5, gen));
  check_both_paths(layer, x, g, "set_mask");
  layer.set_saliency(Mat::Constant(out, in, TestType(1)));  // ranks weights, changes no result
  check_both_paths(layer, x, g, "set_saliency");

  // Assignment over warm caches, from a layer with warm and then stale caches.
  Layer other(uniform_matrix<TestType>(out, in, gen), uniform_matrix<TestType>(out, 1, gen),
              random_mask<TestType>(out, in, 0.3, gen));
  check_both_paths(other, x, g, "building the source");
  other.set_weight(uniform_matrix<TestType>(out, in, gen));  // other's caches are stale now
  layer = other;
  check_both_paths(layer, x, g, "copy-assignment");
  Layer copy(layer);
  check_both_paths(copy, x, g, "copy-construction");
  Layer moved(uniform_matrix<TestType>(out, in, gen), Vec(uniform_matrix<TestType>(out, 1, gen)),
              random_mask<TestType>(out, in, 0.7, gen));
  check_both_paths(moved, x, g, "building the source");
  moved.set_mask(random_mask<TestType>(out, in, 0.4, gen));  // stale pattern in the source
  layer = std::move(moved);
  check_both_paths(layer, x, g, "move-assignment");
  Layer fresh(std::move(layer));
  check_both_paths(fresh, x, g, "move-construction");
}

TEMPLATE_TEST_CASE("MaskedLinear: out_features must be below 2^31 (int32 sparse index)", "[masked_linear]", float,
                   double) {
  using Layer = MaskedLinear<TestType>;
  const Eigen::Index two31 = Eigen::Index(1) << 31;
  // Thrown before anything is allocated (2^20 x 2^31 weights could not be).
  try {
    Layer layer(Eigen::Index(1) << 20, two31);
    FAIL("no exception for out_features = 2^31");
  } catch (const deepstruct::shape_error& e) {
    CHECK_THAT(std::string(e.what()), test::contains("expected out_features < 2^31, found 2147483648"));
  }
  try {
    Layer layer(two31, Eigen::Index(1) << 20);
    FAIL("no exception for in_features = 2^31");
  } catch (const deepstruct::shape_error& e) {
    CHECK_THAT(std::string(e.what()), test::contains("expected in_features < 2^31, found 2147483648"));
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: a layer too large for memory is refused by name, before allocating", "[masked_linear]", float,
                   double) {
  using Layer = MaskedLinear<TestType>;
  const Eigen::Index big = (Eigen::Index(1) << 31) - 1;  // 2^62 weights: within int32 per side
  try {
    Layer layer(big, big);
    FAIL("no exception for 2^62 weights");
  } catch (const deepstruct::shape_error& e) {
    CHECK_THAT(std::string(e.what()), test::contains("2147483647 x 2147483647 weights and their mask needs at least"));
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: a NaN or Inf behind the mask affects nothing, on both paths", "[masked_linear]", float, double) {
  using Layer = MaskedLinear<TestType>;
  using Mat = typename Layer::Matrix;
  std::mt19937_64 gen(11);
  Mat w = uniform_matrix<TestType>(6, 9, gen);
  auto m = random_mask<TestType>(6, 9, 0.3, gen);
  m(0, 0) = m(5, 8) = false;
  w(0, 0) = std::numeric_limits<TestType>::quiet_NaN();
  w(5, 8) = std::numeric_limits<TestType>::infinity();
  const Mat x = uniform_matrix<TestType>(9, 7, gen), g = uniform_matrix<TestType>(6, 7, gen);
  Mat y[2], gx[2], gw[2];
  int i = 0;
  for (const auto path : {Execution::dense, Execution::sparse}) {
    Layer layer(w, Eigen::Matrix<TestType, Eigen::Dynamic, 1>::Zero(6), m);
    layer.set_execution(path);
    layer.forward(x, y[i]);
    layer.backward(x, g, &gx[i]);
    gw[i] = layer.weight_grad();
    CHECK(y[i].allFinite());
    CHECK(gx[i].allFinite());
    CHECK(gw[i].allFinite());
    CHECK(gw[i](0, 0) == TestType(0));
    CHECK(layer.effective_weight().allFinite());
    layer.apply_mask();  // zeroes what is behind the mask, NaN included
    CHECK(layer.weight().allFinite());
    ++i;
  }
  CHECK(y[0].isApprox(y[1], static_cast<TestType>(test::tol<TestType>(1000))));
  CHECK(gx[0].isApprox(gx[1], static_cast<TestType>(test::tol<TestType>(1000))));
  CHECK(gw[0].isApprox(gw[1], static_cast<TestType>(test::tol<TestType>(1000))));
}

TEMPLATE_TEST_CASE("MaskedLinear: gradient accessors and active_positions are const", "[masked_linear]", float,
                   double) {
  using Layer = MaskedLinear<TestType>;
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  static_assert(std::is_same<decltype(std::declval<const Layer&>().weight_grad()), const Mat&>::value, "");
  static_assert(
      std::is_same<decltype(std::declval<const Layer&>().bias_grad()), const Eigen::Matrix<TestType, -1, 1>&>::value, "");
  static_assert(
      std::is_same<decltype(std::declval<const Layer&>().active_positions()), const std::vector<Eigen::Index>&>::value,
      "");
  std::mt19937_64 gen(41);
  Layer layer(6, 4, true, 8);
  const Layer& view = layer;
  // Before any backward: zero gradients of the right shapes.
  CHECK(view.weight_grad().rows() == 4);
  CHECK(view.weight_grad().cols() == 6);
  CHECK(view.weight_grad().cwiseAbs().maxCoeff() == TestType(0));
  CHECK(view.bias_grad().size() == 4);
  CHECK(view.bias_grad().cwiseAbs().maxCoeff() == TestType(0));
  // active_positions follows the mask, ascending (column-major), also when first asked through a const view.
  layer.set_mask(random_mask<TestType>(4, 6, 0.5, gen));
  std::vector<Eigen::Index> expected;
  for (Eigen::Index p = 0; p < 24; ++p)
    if (layer.mask()(p)) expected.push_back(p);
  CHECK(view.active_positions() == expected);
  // ...and the sparse path built from that pattern still computes the right thing.
  const Mat x = uniform_matrix<TestType>(6, 5, gen), g = uniform_matrix<TestType>(4, 5, gen);
  check_both_paths(layer, x, g, "active_positions() const");
  layer.zero_grad();
  layer.backward(x, g, nullptr);
  const Eigen::MatrixXd gw_ref =
      (g.template cast<double>() * x.template cast<double>().transpose()).cwiseProduct(layer.mask().template cast<double>());
  CHECK(test::max_rel_diff(view.weight_grad().template cast<double>(), gw_ref) <= test::tol<TestType>(50));
  CHECK(test::max_rel_diff(view.bias_grad().template cast<double>(), Eigen::VectorXd(g.template cast<double>().rowwise().sum())) <=
        test::tol<TestType>(50));
}

TEST_CASE("MaskedLinear: the sparse kernels' tile buffers start on a cache line", "[masked_linear][sparse]") {
  // A SIMD load from a tile row must not straddle two cache lines (sparse_kernels.hpp): every
  // TileBuffer is 64-byte aligned, whatever its size (malloc gives large blocks 16-byte alignment).
  for (const std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{1000}, std::size_t{128000}, std::size_t{1} << 20}) {
    deepstruct::detail::TileBuffer<float> f(n);
    deepstruct::detail::TileBuffer<double> d(n);
    CHECK(reinterpret_cast<std::uintptr_t>(f.data()) % 64 == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(d.data()) % 64 == 0);
    f.resize(n + 17);  // a reallocation keeps the alignment
    CHECK(reinterpret_cast<std::uintptr_t>(f.data()) % 64 == 0);
  }
}

TEST_CASE("MaskedLinear: the SIMD width this test binary was built for", "[masked_linear][sparse]") {
  using Shape = deepstruct::detail::TileShape<double>;
  INFO("SIMD: " << Eigen::SimdInstructionSetsInUse() << ", double packet " << Shape::packet << ", tile "
                << deepstruct::detail::batch_tile<double>);
  // The kernels run the packets of the instruction set the binary was built for: a variant built
  // for a given one (tests/CMakeLists.txt) says so; otherwise the compiler's macros tell (x86).
#if defined(DEEPSTRUCT_TEST_DOUBLE_PACKET)
  CHECK(Shape::packet == DEEPSTRUCT_TEST_DOUBLE_PACKET);
#elif defined(EIGEN_VECTORIZE_AVX512)
  CHECK(Shape::packet == 8);
#elif defined(EIGEN_VECTORIZE_AVX)
  CHECK(Shape::packet == 4);
#elif defined(EIGEN_VECTORIZE_SSE2)
  CHECK(Shape::packet == 2);
#elif defined(EIGEN_DONT_VECTORIZE)
  CHECK(Shape::packet == 1);
#endif
}

TEST_CASE("MaskedLinear: gradients and dense/sparse agreement at batches that end in a partial tile",
          "[masked_linear][gradient][sparse]") {
  using Layer = MaskedLinear<double>;
  using Mat = Eigen::MatrixXd;
  std::mt19937_64 gen(43);
  const Eigen::Index in = 11, out = 9;  // neither a multiple of a SIMD width
  for (const double density : {0.0, 0.4, 1.0})
    for (const Eigen::Index batch : {1, 3, 17, 70, 130}) {
      Layer layer(uniform_matrix<double>(out, in, gen), Eigen::VectorXd(uniform_matrix<double>(out, 1, gen)),
                  random_mask<double>(out, in, density, gen));
      const Mat x = uniform_matrix<double>(in, batch, gen), c = uniform_matrix<double>(out, batch, gen);
      Mat y[2], gx[2], gw[2];
      Eigen::VectorXd gb[2];
      for (const Execution path : {Execution::dense, Execution::sparse}) {
        const int p = path == Execution::dense ? 0 : 1;
        INFO("density " << density << " batch " << batch << " path " << (p == 0 ? "dense" : "sparse"));
        layer.set_execution(path);
        layer.zero_grad();
        layer.forward(x, y[p]);
        layer.backward(x, c, &gx[p]);  // L = sum(c o y)
        gw[p] = layer.weight_grad();
        gb[p] = layer.bias_grad();
        CHECK(test::max_rel_diff(y[p], reference_forward(layer, x)) <= test::tol<double>(64));
        // Finite differences (L is linear in every parameter: central differences are exact up to rounding).
        auto loss = [&](Layer& l, const Mat& input) {
          Mat out_y;
          l.forward(input, out_y);
          return c.cwiseProduct(out_y).sum();
        };
        const double h = 1e-3, margin = 1e-8 * double(batch);
        for (Eigen::Index i = 0; i < layer.weight().size(); ++i) {
          Layer lp = layer, lm = layer;
          lp.update_weight([&](Mat& w) { w.data()[i] += h; });
          lm.update_weight([&](Mat& w) { w.data()[i] -= h; });
          CHECK(gw[p].data()[i] == Approx((loss(lp, x) - loss(lm, x)) / (2 * h)).margin(margin));
          if (!layer.mask().data()[i]) CHECK(gw[p].data()[i] == 0.0);
        }
        for (Eigen::Index o = 0; o < out; ++o) {
          Layer lp = layer, lm = layer;
          lp.update_bias([&](Eigen::VectorXd& b) { b[o] += h; });
          lm.update_bias([&](Eigen::VectorXd& b) { b[o] -= h; });
          CHECK(gb[p][o] == Approx((loss(lp, x) - loss(lm, x)) / (2 * h)).margin(margin));
        }
        // The input gradient along random directions.
        for (int trial = 0; trial < 3; ++trial) {
          const Mat d = uniform_matrix<double>(in, batch, gen);
          const double fd = (loss(layer, x + h * d) - loss(layer, x - h * d)) / (2 * h);
          CHECK(gx[p].cwiseProduct(d).sum() == Approx(fd).margin(margin));
        }
      }
      INFO("density " << density << " batch " << batch << ": dense against sparse");
      const double t = test::tol<double>(8.0 * double(in + out + batch));
      CHECK(test::max_rel_diff(y[1], y[0]) <= t);
      CHECK(test::max_rel_diff(gx[1], gx[0]) <= t);
      CHECK(test::max_rel_diff(gw[1], gw[0]) <= t);
      CHECK(test::max_rel_diff(gb[1], gb[0]) <= t);
    }
}

/// Outputs and gradients of one forward + backward on each path: [0] dense, [1] sparse.
template <typename Scalar>
struct BothPaths {
  Eigen::Matrix<Scalar, -1, -1> y[2], gx[2], gw[2];
  Eigen::Matrix<Scalar, -1, 1> gb[2];
};
template <typename Scalar>
BothPaths<Scalar> run_both_paths(MaskedLinear<Scalar>& layer, const Eigen::Matrix<Scalar, -1, -1>& x,
                                 const Eigen::Matrix<Scalar, -1, -1>& g) {
  BothPaths<Scalar> r;
  for (int p = 0; p < 2; ++p) {
    layer.set_execution(p == 0 ? Execution::dense : Execution::sparse);
    layer.zero_grad();
    layer.forward(x, r.y[p]);
    layer.backward(x, g, &r.gx[p]);
    r.gw[p] = layer.weight_grad();
    r.gb[p] = layer.bias_grad();
  }
  return r;
}

TEMPLATE_TEST_CASE("MaskedLinear: dense and sparse agree at batches that end in a partial tile", "[masked_linear][sparse]",
                   float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(47);
  for (const double density : {0.05, 0.4, 1.0})
    for (const Eigen::Index batch : {1, 3, 17, 70, 130, 259}) {
      MaskedLinear<TestType> layer(uniform_matrix<TestType>(37, 45, gen), uniform_matrix<TestType>(37, 1, gen),
                                   random_mask<TestType>(37, 45, density, gen));
      const Mat x = uniform_matrix<TestType>(45, batch, gen), g = uniform_matrix<TestType>(37, batch, gen);
      const BothPaths<TestType> r = run_both_paths(layer, x, g);
      INFO("density " << density << " batch " << batch);
      const double t = test::tol<TestType>(8.0 * double(45 + 37 + batch));
      CHECK(test::max_rel_diff(r.y[1], r.y[0]) <= t);
      CHECK(test::max_rel_diff(r.gx[1], r.gx[0]) <= t);
      CHECK(test::max_rel_diff(r.gw[1], r.gw[0]) <= t);
      CHECK(test::max_rel_diff(r.gb[1], r.gb[0]) <= t);
      CHECK(test::max_rel_diff(r.y[0].template cast<double>(), reference_forward(layer, x)) <= t);
    }
}

TEMPLATE_TEST_CASE("MaskedLinear: blocked sparse kernels on layers wide enough for several feature blocks",
                   "[masked_linear][sparse]", float, double) {
  // 1600 features in both directions: more than one L1-sized block of tile rows for every SIMD
  // width (SparseBlocks), so rows span several segments; batch 1 (per-sample kernels), a few
  // samples (one partial tile) and full tiles plus a remainder; a layer without bias too.
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(71);
  const Eigen::Index in = 1600, out = 1500;
  for (const bool bias : {true, false}) {
    MaskedLinear<TestType> layer(uniform_matrix<TestType>(out, in, gen),
                                 bias ? Eigen::Matrix<TestType, -1, 1>(uniform_matrix<TestType>(out, 1, gen))
                                      : Eigen::Matrix<TestType, -1, 1>(),
                                 random_mask<TestType>(out, in, 0.05, gen));
    for (const Eigen::Index batch : {Eigen::Index(1), Eigen::Index(5), deepstruct::detail::batch_tile<TestType> * 2 + 7}) {
      const Mat x = uniform_matrix<TestType>(in, batch, gen), g = uniform_matrix<TestType>(out, batch, gen);
      const BothPaths<TestType> r = run_both_paths(layer, x, g);
      const auto& y = r.y;
      const auto& gx = r.gx;
      const auto& gw = r.gw;
      const auto& gb = r.gb;
      Mat gx_only;
      layer.backward_input(g, gx_only);  // sparse: the input gradient alone
      INFO("bias " << bias << " batch " << batch);
      const double t = test::tol<TestType>(8.0 * double(in + out + batch));
      CHECK(test::max_rel_diff(y[1], y[0]) <= t);
      CHECK(test::max_rel_diff(gx[1], gx[0]) <= t);
      CHECK(test::max_rel_diff(gx_only, gx[0]) <= t);
      CHECK(test::max_rel_diff(gw[1], gw[0]) <= t);
      if (bias) CHECK(test::max_rel_diff(gb[1], gb[0]) <= t);
      Eigen::Index behind_mask = 0;  // gradients behind the mask that are not exactly 0
      for (Eigen::Index i = 0; i < gw[1].size(); ++i) behind_mask += !layer.mask().data()[i] && gw[1].data()[i] != TestType(0);
      CHECK(behind_mask == 0);
      // zero_grad after a sparse backward clears exactly the active positions.
      layer.zero_grad();
      CHECK(layer.weight_grad().isZero(0));
    }
  }
}

TEMPLATE_TEST_CASE("detail::spread_prefetch_pays: a kernel prefetches for the tile copies only when its block of tile rows nearly fits in L1",
                   "[masked_linear][sparse]", float, double) {
  // Where the kernel does not (one 1000-feature block of 256 KiB), the copies prefetch along
  // their columns themselves; the 1600 x 1500 layer of the test above is such a layer, and the
  // small layers of the other tests are not, so the kernels run both ways in these tests.
  using deepstruct::detail::batch_tile;
  std::mt19937_64 gen(5);
  auto pays = [&](Eigen::Index out, Eigen::Index in, double density) {
    deepstruct::detail::CsrWeights<TestType> csr;
    csr.build_pattern(random_mask<TestType>(out, in, density, gen));
    deepstruct::detail::SparseBlocks<TestType> blocks;
    blocks.build(out, in, csr.row_start.data(), csr.col.data(), batch_tile<TestType>,
                 [&](Eigen::Index o, Eigen::Index i) { return o + i * out; });
    INFO(out << " x " << in << " at density " << density << ": blocks of " << blocks.block << " features");
    const bool fits = blocks.block * batch_tile<TestType> * Eigen::Index(sizeof(TestType)) <= 64 * 1024;
    CHECK(deepstruct::detail::spread_prefetch_pays(blocks, batch_tile<TestType>) == fits);
    return fits;
  };
  const bool avx512 = batch_tile<TestType> * Eigen::Index(sizeof(TestType)) == 256;  // 4 packets of 64 bytes
  if (avx512) {  // the measured cases (docs/benchmarks.md)
    CHECK_FALSE(pays(1000, 1000, 0.01));  // one block of 1000 features
    CHECK_FALSE(pays(1000, 1000, 0.04));  // 3 blocks of 334
    CHECK(pays(1000, 1000, 0.05));        // 4 blocks of 250
    CHECK(pays(1000, 1000, 0.1));
    CHECK_FALSE(pays(1500, 1600, 0.05));
  }
  CHECK(pays(37, 45, 0.3));
}

TEMPLATE_TEST_CASE("MaskedLinear: the sparse forward starts every row from its bias, whichever feature block it starts in",
                   "[masked_linear][sparse]", float, double) {
  // The forward kernel starts the rows of its first feature block from the bias in registers and
  // sets the rows between them on the way (detail::blocked_times_tile). Rows here: a third with
  // entries only in the last quarter of the features (they start in a later block), a third
  // without entries (bias alone; the last row among them) and a third dense
  // enough for several blocks; several tiles, so a row not started would keep the previous
  // tile's sums. Against the definition, written out.
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(73);
  const Eigen::Index in = 1600, out = 302;
  typename MaskedLinear<TestType>::Mask mask(out, in);
  mask.setConstant(false);
  for (Eigen::Index o = 0; o < out; ++o)
    for (Eigen::Index i = 0; i < in; ++i) {
      if (o % 3 == 0) mask(o, i) = i >= 3 * in / 4 && deepstruct::random::bernoulli(gen, 0.3);
      if (o % 3 == 2) mask(o, i) = deepstruct::random::bernoulli(gen, 0.2);
    }
  for (const bool bias : {true, false}) {
    MaskedLinear<TestType> layer(uniform_matrix<TestType>(out, in, gen),
                                 bias ? Eigen::Matrix<TestType, -1, 1>(uniform_matrix<TestType>(out, 1, gen))
                                      : Eigen::Matrix<TestType, -1, 1>(),
                                 mask);
    layer.set_execution(Execution::sparse);
    REQUIRE(layer.uses_sparse_path());
    const Mat x = uniform_matrix<TestType>(in, deepstruct::detail::batch_tile<TestType> * 3 + 5, gen);
    Mat y;
    layer.forward(x, y);
    const Mat again = y;
    layer.forward(x, y);  // the tile buffers now hold the sums of the first call
    INFO("bias " << bias);
    CHECK(test::max_rel_diff(y, again) == 0);
    CHECK(test::max_rel_diff(y.template cast<double>().eval(), reference_forward(layer, x)) <= test::tol<TestType>(4.0 * in));
    for (Eigen::Index o = 1; o < out; o += 3)
      for (Eigen::Index b = 0; b < x.cols(); ++b) CHECK(y(o, b) == (bias ? layer.bias()[o] : TestType(0)));
  }
}

TEST_CASE("MaskedLinear: at batch 1 the automatic forward gives the definition on either side of single_sample_sparse_threshold",
          "[masked_linear][sparse]") {
  std::mt19937_64 gen(5);
  const double d = deepstruct::detail::single_sample_sparse_threshold;
  for (const double density : {d / 2, (d + deepstruct::default_sparse_threshold) / 2}) {
    MaskedLinear<double> layer(uniform_matrix<double>(300, 400, gen), Eigen::VectorXd(uniform_matrix<double>(300, 1, gen)),
                               random_mask<double>(300, 400, density, gen));
    REQUIRE(layer.uses_sparse_path());  // below the layer's threshold: backward and batches > 1 run sparse
    const Eigen::MatrixXd x1 = uniform_matrix<double>(400, 1, gen), x2 = uniform_matrix<double>(400, 2, gen);
    INFO("density " << layer.density());
    // Both paths give the definition at either choice.
    CHECK(test::max_rel_diff(layer.forward(x1), reference_forward(layer, x1)) <= test::tol<double>(64));
    CHECK(test::max_rel_diff(layer.forward(x2), reference_forward(layer, x2)) <= test::tol<double>(64));
  }
}

TEMPLATE_TEST_CASE("MaskedLinear: sparse kernels with work enough for several threads agree with the dense path",
                   "[masked_linear][sparse][threads]", float, double) {
  // 2 nnz x batch is above 2 * detail::parallel_work_threshold: with OpenMP and two threads
  // (ctest's unit-masked_linear-native) the batch tiles are shared among threads, and each
  // thread's weight-gradient sums are added up; the batch ends in a partial tile.
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(73);
  const Eigen::Index in = 1500, out = 1400, batch = 1037;  // 1037: a partial last tile for every SIMD width
  MaskedLinear<TestType> layer(uniform_matrix<TestType>(out, in, gen), Eigen::Matrix<TestType, -1, 1>(uniform_matrix<TestType>(out, 1, gen)),
                               random_mask<TestType>(out, in, 0.1, gen));
  REQUIRE(2.0 * double(layer.nnz()) * double(batch) > 2.0 * deepstruct::detail::parallel_work_threshold);
  INFO(deepstruct::threads_summary());
  const Mat x = uniform_matrix<TestType>(in, batch, gen), g = uniform_matrix<TestType>(out, batch, gen);
  const BothPaths<TestType> r = run_both_paths(layer, x, g);
  const double t = test::tol<TestType>(8.0 * double(in + out + batch));
  CHECK(test::max_rel_diff(r.y[1], r.y[0]) <= t);
  CHECK(test::max_rel_diff(r.gx[1], r.gx[0]) <= t);
  CHECK(test::max_rel_diff(r.gw[1], r.gw[0]) <= t);
  CHECK(test::max_rel_diff(r.gb[1], r.gb[0]) <= t);
}

TEMPLATE_TEST_CASE("detail::split_product: every chunking computes the product", "[masked_linear][threads]", float, double) {
  // Chunks of rows and (C more than twice as wide as tall) of columns, overwriting and
  // accumulating, with odd dimensions; one chunk below the work threshold. Chunks only with
  // OpenMP (the -native build of this test), the same on 1 and 2 threads.
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(91);
  struct Shape {
    Eigen::Index m, k, n;
    int chunks;
  };
  for (const Shape sh :
       {Shape{601, 499, 301, 2}, Shape{203, 611, 707, 2}, Shape{303, 400, 605, 2}, Shape{150, 2000, 130, 2}, Shape{40, 30, 20, 1}}) {
    const double flops = 2.0 * double(sh.m) * double(sh.k) * double(sh.n);
    CHECK(deepstruct::detail::product_chunks(flops, sh.n <= 2 * sh.m ? sh.m : sh.n) == sh.chunks);
    const Mat a = uniform_matrix<TestType>(sh.m, sh.k, gen), bt = uniform_matrix<TestType>(sh.n, sh.k, gen),
              c0 = uniform_matrix<TestType>(sh.m, sh.n, gen);
    Mat c = c0;
    deepstruct::detail::split_product(c, deepstruct::detail::gemm_operand(a), deepstruct::detail::gemm_transposed(bt), true);
    const Mat expected = c0 + a * bt.transpose();
    const double t = test::tol<TestType>(4.0 * double(sh.k));
    CHECK(test::max_rel_diff(c, expected) <= t);
    const Mat at = a.transpose();  // a transposed left factor, as in the input gradient W^T g
    deepstruct::detail::split_product(c, deepstruct::detail::gemm_transposed(at), deepstruct::detail::gemm_transposed(bt), false);
    CHECK(test::max_rel_diff(c, Mat(a * bt.transpose())) <= t);
  }
  // One chunk is Eigen's single-threaded product bit for bit: the same blocking, packing and
  // kernel, only with buffers kept between products (detail/gemm.hpp).
  const int eigen_threads = Eigen::nbThreads();
  Eigen::setNbThreads(1);
  const Mat a = uniform_matrix<TestType>(120, 333, gen), b = uniform_matrix<TestType>(333, 97, gen);
  REQUIRE(deepstruct::detail::product_chunks(2.0 * 120 * 333 * 97, 120) == 1);
  Mat c(120, 97);
  deepstruct::detail::split_product(c, deepstruct::detail::gemm_operand(a), deepstruct::detail::gemm_operand(b), false);
  const Mat expected = a * b;
  Eigen::setNbThreads(eigen_threads);
  CHECK(c == expected);
}

TEST_CASE("MaskedLinear: the dense products and the sparse kernels give the same bits on one thread and on two",
          "[masked_linear][threads]") {
  // Eigen's own parallel product blocks differently for each thread count, so the forward and
  // backward of a large dense layer changed in the last bits with the number of threads;
  // deepstruct's chunks (detail::split_product) depend on the shape alone. The sparse backward
  // summed each thread's weight gradients; now each fixed group of batch tiles sums its own.
  // Needs OpenMP and 2 threads (the -native build of this test) to compare anything.
  if (!test::two_threads_available("the -native build of this test")) return;
  const test::RestoreThreads restore;
  using Mat = Eigen::MatrixXf;
  std::mt19937_64 gen(17);
  // Dense: rows split (batch 300 < 2 x 600 outputs) and columns split (batch 700 > 2 x 200
  // outputs). Sparse: 1500 x 1400 at density 0.1, batch 1037 (17 tiles of 64 with AVX-512, in 2
  // groups).
  struct Case {
    Eigen::Index in, out, batch;
    double density;
    Execution execution;
  };
  for (const Case& cs : {Case{500, 600, 300, 0.7, Execution::dense}, Case{500, 200, 700, 0.7, Execution::dense},
                         Case{1500, 1400, 1037, 0.1, Execution::sparse}}) {
    const Eigen::Index in = cs.in, out = cs.out, batch = cs.batch;
    MaskedLinear<float> layer(uniform_matrix<float>(out, in, gen), Eigen::VectorXf(uniform_matrix<float>(out, 1, gen)),
                              random_mask<float>(out, in, cs.density, gen));
    layer.set_execution(cs.execution);
    const double work = cs.execution == Execution::dense ? 2.0 * double(out * in * batch) : 2.0 * double(layer.nnz() * batch);
    REQUIRE(work >= 2.0 * deepstruct::detail::parallel_work_threshold);  // 2 threads by work
    const Mat x = uniform_matrix<float>(in, batch, gen), g = uniform_matrix<float>(out, batch, gen);
    Mat y[2], gx[2], gw[2];
    Eigen::VectorXf gb[2];
    for (int t = 0; t < 2; ++t) {
      deepstruct::set_num_threads(t + 1);
      layer.zero_grad();
      layer.forward(x, y[t]);
      layer.backward(x, g, &gx[t]);
      gw[t] = layer.weight_grad();
      gb[t] = layer.bias_grad();
    }
    INFO("out " << out << ", batch " << batch << (cs.execution == Execution::sparse ? ", sparse" : ", dense"));
    CHECK(y[1] == y[0]);
    CHECK(gx[1] == gx[0]);
    CHECK(gw[1] == gw[0]);
    CHECK(gb[1] == gb[0]);
  }
}

TEST_CASE("MaskedLinear: the sparse kernels take no more threads, and scratch, than the batch has tiles", "[masked_linear][threads]") {
  // A batch of one tile is one thread's work; the per-thread scratch (transposed tiles, a copy of
  // the weight gradients) was sized by the work alone, so a large layer on a machine with many
  // cores held a tile buffer per core for a small batch. Here 2 threads (the OpenMP build of this
  // test; with one thread there is nothing to share) and a product above the work threshold.
  if (!test::two_threads_available("the -native build of this test")) return;
  using Layer = deepstruct::MaskedLinear<float>;
  const Eigen::Index n = 2000, tile = deepstruct::detail::batch_tile<float>;
  Layer layer(n, n, true, 3);
  Layer::Mask mask(n, n);
  std::mt19937 rng(5);
  for (Eigen::Index i = 0; i < mask.size(); ++i) mask.data()[i] = (rng() & 1u) != 0;  // density 0.5: 2e6 weights
  layer.set_mask(mask);
  layer.set_execution(deepstruct::Execution::sparse);
  REQUIRE(2.0 * double(layer.nnz()) * double(tile) >= 2.0 * deepstruct::detail::parallel_work_threshold);  // 2 threads by work
  // Sizes the scratch for one thread (a batch of one) and builds the sparse pattern.
  const Eigen::MatrixXf x1 = Eigen::MatrixXf::Random(n, 1), g1 = Eigen::MatrixXf::Random(n, 1);
  Eigen::MatrixXf y, gx;
  layer.forward(x1, y);
  layer.backward(x1, g1, &gx);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(n, tile), g = Eigen::MatrixXf::Random(n, tile);
  y.resize(n, tile);
  gx.resize(n, tile);
  // One thread's tile buffer is n x tile floats; a second thread's would double it.
  test::AllocationGuard guard(static_cast<std::size_t>(n * tile) * sizeof(float) * 3 / 2);
  CHECK_NOTHROW(layer.forward(x, y));
  CHECK_NOTHROW(layer.backward(x, g, &gx));
}

namespace {

// The chain the old way: each layer's forward, then activate() over the whole output.
template <typename Scalar>
Eigen::Matrix<Scalar, -1, -1> chain_layer_by_layer(const std::vector<MaskedLinear<Scalar>*>& chain, deepstruct::Activation f,
                                                   bool activate_output, const Eigen::Matrix<Scalar, -1, -1>& x) {
  Eigen::Matrix<Scalar, -1, -1> h = x, y;
  for (std::size_t l = 0; l < chain.size(); ++l) {
    chain[l]->forward(h, y);
    if (l + 1 < chain.size() || activate_output) deepstruct::activate(f, y, y);
    h = y;
  }
  return h;
}

}  // namespace

TEMPLATE_TEST_CASE("MaskedLinear::forward_chain: each tile through the whole chain gives the layers' forwards with f between them",
                   "[masked_linear][sparse]", float, double) {
  using Layer = MaskedLinear<TestType>;
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  using deepstruct::Activation;
  const Eigen::Index T = deepstruct::detail::batch_tile<TestType>;
  std::mt19937_64 gen(41);
  // 45 -> 37 -> 70 -> 9 features (no SIMD multiple; the widest layer in the middle), a layer wide
  // enough for several feature blocks in front, and a single layer.
  struct Shape {
    std::vector<Eigen::Index> features;
    double density;
  };
  for (const Shape& shape : {Shape{{45, 37, 70, 9}, 0.3}, Shape{{1500, 300, 40}, 0.1}, Shape{{33, 20}, 0.5}}) {
    std::vector<Layer> layers;
    for (std::size_t l = 0; l + 1 < shape.features.size(); ++l) {
      const Eigen::Index in = shape.features[l], out = shape.features[l + 1];
      layers.emplace_back(uniform_matrix<TestType>(out, in, gen), typename Layer::Vector(uniform_matrix<TestType>(out, 1, gen)),
                          random_mask<TestType>(out, in, shape.density, gen));
      layers.back().set_execution(Execution::sparse);
    }
    layers.back().set_bias(Layer::Vector::Zero(layers.back().out_features()));  // also with a zero bias
    std::vector<Layer*> chain;
    for (Layer& l : layers) chain.push_back(&l);
    for (const Eigen::Index batch : {Eigen::Index(1), Eigen::Index(3), T - 1, T, 2 * T + 5}) {
      // x a block of a larger matrix: its columns are not contiguous.
      const Mat big = uniform_matrix<TestType>(shape.features[0] + 3, batch, gen);
      const Mat x = big.topRows(shape.features[0]);
      for (const Activation f : {Activation::relu, Activation::leaky_relu, Activation::identity, Activation::gelu,
                                 Activation::tanh, Activation::sigmoid})
        for (const bool activate_output : {false, true}) {
          INFO("features " << shape.features.size() << " layers, batch " << batch << ", activation "
                           << deepstruct::to_string(f) << ", activate_output " << activate_output);
          const Mat expected = chain_layer_by_layer(chain, f, activate_output, x);
          Mat y;
          Layer::forward_chain(chain.data(), chain.size(), f, activate_output, big.topRows(shape.features[0]), y);
          REQUIRE(y.rows() == expected.rows());
          REQUIRE(y.cols() == expected.cols());
          // Bit for bit, tanh and sigmoid too: activate_values puts every value through the same
          // SIMD arithmetic, in a tile or anywhere in a whole matrix.
          CHECK(y == expected);
        }
    }
  }
}

TEMPLATE_TEST_CASE("MaskedLinear::forward_chain: a chain with a dense layer runs layer by layer; bad chains throw",
                   "[masked_linear]", float, double) {
  using Layer = MaskedLinear<TestType>;
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  std::mt19937_64 gen(43);
  Layer a(uniform_matrix<TestType>(30, 20, gen), typename Layer::Vector(uniform_matrix<TestType>(30, 1, gen)),
          random_mask<TestType>(30, 20, 0.2, gen));
  Layer b(uniform_matrix<TestType>(10, 30, gen), typename Layer::Vector(uniform_matrix<TestType>(10, 1, gen)),
          random_mask<TestType>(10, 30, 0.9, gen));
  a.set_execution(Execution::sparse);
  b.set_execution(Execution::dense);
  std::vector<Layer*> chain{&a, &b};
  const Mat x = uniform_matrix<TestType>(20, 100, gen);
  Mat y;
  Layer::forward_chain(chain.data(), 2, deepstruct::Activation::relu, true, x, y);
  CHECK(y == chain_layer_by_layer(chain, deepstruct::Activation::relu, true, x));
  CHECK_FALSE(b.runs_sparse_forward(100));
  CHECK(a.runs_sparse_forward(100));

  // Errors name what was expected and what was found.
  CHECK_THROWS_WITH(Layer::forward_chain(chain.data(), 0, deepstruct::Activation::relu, false, x, y),
                    test::contains("expected at least one layer"));
  std::vector<Layer*> with_null{&a, nullptr};
  CHECK_THROWS_WITH(Layer::forward_chain(with_null.data(), 2, deepstruct::Activation::relu, false, x, y),
                    test::contains("expected a layer at position 1, found null"));
  std::vector<Layer*> mismatched{&a, &a};
  CHECK_THROWS_WITH(Layer::forward_chain(mismatched.data(), 2, deepstruct::Activation::relu, false, x, y),
                    test::contains("expected layer 1 to take the 30 outputs of layer 0, found 20 inputs"));
  CHECK_THROWS_AS(Layer::forward_chain(chain.data(), 2, deepstruct::Activation::relu, false, Mat(21, 100), y),
                  deepstruct::shape_error);
  Mat same = uniform_matrix<TestType>(20, 100, gen);
  CHECK_THROWS_AS(Layer::forward_chain(chain.data(), 2, deepstruct::Activation::relu, false, same, same), deepstruct::shape_error);
}

TEST_CASE("MaskedLinear::forward_chain: the same bits on one thread and on two", "[masked_linear][threads]") {
  if (!test::two_threads_available("the -native build of this test")) return;
  const test::RestoreThreads restore;
  using Layer = MaskedLinear<float>;
  std::mt19937_64 gen(47);
  std::vector<Layer> layers;
  const std::vector<Eigen::Index> features{1200, 1300, 1100, 50};
  for (std::size_t l = 0; l + 1 < features.size(); ++l)
    layers.emplace_back(uniform_matrix<float>(features[l + 1], features[l], gen),
                        Eigen::VectorXf(uniform_matrix<float>(features[l + 1], 1, gen)),
                        random_mask<float>(features[l + 1], features[l], 0.1, gen));
  std::vector<Layer*> chain;
  for (Layer& l : layers) chain.push_back(&l);
  const Eigen::MatrixXf x = uniform_matrix<float>(features[0], 1037, gen);
  double work = 0;
  for (const Layer& l : layers) work += 2.0 * double(l.nnz()) * 1037;
  REQUIRE(work >= 2.0 * deepstruct::detail::parallel_work_threshold);  // 2 threads by work
  Eigen::MatrixXf y[2];
  for (int t = 0; t < 2; ++t) {
    deepstruct::set_num_threads(t + 1);
    Layer::forward_chain(chain.data(), chain.size(), deepstruct::Activation::relu, false, x, y[t]);
  }
  CHECK(y[1] == y[0]);
  CHECK(y[0] == chain_layer_by_layer(chain, deepstruct::Activation::relu, false, Eigen::MatrixXf(x)));
}
