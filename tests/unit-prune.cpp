// Tests of <deepstruct/prune.hpp>: parity with torch.nn.utils.prune (tests/data/pruning.json),
// iterative pruning semantics, neurons, custom saliency, lottery-ticket rewinding.
#include <deepstruct/masked_deep_ffn.hpp>
#include <deepstruct/prune.hpp>

#include <limits>

#include "test_support.hpp"

using deepstruct::MaskedLinear;
using deepstruct::PruneAmount;

namespace {
template <typename Scalar>
MaskedLinear<Scalar> layer_with(const nlohmann::json& weight) {
  const auto w = test::matrix<Scalar>(weight);
  return MaskedLinear<Scalar>(w, Eigen::Matrix<Scalar, -1, 1>::Zero(w.rows()));
}
}  // namespace

TEMPLATE_TEST_CASE("prune: parity with torch.nn.utils.prune", "[prune][parity]", float, double) {
  const nlohmann::json f = test::load_json("pruning.json");
  SECTION("l1_unstructured") {
    auto layer = layer_with<TestType>(f["l1_unstructured"]["weight"]);
    const auto pruned = deepstruct::prune_layer(layer, PruneAmount::fraction(f["l1_unstructured"]["amount"].get<double>()));
    CHECK(layer.mask() == test::mask(f["l1_unstructured"]["mask"]));
    CHECK(pruned == layer.numel() - layer.nnz());
  }
  SECTION("ln_structured, L2 over rows") {
    const auto& c = f["l2_structured_rows"];
    REQUIRE(c["dim"].get<int>() == 0);
    auto layer = layer_with<TestType>(c["weight"]);
    deepstruct::prune_neurons(layer, PruneAmount::fraction(c["amount"].get<double>()), c["n"].get<double>());
    CHECK(layer.mask() == test::mask(c["mask"]));
  }
  SECTION("global_unstructured") {
    const auto& c = f["global_l1_unstructured"];
    std::vector<MaskedLinear<TestType>> layers;
    for (const auto& w : c["weights"]) layers.push_back(layer_with<TestType>(w));
    std::vector<MaskedLinear<TestType>*> ptrs;
    for (auto& l : layers) ptrs.push_back(&l);
    deepstruct::prune_global(ptrs, PruneAmount::fraction(c["amount"].get<double>()));
    for (std::size_t k = 0; k < layers.size(); ++k) CHECK(layers[k].mask() == test::mask(c["masks"][k]));
  }
}

TEMPLATE_TEST_CASE("prune: iterative pruning never revives a weight and counts are exact", "[prune]", float, double) {
  MaskedLinear<TestType> layer(20, 10, true, 3);
  CHECK(deepstruct::prune_layer(layer, PruneAmount::count(50)) == 50);
  CHECK(layer.nnz() == 150);
  const auto first = layer.mask();
  // Make a pruned weight the largest one: it must stay pruned.
  Eigen::Index pruned_pos = 0;
  while (first.data()[pruned_pos]) ++pruned_pos;
  layer.update_weight([&](auto& w) { w.data()[pruned_pos] = TestType(100); });
  CHECK(deepstruct::prune_layer(layer, PruneAmount::fraction(0.5)) == 75);  // half of the 150 active
  CHECK(layer.nnz() == 75);
  CHECK_FALSE(layer.mask().data()[pruned_pos]);
  for (Eigen::Index i = 0; i < layer.numel(); ++i)
    if (!first.data()[i]) CHECK_FALSE(layer.mask().data()[i]);
  // The survivors are the largest active magnitudes.
  TestType smallest_kept = 1e9, largest_pruned = 0;
  for (Eigen::Index i = 0; i < layer.numel(); ++i) {
    if (!first.data()[i]) continue;
    const TestType a = std::abs(layer.weight().data()[i]);
    if (layer.mask().data()[i]) smallest_kept = std::min(smallest_kept, a);
    else largest_pruned = std::max(largest_pruned, a);
  }
  CHECK(smallest_kept >= largest_pruned);
  CHECK_THROWS_AS(deepstruct::prune_layer(layer, PruneAmount::count(76)), deepstruct::value_error);
  CHECK_THROWS_AS(PruneAmount::fraction(1.5), deepstruct::value_error);
  // The message prints the fraction as given (std::to_string's six decimals printed "1.000000").
  CHECK_THROWS_WITH(PruneAmount::fraction(1.0000000000000002), test::contains("found 1.0000000000000002"));
  CHECK_THROWS_WITH(PruneAmount::fraction(-std::numeric_limits<double>::infinity()), test::contains("found -inf"));
  CHECK_THROWS_AS(PruneAmount::count(-1), deepstruct::value_error);
  CHECK(deepstruct::prune_layer(layer, PruneAmount::fraction(1.0)) == 75);
  CHECK(layer.nnz() == 0);
}

TEST_CASE("prune: custom saliency decides instead of magnitude", "[prune]") {
  MaskedLinear<double> layer(4, 2, true, 1);
  Eigen::MatrixXd s(2, 4);
  s << 8, 7, 6, 5, 4, 3, 2, 1;  // the last weights in row-major reading order are least salient
  layer.set_saliency(s);
  deepstruct::prune_layer(layer, PruneAmount::count(3));
  MaskedLinear<double>::Mask expected(2, 4);
  expected << true, true, true, true, true, false, false, false;
  CHECK(layer.mask() == expected);
  s(0, 0) = std::nan("");
  layer.set_saliency(s);
  CHECK_THROWS_AS(deepstruct::prune_layer(layer, PruneAmount::count(1)), deepstruct::value_error);
}

TEST_CASE("prune: neurons by L1, L2 and max norm, and a model's layers globally", "[prune]") {
  Eigen::MatrixXd w(4, 3);
  w << 3, 0, 0,   // L1 3, L2 3, max 3
      1, 1, 1,    // L1 3, L2 1.73, max 1
      2, 2, 0,    // L1 4, L2 2.83, max 2
      0.5, 0, 0;  // smallest in every norm
  MaskedLinear<double> l2(w, Eigen::VectorXd::Zero(4)), linf(w, Eigen::VectorXd::Zero(4));
  CHECK(deepstruct::prune_neurons(l2, PruneAmount::count(2), 2.0) == 2);
  CHECK(l2.mask().rowwise().any().cast<int>() == (Eigen::Vector4i() << 1, 0, 1, 0).finished());
  deepstruct::prune_neurons(linf, PruneAmount::count(2), std::numeric_limits<double>::infinity());
  CHECK(linf.mask().rowwise().any().cast<int>() == (Eigen::Vector4i() << 1, 0, 1, 0).finished());
  // Already-dead neurons are not candidates any more.
  CHECK(deepstruct::prune_neurons(l2, PruneAmount::fraction(0.5), 1.0) == 1);
  CHECK(l2.mask().rowwise().any().count() == 1);
  CHECK_THROWS_AS(deepstruct::prune_neurons(l2, PruneAmount::count(1), 0.0), deepstruct::value_error);

  deepstruct::MaskedDeepFFN<float> model(30, 5, {20, 10});
  const auto total = model.num_weights();
  CHECK(deepstruct::prune_global(model, PruneAmount::fraction(0.9)) == static_cast<Eigen::Index>(std::nearbyint(0.9 * total)));
  CHECK(model.density() == Approx(0.1).margin(1.0 / double(total)));
  deepstruct::MaskedDeepFFN<float> each(30, 5, {20, 10});
  deepstruct::prune_each_layer(each, PruneAmount::fraction(0.5));
  for (const double d : each.layer_densities()) CHECK(d == Approx(0.5).margin(0.02));
}

TEMPLATE_TEST_CASE("prune: a NaN weight in a candidate neuron throws value_error naming it and changes no mask", "[prune]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  Mat w(4, 3);
  w << 3, 0, 0, 1, 1, 1, 2, 2, 0, 0.5, 0, 0;
  w(2, 1) = std::numeric_limits<TestType>::quiet_NaN();
  for (const double p : {1.0, 2.0, std::numeric_limits<double>::infinity()}) {
    INFO("p " << p);
    MaskedLinear<TestType> layer(w, Eigen::Matrix<TestType, -1, 1>::Zero(4));
    const auto mask = layer.mask();
    try {
      deepstruct::prune_neurons(layer, PruneAmount::count(1), p);
      FAIL("no exception for a NaN weight");
    } catch (const deepstruct::value_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains("found NaN at weight 1 of neuron (row) 2"));
    }
    CHECK(layer.mask() == mask);
    // A neuron without active weights is no candidate: its NaN does not matter.
    auto dead = mask;
    dead.row(2).setConstant(false);
    layer.set_mask(dead);
    CHECK(deepstruct::prune_neurons(layer, PruneAmount::count(1), p) == 1);
    CHECK_FALSE(layer.mask().row(3).any());  // the smallest live neuron in every norm
  }
}

TEMPLATE_TEST_CASE("prune_neurons: a NaN behind the mask is ignored, a NaN in an active weight of a candidate neuron throws", "[prune]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  Mat w(2, 3);
  w << 0.1, 5, 0.2,  // row 0: the smallest once (0, 1) is masked
      1, 1, 1;
  w(0, 1) = std::numeric_limits<TestType>::quiet_NaN();
  Eigen::Matrix<bool, -1, -1> m = Eigen::Matrix<bool, -1, -1>::Constant(2, 3, true);
  m(0, 1) = false;
  MaskedLinear<TestType> behind(w, Eigen::Matrix<TestType, -1, 1>::Zero(2), m);
  CHECK(deepstruct::prune_neurons(behind, PruneAmount::count(1)) == 1);
  CHECK_FALSE(behind.mask().row(0).any());
  CHECK(behind.mask().row(1).all());
  // The same NaN in an active weight: value_error naming it, nothing pruned.
  MaskedLinear<TestType> active(w, Eigen::Matrix<TestType, -1, 1>::Zero(2));
  CHECK_THROWS_AS(deepstruct::prune_neurons(active, PruneAmount::count(1)), deepstruct::value_error);
  CHECK_THROWS_WITH(deepstruct::prune_neurons(active, PruneAmount::count(1)), test::contains("found NaN at weight 1 of neuron (row) 0"));
  CHECK(active.mask().all());
}

TEST_CASE("prune_each_layer: all or nothing; a count too large for one layer prunes no layer", "[prune]") {
  deepstruct::MaskedDeepFFN<float> model(4, 2, {3});  // 12 and 6 weights
  CHECK_THROWS_AS(deepstruct::prune_each_layer(model, PruneAmount::count(8)), deepstruct::value_error);
  CHECK_THROWS_WITH(deepstruct::prune_each_layer(model, PruneAmount::count(8)),
                    test::contains("prune_each_layer (layer 1): expected to prune at most the 6 remaining candidates, found a count of 8"));
  CHECK(model.layer(0).nnz() == 12);  // was 4: the first layer was pruned before the second threw
  CHECK(model.layer(1).nnz() == 6);
  // A NaN saliency in the second layer: the first is not pruned either.
  Eigen::MatrixXf s = model.layer(1).weight().cwiseAbs();
  s(1, 2) = std::numeric_limits<float>::quiet_NaN();
  model.layer(1).set_saliency(s);
  CHECK_THROWS_AS(deepstruct::prune_each_layer(model, PruneAmount::count(2)), deepstruct::value_error);
  CHECK(model.layer(0).nnz() == 12);
  model.layer(1).clear_saliency();
  CHECK(deepstruct::prune_each_layer(model, PruneAmount::count(5)) == 10);
  CHECK(model.layer(0).nnz() == 7);
  CHECK(model.layer(1).nnz() == 1);
}

TEST_CASE("prune_global: a layer listed twice is a value_error naming its positions; nothing is pruned", "[prune]") {
  MaskedLinear<float> a(4, 4, true, 1), b(4, 4, true, 2);
  std::vector<deepstruct::MaskedLayer<float>*> twice{&a, &b, &a};
  CHECK_THROWS_AS(deepstruct::prune_global(twice, PruneAmount::count(10)), deepstruct::value_error);
  CHECK_THROWS_WITH(deepstruct::prune_global(twice, PruneAmount::count(10)),
                    test::contains("expected every layer once, found the layer at position 2 already at position 0"));
  std::vector<MaskedLinear<float>*> typed{&a, &a};  // the overload for a concrete layer type
  CHECK_THROWS_AS(deepstruct::prune_global(typed, PruneAmount::count(10)), deepstruct::value_error);
  CHECK(a.nnz() == 16);  // was 11 (10 reported pruned, 5 pruned)
  CHECK(b.nnz() == 16);
  std::vector<MaskedLinear<float>*> once{&a, &b};
  CHECK(deepstruct::prune_global(once, PruneAmount::count(10)) == 10);
  CHECK(a.nnz() + b.nnz() == 22);
}

TEST_CASE("prune: iterative magnitude pruning with rewinding (lottery tickets)", "[prune]") {
  deepstruct::MaskedDeepFFN<double> model(12, 3, {10, 8});
  const auto initial = model.state_dict();
  int trained = 0;
  deepstruct::IterativePruningOptions options;
  options.rounds = 3;
  options.fraction_per_round = 0.5;
  const auto history = deepstruct::iterative_magnitude_pruning(model, options, [&](auto& m, int round) {
    CHECK(round == ++trained);
    // "Training": move every weight, so rewinding has something to undo.
    m.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) {
      for (Eigen::Index i = 0; i < p.size; ++i) p.value[i] *= 1.5;
    });
  });
  REQUIRE(history.size() == 3);
  CHECK(trained == 3);
  CHECK(history[0].density == Approx(0.5).margin(0.01));
  CHECK(history[2].density == Approx(0.125).margin(0.01));
  CHECK(history[1].pruned ==
        static_cast<Eigen::Index>(std::nearbyint(0.5 * std::round(history[0].density * double(model.num_weights())))));
  // Rewound: the parameters are the initial ones, only the masks changed.
  const auto now = model.state_dict();
  for (const auto& kv : initial.matrices) CHECK(now.matrices.at(kv.first) == kv.second);
  for (const auto& kv : initial.vectors) CHECK(now.vectors.at(kv.first) == kv.second);
  CHECK(model.density() == Approx(history.back().density));

  deepstruct::MaskedDeepFFN<double> tuned(12, 3, {10, 8});
  options.rewind = false;
  options.rounds = 1;
  deepstruct::iterative_magnitude_pruning(tuned, options, [](auto& m, int) {
    m.for_each_parameter([](const deepstruct::ParameterRef<double>& p) { p.value[0] += 1.0; });
  });
  CHECK(tuned.layer(0).weight()(0, 0) != initial.matrices.at("_layer_first.weight")(0, 0));
}

TEST_CASE("restore_parameters: a snapshot of another model is a shape_error naming the sizes, and changes nothing",
          "[prune]") {
  // The other models agree with the snapshot's first tensors (the first layer's weight and
  // bias), then differ: a later tensor of another size, one tensor more, one fewer. Every
  // parameter is checked before the first is written, as load_state_dict does.
  deepstruct::MaskedDeepFFN<double> source(6, 2, {5, 4});
  const auto snap = deepstruct::snapshot_parameters<double>(source);
  for (const std::vector<Eigen::Index>& hidden : std::vector<std::vector<Eigen::Index>>{{5, 3}, {5, 4, 4}, {5}}) {
    INFO("other hidden sizes: " << hidden.size() << " layers, the last of " << hidden.back());
    deepstruct::FFNOptions options;
    options.seed = 7;  // other weights than the snapshot's
    deepstruct::MaskedDeepFFN<double> other(6, 2, hidden, options);
    const auto before = other.state_dict();
    REQUIRE(other.layer(0).weight() != source.layer(0).weight());
    CHECK_THROWS_AS(deepstruct::restore_parameters(other, snap), deepstruct::shape_error);
    const auto after = other.state_dict();
    CHECK(after.matrices == before.matrices);
    CHECK(after.vectors == before.vectors);
  }
  deepstruct::MaskedDeepFFN<double> narrower(6, 2, {5, 3});
  try {
    deepstruct::restore_parameters(narrower, snap);
    FAIL("no exception");
  } catch (const deepstruct::shape_error& e) {
    CHECK_THAT(std::string(e.what()), test::contains("parameter 2 of size 15") && test::contains("has size 20"));
  }
}
