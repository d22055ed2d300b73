// Tests of <deepstruct/masked_linear.hpp>.
#include <deepstruct/masked_linear.hpp>

#include <random>

#include "test_support.hpp"

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
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> random_matrix(Eigen::Index r, Eigen::Index c, std::mt19937_64& gen) {
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
      MaskedLinear<TestType> layer(random_matrix<TestType>(out, in, gen), random_matrix<TestType>(out, 1, gen),
                                   random_mask<TestType>(out, in, density, gen));
      const Eigen::Matrix<TestType, -1, -1> x = random_matrix<TestType>(in, batch, gen);
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
  MaskedLinear<TestType> layer(random_matrix<TestType>(9, 13, gen), random_matrix<TestType>(9, 1, gen),
                               random_mask<TestType>(9, 13, 0.4, gen));
  const Eigen::Matrix<TestType, -1, -1> big = random_matrix<TestType>(20, 70, gen);
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
  const Eigen::Matrix<TestType, -1, -1> x = random_matrix<TestType>(12, 5, gen);
  for (const Execution path : {Execution::dense, Execution::sparse}) {
    layer.set_execution(path);
    (void)layer.forward(x);  // fills the caches
    layer.update_weight([](auto& w) { w *= TestType(2); });
    CHECK(test::max_rel_diff(layer.forward(x).template cast<double>(), reference_forward(layer, x)) <= test::tol<TestType>(200));
    layer.set_mask(random_mask<TestType>(7, 12, 0.5, gen));
    CHECK(test::max_rel_diff(layer.forward(x).template cast<double>(), reference_forward(layer, x)) <= test::tol<TestType>(200));
    layer.set_weight(random_matrix<TestType>(7, 12, gen));
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
  CHECK_THROWS_AS(fresh.backward(Mat::Zero(3, 2)), std::logic_error);
  (void)fresh.forward(Mat::Ones(5, 2));  // a temporary cannot be remembered for backward
  CHECK_THROWS_AS(fresh.backward(Mat::Zero(3, 2)), std::logic_error);
  const Mat x = Mat::Zero(5, 2);
  (void)fresh.forward(x);
  CHECK_THROWS_AS(fresh.backward(Mat::Zero(3, 3)), deepstruct::shape_error);
  CHECK_THROWS_AS(fresh.backward(Mat::Zero(2, 2)), deepstruct::shape_error);
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
      Layer layer(random_matrix<double>(out, in, gen),
                  bias ? Eigen::VectorXd(random_matrix<double>(out, 1, gen)) : Eigen::VectorXd(),
                  random_mask<double>(out, in, density, gen));
      const Mat x = random_matrix<double>(in, batch, gen);
      const Mat c = random_matrix<double>(out, batch, gen);  // loss L = sum(c o y)
      for (const Execution path : {Execution::dense, Execution::sparse}) {
        INFO("density " << density << " trial " << trial << " path " << int(path));
        layer.set_execution(path);
        layer.zero_grad();
        (void)layer.forward(x);
        const Mat gx = layer.backward(c);
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
  const Mat x = random_matrix<TestType>(30, 17, gen), g = random_matrix<TestType>(20, 17, gen);
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
        MaskedLinear<TestType> layer(random_matrix<TestType>(out, in, gen),
                                     bias ? Eigen::Matrix<TestType, -1, 1>(random_matrix<TestType>(out, 1, gen))
                                          : Eigen::Matrix<TestType, -1, 1>(),
                                     random_mask<TestType>(out, in, density, gen));
        layer.set_execution(Execution::sparse);
        // x and g as blocks of larger matrices: outer strides differ from the row counts.
        const Mat x_big = random_matrix<TestType>(in + 5, batch + 2, gen), g_big = random_matrix<TestType>(out + 3, batch + 1, gen);
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
