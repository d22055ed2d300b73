// Tests of <deepstruct/masked_deep_dan.hpp>: parity with deepstruct/PyTorch on masked_dan.json,
// finite-difference gradients, state_dict, structure round trip.
#include <deepstruct/loss.hpp>
#include <deepstruct/masked_deep_dan.hpp>
#include <deepstruct/optim.hpp>

#include <set>

#include "test_support.hpp"

using deepstruct::DanDescription;
using deepstruct::Execution;
using deepstruct::MaskedDeepDAN;

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
        deepstruct::cross_entropy(model.forward(x), y, &grad);
        model.backward(grad, &grad_x);
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
    model.backward(grad);
    adam.step(model);
  }
  CHECK(last < first);
  CHECK_THROWS_AS(model.forward(Eigen::MatrixXf::Zero(11, 2)), deepstruct::shape_error);
  Eigen::MatrixXf logits;
  model.predict(x, logits);
  CHECK_THROWS_AS(model.backward(grad), std::logic_error);  // predict keeps nothing for backward
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
            deepstruct::MaskedLinear<double> layer = s.layer;
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
      model.backward(grad, &grad_x);
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
      model.backward(grad);
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
