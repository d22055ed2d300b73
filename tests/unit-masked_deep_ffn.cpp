// Tests of <deepstruct/masked_deep_ffn.hpp>: structure, parity with deepstruct/PyTorch
// (tests/data/masked_ffn.json: forward, loss, one SGD step, two Adam steps), gradients.
#include <deepstruct/loss.hpp>
#include <deepstruct/masked_deep_ffn.hpp>
#include <deepstruct/optim.hpp>

#include "test_support.hpp"

using deepstruct::Activation;
using deepstruct::Execution;
using deepstruct::FFNOptions;
using deepstruct::DanDescription;
using deepstruct::MaskedDeepFFN;

namespace {


template <typename Scalar>
MaskedDeepFFN<Scalar> model_from_case(const nlohmann::json& c) {
  FFNOptions options;
  options.use_layer_norm = c["use_layer_norm"].get<bool>();
  std::vector<Eigen::Index> hidden;
  for (const auto& h : c["hidden"]) hidden.push_back(h.get<Eigen::Index>());
  MaskedDeepFFN<Scalar> model(c["inputs"].get<Eigen::Index>(), c["outputs"].get<Eigen::Index>(), hidden, options);
  model.load_state_dict(test::state_dict<Scalar>(c["state_dict"]));
  return model;
}

deepstruct::Labels labels_from_json(const nlohmann::json& j) {
  deepstruct::Labels y(static_cast<Eigen::Index>(j.size()));
  for (Eigen::Index i = 0; i < y.size(); ++i) y[i] = j[static_cast<std::size_t>(i)].get<int>();
  return y;
}

// Effective weights (W o M) and every other parameter of the model equal those of the state dict.
template <typename Scalar>
void check_parameters(const MaskedDeepFFN<Scalar>& model, const nlohmann::json& expected_sd, double tolerance) {
  const auto expected = test::state_dict<double>(expected_sd);
  const auto actual = model.state_dict();
  CHECK(actual.size() == expected.size());
  for (const auto& kv : expected.matrices) {
    INFO("key " << kv.first);
    REQUIRE(actual.matrices.count(kv.first) == 1);
    // Compare effective weights: behind the mask the values do not matter.
    const Eigen::MatrixXd m = expected.masks.at(kv.first.substr(0, kv.first.size() - 7) + "._mask").cast<double>();
    CHECK(test::max_rel_diff(actual.matrices.at(kv.first).template cast<double>().cwiseProduct(m), kv.second.cwiseProduct(m)) <= tolerance);
  }
  for (const auto& kv : expected.vectors) {
    INFO("key " << kv.first);
    REQUIRE(actual.vectors.count(kv.first) == 1);
    CHECK(test::max_rel_diff(actual.vectors.at(kv.first).template cast<double>(), kv.second) <= tolerance);
  }
  for (const auto& kv : expected.masks) CHECK(actual.masks.at(kv.first) == kv.second);
}

}  // namespace

TEST_CASE("MaskedDeepFFN: structure, names and counts", "[masked_deep_ffn]") {
  MaskedDeepFFN<float> model(784, 10, {300, 100});
  CHECK(model.num_layers() == 3);
  CHECK(model.inputs() == 784);
  CHECK(model.outputs() == 10);
  CHECK(model.hidden_sizes() == std::vector<Eigen::Index>{300, 100});
  CHECK(model.layer_name(0) == "_layer_first");
  CHECK(model.layer_name(1) == "_layers_hidden.0");
  CHECK(model.layer_name(2) == "_layer_out");
  CHECK(model.num_weights() == 784 * 300 + 300 * 100 + 100 * 10);
  CHECK(model.num_parameters() == model.num_weights() + 300 + 100 + 10);
  CHECK(model.density() == 1.0);
  CHECK(model.maskable_layers().size() == 3);

  FFNOptions ln;
  ln.use_layer_norm = true;
  MaskedDeepFFN<double> deep({1, 28, 28}, 10, {64, 32, 16}, ln);  // the input shape is flattened
  CHECK(deep.inputs() == 784);
  CHECK(deep.layer_name(2) == "_layers_hidden.3");
  CHECK(deep.layer_norm_name(1) == "_layers_hidden.1");
  CHECK(deep.layer_norm_name(2) == "_layers_hidden.4");
  CHECK_FALSE(deep.has_layer_norm(0));  // never after the first layer (deepstruct)
  CHECK_THROWS_AS(deep.layer_norm(0), std::out_of_range);
  CHECK(deep.num_parameters() == deep.num_weights() + 64 + 32 + 16 + 10 + 2 * (32 + 16));
  const auto sd = deep.state_dict();
  CHECK(sd.size() == 4 * 3 + 2 * 2);

  // The same seed gives the same network; another seed another one.
  FFNOptions seeded;
  seeded.seed = 5;
  MaskedDeepFFN<float> a(20, 3, {8}, seeded), b(20, 3, {8}, seeded);
  CHECK(a.layer(0).weight() == b.layer(0).weight());
  seeded.seed = 6;
  MaskedDeepFFN<float> c(20, 3, {8}, seeded);
  CHECK(a.layer(0).weight() != c.layer(0).weight());
  // Layers get different draws from the one generator.
  MaskedDeepFFN<float> twin(8, 8, {8, 8});
  CHECK(twin.layer(0).weight() != twin.layer(1).weight());
}

TEST_CASE("MaskedDeepFFN: bad arguments throw", "[masked_deep_ffn]") {
  using Model = MaskedDeepFFN<float>;
  CHECK_THROWS_AS(Model(10, 2, {}), deepstruct::shape_error);
  CHECK_THROWS_AS(Model(10, 2, {5, 0}), deepstruct::shape_error);
  CHECK_THROWS_AS(Model(0, 2, {5}), deepstruct::shape_error);
  CHECK_THROWS_AS(Model(std::vector<Eigen::Index>{1, 0, 28}, 2, {5}), deepstruct::shape_error);
  Model m(10, 2, {5});
  try {
    m.forward(Eigen::MatrixXf::Zero(9, 4));
    FAIL("no exception");
  } catch (const deepstruct::shape_error& e) {
    CHECK(std::string(e.what()).find("expected input with 10 rows") != std::string::npos);
    CHECK(std::string(e.what()).find("found 9x4") != std::string::npos);
  }
  const Eigen::MatrixXf x4 = Eigen::MatrixXf::Zero(10, 4);
  CHECK_THROWS_AS(m.backward(x4, Eigen::MatrixXf::Zero(2, 4)), deepstruct::state_error);  // no forward yet
  m.forward(x4);
  CHECK_THROWS_AS(m.backward(x4, Eigen::MatrixXf::Zero(2, 3)), deepstruct::shape_error);
  CHECK_THROWS_AS(m.backward(Eigen::MatrixXf::Zero(10, 3), Eigen::MatrixXf::Zero(2, 3)), deepstruct::shape_error);  // not x4
  CHECK_THROWS_AS(m.forward(Eigen::MatrixXf::Zero(9, 4)), deepstruct::shape_error);
  CHECK_THROWS_AS(m.backward(x4, Eigen::MatrixXf::Zero(2, 4)), deepstruct::state_error);  // the failed forward left nothing
  CHECK_THROWS_AS(m.layer(2), deepstruct::index_error);
  CHECK_THROWS_AS(m.layer_norm(0), deepstruct::index_error);
  // load_state_dict is all-or-nothing.
  auto sd = m.state_dict();
  const Eigen::MatrixXf before = m.layer(0).weight();
  sd.matrices["_layer_first.weight"].setConstant(1.0f);
  sd.matrices["_layer_out.weight"] = Eigen::MatrixXf::Zero(3, 5);  // wrong shape
  CHECK_THROWS_AS(m.load_state_dict(sd), deepstruct::shape_error);
  CHECK(m.layer(0).weight() == before);
  sd = m.state_dict();
  sd.matrices["unexpected.weight"] = Eigen::MatrixXf::Zero(1, 1);
  CHECK_THROWS_AS(m.load_state_dict(sd), deepstruct::shape_error);
  sd = m.state_dict();
  sd.masks.erase("_layer_out._mask");
  CHECK_THROWS_AS(m.load_state_dict(sd), deepstruct::shape_error);
}

TEMPLATE_TEST_CASE("MaskedDeepFFN: parity with deepstruct/PyTorch forward and loss", "[masked_deep_ffn][parity]", float, double) {
  const nlohmann::json fixture = test::load_json("masked_ffn.json");
  for (const auto& c : fixture["cases"]) {
    INFO("case with layer norm: " << c["use_layer_norm"].get<bool>());
    auto model = model_from_case<TestType>(c);
    const Eigen::Matrix<TestType, -1, -1> x = test::matrix<TestType>(c["x"]).transpose();
    const deepstruct::Labels y = labels_from_json(c["labels"]);
    // float: deepstruct's float32 output; double: numpy float64 from the same parameters.
    const Eigen::MatrixXd expected =
        test::matrix<double>(std::is_same<TestType, float>::value ? c["output_float32"] : c["output_float64"]).transpose();
    for (const Execution path : {Execution::dense, Execution::sparse}) {
      model.set_execution(path);
      const Eigen::Matrix<TestType, -1, -1> out = model.forward(x);
      CHECK(test::max_rel_diff(out.template cast<double>(), expected) <= test::tol<TestType>(200));
      Eigen::Matrix<TestType, -1, -1> predicted;
      model.predict(x, predicted);
      CHECK(predicted == out);
      CHECK(deepstruct::cross_entropy(out, y) == Approx(c["loss_float32"].get<double>()).epsilon(1e-5));
    }
  }
}

TEMPLATE_TEST_CASE("MaskedDeepFFN: parity with PyTorch after one SGD step and two Adam steps", "[masked_deep_ffn][parity]", float, double) {
  const nlohmann::json fixture = test::load_json("masked_ffn.json");
  // PyTorch computed in float32: compare at float32 precision for both scalar types.
  const double tolerance = 2e-5;
  for (const auto& c : fixture["cases"]) {
    INFO("case with layer norm: " << c["use_layer_norm"].get<bool>());
    const Eigen::Matrix<TestType, -1, -1> x = test::matrix<TestType>(c["x"]).transpose();
    const deepstruct::Labels y = labels_from_json(c["labels"]);
    for (const Execution path : {Execution::dense, Execution::sparse}) {
      auto model = model_from_case<TestType>(c);
      model.set_execution(path);
      deepstruct::SGDOptions sgd_options;
      sgd_options.lr = c["sgd"]["lr"].get<double>();
      deepstruct::SGD<TestType> sgd(sgd_options);
      Eigen::Matrix<TestType, -1, -1> grad;
      model.zero_grad();
      deepstruct::cross_entropy(model.forward(x), y, &grad);
      model.backward(x, grad);
      sgd.step(model);
      check_parameters(model, c["sgd"]["state_dict_after_one_step"], tolerance);

      auto model2 = model_from_case<TestType>(c);
      model2.set_execution(path);
      deepstruct::AdamOptions adam_options;
      adam_options.lr = c["adam"]["lr"].get<double>();
      adam_options.beta1 = c["adam"]["betas"][0].get<double>();
      adam_options.beta2 = c["adam"]["betas"][1].get<double>();
      adam_options.eps = c["adam"]["eps"].get<double>();
      deepstruct::Adam<TestType> adam(adam_options);
      for (int step = 0; step < c["adam"]["steps"].get<int>(); ++step) {
        model2.zero_grad();
        deepstruct::cross_entropy(model2.forward(x), y, &grad);
        model2.backward(x, grad);
        adam.step(model2);
      }
      // Adam's first steps move every parameter by about lr: compare in absolute terms of lr.
      check_parameters(model2, c["adam"]["state_dict_after"], 1e-4);
    }
  }
}

TEST_CASE("MaskedDeepFFN: finite-difference gradients through every activation and LayerNorm", "[masked_deep_ffn][gradient]") {
  using Model = MaskedDeepFFN<double>;
  using Mat = Eigen::MatrixXd;
  deepstruct::Generator gen(77);
  for (const Activation act : {Activation::relu, Activation::tanh, Activation::sigmoid, Activation::gelu,
                               Activation::leaky_relu})
    for (const bool ln : {false, true})
      for (const Execution path : {Execution::dense, Execution::sparse}) {
        INFO("activation " << deepstruct::to_string(act) << " layer norm " << ln << " path " << int(path));
        FFNOptions options;
        options.activation = act;
        options.use_layer_norm = ln;
        options.seed = 3;
        Model model(6, 3, {5, 4, 4}, options);
        for (auto* l : model.maskable_layers()) {
          typename Model::Mask m(l->mask().rows(), l->mask().cols());
          for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, 0.7);
          l->set_mask(m);
        }
        if (ln)
          for (std::size_t k = 1; k + 1 < model.num_layers(); ++k) {
            Eigen::VectorXd w(model.layer(k).out_features()), b(w.size());
            for (Eigen::Index i = 0; i < w.size(); ++i) {
              w[i] = deepstruct::random::uniform(gen, 0.5, 1.5);
              b[i] = deepstruct::random::uniform(gen, -0.2, 0.2);
            }
            model.layer_norm(k).set_weight(w);
            model.layer_norm(k).set_bias(b);
          }
        model.set_execution(path);
        Mat x(6, 7);
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = deepstruct::random::normal(gen);
        deepstruct::Labels y(7);
        for (Eigen::Index i = 0; i < 7; ++i) y[i] = static_cast<int>(deepstruct::random::uniform_index(gen, 3));
        auto loss = [&](Model& m, const Mat& input) {
          Mat logits;
          m.predict(input, logits);
          return deepstruct::cross_entropy(logits, y);
        };
        model.zero_grad();
        Mat grad, grad_x;
        deepstruct::cross_entropy(model.forward(x), y, &grad);
        model.backward(x, grad, &grad_x);
        const double h = 1e-6;
        for (Eigen::Index i = 0; i < x.size(); ++i) {
          Mat xp = x, xm = x;
          xp.data()[i] += h;
          xm.data()[i] -= h;
          CHECK(grad_x.data()[i] == Approx((loss(model, xp) - loss(model, xm)) / (2 * h)).margin(1e-6));
        }
        // Every parameter, through for_each_parameter: perturb one scalar at a time.
        std::vector<std::vector<double>> analytic;
        model.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) {
          analytic.emplace_back(p.grad, p.grad + p.size);
        });
        std::size_t tensor = 0;
        for (std::size_t t = 0; t < analytic.size(); ++t)
          for (std::size_t i = 0; i < analytic[t].size(); ++i) {
            auto perturbed = [&](double delta) {
              Model copy = model;
              std::size_t k = 0;
              copy.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) {
                if (k++ == t) p.value[i] += delta;
              });
              return loss(copy, x);
            };
            CHECK(analytic[t][i] == Approx((perturbed(h) - perturbed(-h)) / (2 * h)).margin(1e-6));
            ++tensor;
          }
        CHECK(static_cast<Eigen::Index>(tensor) == model.num_parameters());
      }
}

TEMPLATE_TEST_CASE("MaskedDeepFFN: whole-model mask operations and densities", "[masked_deep_ffn]", float, double) {
  MaskedDeepFFN<TestType> model(30, 5, {20, 10});
  model.recompute_mask(0.05);  // |W| >= 0.05, layer by layer
  for (const auto* l : model.maskable_layers())
    for (Eigen::Index i = 0; i < l->numel(); ++i)
      CHECK(l->mask().data()[i] == (std::abs(l->weight().data()[i]) >= TestType(0.05)));
  const auto densities = model.layer_densities();
  REQUIRE(densities.size() == 3);
  double active = 0;
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(densities[k] == Approx(model.layer(k).density()));
    active += densities[k] * double(model.layer(k).numel());
  }
  CHECK(double(model.num_active_weights()) == Approx(active));
  CHECK(model.density() == Approx(active / double(model.num_weights())));
  model.apply_mask();
  for (const auto* l : model.maskable_layers())
    for (Eigen::Index i = 0; i < l->numel(); ++i)
      if (!l->mask().data()[i]) CHECK(l->weight().data()[i] == TestType(0));
  deepstruct::Generator gen(1);
  const auto masks = model.masks();
  model.reset_parameters(gen, /*keep_mask=*/true);
  CHECK(model.masks() == masks);
  model.reset_parameters(gen);
  CHECK(model.density() == 1.0);
}

TEMPLATE_TEST_CASE("MaskedDeepFFN: predict between forward and backward changes no gradient, also with LayerNorm", "[masked_deep_ffn][gradient]", float, double) {
  using Model = MaskedDeepFFN<TestType>;
  using Mat = typename Model::Matrix;
  deepstruct::Generator gen(41);
  auto random = [&](Eigen::Index rows, Eigen::Index cols, double scale) {
    Mat m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<TestType>(scale * deepstruct::random::normal(gen));
    return m;
  };
  // Every gradient the model hands out (weights, biases, LayerNorm parameters) and dL/dx.
  auto gradients = [](Model& m, const Mat& grad_x) {
    std::vector<std::vector<TestType>> out;
    m.for_each_parameter([&](const deepstruct::ParameterRef<TestType>& p) { out.emplace_back(p.grad, p.grad + p.size); });
    out.emplace_back(grad_x.data(), grad_x.data() + grad_x.size());
    return out;
  };
  for (const bool ln : {false, true})
    for (const Execution path : {Execution::dense, Execution::sparse}) {
      INFO("layer norm " << ln << " path " << int(path));
      FFNOptions options;
      options.use_layer_norm = ln;
      options.seed = 9;
      Model model(6, 3, {5, 4, 4}, options);
      model.set_execution(path);
      if (ln)
        for (std::size_t k = 1; k + 1 < model.num_layers(); ++k) {
          model.layer_norm(k).set_weight(typename Model::Vector(random(model.layer(k).out_features(), 1, 0.3).array() + 1));
          model.layer_norm(k).set_bias(typename Model::Vector(random(model.layer(k).out_features(), 1, 0.2)));
        }
      // Other values and another batch size: the norms' statistics and shapes differ between x1 and x2.
      const Mat x1 = random(6, 7, 1.0), x2 = random(6, 3, 3.0), g = random(3, 7, 1.0);
      Model reference = model;
      Mat grad_x_ref, grad_x, logits;
      reference.zero_grad();
      reference.forward(x1);
      reference.backward(x1, g, &grad_x_ref);
      model.zero_grad();
      model.forward(x1);
      model.predict(x2, logits);
      model.backward(x1, g, &grad_x);
      // The same arithmetic on the same values: exactly equal.
      CHECK(gradients(model, grad_x) == gradients(reference, grad_x_ref));
    }
}

TEMPLATE_TEST_CASE("MaskedDeepFFN: a chain-structured MaskedDeepDAN under deepstruct's FFN names", "[masked_deep_ffn][engine]", float,
                   double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  for (const bool ln : {false, true}) {
    INFO("layer norm " << ln);
    FFNOptions options;
    options.use_layer_norm = ln;
    options.seed = 5;
    MaskedDeepFFN<TestType> ffn(7, 3, {6, 5, 4}, options);
    // The same chain built as a DAN from a plain description, from the same seed.
    deepstruct::DanDescription d;
    d.layer_sizes = {6, 5, 4};
    d.connections.push_back({0, 1, deepstruct::MaskedDeepDAN<TestType>::Mask::Constant(5, 6, true)});
    d.connections.push_back({1, 2, deepstruct::MaskedDeepDAN<TestType>::Mask::Constant(4, 5, true)});
    deepstruct::DANOptions dan_options;
    dan_options.use_layer_norm = ln;
    dan_options.seed = 5;
    deepstruct::MaskedDeepDAN<TestType> dan(7, 3, d, dan_options);
    // Layer k of the FFN is the DAN's first, main or out layer, with the same draws.
    CHECK(ffn.layer(0).weight() == dan.layer_first().weight());
    CHECK(ffn.layer(1).weight() == dan.main_layer(1).weight());
    CHECK(ffn.layer(3).bias() == dan.layer_out().bias());
    // Names: deepstruct's FFN keys map to the DAN's, one to one (the DAN's unused LN_0 aside).
    const auto fsd = ffn.state_dict(), dsd = dan.state_dict();
    CHECK(fsd.size() + (ln ? 2 : 0) == dsd.size());
    CHECK(fsd.matrices.at("_layers_hidden." + std::string(ln ? "3" : "2") + ".weight") == dsd.matrices.at("layers_main_hidden.1.weight"));
    if (ln) CHECK(fsd.vectors.count("_layers_hidden.4.weight") == 1);
    // Same loss, input gradient and parameter gradients, bit for bit.
    deepstruct::Generator gen(3);
    Mat x(7, 9), g(3, 9);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
    for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
    ffn.zero_grad();
    dan.zero_grad();
    CHECK(ffn.forward(x) == dan.forward(x));
    Mat gx_ffn, gx_dan;
    ffn.backward(x, g, &gx_ffn);
    dan.backward(x, g, &gx_dan);
    CHECK(gx_ffn == gx_dan);
    for (std::size_t k = 0; k < ffn.num_layers(); ++k) {
      const auto& lf = ffn.layer(k);
      const auto& ld = k == 0 ? dan.layer_first() : k + 1 == ffn.num_layers() ? dan.layer_out() : dan.main_layer(k);
      CHECK(lf.weight_grad() == ld.weight_grad());
      CHECK(lf.bias_grad() == ld.bias_grad());
    }
    // network() is that engine; an FFN made from a chain DAN is the same network.
    MaskedDeepFFN<TestType> back(dan);
    CHECK(back.forward(x) == ffn.forward(x));
    CHECK(back.state_dict().matrices == ffn.state_dict().matrices);
  }
  // A DAN with a skip connection is no FFN.
  const DanDescription d = test::dan_description(test::load_json("masked_dan.json")["cases"][0]);
  CHECK_THROWS_AS(MaskedDeepFFN<TestType>(deepstruct::MaskedDeepDAN<TestType>(10, 3, d)), deepstruct::value_error);
}

TEMPLATE_TEST_CASE("MaskedDeepFFN: copies and moves are independent networks (rule of zero)", "[masked_deep_ffn]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  MaskedDeepFFN<TestType> a(5, 2, {4, 3});
  const Mat x = Mat::Random(5, 6), g = Mat::Random(2, 6);
  a.forward(x);
  MaskedDeepFFN<TestType> b = a;  // copies the activations of the forward
  b.zero_grad();
  b.backward(x, g);
  a.zero_grad();
  a.backward(x, g);
  CHECK(a.layer(0).weight_grad() == b.layer(0).weight_grad());
  b.layer(0).update_weight([](Mat& w) { w.setZero(); });
  CHECK(a.layer(0).weight() != b.layer(0).weight());
  MaskedDeepFFN<TestType> c = std::move(b);
  CHECK(c.layer(0).weight().isZero());
  Mat logits;
  c.predict(x, logits);
  CHECK(logits.rows() == 2);
}

TEMPLATE_TEST_CASE("MaskedDeepFFN: predict runs sparse layers as chains of tiles and gives the logits of forward",
                   "[masked_deep_ffn][sparse]", float, double) {
  // predict() sends every batch tile through each run of consecutive sparse layers while it is in
  // cache (MaskedLinear::forward_chain); forward() runs layer by layer for the backward. Runs of
  // every length: all layers sparse, a dense layer in the middle, only the output layer dense.
  deepstruct::Generator gen(5);
  const Eigen::Index T = deepstruct::detail::batch_tile<TestType>;
  for (const Activation activation : {Activation::relu, Activation::leaky_relu, Activation::tanh, Activation::sigmoid}) {
    FFNOptions options;
    options.activation = activation;
    options.seed = 11;
    MaskedDeepFFN<TestType> model(50, 7, {60, 45, 80}, options);
    for (std::size_t k = 0; k < model.num_layers(); ++k) {
      auto& layer = model.layer(k);
      typename MaskedDeepFFN<TestType>::Layer::Mask mask(layer.out_features(), layer.in_features());
      for (Eigen::Index i = 0; i < mask.size(); ++i) mask.data()[i] = deepstruct::random::bernoulli(gen, 0.3);
      layer.set_mask(mask);
    }
    const std::vector<std::vector<Execution>> plans{
        {Execution::sparse, Execution::sparse, Execution::sparse, Execution::sparse},
        {Execution::sparse, Execution::sparse, Execution::dense, Execution::sparse},
        {Execution::sparse, Execution::sparse, Execution::sparse, Execution::dense},
        {Execution::automatic, Execution::automatic, Execution::automatic, Execution::automatic}};
    for (const auto& plan : plans) {
      for (std::size_t k = 0; k < model.num_layers(); ++k) model.layer(k).set_execution(plan[k]);
      for (const Eigen::Index batch : {Eigen::Index(1), Eigen::Index(2), T + 3}) {
        INFO(deepstruct::to_string(activation) << ", batch " << batch << ", layer 2 "
                                               << (plan[2] == Execution::dense ? "dense" : "not dense"));
        const Eigen::Matrix<TestType, -1, -1> x = test::random_matrix<TestType>(50, batch, gen);
        const Eigen::Matrix<TestType, -1, -1> out = model.forward(x);
        Eigen::Matrix<TestType, -1, -1> predicted;
        model.predict(x, predicted);
        REQUIRE(predicted.rows() == 7);
        REQUIRE(predicted.cols() == batch);
        CHECK(predicted == out);  // bit for bit, whatever the activation
      }
    }
    // predict(m, m): the logits replace the input, as they did layer by layer.
    for (std::size_t k = 0; k < model.num_layers(); ++k) model.layer(k).set_execution(Execution::sparse);
    const Eigen::Matrix<TestType, -1, -1> x = test::random_matrix<TestType>(50, T + 3, gen);
    const Eigen::Matrix<TestType, -1, -1> expected = model.forward(x);
    Eigen::Matrix<TestType, -1, -1> m = x;
    model.predict(m, m);
    CHECK(m == expected);
    // A wrong input is the model's error, named as such, on the chain path too.
    Eigen::Matrix<TestType, -1, -1> logits;
    CHECK_THROWS_WITH(model.predict(Eigen::Matrix<TestType, -1, -1>::Zero(49, 3), logits),
                      test::contains("MaskedDeepFFN::predict: expected input with 50 rows"));
  }
}
