// SPDX-License-Identifier: MIT
// Whole models on one thread and on two: a DeepCellDAN (convolutions with batch norm, dense and
// sparse) and a MaskedDeepRNN (LSTM, a sparse hidden-to-hidden weight) train to the same bits
// whatever deepstruct::set_num_threads says. Each parallel piece of work - the chunks of a dense
// product, the chunks of images of a convolution, the groups of batch tiles of a sparse backward -
// is cut by the work alone up to 2 threads and its sums are added in a fixed order
// (docs/training.md, "Threads"); these tests hold the composition to that, so a part of a model
// that starts using threads on its own terms shows up here. Built with OpenMP (tests/CMakeLists.txt);
// with fewer than 2 threads there is nothing to compare and the cases say so.
#include <deepstruct/deep_cell_dan.hpp>
#include <deepstruct/loss.hpp>
#include <deepstruct/masked_deep_rnn.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/random.hpp>
#include <deepstruct/threads.hpp>

#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using Matrix = Eigen::MatrixXf;

/// Three Adam steps of `model` on (x, y) with `threads` threads: the losses and the state_dict.
template <typename Model>
deepstruct::StateDict<float> train_three_steps(Model model, const Matrix& x, const deepstruct::Labels& y, int threads,
                                               std::vector<double>& losses) {
  deepstruct::set_num_threads(threads);
  deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
  Matrix grad;
  for (int step = 0; step < 3; ++step) {
    model.zero_grad();
    losses.push_back(deepstruct::cross_entropy(model.forward(x), y, &grad));
    model.backward(x, grad);
    adam.step(model);
  }
  return model.state_dict();
}

/// Every entry of both state_dicts, bit for bit, key by key.
void check_same_bits(const deepstruct::StateDict<float>& one, const deepstruct::StateDict<float>& two) {
  REQUIRE(one.matrices.size() == two.matrices.size());
  REQUIRE(one.vectors.size() == two.vectors.size());
  for (const auto& [key, m] : one.matrices) {
    INFO(key);
    REQUIRE(two.matrices.count(key) == 1);
    CHECK(two.matrices.at(key) == m);
  }
  for (const auto& [key, v] : one.vectors) {
    INFO(key);
    REQUIRE(two.vectors.count(key) == 1);
    CHECK(two.vectors.at(key) == v);
  }
}

deepstruct::Labels labels(Eigen::Index n, int classes) {
  deepstruct::Labels y(n);
  for (Eigen::Index j = 0; j < n; ++j) y[j] = static_cast<int>(j % classes);
  return y;
}

}  // namespace

TEST_CASE("threads: a DeepCellDAN (dense and sparse convolutions, batch norm) trains to the same bits on one thread and on two",
          "[threads][deep_cell_dan]") {
  if (!test::two_threads_available("an OpenMP build on 2 or more cores")) return;
  const test::RestoreThreads restore;
  // Width 16 on 1 x 28 x 28 images at batch 32: a 3 x 3 convolution of a keep-size cell is
  // 2 * 16 * 16 * 9 * 784 * 32 = 116 MFLOP, above twice the work threshold, so its chunks of images
  // use both threads.
  deepstruct::CellGraph g{5, {{0, 1}, {0, 2}, {1, 3}, {2, 3}, {1, 4}, {3, 4}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 16;
  o.last_channels = 16;
  o.seed = 5;
  deepstruct::DeepCellDAN<float> model(10, {1, 28, 28}, g, deepstruct::keep_size_cells<float>(), o);
  REQUIRE(2.0 * 16 * 16 * 9 * 784 * 32 >= 2.0 * deepstruct::detail::parallel_work_threshold);
  // Half the convolutions pruned to 20% and run on the sparse kernels.
  deepstruct::Generator mask_gen(6);
  int sparse = 0;
  for (auto* layer : model.maskable_layers()) {
    if (std::string(layer->type_name()) != "MaskedConv2d" || (sparse++ % 2) != 0) continue;
    auto mask = layer->masked(0).mask;
    for (Eigen::Index i = 0; i < mask.size(); ++i) mask.data()[i] = deepstruct::random::bernoulli(mask_gen, 0.2);
    layer->set_mask(0, mask);
    layer->set_execution(deepstruct::Execution::sparse);
  }
  REQUIRE(sparse >= 2);
  deepstruct::Generator gen(7);
  const Matrix x = test::random_matrix<float>(784, 32, gen);
  const deepstruct::Labels y = labels(32, 10);
  std::vector<double> loss1, loss2;
  const auto one = train_three_steps(model, x, y, 1, loss1);
  const auto two = train_three_steps(model, x, y, 2, loss2);
  CHECK(loss2 == loss1);
  CHECK(loss1.back() != loss1.front());  // the steps did train
  check_same_bits(one, two);
}

TEST_CASE("threads: an LSTM with a sparse hidden-to-hidden weight trains to the same bits on one thread and on two",
          "[threads][recurrent]") {
  if (!test::two_threads_available("an OpenMP build on 2 or more cores")) return;
  const test::RestoreThreads restore;
  // 32 features, 384 hidden units, batch 128: one step's hidden-to-hidden product is
  // 2 * 4 * 384 * 384 * 128 = 151 MFLOP, above twice the work threshold; the input-to-hidden
  // product runs once for the whole sequence (2 * 4 * 384 * 32 * 128 * 6 = 75 MFLOP).
  const Eigen::Index features = 32, hidden = 384, steps = 6, batch = 128;
  REQUIRE(2.0 * 4 * hidden * hidden * batch >= 2.0 * deepstruct::detail::parallel_work_threshold);
  deepstruct::RNNOptions options;
  options.kind = deepstruct::RecurrentKind::lstm;
  options.head = 4;
  options.seed = 8;
  deepstruct::MaskedDeepRNN<float> dense_model(features, {hidden}, options);
  deepstruct::MaskedDeepRNN<float> sparse_model = dense_model;
  // The hidden-to-hidden weight of the sparse model at 10%, on the sparse kernels.
  deepstruct::Generator mask_gen(9);
  auto& layer = sparse_model.layer(0);
  const std::size_t hh = std::string(layer.weight_name(1)) == "_weight_hh" ? 1 : 0;
  REQUIRE(std::string(layer.weight_name(hh)) == "_weight_hh");
  auto mask = layer.masked(hh).mask;
  for (Eigen::Index i = 0; i < mask.size(); ++i) mask.data()[i] = deepstruct::random::bernoulli(mask_gen, 0.1);
  layer.set_mask(hh, mask);
  layer.set_execution(deepstruct::Execution::sparse);
  deepstruct::Generator gen(10);
  const Matrix x = test::random_matrix<float>(steps * features, batch, gen);
  const deepstruct::Labels y = labels(batch, 4);
  for (auto* model : {&dense_model, &sparse_model}) {
    INFO((model == &dense_model ? "dense" : "sparse hidden-to-hidden weight"));
    std::vector<double> loss1, loss2;
    const auto one = train_three_steps(*model, x, y, 1, loss1);
    const auto two = train_three_steps(*model, x, y, 2, loss2);
    CHECK(loss2 == loss1);
    CHECK(loss1.back() != loss1.front());
    check_same_bits(one, two);
  }
}
