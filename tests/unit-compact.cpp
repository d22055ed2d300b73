// Tests of <deepstruct/compact.hpp>: removing dead neurons keeps the outputs.
#include <deepstruct/compact.hpp>

#include "test_support.hpp"

using deepstruct::MaskedDeepFFN;

namespace {
template <typename Scalar>
Eigen::Matrix<Scalar, -1, -1> outputs(MaskedDeepFFN<Scalar>& m, const Eigen::Matrix<Scalar, -1, -1>& x) {
  Eigen::Matrix<Scalar, -1, -1> y;
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
      for (auto* l : model.maskable_layers()) {
        typename MaskedDeepFFN<TestType>::Mask m(l->out_features(), l->in_features());
        for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, 0.12);
        l->set_mask(m);
        l->update_bias([](auto& b) { b.array() += TestType(0.3); });  // unreached ReLU neurons stay on
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
