// Tests of <deepstruct/compact.hpp>: removing dead neurons keeps the outputs, for FFNs and for
// DANs with skip connections (constants folded into the bias of the connection that carries them).
#include <deepstruct/compact.hpp>

#include "test_support.hpp"

using deepstruct::MaskedDeepDAN;
using deepstruct::MaskedDeepFFN;

namespace {
template <typename Model>
typename Model::Matrix outputs(Model& m, const typename Model::Matrix& x) {
  typename Model::Matrix y;
  m.predict(x, y);
  return y;
}
}  // namespace

TEMPLATE_TEST_CASE("compact: sparse random networks keep their outputs with fewer neurons", "[compact]", float, double) {
  using Matrix = Eigen::Matrix<TestType, -1, -1>;
  deepstruct::Generator gen(17);
  for (const deepstruct::Activation act : {deepstruct::Activation::relu, deepstruct::Activation::tanh, deepstruct::Activation::sigmoid})
    for (int trial = 0; trial < 4; ++trial) {
      INFO("activation " << deepstruct::to_string(act) << " trial " << trial);
      deepstruct::FFNOptions options;
      options.activation = act;
      options.seed = static_cast<std::uint64_t>(trial);
      MaskedDeepFFN<TestType> model(12, 3, {20, 16, 10}, options);
      for (std::size_t k = 0; k < model.num_layers(); ++k) {
        auto& l = model.layer(k);
        typename MaskedDeepFFN<TestType>::Mask m(l.out_features(), l.in_features());
        for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, 0.12);
        l.set_mask(m);
        l.update_bias([](auto& b) { b.array() += TestType(0.3); });  // unreached ReLU neurons stay on
      }
      Matrix x(12, 9);
      for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
      const Matrix before = outputs(model, x);
      auto result = deepstruct::compact(model);
      CHECK(result.removed > 0);
      Eigen::Index hidden_before = 0, hidden_after = 0;
      for (auto s : model.hidden_sizes()) hidden_before += s;
      for (auto s : result.model.hidden_sizes()) hidden_after += s;
      CHECK(hidden_after + result.removed == hidden_before);
      CHECK(result.model.inputs() == 12);
      CHECK(result.model.outputs() == 3);
      // Removing a dead neuron changes no sum; folding a constant one into the next bias may round.
      CHECK(test::max_rel_diff(outputs(result.model, x).template cast<double>(), before.template cast<double>()) <=
            100 * std::numeric_limits<TestType>::epsilon());
      // Compacting again removes nothing more.
      CHECK(deepstruct::compact(result.model).removed == 0);
    }
}

TEST_CASE("compact: a constant neuron is folded into the next bias; a cut network keeps placeholders", "[compact]") {
  // 2 -> [2] -> 1: hidden neuron 0 has no input (constant relu(0.5)), neuron 1 is reached.
  MaskedDeepFFN<double> model(2, 1, {2});
  Eigen::MatrixXd w0(2, 2), w1(1, 2);
  w0 << 1, 2, 3, 4;
  w1 << 5, 6;
  model.layer(0).set_weight(w0);
  model.layer(1).set_weight(w1);
  MaskedDeepFFN<double>::Mask m0(2, 2);
  m0 << false, false, true, true;
  model.layer(0).set_mask(m0);
  model.layer(0).set_bias(Eigen::Vector2d(0.5, 0.1));
  model.layer(1).set_bias(Eigen::VectorXd::Constant(1, -1.0));
  auto result = deepstruct::compact(model);
  REQUIRE(result.kept.size() == 1);
  CHECK(result.kept[0] == std::vector<Eigen::Index>{1});
  CHECK(result.model.layer(1).bias()[0] == Approx(-1.0 + 5 * 0.5));
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(2, 5);
  CHECK(test::max_rel_diff(outputs(result.model, x), outputs(model, x)) <= 1e-12);

  // No path from the inputs at all: the output is a constant, and still the same.
  model.layer(0).set_mask(MaskedDeepFFN<double>::Mask::Constant(2, 2, false));
  auto cut = deepstruct::compact(model);
  CHECK(cut.model.hidden_sizes() == std::vector<Eigen::Index>{1});
  CHECK(cut.model.layer(0).nnz() == 0);
  CHECK(test::max_rel_diff(outputs(cut.model, x), outputs(model, x)) <= 1e-12);

  deepstruct::FFNOptions ln;
  ln.use_layer_norm = true;
  CHECK_THROWS_AS(deepstruct::compact(MaskedDeepFFN<double>(4, 2, {3, 3}, ln)), deepstruct::value_error);
}

TEMPLATE_TEST_CASE("compact: DANs with skip connections keep their outputs; labels and ids follow the kept neurons", "[compact][dan]",
                   float, double) {
  using Matrix = Eigen::Matrix<TestType, -1, -1>;
  const nlohmann::json fixture = test::load_json("masked_dan.json");
  deepstruct::Generator gen(5);
  int compacted = 0;
  for (const auto& c : fixture["cases"])
    for (const deepstruct::Activation act : {deepstruct::Activation::relu, deepstruct::Activation::tanh})
      for (int trial = 0; trial < 4; ++trial) {
        INFO("activation " << deepstruct::to_string(act) << " trial " << trial);
        deepstruct::DanDescription d = test::dan_description(c);
        d.layer_labels.clear();
        for (const auto& ids : d.layer_vertices) {
          d.layer_labels.emplace_back();
          for (std::size_t v : ids) d.layer_labels.back().push_back("n" + std::to_string(v));
        }
        deepstruct::DANOptions options;
        options.activation = act;
        options.seed = static_cast<std::uint64_t>(trial);
        MaskedDeepDAN<TestType> model(c["inputs"].get<Eigen::Index>(), c["outputs"].get<Eigen::Index>(), d, options);
        for (auto* l : model.maskable_layers()) {
          l->update_mask(0, [&](auto& m) {
            for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = m.data()[i] && deepstruct::random::bernoulli(gen, 0.5);
          });
        }
        for (std::size_t j = 0; j < model.skips().size(); ++j) model.skip_layer(j).update_bias([](auto& b) { b.array() += TestType(0.4); });
        for (std::size_t t = 1; t < model.num_hidden_layers(); ++t) model.main_layer(t).update_bias([](auto& b) { b.array() += TestType(0.2); });
        Matrix x(model.inputs(), 6);
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
        const Matrix before = outputs(model, x);
        auto result = deepstruct::compact(model);
        compacted += result.removed > 0;
        Eigen::Index before_n = 0, after_n = 0;
        for (std::size_t t = 0; t < model.num_hidden_layers(); ++t) before_n += model.hidden_layer_size(t);
        for (std::size_t t = 0; t < result.model.num_hidden_layers(); ++t) after_n += result.model.hidden_layer_size(t);
        CHECK(after_n + result.removed == before_n);
        CHECK(result.model.skips().size() == model.skips().size());  // every connection is kept
        CHECK(test::max_rel_diff(outputs(result.model, x).template cast<double>(), before.template cast<double>()) <=
              1000 * std::numeric_limits<TestType>::epsilon());
        // Kept neurons keep their vertex ids and labels.
        for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
          for (std::size_t r = 0; r < result.kept[t].size(); ++r) {
            const auto j = static_cast<std::size_t>(result.kept[t][r]);
            CHECK(result.model.layer_vertices(t)[r] == model.layer_vertices(t)[j]);
            CHECK(result.model.layer_labels(t)[r] == model.layer_labels(t)[j]);
          }
        CHECK(deepstruct::compact(result.model).removed == 0);
      }
  CHECK(compacted > 0);
}

TEST_CASE("compact: a constant reaching a neuron through a skip connection is folded into that skip's bias", "[compact][dan]") {
  // Layers of sizes 2, 1, 1. Hidden neuron 1 of layer 0 has no input (relu(bias) = 0.7) and feeds
  // layer 2 through the skip 0 -> 2 only; neuron 0 of layer 0 is reached and feeds everything.
  deepstruct::DanDescription d;
  d.layer_sizes = {2, 1, 1};
  using M = Eigen::Matrix<bool, -1, -1>;
  M main1 = M::Constant(1, 2, false), skip = M::Constant(1, 2, true), main2 = M::Constant(1, 1, true);
  main1(0, 0) = true;
  d.connections = {{0, 1, main1}, {0, 2, skip}, {1, 2, main2}};
  MaskedDeepDAN<double> model(3, 2, d);
  M first = M::Constant(2, 3, true);
  first.row(1).setConstant(false);
  model.layer_first().set_mask(first);
  model.layer_first().update_bias([](auto& b) { b[1] = 0.7; });
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(3, 5);
  const Eigen::MatrixXd before = outputs(model, x);
  const double skip_bias = model.skip_layer(0).bias()[0], w = model.skip_layer(0).weight()(0, 1);
  auto result = deepstruct::compact(model);
  CHECK(result.removed == 1);
  CHECK(result.kept[0] == std::vector<Eigen::Index>{0});
  CHECK(result.model.skip_layer(0).bias()[0] == Approx(skip_bias + w * 0.7));
  CHECK(test::max_rel_diff(outputs(result.model, x), before) <= 1e-12);
  // Without biases there is nowhere to fold the constant.
  deepstruct::DANOptions no_bias;
  no_bias.bias = false;
  MaskedDeepDAN<double> plain(3, 2, d, no_bias);
  plain.layer_first().set_mask(first);
  // relu(0) = 0 is no constant to fold: compacts; tanh(0) = 0 as well; sigmoid(0) = 0.5 is one.
  CHECK_NOTHROW(deepstruct::compact(plain));
  no_bias.activation = deepstruct::Activation::sigmoid;
  MaskedDeepDAN<double> sig(3, 2, d, no_bias);
  sig.layer_first().set_mask(first);
  CHECK_THROWS_AS(deepstruct::compact(sig), deepstruct::value_error);
}
