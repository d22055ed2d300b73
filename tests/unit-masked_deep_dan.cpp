// Tests of <deepstruct/masked_deep_dan.hpp>: parity with deepstruct/PyTorch on masked_dan.json,
// finite-difference gradients, state_dict, structure round trip, whole-model mask operations,
// pruning, training and optimizer steps on a DAN.
#include <deepstruct/loss.hpp>
#include <deepstruct/masked_deep_dan.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/prune.hpp>
#include <deepstruct/train.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <set>

#include "test_support.hpp"

using deepstruct::DanDescription;
using deepstruct::Execution;
using deepstruct::MaskedDeepDAN;

namespace {

/// A DAN on masked_dan.json's case 0 (10 inputs, 3 outputs, skip layers) whose every masked layer
/// (first, main, skip, out) has some weights behind its mask, and no weight at zero.
template <typename Scalar>
MaskedDeepDAN<Scalar> dan_with_holes(std::uint64_t seed) {
  const DanDescription d = test::dan_description(test::load_json("masked_dan.json")["cases"][0]);
  deepstruct::DANOptions options;
  options.seed = seed;
  MaskedDeepDAN<Scalar> model(10, 3, d, options);
  deepstruct::Generator gen(seed + 100);
  for (auto* l : model.maskable_layers()) {
    // Off at random where the structure has an edge, and always the first entry.
    typename MaskedDeepDAN<Scalar>::Mask m = l->mask();
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = m.data()[i] && deepstruct::random::bernoulli(gen, 0.7);
    m(0, 0) = false;
    l->set_mask(m);
    typename MaskedDeepDAN<Scalar>::Matrix w = l->weight();
    for (Eigen::Index i = 0; i < w.size(); ++i)
      if (w.data()[i] == Scalar(0)) w.data()[i] = Scalar(0.25);
    l->set_weight(w);
  }
  return model;
}

/// Every masked layer with its name, to say which one failed.
template <typename Model>
std::vector<std::pair<std::string, deepstruct::MaskedLayer<typename Model::Scalar>*>> named_layers(Model& model) {
  std::vector<std::pair<std::string, deepstruct::MaskedLayer<typename Model::Scalar>*>> v;
  const auto names = model.maskable_layer_names();
  const auto layers = model.maskable_layers();
  for (std::size_t k = 0; k < layers.size(); ++k) v.emplace_back(names[k], layers[k]);
  return v;
}

}  // namespace

TEMPLATE_TEST_CASE("MaskedDeepDAN: parity with deepstruct/PyTorch on masked_dan.json", "[masked_deep_dan][parity]", float, double) {
  const nlohmann::json fixture = test::load_json("masked_dan.json");
  REQUIRE(fixture["cases"].size() == 2);
  for (const auto& c : fixture["cases"]) {
    const DanDescription d = test::dan_description(c);
    MaskedDeepDAN<TestType> model(c["inputs"].get<Eigen::Index>(), c["outputs"].get<Eigen::Index>(), d);
    // Skip layers in deepstruct's order, with the same sources and targets.
    REQUIRE(model.skips().size() == c["skip_layers"].size());
    for (std::size_t j = 0; j < model.skips().size(); ++j) {
      CHECK(model.skips()[j].source == c["skip_layers"][j]["source_layer"].get<std::size_t>());
      CHECK(model.skips()[j].target == c["skip_layers"][j]["target_layer"].get<std::size_t>());
    }
    // The masks the structure implies are the masks deepstruct built.
    const auto sd = test::state_dict<TestType>(c["state_dict"]);
    const auto ours = model.state_dict();
    CHECK(ours.size() == sd.size());
    for (const auto& kv : sd.masks) {
      INFO("mask " << kv.first);
      CHECK(ours.masks.at(kv.first) == kv.second);
    }
    model.load_state_dict(sd);
    const Eigen::Matrix<TestType, -1, -1> x = test::matrix<TestType>(c["x"]).transpose();
    const Eigen::MatrixXd expected = test::matrix<double>(c["output_float32"]).transpose();
    for (const Execution path : {Execution::dense, Execution::sparse}) {
      model.set_execution(path);
      const Eigen::Matrix<TestType, -1, -1> out = model.forward(x);
      // deepstruct computed in float32: compare at float32 precision.
      CHECK(test::max_rel_diff(out.template cast<double>(), expected) <= 1e-5);
      Eigen::Matrix<TestType, -1, -1> predicted;
      model.predict(x, predicted);
      CHECK(predicted == out);
    }
    // The structure of the hidden part comes back as it went in.
    const DanDescription back = model.structure();
    CHECK(back.layer_sizes == d.layer_sizes);
    REQUIRE(back.connections.size() == d.connections.size());
    for (std::size_t k = 0; k < d.connections.size(); ++k) {
      CHECK(back.connections[k].source_layer == d.connections[k].source_layer);
      CHECK(back.connections[k].target_layer == d.connections[k].target_layer);
      CHECK(back.connections[k].mask == d.connections[k].mask);
    }
  }
}

TEST_CASE("MaskedDeepDAN: finite-difference gradients of the whole network", "[masked_deep_dan][gradient]") {
  const nlohmann::json c = test::load_json("masked_dan.json")["cases"][0];
  const DanDescription d = test::dan_description(c);
  deepstruct::Generator gen(9);
  for (const bool ln : {false, true})
    for (const deepstruct::Activation act : {deepstruct::Activation::relu, deepstruct::Activation::tanh})
      for (const Execution path : {Execution::dense, Execution::sparse}) {
        INFO("layer norm " << ln << " activation " << deepstruct::to_string(act) << " path " << int(path));
        deepstruct::DANOptions options;
        options.use_layer_norm = ln;
        options.activation = act;
        options.seed = 4;
        MaskedDeepDAN<double> model(10, 3, d, options);
        model.set_execution(path);
        // Non-trivial norm parameters: a 1-neuron layer normalises to its bias, and a bias of
        // exactly 0 would sit on ReLU's kink.
        if (ln)
          for (std::size_t t = 1; t < model.num_hidden_layers(); ++t) {
            Eigen::VectorXd w(model.hidden_layer_size(t)), b(w.size());
            for (Eigen::Index i = 0; i < w.size(); ++i) {
              w[i] = deepstruct::random::uniform(gen, 0.5, 1.5);
              b[i] = deepstruct::random::uniform(gen, 0.1, 0.3) * (i % 2 == 0 ? 1 : -1);
            }
            model.layer_norm(t).set_weight(w);
            model.layer_norm(t).set_bias(b);
          }
        Eigen::MatrixXd x(10, 5);
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = deepstruct::random::normal(gen);
        deepstruct::Labels y(5);
        y << 0, 2, 1, 1, 0;
        auto loss = [&](MaskedDeepDAN<double>& m, const Eigen::MatrixXd& input) {
          Eigen::MatrixXd logits;
          m.predict(input, logits);
          return deepstruct::cross_entropy(logits, y);
        };
        model.zero_grad();
        Eigen::MatrixXd grad, grad_x;
        const Eigen::MatrixXd forward_logits = model.forward(x);
        deepstruct::cross_entropy(forward_logits, y, &grad);
        model.backward(x, grad, &grad_x);
        Eigen::MatrixXd predicted;  // predict (LayerNorm::apply in place) computes what forward does
        model.predict(x, predicted);
        CHECK((predicted - forward_logits).cwiseAbs().maxCoeff() <= 1e-12);
        const double h = 1e-6;
        for (Eigen::Index i = 0; i < x.size(); ++i) {
          Eigen::MatrixXd xp = x, xm = x;
          xp.data()[i] += h;
          xm.data()[i] -= h;
          CHECK(grad_x.data()[i] == Approx((loss(model, xp) - loss(model, xm)) / (2 * h)).margin(1e-6));
        }
        std::vector<std::vector<double>> analytic;
        model.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) { analytic.emplace_back(p.grad, p.grad + p.size); });
        Eigen::Index checked = 0;
        for (std::size_t t = 0; t < analytic.size(); ++t)
          for (std::size_t i = 0; i < analytic[t].size(); i += 3) {  // every third scalar keeps it quick
            auto perturbed = [&](double delta) {
              MaskedDeepDAN<double> copy = model;
              std::size_t k = 0;
              copy.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) {
                if (k++ == t) p.value[i] += delta;
              });
              return loss(copy, x);
            };
            INFO("tensor " << t << " of " << analytic.size() << " scalar " << i);
            CHECK(analytic[t][i] == Approx((perturbed(h) - perturbed(-h)) / (2 * h)).margin(1e-6));
            ++checked;
          }
        CHECK(checked * 3 >= model.num_parameters());
      }
}

TEST_CASE("MaskedDeepDAN: training reduces the loss; bad input throws", "[masked_deep_dan]") {
  const nlohmann::json c = test::load_json("masked_dan.json")["cases"][1];
  const DanDescription d = test::dan_description(c);
  MaskedDeepDAN<float> model(std::vector<Eigen::Index>{3, 4}, 5, d);  // 12 inputs as a 3x4 shape
  CHECK(model.inputs() == 12);
  CHECK(model.num_hidden_layers() == d.layer_sizes.size());
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(12, 32);
  deepstruct::Labels y(32);
  for (Eigen::Index i = 0; i < 32; ++i) y[i] = static_cast<int>(i % 5);
  deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
  Eigen::MatrixXf grad;
  double first = 0, last = 0;
  for (int step = 0; step < 50; ++step) {
    model.zero_grad();
    last = deepstruct::cross_entropy(model.forward(x), y, &grad);
    if (step == 0) first = last;
    model.backward(x, grad);
    adam.step(model);
  }
  CHECK(last < first);
  CHECK_THROWS_AS(model.forward(Eigen::MatrixXf::Zero(11, 2)), deepstruct::shape_error);
  Eigen::MatrixXf logits;
  model.predict(x, logits);
  // predict changes nothing backward uses: the gradients of the last forward's x, unchanged.
  model.zero_grad();
  model.forward(x);
  model.predict(Eigen::MatrixXf::Random(12, 3), logits);
  model.backward(x, grad);
  const Eigen::MatrixXf after_predict = model.layer_first().weight_grad();
  model.zero_grad();
  model.forward(x);
  model.backward(x, grad);
  CHECK(model.layer_first().weight_grad() == after_predict);
  CHECK_THROWS_AS(model.backward(Eigen::MatrixXf::Zero(12, 31), grad), deepstruct::shape_error);  // not the forward's x
  CHECK_THROWS_AS(MaskedDeepDAN<float>(12, 5, d).backward(x, grad), deepstruct::state_error);     // no forward yet
  CHECK_THROWS_AS(model.main_layer(0), deepstruct::index_error);
  CHECK_THROWS_AS(model.skip_layer(model.skips().size()), deepstruct::index_error);
  CHECK_THROWS_AS(model.layer_norm(1), deepstruct::index_error);  // no LayerNorm
  DanDescription bad = d;
  bad.connections.erase(bad.connections.begin());  // the main connection into layer 1
  CHECK_THROWS_AS(MaskedDeepDAN<float>(12, 5, bad), deepstruct::value_error);
  CHECK_THROWS_AS(MaskedDeepDAN<float>(0, 5, d), deepstruct::shape_error);
}

TEST_CASE("MaskedDeepDAN: every activation against a layer-by-layer reference and finite differences",
          "[masked_deep_dan][gradient]") {
  // Covers both ways the forward keeps its terms: activations whose derivative needs only the
  // pre-activation (the skip terms are added to h_t as they are activated) and those that need
  // the activated values (tanh, sigmoid: kept apart). Case 0 has skip layers.
  const nlohmann::json c = test::load_json("masked_dan.json")["cases"][0];
  const DanDescription d = test::dan_description(c);
  deepstruct::Generator gen(21);
  Eigen::MatrixXd x(10, 4);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = deepstruct::random::normal(gen);
  deepstruct::Labels y(4);
  y << 2, 0, 1, 2;
  for (const deepstruct::Activation act : {deepstruct::Activation::relu, deepstruct::Activation::tanh,
                                           deepstruct::Activation::sigmoid, deepstruct::Activation::gelu,
                                           deepstruct::Activation::leaky_relu, deepstruct::Activation::identity})
    for (const Execution path : {Execution::dense, Execution::sparse}) {
      INFO("activation " << deepstruct::to_string(act) << " path " << int(path));
      deepstruct::DANOptions options;
      options.activation = act;
      options.seed = 8;
      MaskedDeepDAN<double> built(10, 3, d, options);
      MaskedDeepDAN<double> model = std::move(built);  // the buffers move with the model
      model.set_execution(path);
      REQUIRE(!model.skips().empty());
      // Reference: the definition, one layer at a time.
      const std::size_t L = model.num_hidden_layers();
      std::vector<Eigen::MatrixXd> h(L);
      Eigen::MatrixXd pre, post;
      model.layer_first().forward(x, pre);
      h[0].resize(pre.rows(), pre.cols());
      deepstruct::activate(act, pre, h[0]);
      for (std::size_t t = 1; t < L; ++t) {
        model.main_layer(t).forward(h[t - 1], pre);
        h[t].resize(pre.rows(), pre.cols());
        deepstruct::activate(act, pre, h[t]);
        for (const auto& s : model.skips())
          if (s.target == t) {
            Eigen::MatrixXd skip_pre;
            deepstruct::MaskedLinear<double> layer = model.skip_layer(static_cast<std::size_t>(&s - model.skips().data()));
            layer.forward(h[s.source], skip_pre);
            post.resize(skip_pre.rows(), skip_pre.cols());
            deepstruct::activate(act, skip_pre, post);
            h[t] += post;
          }
      }
      Eigen::MatrixXd expected;
      model.layer_out().forward(h[L - 1], expected);
      model.zero_grad();
      const Eigen::MatrixXd logits = model.forward(x);
      CHECK(test::max_rel_diff(logits, expected) <= 1e-12);
      Eigen::MatrixXd grad, grad_x;
      deepstruct::cross_entropy(logits, y, &grad);
      model.backward(x, grad, &grad_x);
      auto loss = [&](const Eigen::MatrixXd& input) {
        Eigen::MatrixXd out;
        model.predict(input, out);
        return deepstruct::cross_entropy(out, y);
      };
      const double step = 1e-6;
      for (Eigen::Index i = 0; i < x.size(); ++i) {
        Eigen::MatrixXd xp = x, xm = x;
        xp.data()[i] += step;
        xm.data()[i] -= step;
        CHECK(grad_x.data()[i] == Approx((loss(xp) - loss(xm)) / (2 * step)).margin(1e-6));
      }
      // Gradients of a second backward after a fresh zero_grad are the same (no stale sums).
      std::vector<double> first_grads;
      model.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) { first_grads.insert(first_grads.end(), p.grad, p.grad + p.size); });
      model.zero_grad();
      deepstruct::cross_entropy(model.forward(x), y, &grad);
      model.backward(x, grad);
      std::vector<double> second_grads;
      model.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) { second_grads.insert(second_grads.end(), p.grad, p.grad + p.size); });
      CHECK(second_grads == first_grads);
    }
}

TEST_CASE("MaskedDeepDAN: reset_parameters from a seed is reproducible and keeps the structure on request",
          "[masked_deep_dan]") {
  const nlohmann::json c = test::load_json("masked_dan.json")["cases"][0];
  const DanDescription d = test::dan_description(c);
  MaskedDeepDAN<double> a(10, 3, d), b(10, 3, d);
  const auto masks = a.state_dict().masks;
  a.reset_parameters(std::uint64_t{5}, /*keep_mask=*/true);
  deepstruct::Generator gen(5);
  b.reset_parameters(gen, /*keep_mask=*/true);
  const auto sa = a.state_dict(), sb = b.state_dict();
  CHECK(sa.masks == masks);  // the DAG's structure survives
  for (const auto& kv : sa.matrices) {
    INFO(kv.first);
    CHECK(kv.second == sb.matrices.at(kv.first));
  }
  // A different seed draws different weights.
  b.reset_parameters(std::uint64_t{6}, true);
  CHECK(b.state_dict().matrices.at("layer_first.weight") != sa.matrices.at("layer_first.weight"));
  // Without keep_mask every mask is all ones, as deepstruct's MaskedLinearLayer.reset_parameters.
  a.reset_parameters(std::uint64_t{5});
  for (const auto& kv : a.state_dict().masks) CHECK(kv.second.all());
}

TEST_CASE("MaskedDeepDAN: a description without vertex lists numbers the neurons layer by layer", "[masked_deep_dan]") {
  // The plain description: layer sizes 2, 3, 1, mains 0->1 and 1->2, a skip 0->2.
  DanDescription d;
  d.layer_sizes = {2, 3, 1};
  using M = Eigen::Matrix<bool, -1, -1>;
  M main1 = M::Constant(3, 2, true), skip = M::Constant(1, 2, false), main2 = M::Constant(1, 3, true);
  main1(1, 0) = false;
  skip(0, 1) = true;
  d.connections = {{0, 1, main1}, {0, 2, skip}, {1, 2, main2}};
  MaskedDeepDAN<double> model(4, 2, d);
  CHECK(model.layer_vertices(0) == std::vector<std::size_t>{0, 1});
  CHECK(model.layer_vertices(1) == std::vector<std::size_t>{2, 3, 4});
  CHECK(model.layer_vertices(2) == std::vector<std::size_t>{5});
  REQUIRE(model.skips().size() == 1);
  CHECK(model.skip_layer(0).mask() == skip);
  CHECK(model.main_layer(1).mask() == main1);
  const DanDescription back = model.structure();
  CHECK(back.layer_vertices == deepstruct::default_layer_vertices(d.layer_sizes));
  CHECK_NOTHROW(deepstruct::check_dan_description(back));
}

TEMPLATE_TEST_CASE("MaskedDeepDAN: apply_mask zeroes the weights behind every layer's mask", "[masked_deep_dan][mask]", float,
                   double) {
  auto model = dan_with_holes<TestType>(3);
  REQUIRE(!model.skips().empty());
  REQUIRE(model.num_hidden_layers() >= 2);
  std::vector<typename MaskedDeepDAN<TestType>::Matrix> before;
  for (auto* l : model.maskable_layers()) before.push_back(l->weight());
  model.apply_mask();
  std::size_t k = 0;
  for (auto& [name, l] : named_layers(model)) {
    INFO("layer " << name);
    const auto& m = l->mask();
    REQUIRE(!m.all());  // something to zero in every layer: first, main, skip and out
    for (Eigen::Index i = 0; i < m.size(); ++i) {
      if (m.data()[i])
        CHECK(l->weight().data()[i] == before[k].data()[i]);
      else
        CHECK(l->weight().data()[i] == TestType(0));
    }
    CHECK(l->weight() == l->effective_weight());
    ++k;
  }
  CHECK(k == 2 + (model.num_hidden_layers() - 1) + model.skips().size());
}

TEMPLATE_TEST_CASE("MaskedDeepDAN: recompute_mask(theta) is |W| >= theta in every layer", "[masked_deep_dan][mask]", float,
                   double) {
  auto model = dan_with_holes<TestType>(5);
  const double theta = 0.08;
  model.recompute_mask(theta);
  for (auto& [name, l] : named_layers(model)) {
    INFO("layer " << name);
    const auto& w = l->weight();
    std::size_t on = 0, off = 0;
    for (Eigen::Index i = 0; i < w.size(); ++i) {
      const bool expected = std::abs(w.data()[i]) >= static_cast<TestType>(theta);
      CHECK(l->mask().data()[i] == expected);  // also where the old mask was off: deepstruct's rule
      (expected ? on : off) += 1;
    }
    CHECK(static_cast<Eigen::Index>(on) == l->nnz());
  }
  // theta 0 turns every weight on; a theta above every |W| turns them all off.
  model.recompute_mask(0.0);
  CHECK(model.num_active_weights() == model.num_weights());
  model.recompute_mask(1e6);
  CHECK(model.num_active_weights() == 0);
}

TEMPLATE_TEST_CASE("MaskedDeepDAN: prune_global and prune_each_layer reach the requested density over every layer",
                   "[masked_deep_dan][prune]", float, double) {
  SECTION("global: one ranking over first, main, skip and out") {
    auto model = dan_with_holes<TestType>(7);
    const Eigen::Index active = model.num_active_weights();
    std::vector<Eigen::Index> before;
    for (const auto* l : model.maskable_layers()) before.push_back(l->nnz());
    const auto old_masks = model.state_dict().masks;
    const Eigen::Index pruned = deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.6));
    CHECK(pruned == static_cast<Eigen::Index>(std::nearbyint(0.6 * double(active))));
    CHECK(model.num_active_weights() == active - pruned);
    // Every pruned weight had |W| no larger than every kept one, across layers.
    double largest_pruned = 0, smallest_kept = std::numeric_limits<double>::infinity();
    const auto new_masks = model.state_dict().masks;
    const auto names = model.maskable_layer_names();
    const auto layers = model.maskable_layers();
    for (std::size_t k = 0; k < layers.size(); ++k) {
      const auto& was = old_masks.at(names[k] + "._mask");
      const auto& now = new_masks.at(names[k] + "._mask");
      for (Eigen::Index i = 0; i < was.size(); ++i) {
        CHECK((!now.data()[i] || was.data()[i]));  // pruning never revives a weight
        const double a = std::abs(double(layers[k]->weight().data()[i]));
        if (was.data()[i] && !now.data()[i]) largest_pruned = std::max(largest_pruned, a);
        if (now.data()[i]) smallest_kept = std::min(smallest_kept, a);
      }
    }
    CHECK(largest_pruned <= smallest_kept);
    // The dense input layer holds most weights: the global ranking takes from it too.
    CHECK(model.layer_first().nnz() < before.front());
  }
  SECTION("each layer: the same fraction of every layer") {
    auto model = dan_with_holes<TestType>(7);
    std::vector<Eigen::Index> before;
    for (const auto* l : model.maskable_layers()) before.push_back(l->nnz());
    const Eigen::Index pruned = deepstruct::prune_each_layer(model, deepstruct::PruneAmount::fraction(0.5));
    Eigen::Index expected_total = 0;
    std::size_t k = 0;
    for (auto& [name, l] : named_layers(model)) {
      INFO("layer " << name);
      const auto expected = static_cast<Eigen::Index>(std::nearbyint(0.5 * double(before[k])));
      CHECK(l->nnz() == before[k] - expected);
      expected_total += expected;
      ++k;
    }
    CHECK(pruned == expected_total);
    CHECK(model.num_active_weights() == std::accumulate(before.begin(), before.end(), Eigen::Index{0}) - expected_total);
  }
}

TEST_CASE("MaskedDeepDAN: iterative magnitude pruning with rewinding", "[masked_deep_dan][prune]") {
  auto model = dan_with_holes<double>(9);
  const auto initial = model.state_dict();
  deepstruct::Generator gen(2);
  Eigen::MatrixXd x(10, 24);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = deepstruct::random::normal(gen);
  deepstruct::Labels y(24);
  for (Eigen::Index j = 0; j < 24; ++j) y[j] = static_cast<int>(j % 3);
  deepstruct::Adam<double> adam(deepstruct::AdamOptions{0.05});
  std::vector<int> rounds_seen;
  std::vector<Eigen::Index> active_before_round;
  deepstruct::IterativePruningOptions options;
  options.rounds = 3;
  options.fraction_per_round = 0.25;
  options.rewind = true;
  const auto history = deepstruct::iterative_magnitude_pruning(model, options, [&](MaskedDeepDAN<double>& m, int round) {
    rounds_seen.push_back(round);
    active_before_round.push_back(m.num_active_weights());
    for (int step = 0; step < 5; ++step) deepstruct::train_step(m, adam, x, y);
    // Training moved the weights away from their initial values.
    CHECK(m.layer_first().weight() != initial.matrices.at("layer_first.weight"));
  });
  REQUIRE(history.size() == 3);
  CHECK(rounds_seen == std::vector<int>{1, 2, 3});
  for (std::size_t r = 0; r < 3; ++r) {
    const Eigen::Index a = active_before_round[r];
    CHECK(history[r].pruned == static_cast<Eigen::Index>(std::nearbyint(0.25 * double(a))));
    if (r + 1 < 3) CHECK(active_before_round[r + 1] == a - history[r].pruned);
  }
  CHECK(history.back().density == Approx(model.density()));
  CHECK(model.num_active_weights() == active_before_round.back() - history.back().pruned);
  // Rewound: every parameter is back at its initial value; only the masks changed.
  const auto now = model.state_dict();
  for (const auto& kv : initial.matrices) {
    INFO(kv.first);
    CHECK(now.matrices.at(kv.first) == kv.second);
  }
  for (const auto& kv : initial.vectors) {
    INFO(kv.first);
    CHECK(now.vectors.at(kv.first) == kv.second);
  }
  for (const auto& kv : initial.masks) {
    INFO(kv.first);
    CHECK(((now.masks.at(kv.first).array() && !kv.second.array()).count() == 0));  // only turned off
  }
}

TEMPLATE_TEST_CASE("MaskedDeepDAN: one fit() epoch on a synthetic task lowers the loss", "[masked_deep_dan][train]", float,
                   double) {
  // Three classes, the label the largest of three fixed linear scores of 10 features (seeded).
  using Matrix = typename MaskedDeepDAN<TestType>::Matrix;
  deepstruct::Generator gen(13);
  const Eigen::Index n = 600;
  Matrix x(10, n), teacher(3, 10);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
  for (Eigen::Index i = 0; i < teacher.size(); ++i) teacher.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
  const deepstruct::Labels y = deepstruct::argmax_columns(Matrix(teacher * x));
  const DanDescription d = test::dan_description(test::load_json("masked_dan.json")["cases"][0]);
  deepstruct::DANOptions options;
  options.seed = 3;
  MaskedDeepDAN<TestType> model(10, 3, d, options);
  const deepstruct::Evaluation before = deepstruct::evaluate(model, x, y);
  deepstruct::Adam<TestType> adam(deepstruct::AdamOptions{0.01});
  deepstruct::FitOptions fit_options;
  fit_options.epochs = 1;
  fit_options.batch_size = 20;
  fit_options.seed = 1;
  fit_options.quiet = true;
  const auto history = deepstruct::fit(model, adam, x, y, fit_options);
  REQUIRE(history.size() == 1);
  const deepstruct::Evaluation after = deepstruct::evaluate(model, x, y);
  CHECK(after.loss < 0.9 * before.loss);
  CHECK(history[0].train_loss < before.loss);
  // Seeded: the same seeds give the same model.
  MaskedDeepDAN<TestType> again(10, 3, d, options);
  deepstruct::Adam<TestType> adam2(deepstruct::AdamOptions{0.01});
  deepstruct::fit(again, adam2, x, y, fit_options);
  CHECK(again.layer_out().weight() == model.layer_out().weight());
}

TEMPLATE_TEST_CASE("MaskedDeepDAN: SGD (momentum, weight decay) and AdamW steps keep masked weights at zero",
                   "[masked_deep_dan][optim]", float, double) {
  using Matrix = typename MaskedDeepDAN<TestType>::Matrix;
  deepstruct::Generator gen(17);
  Matrix x(10, 8);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
  deepstruct::Labels y(8);
  y << 0, 1, 2, 0, 1, 2, 0, 1;
  auto check_step = [&](auto& optimizer, const char* what) {
    INFO(what);
    auto model = dan_with_holes<TestType>(11);
    model.apply_mask();  // masked weights are zero from here on
    std::vector<Matrix> before;
    for (auto* l : model.maskable_layers()) before.push_back(l->weight());
    deepstruct::train_step(model, optimizer, x, y);
    deepstruct::train_step(model, optimizer, x, y);  // a second step uses the momentum / moments
    std::size_t k = 0;
    Eigen::Index masked = 0;
    for (auto& [name, l] : named_layers(model)) {
      INFO("layer " << name);
      const auto& m = l->mask();
      Eigen::Index moved = 0;
      for (Eigen::Index i = 0; i < m.size(); ++i) {
        if (!m.data()[i]) {
          CHECK(l->weight().data()[i] == TestType(0));
          CHECK(l->effective_weight().data()[i] == TestType(0));
          ++masked;
        } else {
          moved += l->weight().data()[i] != before[k].data()[i];
        }
      }
      // The steps did update the active weights (weight decay moves even those without gradient).
      CHECK(moved == l->nnz());
      ++k;
    }
    CHECK(masked > 0);
    CHECK(model.layer_first().nnz() > 0);
  };
  deepstruct::SGDOptions so;
  so.lr = 0.1;
  so.momentum = 0.9;
  so.weight_decay = 0.01;
  deepstruct::SGD<TestType> sgd(so);
  check_step(sgd, "SGD, momentum 0.9, weight decay 0.01");
  deepstruct::AdamOptions ao;
  ao.lr = 0.01;
  ao.weight_decay = 0.1;
  deepstruct::AdamW<TestType> adamw(ao);
  check_step(adamw, "AdamW, weight decay 0.1");
}

TEST_CASE("MaskedDeepDAN: backward with another input than the forward's is refused", "[masked_deep_dan]") {
  const DanDescription d = test::dan_description(test::load_json("masked_dan.json")["cases"][0]);
  MaskedDeepDAN<double> model(10, 3, d);
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(10, 5), g = Eigen::MatrixXd::Random(3, 5);
  model.forward(x);
  Eigen::MatrixXd other = x;
  other(9, 4) += 1.0;  // one of the probed entries (the last)
  CHECK_THROWS_AS(model.backward(other, g), deepstruct::state_error);
  const Eigen::MatrixXd copy = x;  // an equal copy is the same input
  CHECK_NOTHROW(model.backward(copy, g));
  // An output that shares memory with x or grad_logits: refused before any gradient is added.
  model.zero_grad();
  model.forward(x);
  Eigen::MatrixXd x_and_grad = x, g_and_grad = g;
  CHECK_THROWS_WITH(model.backward(x_and_grad, g, &x_and_grad), test::contains("expected grad_input not to share memory with x"));
  CHECK_THROWS_WITH(model.backward(x, g_and_grad, &g_and_grad), test::contains("expected grad_input not to share memory with grad_logits"));
  bool untouched = true;
  model.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) {
    untouched = untouched && Eigen::Map<const Eigen::VectorXd>(p.grad, p.size).isZero();
  });
  CHECK(untouched);
  // NaN in the input is compared bit for bit: the same NaN input passes.
  Eigen::MatrixXd with_nan = x;
  with_nan(0, 0) = std::numeric_limits<double>::quiet_NaN();
  model.forward(with_nan);
  CHECK_NOTHROW(model.backward(with_nan, g));
}

TEST_CASE("MaskedDeepDAN: forward of its own logits (inputs == outputs); backward refuses what the run overwrote", "[masked_deep_dan]") {
  const DanDescription d = test::dan_description(test::load_json("masked_dan.json")["cases"][0]);
  MaskedDeepDAN<double> model(3, 3, d), clean(3, 3, d);
  const Eigen::MatrixXd x0 = Eigen::MatrixXd::Random(3, 5), g = Eigen::MatrixXd::Random(3, 5);
  const Eigen::MatrixXd& logits = model.forward(x0);
  const Eigen::MatrixXd input = logits;  // the second forward's input, kept apart
  model.forward(logits);                   // x is the logits buffer the run writes
  CHECK_THROWS_WITH(model.backward(logits, g), test::contains("its values differ"));
  model.zero_grad();
  model.backward(input, g);  // the input as it was: the gradients of a clean run
  clean.forward(input);
  clean.backward(input, g);
  const auto grads = [](MaskedDeepDAN<double>& m) {
    std::vector<double> all;
    m.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) { all.insert(all.end(), p.grad, p.grad + p.size); });
    return all;
  };
  CHECK(grads(model) == grads(clean));
}
