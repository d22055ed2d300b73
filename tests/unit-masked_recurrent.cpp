// Tests of <deepstruct/masked_recurrent.hpp> and <deepstruct/masked_deep_rnn.hpp>: parity with
// deepstruct's MaskedDeepRNN (tests/data/recurrent.json: tanh, ReLU, GRU and LSTM layers,
// time-major and batch-first, float32 and float64), finite-difference gradients through whole
// sequences, sparse and dense execution, initial states, one step, predict, masks and pruning of
// the two masked weights, files with deepstruct's keys.
#include <deepstruct/loss.hpp>
#include <deepstruct/masked_deep_rnn.hpp>
#include <deepstruct/masked_recurrent.hpp>
#include <deepstruct/model_io.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/prune.hpp>
#include <deepstruct/train.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "test_support.hpp"

using deepstruct::Execution;
using deepstruct::MaskedDeepRNN;
using deepstruct::MaskedRecurrentLayer;
using deepstruct::RecurrentKind;

namespace {

RecurrentKind kind_of(const std::string& k) {
  if (k == "rnn_tanh") return RecurrentKind::rnn_tanh;
  if (k == "rnn_relu") return RecurrentKind::rnn_relu;
  if (k == "gru") return RecurrentKind::gru;
  return RecurrentKind::lstm;
}

/// A fixture input ([steps][batch][features] or, batch-first, [batch][steps][features]) as one
/// sequence per column.
template <typename Scalar>
Eigen::Matrix<Scalar, -1, -1> sequences(const nlohmann::json& x, bool batch_first) {
  const std::size_t a = x.size(), b = x[0].size(), f = x[0][0].size();
  const std::size_t steps = batch_first ? b : a, batch = batch_first ? a : b;
  Eigen::Matrix<Scalar, -1, -1> out(static_cast<Eigen::Index>(steps * f), static_cast<Eigen::Index>(batch));
  for (std::size_t t = 0; t < steps; ++t)
    for (std::size_t n = 0; n < batch; ++n)
      for (std::size_t i = 0; i < f; ++i)
        out(static_cast<Eigen::Index>(t * f + i), static_cast<Eigen::Index>(n)) =
            (batch_first ? x[n][t][i] : x[t][n][i]).template get<Scalar>();
  return out;
}

using test::random_matrix;

}  // namespace

TEMPLATE_TEST_CASE("MaskedDeepRNN: parity with deepstruct on recurrent.json (output, loss, gradients, one SGD step)",
                   "[recurrent][parity]", float, double) {
  const nlohmann::json fixture = test::load_json("recurrent.json");
  REQUIRE(fixture["cases"].size() == 8);
  const bool is_float = std::is_same<TestType, float>::value;
  const std::string tag = is_float ? "float32" : "float64";
  const double tol = is_float ? 1e-5 : 1e-9;
  for (const auto& c : fixture["cases"]) {
    for (const Execution path : {Execution::dense, Execution::sparse}) {
      INFO(c["kind"].get<std::string>() << (c["batch_first"].get<bool>() ? " batch-first" : " time-major") << " path " << int(path));
      deepstruct::RNNOptions options;
      options.kind = kind_of(c["kind"].get<std::string>());
      std::vector<Eigen::Index> hidden;
      for (const auto& h : c["hidden"]) hidden.push_back(h.get<Eigen::Index>());
      MaskedDeepRNN<TestType> model(c["input_size"].get<Eigen::Index>(), hidden, options);
      model.load_state_dict(test::state_dict<TestType>(c["state_dict"]));
      model.set_execution(path);
      const auto x = sequences<TestType>(c["x"], c["batch_first"].get<bool>());
      const Eigen::Matrix<TestType, -1, -1> target = test::matrix<TestType>(c["target"]).transpose();
      model.zero_grad();
      const auto& out = model.forward(x);
      CHECK(test::max_rel_diff(out.template cast<double>(), test::matrix<double>(c["output_" + tag]).transpose().eval()) <= tol);
      Eigen::Matrix<TestType, -1, -1> grad;
      const double loss = deepstruct::mse_loss(out, target, &grad);
      CHECK(loss == Approx(c["loss_" + tag].get<double>()).epsilon(tol));
      model.backward(x, grad);
      // Every parameter's gradient, by deepstruct's name.
      for (std::size_t l = 0; l < model.num_layers(); ++l) {
        const auto& layer = model.layer(l);
        const std::string p = "_recurrent_layers." + std::to_string(l) + ".";
        const auto& g = c["grad_" + tag];
        CHECK(test::max_rel_diff(layer.weight_ih_grad().template cast<double>(), test::matrix<double>(g[p + "_weight_ih"])) <= tol);
        CHECK(test::max_rel_diff(layer.weight_hh_grad().template cast<double>(), test::matrix<double>(g[p + "_weight_hh"])) <= tol);
        CHECK(test::max_rel_diff(layer.bias_ih_grad().template cast<double>(), test::vector<double>(g[p + "_bias_ih"])) <= tol);
        CHECK(test::max_rel_diff(layer.bias_hh_grad().template cast<double>(), test::vector<double>(g[p + "_bias_hh"])) <= tol);
        // Masked weights get zero gradients.
        CHECK((layer.weight_ih_grad().array() * (!layer.mask_i2h().array()).template cast<TestType>()).abs().maxCoeff() == TestType(0));
        CHECK((layer.weight_hh_grad().array() * (!layer.mask_h2h().array()).template cast<TestType>()).abs().maxCoeff() == TestType(0));
      }
      deepstruct::SGD<TestType> sgd(deepstruct::SGDOptions{c["lr"].get<double>()});
      sgd.step(model);
      const auto sd = model.state_dict();
      for (auto it = c["after_sgd_" + tag].begin(); it != c["after_sgd_" + tag].end(); ++it) {
        INFO(it.key());
        if (it.value()[0].is_array())
          CHECK(test::max_rel_diff(sd.matrices.at(it.key()).template cast<double>(), test::matrix<double>(it.value())) <= tol);
        else
          CHECK(test::max_rel_diff(sd.vectors.at(it.key()).template cast<double>(), test::vector<double>(it.value())) <= tol);
      }
    }
  }
}

TEST_CASE("MaskedRecurrentLayer: finite-difference gradients over whole sequences, every kind, both layouts, initial states",
          "[recurrent][gradient]") {
  deepstruct::Generator gen(5);
  for (const RecurrentKind kind : {RecurrentKind::rnn_tanh, RecurrentKind::rnn_relu, RecurrentKind::gru, RecurrentKind::lstm})
    for (const bool batch_first : {false, true})
      for (const int initial : {0, 1, 2})  // none; h only (LSTM: c copied from h); h and c
        for (const Execution path : {Execution::dense, Execution::sparse}) {
          INFO(deepstruct::to_string(kind) << " batch_first " << batch_first << " initial " << initial << " path " << int(path));
          MaskedRecurrentLayer<double> layer(kind, 3, 4, batch_first, 7);
          for (std::size_t k = 0; k < 2; ++k)
            layer.update_mask(k, [&](auto& m) {
              for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, 0.6);
            });
          layer.set_execution(path);
          const Eigen::Index steps = 5, batch = 2;
          const Eigen::MatrixXd x = random_matrix<double>(3, steps * batch, gen), c = random_matrix<double>(4, steps * batch, gen);
          deepstruct::RecurrentState<double> s0;
          if (initial > 0) {
            s0.h = random_matrix<double>(4, batch, gen) * 0.5;
            if (kind == RecurrentKind::lstm && initial == 2) s0.c = random_matrix<double>(4, batch, gen) * 0.5;
          }
          const deepstruct::RecurrentState<double>* init = initial > 0 ? &s0 : nullptr;
          // L = sum(c o y) + sum of the final state (so dL/dh0, dL/dc0 go through every step).
          auto loss = [&](MaskedRecurrentLayer<double>& l, const Eigen::MatrixXd& input, const deepstruct::RecurrentState<double>* st) {
            Eigen::MatrixXd y;
            l.predict(input, steps, y, st);
            return c.cwiseProduct(y).sum();
          };
          layer.zero_grad();
          Eigen::MatrixXd y, gx;
          layer.forward(x, steps, y, init);
          Eigen::MatrixXd y_predict;
          layer.predict(x, steps, y_predict, init);
          CHECK(test::max_rel_diff(y_predict, y) <= 1e-14);
          deepstruct::RecurrentState<double> g0;
          layer.backward(x, c, &gx, init != nullptr ? &g0 : nullptr);
          const double h = 1e-6;
          for (Eigen::Index i = 0; i < x.size(); ++i) {
            Eigen::MatrixXd xp = x, xm = x;
            xp.data()[i] += h;
            xm.data()[i] -= h;
            CHECK(gx.data()[i] == Approx((loss(layer, xp, init) - loss(layer, xm, init)) / (2 * h)).margin(1e-6));
          }
          for (std::size_t k = 0; k < 2; ++k) {
            const Eigen::MatrixXd& analytic = k == 0 ? layer.weight_ih_grad() : layer.weight_hh_grad();
            for (Eigen::Index i = 0; i < analytic.size(); ++i) {
              auto perturbed = [&](double d) {
                MaskedRecurrentLayer<double> copy = layer;
                copy.update_weight(k, [&](Eigen::MatrixXd& w) { w.data()[i] += d; });
                return loss(copy, x, init);
              };
              CHECK(analytic.data()[i] == Approx((perturbed(h) - perturbed(-h)) / (2 * h)).margin(1e-6));
            }
          }
          for (int b = 0; b < 2; ++b) {
            const Eigen::VectorXd& analytic = b == 0 ? layer.bias_ih_grad() : layer.bias_hh_grad();
            for (Eigen::Index i = 0; i < analytic.size(); ++i) {
              auto perturbed = [&](double d) {
                MaskedRecurrentLayer<double> copy = layer;
                Eigen::VectorXd bias = b == 0 ? copy.bias_ih() : copy.bias_hh();
                bias[i] += d;
                if (b == 0) copy.set_bias_ih(bias);
                else copy.set_bias_hh(bias);
                return loss(copy, x, init);
              };
              CHECK(analytic[i] == Approx((perturbed(h) - perturbed(-h)) / (2 * h)).margin(1e-6));
            }
          }
          if (init != nullptr) {
            for (Eigen::Index i = 0; i < s0.h.size(); ++i) {
              auto perturbed = [&](double d) {
                deepstruct::RecurrentState<double> s = s0;
                s.h.data()[i] += d;
                return loss(layer, x, &s);
              };
              CHECK(g0.h.data()[i] == Approx((perturbed(h) - perturbed(-h)) / (2 * h)).margin(1e-6));
            }
            if (kind == RecurrentKind::lstm && initial == 2) {
              for (Eigen::Index i = 0; i < s0.c.size(); ++i) {
                auto perturbed = [&](double d) {
                  deepstruct::RecurrentState<double> s = s0;
                  s.c.data()[i] += d;
                  return loss(layer, x, &s);
                };
                CHECK(g0.c.data()[i] == Approx((perturbed(h) - perturbed(-h)) / (2 * h)).margin(1e-6));
              }
            } else {
              CHECK(g0.c.size() == 0);
            }
          }
        }
}

TEMPLATE_TEST_CASE("MaskedRecurrentLayer: one step is a step of the sequence; layouts; final state; errors", "[recurrent]", float,
                   double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  deepstruct::Generator gen(9);
  for (const RecurrentKind kind : {RecurrentKind::rnn_tanh, RecurrentKind::gru, RecurrentKind::lstm}) {
    INFO(deepstruct::to_string(kind));
    deepstruct::MaskedRecurrentLayer<TestType> tm(kind, 3, 4, false, 2), bf(kind, 3, 4, true, 2);
    const Eigen::Index steps = 3, batch = 2;
    const Mat x = random_matrix<TestType>(3, steps * batch, gen);
    Mat y;
    tm.forward(x, steps, y);
    // One step at a time from zeros gives the same states.
    deepstruct::RecurrentState<TestType> s, next;
    s.h = Mat::Zero(4, batch);
    if (kind == RecurrentKind::lstm) s.c = Mat::Zero(4, batch);
    for (Eigen::Index t = 0; t < steps; ++t) {
      tm.step(x.middleCols(t * batch, batch), s, next);
      CHECK(test::max_rel_diff(next.h.template cast<double>(), y.middleCols(t * batch, batch).template cast<double>().eval()) <=
            test::tol<TestType>(10));
      std::swap(s, next);
    }
    const auto final_state = tm.final_state();
    CHECK(test::max_rel_diff(final_state.h.template cast<double>(), s.h.template cast<double>()) <= test::tol<TestType>(10));
    // Batch-first columns: the same numbers in the other order.
    Mat xb(3, steps * batch), yb;
    for (Eigen::Index b = 0; b < batch; ++b)
      for (Eigen::Index t = 0; t < steps; ++t) xb.col(b * steps + t) = x.col(t * batch + b);
    bf.forward(xb, steps, yb);
    for (Eigen::Index b = 0; b < batch; ++b)
      for (Eigen::Index t = 0; t < steps; ++t) CHECK(yb.col(b * steps + t) == y.col(t * batch + b));
    CHECK_THROWS_AS(tm.backward(x, Mat::Zero(4, 5), nullptr), deepstruct::shape_error);
    CHECK_THROWS_AS(tm.backward(Mat::Zero(3, 4), Mat::Zero(4, 6), nullptr), deepstruct::shape_error);
    CHECK_THROWS_AS(tm.forward(x, 4, y), deepstruct::shape_error);  // 6 columns are not 4 steps
    CHECK_THROWS_AS(tm.backward(x, Mat::Zero(4, 6), nullptr), deepstruct::state_error);  // the failed forward left nothing
    CHECK_THROWS_AS(tm.forward(Mat::Zero(2, 6), 3, y), deepstruct::shape_error);
    deepstruct::MaskedRecurrentLayer<TestType> fresh(kind, 3, 4);
    CHECK_THROWS_AS(fresh.backward(x, Mat::Zero(4, 6), nullptr), deepstruct::state_error);
    CHECK_THROWS_AS(tm.mask(), deepstruct::index_error);  // two masked weights: say which
  }
  CHECK_THROWS_AS(deepstruct::MaskedRecurrentLayer<TestType>(RecurrentKind::gru, 0, 4), deepstruct::shape_error);
  // gates x hidden_size rows that overflow an index: a shape_error that says so, not signed overflow.
  const Eigen::Index huge = Eigen::Index{1} << 62;
  CHECK_THROWS_WITH(deepstruct::MaskedRecurrentLayer<TestType>(RecurrentKind::lstm, 2, huge), test::contains("4 gates to fit an index"));
  CHECK_THROWS_WITH(deepstruct::MaskedRecurrentLayer<TestType>(RecurrentKind::gru, 2, huge), test::contains("3 gates to fit an index"));
  // deepstruct's layer types and their names.
  CHECK(std::string(deepstruct::MaskedGRULayer<TestType>(2, 3).type_name()) == "MaskedGRULayer");
  CHECK(deepstruct::MaskedLSTMLayer<TestType>(2, 3).weight(0).rows() == 12);
  CHECK(deepstruct::MaskedRNNLayer<TestType>(2, 3, /*relu=*/true).kind() == RecurrentKind::rnn_relu);
}

TEST_CASE("MaskedDeepRNN: finite differences of the whole model, with a head and with the whole sequence", "[recurrent][gradient]") {
  deepstruct::Generator gen(3);
  for (const RecurrentKind kind : {RecurrentKind::rnn_relu, RecurrentKind::gru, RecurrentKind::lstm})
    for (const bool sequence : {false, true})
      for (const Eigen::Index head : {Eigen::Index{0}, Eigen::Index{2}}) {
        INFO(deepstruct::to_string(kind) << " sequence " << sequence << " head " << head);
        deepstruct::RNNOptions options;
        options.kind = kind;
        options.return_sequence = sequence;
        options.head = head;
        options.seed = 4;
        MaskedDeepRNN<double> model(3, {4, 3}, options);
        const Eigen::MatrixXd x = random_matrix<double>(3 * 4, 2, gen);
        const Eigen::MatrixXd& out = model.forward(x);
        CHECK(out.rows() == (sequence ? 4 : 1) * model.output_size());
        const Eigen::MatrixXd c = random_matrix<double>(out.rows(), out.cols(), gen);
        auto loss = [&](MaskedDeepRNN<double>& m, const Eigen::MatrixXd& input) {
          Eigen::MatrixXd o;
          m.predict(input, o);
          return c.cwiseProduct(o).sum();
        };
        model.zero_grad();
        Eigen::MatrixXd gx;
        model.backward(x, c, &gx);
        const double h = 1e-6;
        for (Eigen::Index i = 0; i < x.size(); ++i) {
          Eigen::MatrixXd xp = x, xm = x;
          xp.data()[i] += h;
          xm.data()[i] -= h;
          CHECK(gx.data()[i] == Approx((loss(model, xp) - loss(model, xm)) / (2 * h)).margin(1e-6));
        }
        std::vector<std::vector<double>> analytic;
        model.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) { analytic.emplace_back(p.grad, p.grad + p.size); });
        for (std::size_t t = 0; t < analytic.size(); ++t)
          for (std::size_t i = 0; i < analytic[t].size(); i += 2) {
            auto perturbed = [&](double d) {
              MaskedDeepRNN<double> copy = model;
              std::size_t k = 0;
              copy.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) {
                if (k++ == t) p.value[i] += d;
              });
              return loss(copy, x);
            };
            CHECK(analytic[t][i] == Approx((perturbed(h) - perturbed(-h)) / (2 * h)).margin(1e-6));
          }
      }
}

TEST_CASE("MaskedDeepRNN: deepstruct's apply_mask(threshold, i2h, h2h); pruning only the hidden-to-hidden weights", "[recurrent][prune]") {
  deepstruct::RNNOptions options;
  options.kind = RecurrentKind::gru;
  MaskedDeepRNN<float> model(5, {6, 4}, options);
  model.apply_mask(0.2, /*i2h=*/false, /*h2h=*/true);
  for (std::size_t l = 0; l < 2; ++l) {
    CHECK(model.layer(l).mask_i2h().all());
    CHECK(model.layer(l).mask_h2h() == (model.layer(l).weight(1).array().abs() >= 0.2f).matrix());
  }
  model.apply_mask(0.2, false, false);  // nothing chosen: nothing changes
  // Global magnitude pruning over the hidden-to-hidden weights only.
  MaskedDeepRNN<float> fresh(5, {6, 4}, options);
  const Eigen::Index before_ih = fresh.layer(0).nnz(0) + fresh.layer(1).nnz(0);
  const Eigen::Index hh = fresh.layer(0).numel(1) + fresh.layer(1).numel(1);
  const Eigen::Index pruned =
      deepstruct::prune_global(fresh, deepstruct::PruneAmount::fraction(0.9), deepstruct::weights_named({"_weight_hh"}));
  CHECK(pruned == static_cast<Eigen::Index>(std::nearbyint(0.9 * double(hh))));
  CHECK(fresh.layer(0).nnz(0) + fresh.layer(1).nnz(0) == before_ih);
  CHECK(fresh.layer(0).nnz(1) + fresh.layer(1).nnz(1) == hh - pruned);
  // The kept ones are the largest.
  float largest_pruned = 0, smallest_kept = 1e9f;
  for (std::size_t l = 0; l < 2; ++l)
    for (Eigen::Index i = 0; i < fresh.layer(l).numel(1); ++i) {
      const float a = std::abs(fresh.layer(l).weight(1).data()[i]);
      if (fresh.layer(l).mask(1).data()[i]) smallest_kept = std::min(smallest_kept, a);
      else largest_pruned = std::max(largest_pruned, a);
    }
  CHECK(largest_pruned <= smallest_kept);
  CHECK_THROWS_AS(model.apply_mask(-1.0, true, true), deepstruct::value_error);
}

TEST_CASE("MaskedDeepRNN: training, predict, .npz files with deepstruct's keys, time-major data", "[recurrent][train]") {
  // A task that needs memory: the class is the sign of the first step's first feature.
  deepstruct::Generator gen(11);
  const Eigen::Index steps = 6, n = 256;
  Eigen::MatrixXf x(steps * 2, n);
  deepstruct::Labels y(n);
  for (Eigen::Index j = 0; j < n; ++j) {
    for (Eigen::Index i = 0; i < x.rows(); ++i) x(i, j) = static_cast<float>(deepstruct::random::normal(gen));
    y[j] = x(0, j) > 0 ? 1 : 0;
  }
  deepstruct::RNNOptions options;
  options.kind = RecurrentKind::lstm;
  options.head = 2;
  MaskedDeepRNN<float> model(2, {16}, options);
  deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
  deepstruct::FitOptions fit;
  fit.epochs = 30;
  fit.batch_size = 32;
  fit.quiet = true;
  deepstruct::fit(model, adam, x, y, fit);
  CHECK(deepstruct::evaluate(model, x, y).accuracy > 0.95);
  // predict between forward and backward changes nothing backward uses.
  MaskedDeepRNN<float> reference = model;
  const Eigen::MatrixXf xb = x.leftCols(8), g = Eigen::MatrixXf::Ones(2, 8);
  reference.zero_grad();
  reference.forward(xb);
  reference.backward(xb, g);
  model.zero_grad();
  model.forward(xb);
  Eigen::MatrixXf other;
  model.predict(x.rightCols(5), other);
  model.backward(xb, g);
  CHECK(model.layer(0).weight_hh_grad() == reference.layer(0).weight_hh_grad());
  // A file with deepstruct's keys, loaded strictly into a model of the same shape.
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/rnn.npz";
  deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.5));
  deepstruct::save_npz(model, path);
  const deepstruct::NpzArchive file = deepstruct::NpzArchive::load(path);
  CHECK(file.contains("_recurrent_layers.0._weight_ih"));
  CHECK(file.contains("_recurrent_layers.0._mask_h2h"));
  MaskedDeepRNN<float> loaded(2, {16}, options);
  deepstruct::load_npz(loaded, path);
  Eigen::MatrixXf a, b;
  model.predict(xb, a);
  loaded.predict(xb, b);
  CHECK(a == b);
  // Time-major data ([steps][batch][features] memory) as one sequence per column.
  Eigen::MatrixXf time_major(2, steps * 8);
  for (Eigen::Index t = 0; t < steps; ++t) time_major.middleCols(t * 8, 8) = xb.middleRows(t * 2, 2);
  CHECK(deepstruct::sequence_columns(time_major, steps) == xb);
  CHECK_THROWS_AS(model.forward(Eigen::MatrixXf::Zero(7, 3)), deepstruct::shape_error);  // 7 rows are no steps of 2 features
  CHECK(model.head().out_features() == 2);
  CHECK_THROWS_AS(MaskedDeepRNN<float>(2, {3}).head(), deepstruct::index_error);  // no head asked for
}

TEST_CASE("MaskedDeepRNN: deepstruct itself loads our files strictly and gives our outputs (where deepstruct is at hand)",
          "[recurrent][parity]") {
  const std::string deepstruct_py = std::string(DEEPSTRUCT_SOURCE_DIR) + "/../shared/deepstruct-py";
  if (!std::ifstream(deepstruct_py + "/deepstruct/recurrent.py")) {
    WARN("skipped: no deepstruct source at " << deepstruct_py);
    return;
  }
  if (!test::python_with("torch, deprecated")) return;
  for (const RecurrentKind kind : {RecurrentKind::rnn_tanh, RecurrentKind::gru, RecurrentKind::lstm}) {
    INFO(deepstruct::to_string(kind));
    deepstruct::RNNOptions options;
    options.kind = kind;
    options.seed = 5;
    MaskedDeepRNN<double> model(3, {5, 4}, options);
    deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.4));
    const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/rnn_for_deepstruct_" + deepstruct::to_string(kind) + ".npz";
    deepstruct::save_npz(model, path);
    deepstruct::Generator gen(2);
    const Eigen::MatrixXd x = random_matrix<double>(3 * 4, 2, gen);  // 4 steps, batch 2
    Eigen::MatrixXd y;
    model.predict(x, y);
    const std::string script = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/rnn_import.py";
    std::ofstream(script) << "import sys, json, numpy as np, torch\n"
                             "import deepstruct.recurrent as r\n"
                             "cls = {'rnn_tanh': r.MaskedRecurrentLayer, 'gru': r.MaskedGRULayer, 'lstm': r.MaskedLSTMLayer}[sys.argv[2]]\n"
                             "m = r.MaskedDeepRNN(3, [5, 4], build_recurrent_layer=cls, batch_first=True)\n"
                             "a = np.load(sys.argv[1])\n"
                             "own = m.state_dict()\n"
                             "m.load_state_dict({k: torch.from_numpy(a[k]).to(own[k].dtype) for k in a.files}, strict=True)\n"
                             "x = torch.tensor(json.loads(sys.argv[3]), dtype=torch.float32)\n"
                             "json.dump(m(x).detach().numpy().tolist(), open(sys.argv[4], 'w'))\n";
    nlohmann::json xs = nlohmann::json::array();  // [batch][steps][features]
    for (Eigen::Index b = 0; b < 2; ++b) {
      nlohmann::json seq = nlohmann::json::array();
      for (Eigen::Index t = 0; t < 4; ++t) {
        nlohmann::json step = nlohmann::json::array();
        for (Eigen::Index i = 0; i < 3; ++i) step.push_back(x(t * 3 + i, b));
        seq.push_back(step);
      }
      xs.push_back(seq);
    }
    const std::string out = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/rnn_import.json";
    const std::string cmd = "PYTHONPATH=" + deepstruct_py + " " + std::string(DEEPSTRUCT_PYTHON) + " " + script + " " + path + " " +
                            deepstruct::to_string(kind) + " '" + xs.dump() + "' " + out;
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream in(out);
    const Eigen::MatrixXd theirs = test::matrix<double>(nlohmann::json::parse(in)).transpose();
    CHECK(test::max_rel_diff(theirs, y) <= 1e-5);
  }
}
