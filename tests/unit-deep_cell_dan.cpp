// Tests of <deepstruct/deep_cell_dan.hpp>: parity with deepstruct's DeepCellDAN
// (tests/data/cell_dan.json: graph, state_dict, training-mode output, loss, every gradient,
// running statistics, evaluation output), finite differences, training, pruning, files both ways.
#include <deepstruct/deep_cell_dan.hpp>
#include <deepstruct/loss.hpp>
#include <deepstruct/model_io.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/prune.hpp>
#include <deepstruct/sparse_training.hpp>
#include <deepstruct/train.hpp>

#include <cstdlib>
#include <fstream>
#if defined(__linux__)
#include <sys/resource.h>
#endif
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using deepstruct::CellGraph;
using deepstruct::DeepCellDAN;
using deepstruct::ImageShape;
using deepstruct::ReductionCell;

CellGraph graph_of(const nlohmann::json& c) {
  CellGraph g;
  g.num_nodes = c["num_nodes"].get<std::size_t>();
  for (const auto& e : c["edges"]) g.edges.emplace_back(e[0].get<std::size_t>(), e[1].get<std::size_t>());
  return g;
}

ImageShape shape_of(const nlohmann::json& t) {
  return ImageShape{static_cast<Eigen::Index>(t[0].size()), static_cast<Eigen::Index>(t[0][0].size()),
                    static_cast<Eigen::Index>(t[0][0][0].size())};
}

template <typename Scalar>
DeepCellDAN<Scalar> model_of(const nlohmann::json& c) {
  return DeepCellDAN<Scalar>(c["classes"].get<Eigen::Index>(), shape_of(c["x"]), graph_of(c), deepstruct::reduction_cells<Scalar>());
}

}  // namespace

TEST_CASE("DeepCellDAN: parity with deepstruct (cell_dan.json): graph, output, loss, gradients, running statistics, eval output",
          "[deep_cell_dan][parity]") {
  const auto fixture = test::load_json("cell_dan.json");
  int index = 0;
  for (const auto& c : fixture["cases"]) {
    INFO("case " << index++);
    auto model = model_of<float>(c);
    // The graph as deepstruct sees it.
    std::vector<std::size_t> inputs, outputs;
    for (const auto& v : c["input_nodes"]) inputs.push_back(v.get<std::size_t>());
    for (const auto& v : c["output_nodes"]) outputs.push_back(v.get<std::size_t>());
    CHECK(model.input_nodes() == inputs);
    CHECK(model.output_nodes() == outputs);
    for (std::size_t v = 0; v < model.num_nodes(); ++v) {
      std::vector<std::size_t> preds;
      for (const auto& u : c["predecessors"][std::to_string(v)]) preds.push_back(u.get<std::size_t>());
      CHECK(model.predecessors(v) == preds);
      CHECK(c["cell_module_index"][std::to_string(v)].get<std::size_t>() == v);
    }
    // deepstruct's state_dict loads strictly (no masks: PyTorch's Conv2d and Linear keys).
    const auto sd = test::state_dict<float>(c["state_dict"]);
    model.load_state_dict(sd);
    const auto ours = model.state_dict();
    CHECK(ours.size() == sd.size());
    for (const auto& kv : sd.matrices) CHECK(ours.matrices.at(kv.first) == kv.second);
    // Training-mode forward, cross-entropy, backward.
    const Eigen::MatrixXf x = test::images<float>(c["x"]);
    deepstruct::Labels y(static_cast<Eigen::Index>(c["labels"].size()));
    for (Eigen::Index i = 0; i < y.size(); ++i) y[i] = c["labels"][static_cast<std::size_t>(i)].get<int>();
    model.zero_grad();
    const Eigen::MatrixXf logits = model.forward(x);
    CHECK(test::max_rel_diff(logits, test::matrix<float>(c["train_output_float32"]).transpose()) < 1e-5);
    Eigen::MatrixXf grad;
    const double loss = deepstruct::CrossEntropyLoss{}(logits, y, &grad);
    CHECK(loss == Approx(c["train_loss_float32"].get<double>()).epsilon(1e-5));
    model.backward(x, grad);
    const auto& g = c["grad_float32"];
    for (std::size_t v = 0; v < model.num_nodes(); ++v) {
      auto* cell = model.cell(v).as<ReductionCell<float>>();
      REQUIRE(cell != nullptr);
      const std::string p = "_nodes." + std::to_string(v) + ".";
      std::vector<Eigen::Index> dims;
      CHECK(test::max_rel_diff(cell->conv_reduce.weight_grad(), test::flattened<float>(g[p + "conv_reduce.weight"], dims)) < 1e-4);
      CHECK(test::max_rel_diff(Eigen::MatrixXf(cell->conv_reduce.bias_grad()), Eigen::MatrixXf(test::vector<float>(g[p + "conv_reduce.bias"]))) <
            1e-4);
      CHECK(test::max_rel_diff(Eigen::MatrixXf(cell->batch_norm.weight_grad()), Eigen::MatrixXf(test::vector<float>(g[p + "batch_norm.weight"]))) <
            1e-4);
      CHECK(test::max_rel_diff(Eigen::MatrixXf(cell->batch_norm.bias_grad()), Eigen::MatrixXf(test::vector<float>(g[p + "batch_norm.bias"]))) <
            1e-4);
    }
    std::vector<Eigen::Index> dims;
    CHECK(test::max_rel_diff(model.last_convolution().weight_grad(), test::flattened<float>(g["_last_convolution.weight"], dims)) < 1e-4);
    CHECK(test::max_rel_diff(model.last_fc().weight_grad(), test::matrix<float>(g["_last_fc.weight"])) < 1e-4);
    CHECK(test::max_rel_diff(Eigen::MatrixXf(model.last_batch_norm().weight_grad()),
                             Eigen::MatrixXf(test::vector<float>(g["_last_batch_norm.weight"]))) < 1e-4);
    // Running statistics after the training-mode forward.
    const auto after = model.state_dict();
    for (auto it = c["state_after_train_forward"].begin(); it != c["state_after_train_forward"].end(); ++it) {
      if (it.value().is_number()) CHECK(after.counts.at(it.key()) == it.value().get<std::int64_t>());
      else CHECK(test::max_rel_diff(Eigen::MatrixXf(after.vectors.at(it.key())), Eigen::MatrixXf(test::vector<float>(it.value()))) < 1e-5);
    }
    // Evaluation mode: predict, and forward with training off.
    Eigen::MatrixXf eval;
    model.predict(x, eval);
    CHECK(test::max_rel_diff(eval, test::matrix<float>(c["eval_output_float32"]).transpose()) < 1e-5);
    model.set_training(false);
    CHECK(test::max_rel_diff(Eigen::MatrixXf(model.forward(x)), eval) < 1e-6);
  }
}

TEST_CASE("DeepCellDAN: finite-difference gradients through the graph, with width 2 and keep-size cells", "[deep_cell_dan][gradient]") {
  CellGraph g;
  g.num_nodes = 5;
  g.edges = {{0, 2}, {1, 2}, {0, 3}, {2, 4}, {3, 4}, {1, 4}};
  deepstruct::DeepCellDANOptions o;
  o.width = 2;
  o.last_channels = 4;
  o.seed = 3;
  DeepCellDAN<double> model(3, {2, 5, 5}, g, deepstruct::keep_size_cells<double>(), o);
  CHECK(model.cell_info(4).in_channels == 6);
  CHECK(model.layer(4) == 2);
  Eigen::MatrixXd x = Eigen::MatrixXd::Random(50, 3);
  const Eigen::MatrixXd gl = Eigen::MatrixXd::Random(3, 3);
  auto loss = [&]() {
    auto copy = model;
    return (copy.forward(x).array() * gl.array()).sum();
  };
  model.zero_grad();
  (void)model.forward(x);
  Eigen::MatrixXd gx;
  model.backward(x, gl, &gx);
  for (Eigen::Index i = 0; i < x.size(); i += 11) {
    const double saved = x(i);
    x(i) = saved + 1e-6;
    const double up = loss();
    x(i) = saved - 1e-6;
    const double down = loss();
    x(i) = saved;
    CHECK(gx(i) == Approx((up - down) / 2e-6).epsilon(1e-5).margin(1e-7));
  }
  // A weight of node 2's convolution.
  auto* cell = model.cell(2).as<deepstruct::KeepSizeCell<double>>();
  REQUIRE(cell != nullptr);
  const double analytic = cell->conv.weight_grad()(1, 5);
  Eigen::MatrixXd w = cell->conv.weight();
  const double saved = w(1, 5);
  auto at = [&](double value) {
    auto copy = model;
    Eigen::MatrixXd wc = w;
    wc(1, 5) = value;
    copy.cell(2).as<deepstruct::KeepSizeCell<double>>()->conv.set_weight(wc);
    return (copy.forward(x).array() * gl.array()).sum();
  };
  CHECK(analytic == Approx((at(saved + 1e-6) - at(saved - 1e-6)) / 2e-6).epsilon(1e-5).margin(1e-7));
}

TEST_CASE("DeepCellDAN: graph errors, shapes, backward before forward", "[deep_cell_dan]") {
  CellGraph cyclic{3, {{0, 1}, {1, 2}, {2, 1}}};
  CHECK_THROWS_AS(DeepCellDAN<float>(10, {1, 8, 8}, cyclic, deepstruct::reduction_cells<float>()), deepstruct::value_error);
  CellGraph loop{2, {{0, 0}}};
  CHECK_THROWS_AS(DeepCellDAN<float>(10, {1, 8, 8}, loop, deepstruct::reduction_cells<float>()), deepstruct::value_error);
  CellGraph twice{2, {{0, 1}, {0, 1}}};
  CHECK_THROWS_AS(DeepCellDAN<float>(10, {1, 8, 8}, twice, deepstruct::reduction_cells<float>()), deepstruct::value_error);
  CellGraph out_of_range{2, {{0, 5}}};
  CHECK_THROWS_AS(DeepCellDAN<float>(10, {1, 8, 8}, out_of_range, deepstruct::reduction_cells<float>()), deepstruct::value_error);
  CellGraph chain{3, {{0, 1}, {1, 2}}};
  // A cell that emits the wrong channel count is named.
  auto wide = [](const deepstruct::CellInfo& info, deepstruct::Generator& gen) {
    return ReductionCell<float>(info.in_channels, info.width + 1, gen);
  };
  CHECK_THROWS_AS(DeepCellDAN<float>(10, {1, 8, 8}, chain, wide), deepstruct::shape_error);
  DeepCellDAN<float> model(10, {1, 8, 8}, chain, deepstruct::reduction_cells<float>());
  CHECK(model.node_output_shapes()[2] == ImageShape{1, 1, 1});
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(64, 2), g = Eigen::MatrixXf::Random(10, 2);
  CHECK_THROWS_AS(model.backward(x, g), deepstruct::state_error);
  Eigen::MatrixXf wrong = Eigen::MatrixXf::Random(63, 2);
  CHECK_THROWS_AS(model.forward(wrong), deepstruct::shape_error);
  CHECK_THROWS_AS(model.set_input_shape({3, 8, 8}), deepstruct::shape_error);
  CHECK_THROWS_AS(model.cell(3), deepstruct::index_error);
  model.set_input_shape({1, 16, 16});
  CHECK(model.node_output_shapes()[2] == ImageShape{1, 2, 2});
}

TEST_CASE("DeepCellDAN: a grad_input sharing memory with x or grad_logits is a shape_error, and no gradient is added",
          "[deep_cell_dan]") {
  // backward(x, g, &x) zeroed x before the input cells read it for their weight gradients: the
  // first cell's convolution got a silently wrong gradient.
  CellGraph g{3, {{0, 1}, {0, 2}, {1, 2}}};
  DeepCellDAN<double> model(3, {1, 6, 6}, g, deepstruct::reduction_cells<double>());
  Eigen::MatrixXd x = Eigen::MatrixXd::Random(36, 2), gl = Eigen::MatrixXd::Random(3, 2);
  const Eigen::MatrixXd x0 = x;
  (void)model.forward(x);
  CHECK_THROWS_AS(model.backward(x, gl, &x), deepstruct::shape_error);
  CHECK(x == x0);
  CHECK_THROWS_AS(model.backward(x, gl, &gl), deepstruct::shape_error);
  auto& conv = model.cell(0).as<ReductionCell<double>>()->conv_reduce;
  CHECK(conv.weight_grad().isZero(0));
  // The same call into a matrix of its own works.
  Eigen::MatrixXd gx;
  model.backward(x, gl, &gx);
  CHECK(gx.rows() == 36);
  CHECK(!conv.weight_grad().isZero(0));
}

TEST_CASE("DeepCellDAN: backward with another input than the last forward's is a state_error, and no gradient is added",
          "[deep_cell_dan]") {
  // The input cells' weight gradients read x in backward. Another batch of the same shape gave a
  // gradient of neither batch without a word (MaskedDeepDAN already refused it).
  CellGraph g{3, {{0, 1}, {0, 2}, {1, 2}}};
  DeepCellDAN<double> model(3, {1, 6, 6}, g, deepstruct::reduction_cells<double>());
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(36, 4), gl = Eigen::MatrixXd::Random(3, 4);
  Eigen::MatrixXd other = x;
  other(35, 3) += 0.5;  // the last entry: one of the 16 probed
  (void)model.forward(x);
  CHECK_THROWS_WITH(model.backward(other, gl), test::contains("its values differ"));
  CHECK_THROWS_AS(model.backward(other, gl), deepstruct::state_error);
  auto& conv = model.cell(0).as<ReductionCell<double>>()->conv_reduce;
  CHECK(conv.weight_grad().isZero(0));
  // The input of the forward, as a copy, is accepted.
  const Eigen::MatrixXd copy = x;
  model.backward(copy, gl);
  CHECK(!conv.weight_grad().isZero(0));
}

TEST_CASE("DeepCellDAN: a new input size or a forward that throws leaves no forward for backward", "[deep_cell_dan]") {
  CellGraph chain{3, {{0, 1}, {1, 2}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 2;
  DeepCellDAN<double> model(4, {1, 8, 8}, chain, deepstruct::keep_size_cells<double>(), o);
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(64, 3), gl = Eigen::MatrixXd::Random(4, 3);
  auto gradients_are_zero = [](DeepCellDAN<double>& m) {
    bool zero = true;
    m.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) {
      zero = zero && Eigen::Map<const Eigen::VectorXd>(p.grad, p.size).isZero(0.0);
    });
    return zero;
  };
  // 8x8 and 4x16 have the same 64 rows: backward would take the old forward's activations with
  // the new geometry, without an error.
  (void)model.forward(x);
  model.set_input_shape({1, 4, 16});
  model.zero_grad();
  CHECK_THROWS_AS(model.backward(x, gl), deepstruct::state_error);
  CHECK(gradients_are_zero(model));
  (void)model.forward(x);
  model.set_input_shape({1, 4, 16});  // the same size: the forward stands
  model.backward(x, gl);
  CHECK_FALSE(gradients_are_zero(model));

  // The second reduction cell's batch norm refuses a single image of 4x4 (one value per channel)
  // after the first cell has run: the forward of four images before it no longer stands.
  DeepCellDAN<double> reduce(4, {1, 4, 4}, CellGraph{2, {{0, 1}}}, deepstruct::reduction_cells<double>(), o);
  const Eigen::MatrixXd x4 = Eigen::MatrixXd::Random(16, 4), g4 = Eigen::MatrixXd::Random(4, 4);
  (void)reduce.forward(x4);
  CHECK_THROWS_AS(reduce.forward(Eigen::MatrixXd::Random(16, 1)), deepstruct::value_error);
  reduce.zero_grad();
  CHECK_THROWS_AS(reduce.backward(x4, g4), deepstruct::state_error);
  CHECK(gradients_are_zero(reduce));
}

TEST_CASE("Cells predict in place as into a matrix of their own", "[deep_cell_dan]") {
  deepstruct::Generator gen(7);
  ReductionCell<double> reduction(2, 3, gen);
  deepstruct::KeepSizeCell<double> keep(2, 2, gen);
  const ImageShape in{2, 8, 8};
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(in.size(), 4);
  Eigen::MatrixXd expected, m = x;
  reduction.predict(x, in, expected);
  reduction.predict(m, in, m);  // the output is smaller: the convolution must not free its input
  CHECK(m == expected);
  m = x;
  keep.predict(x, in, expected);
  keep.predict(m, in, m);
  CHECK(m == expected);
}

TEST_CASE("DeepCellDAN: buffers kept from step to step change no result", "[deep_cell_dan]") {
  // Nodes whose inputs differ in size (1, 2 and 3 predecessors), keep-size and reduction cells.
  CellGraph g{6, {{0, 2}, {1, 2}, {1, 3}, {2, 4}, {3, 4}, {0, 4}, {2, 5}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 3;
  o.last_channels = 5;
  o.seed = 2;
  for (const bool reduction : {false, true}) {
    CAPTURE(reduction);
    DeepCellDAN<double> model = reduction ? DeepCellDAN<double>(4, {2, 9, 9}, g, deepstruct::reduction_cells<double>(), o)
                                          : DeepCellDAN<double>(4, {2, 9, 9}, g, deepstruct::keep_size_cells<double>(), o);
    const DeepCellDAN<double> fresh = model;
    const Eigen::MatrixXd x = Eigen::MatrixXd::Random(162, 5), small = Eigen::MatrixXd::Random(162, 2);
    const Eigen::MatrixXd gl = Eigen::MatrixXd::Random(4, 5);
    auto gradients = [&](DeepCellDAN<double>& m, Eigen::MatrixXd* gx) {
      m.zero_grad();
      (void)m.forward(x);
      m.backward(x, gl, gx);
      std::vector<Eigen::VectorXd> grads;
      m.for_each_parameter([&](const deepstruct::ParameterRef<double>& p) { grads.push_back(Eigen::Map<const Eigen::VectorXd>(p.grad, p.size)); });
      return grads;
    };
    // The same step twice on one model, once on a copy that never ran: the same bits (a buffer
    // holding the last step's values must not leak into this one's).
    Eigen::MatrixXd gx1, gx2, gx3;
    const auto first = gradients(model, &gx1);
    const auto second = gradients(model, &gx2);
    auto copy = fresh;
    const auto third = gradients(copy, &gx3);
    REQUIRE(first.size() == second.size());
    for (std::size_t k = 0; k < first.size(); ++k) {
      CHECK(first[k] == second[k]);
      CHECK(first[k] == third[k]);
    }
    CHECK(gx1 == gx2);
    CHECK(gx1 == gx3);
    // predict: the same bits on every call, between calls of other batch sizes, and as forward in
    // evaluation mode; a predict between forward and backward changes nothing backward computes.
    const Eigen::MatrixXd p1 = model.predict(x);
    const Eigen::MatrixXd s1 = model.predict(small);
    CHECK(model.predict(x) == p1);
    CHECK(model.predict(small) == s1);
    auto eval = model;  // (its running statistics, which the training forwards above moved)
    eval.set_training(false);
    CHECK(eval.forward(x).isApprox(p1, 1e-12));
    CHECK(eval.forward(small).isApprox(s1, 1e-12));
    model.zero_grad();
    (void)model.forward(x);
    (void)model.predict(small);
    Eigen::MatrixXd gx4;
    model.backward(x, gl, &gx4);
    CHECK(gx4 == gx1);
  }
}

#if defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
TEST_CASE("DeepCellDAN: a training step and predict after the first touch no new memory (minor page faults)", "[deep_cell_dan]") {
  // Before their buffers were kept, each step freed and allocated again megabytes of
  // gradients (1,600 page faults per step of bench_cell_dan's model at batch 32), and each
  // predict every node's images (12,000 at batch 64 here).
  deepstruct::Generator gen(4);
  CellGraph g{8, {{0, 2}, {1, 2}, {1, 3}, {2, 4}, {3, 4}, {0, 5}, {4, 5}, {2, 6}, {5, 7}, {6, 7}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 8;
  o.seed = 1;
  DeepCellDAN<float> model(10, {1, 28, 28}, g, deepstruct::keep_size_cells<float>(), o);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(784, 64);
  deepstruct::Labels y(64);
  for (Eigen::Index b = 0; b < 64; ++b) y[b] = static_cast<int>(b % 10);
  deepstruct::Adam<float> adam;
  Eigen::MatrixXf grad, logits;
  auto step = [&] {
    model.zero_grad();
    (void)deepstruct::cross_entropy(model.forward(x), y, &grad);
    model.backward(x, grad);
    adam.step(model);
  };
  auto faults = [] {
    rusage r{};
    getrusage(RUSAGE_SELF, &r);
    return static_cast<long>(r.ru_minflt);
  };
  for (int i = 0; i < 2; ++i) {
    step();
    model.predict(x, logits);
  }
  // One batch of one node's images is 784 * 8 * 4 bytes * 64 = 400 KiB, 100 pages; allow a few
  // pages of whatever else (the stack, the allocator's own bookkeeping).
  long before = faults();
  for (int i = 0; i < 3; ++i) step();
  const long step_faults = faults() - before;
  before = faults();
  for (int i = 0; i < 3; ++i) model.predict(x, logits);
  const long predict_faults = faults() - before;
  CHECK(step_faults < 30);
  CHECK(predict_faults < 30);
}
#endif

TEST_CASE("DeepCellDAN: trains, prunes its convolutions, files both ways", "[deep_cell_dan][model_io]") {
  CellGraph g{6, {{0, 2}, {1, 2}, {1, 3}, {2, 4}, {3, 4}, {2, 5}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 2;
  o.last_channels = 8;
  o.seed = 1;
  DeepCellDAN<float> model(2, {1, 8, 8}, g, deepstruct::keep_size_cells<float>(), o);
  // Two classes: bright top half or bright bottom half.
  deepstruct::Generator gen(4);
  Eigen::MatrixXf x(64, 64);
  deepstruct::Labels y(64);
  for (Eigen::Index b = 0; b < 64; ++b) {
    y[b] = static_cast<int>(b % 2);
    for (Eigen::Index p = 0; p < 64; ++p)
      x(p, b) = static_cast<float>(deepstruct::random::normal(gen)) + ((p < 32) == (y[b] == 1) ? 1.0f : 0.0f);
  }
  deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
  deepstruct::FitOptions fit;
  fit.epochs = 15;
  fit.batch_size = 16;
  fit.quiet = true;
  const auto history = deepstruct::fit(model, adam, x, y, fit);
  CHECK(history.back().train_loss < history.front().train_loss);
  CHECK(deepstruct::evaluate(model, x, y).accuracy > 0.9);
  // Global magnitude pruning of the convolutions only (the classifier stays dense).
  deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.7), deepstruct::layers_of_type({"MaskedConv2d"}));
  CHECK(model.last_fc().density() == 1.0);
  for (std::size_t v = 0; v < model.num_nodes(); ++v) CHECK(model.cell_weights(v).first <= model.cell_weights(v).second);
  const auto before = model.predict(x);
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/cell_dan.npz";
  deepstruct::save_npz(model, path);
  const auto archive = deepstruct::NpzArchive::load(path);
  CHECK(archive.at("_nodes.0.conv.weight").shape == std::vector<std::size_t>{2, 1, 3, 3});
  CHECK(archive.at("_nodes.4.batch_norm.num_batches_tracked").dtype == deepstruct::NpyDtype::i8);
  CHECK(!archive.contains("_last_fc._mask"));
  DeepCellDAN<float> other(2, {1, 8, 8}, g, deepstruct::keep_size_cells<float>(), o);
  deepstruct::load_npz(other, path);
  CHECK(other.predict(x) == before);
  CHECK(other.num_active_weights() == model.num_active_weights());
}

TEST_CASE("DeepCellDAN: deepstruct loads our file strictly and computes our evaluation output (where deepstruct is at hand)",
          "[deep_cell_dan][parity]") {
  const std::string deepstruct_py = std::string(DEEPSTRUCT_SOURCE_DIR) + "/../shared/deepstruct-py";
  if (!std::ifstream(deepstruct_py + "/deepstruct/sparse.py")) {
    WARN("skipped: no deepstruct source at " << deepstruct_py);
    return;
  }
  if (!test::python_with("torch, networkx, deprecated")) return;
  CellGraph g{5, {{0, 2}, {1, 2}, {0, 3}, {2, 4}, {3, 4}}};
  DeepCellDAN<float> model(10, {1, 12, 12}, g, deepstruct::reduction_cells<float>());
  // Move the running statistics off their defaults, then save.
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(144, 3);
  (void)model.forward(x);
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/cell_dan_for_deepstruct.npz";
  deepstruct::save_npz(model, path);
  Eigen::MatrixXf ours;
  model.predict(x, ours);
  const std::string script = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/cell_dan_import.py";
  std::ofstream(script) << "import sys, json, numpy as np, torch, networkx as nx\n"
                           "import deepstruct.sparse as dss, deepstruct.graph as dsg\n"
                           "class Cell(torch.nn.Module):\n"
                           "    def __init__(self, cin, cout):\n"
                           "        super().__init__()\n"
                           "        self.conv_reduce = torch.nn.Conv2d(cin, cout, kernel_size=5, padding=2, stride=2)\n"
                           "        self.act = torch.nn.ReLU(); self.batch_norm = torch.nn.BatchNorm2d(cout)\n"
                           "    def forward(self, x): return self.batch_norm(self.act(self.conv_reduce(x)))\n"
                           "def make(is_input, is_output, in_degree, out_degree, layer, input_channel_size):\n"
                           "    return Cell(input_channel_size if is_input else in_degree, 1)\n"
                           "s = dsg.CachedLayeredGraph(); s.add_nodes_from(range(5)); s.add_edges_from([(0, 2), (1, 2), (0, 3), (2, 4), (3, 4)])\n"
                           "m = dss.DeepCellDAN(10, 1, make, s)\n"
                           "a = np.load(sys.argv[1]); own = m.state_dict()\n"
                           "m.load_state_dict({k: torch.from_numpy(a[k]).to(own[k].dtype) for k in a.files}, strict=True)\n"
                           "m.eval()\n"
                           "x = torch.tensor(json.loads(open(sys.argv[2]).read()), dtype=torch.float32)\n"
                           "json.dump(m(x).detach().numpy().tolist(), open(sys.argv[3], 'w'))\n";
  nlohmann::json xs = nlohmann::json::array();  // [batch][1][12][12]
  for (Eigen::Index b = 0; b < 3; ++b) {
    nlohmann::json image = nlohmann::json::array(), channel = nlohmann::json::array();
    for (Eigen::Index h = 0; h < 12; ++h) {
      nlohmann::json row = nlohmann::json::array();
      for (Eigen::Index w = 0; w < 12; ++w) row.push_back(x(h * 12 + w, b));
      channel.push_back(row);
    }
    image.push_back(channel);
    xs.push_back(image);
  }
  const std::string input = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/cell_dan_x.json", out = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/cell_dan_out.json";
  std::ofstream(input) << xs.dump();
  const std::string cmd = "PYTHONPATH=" + deepstruct_py + " " + std::string(DEEPSTRUCT_PYTHON) + " " + script + " " + path + " " + input + " " + out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  const Eigen::MatrixXf theirs = test::matrix<float>(nlohmann::json::parse(in)).transpose();
  CHECK(test::max_rel_diff(theirs, ours) <= 1e-5);
}

TEST_CASE("DeepCellDAN: sparse training (ERK over 4-d kernels, RigL) runs on its convolutions", "[deep_cell_dan][sparse_training]") {
  CellGraph g{4, {{0, 1}, {0, 2}, {1, 3}, {2, 3}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 3;
  o.last_channels = 6;
  DeepCellDAN<float> model(2, {1, 8, 8}, g, deepstruct::keep_size_cells<float>(), o);
  const auto convs = deepstruct::layers_of_type({"MaskedConv2d"});
  const auto d = deepstruct::sparse_init(model, 0.3, {}, 2, convs);
  std::vector<Eigen::Index> nnz;
  for (const auto& w : deepstruct::masked_weights(model, convs)) nnz.push_back(w.layer->nnz(w.k));
  CHECK(nnz.size() == d.size());
  deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
  deepstruct::MaskUpdateOptions u;
  u.update_every = 2;
  u.end = 8;
  deepstruct::RigL<deepstruct::Adam<float>, DeepCellDAN<float>, deepstruct::LayersOfType> rigl(model, adam, u, convs);
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(64, 16);
  deepstruct::Labels y(16);
  for (Eigen::Index i = 0; i < 16; ++i) y[i] = static_cast<int>(i % 2);
  for (int s = 0; s < 8; ++s) deepstruct::train_step(model, rigl, x, y);
  CHECK(rigl.history().size() == 3);  // steps 2, 4, 6
  std::size_t i = 0;
  Eigen::Index grown = 0;
  for (const auto& w : deepstruct::masked_weights(model, convs)) CHECK(w.layer->nnz(w.k) == nnz[i++]);
  for (const auto& r : rigl.history())
    for (const auto& l : r.layers) grown += l.grown;
  CHECK(grown > 0);
}
