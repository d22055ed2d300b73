// Tests of <deepstruct/train.hpp>: the training loop, evaluation, seeds, progress output.
#include <deepstruct/masked_deep_ffn.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/train.hpp>

#include <sstream>

#include "test_support.hpp"

namespace {
// Three Gaussian blobs in 5 dimensions: learnable to high accuracy by a small network.
void blobs(Eigen::Index n, std::uint64_t seed, Eigen::MatrixXf& x, deepstruct::Labels& y) {
  deepstruct::Generator gen(seed);
  x.resize(5, n);
  y.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    y[i] = static_cast<int>(deepstruct::random::uniform_index(gen, 3));
    for (Eigen::Index f = 0; f < 5; ++f)
      x(f, i) = static_cast<float>(deepstruct::random::normal(gen) * 0.5 + (f == y[i] ? 2.0 : 0.0));
  }
}
}  // namespace

TEST_CASE("train: fit learns, is reproducible, and reports per epoch", "[train]") {
  Eigen::MatrixXf x, xt;
  deepstruct::Labels y, yt;
  blobs(600, 1, x, y);
  blobs(300, 2, xt, yt);
  auto run = [&](std::uint64_t seed, std::ostream& log, bool quiet) {
    deepstruct::MaskedDeepFFN<float> model(5, 3, {16});
    deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
    deepstruct::FitOptions options;
    options.epochs = 4;
    options.batch_size = 32;
    options.seed = seed;
    options.log = &log;
    options.quiet = quiet;
    int callbacks = 0;
    options.on_epoch_end = [&](const deepstruct::EpochStats& s) { CHECK(s.epoch == ++callbacks); };
    auto history = deepstruct::fit(model, adam, x, y, options, &xt, &yt);
    CHECK(callbacks == 4);
    return std::make_pair(history, model.layer(0).weight());
  };
  std::ostringstream log;
  const auto [history, weights] = run(7, log, false);
  REQUIRE(history.size() == 4);
  CHECK(history.back().train_loss < history.front().train_loss);
  CHECK(history.back().test_accuracy > 0.9);
  CHECK(history.back().train_seconds > 0.0);
  // One line per epoch (the log is not a terminal), with loss and accuracy.
  const std::string text = log.str();
  CHECK(std::count(text.begin(), text.end(), '\n') == 4);
  CHECK(text.find("epoch 4/4") != std::string::npos);
  CHECK(text.find("test acc") != std::string::npos);
  // Same seed, same training; another seed, other batches.
  std::ostringstream quiet_log;
  const auto again = run(7, quiet_log, true);
  CHECK(quiet_log.str().empty());
  CHECK(again.second == weights);
  CHECK(again.first.back().test_accuracy == history.back().test_accuracy);
  const auto other = run(8, quiet_log, true);
  CHECK(other.second != weights);
}

TEST_CASE("train: evaluate and train_step agree with a direct computation", "[train]") {
  Eigen::MatrixXf x;
  deepstruct::Labels y;
  blobs(250, 3, x, y);
  deepstruct::MaskedDeepFFN<float> model(5, 3, {8});
  const deepstruct::Evaluation e = deepstruct::evaluate(model, x, y, 64);  // 64 does not divide 250
  const Eigen::MatrixXf logits = model.forward(x);
  CHECK(e.loss == Approx(deepstruct::cross_entropy(logits, y)).epsilon(1e-5));
  CHECK(e.accuracy == Approx(double((deepstruct::argmax_columns(logits).array() == y.array()).count()) / 250.0));
  deepstruct::SGD<float> sgd(deepstruct::SGDOptions{0.5});
  const double before = deepstruct::evaluate(model, x, y).loss;
  Eigen::Index correct = -1;
  const double step_loss = deepstruct::train_step(model, sgd, x, y, &correct);
  CHECK(step_loss == Approx(before).epsilon(1e-5));
  CHECK(correct >= 0);
  CHECK(deepstruct::evaluate(model, x, y).loss < before);
}

TEST_CASE("train: bad arguments throw", "[train]") {
  Eigen::MatrixXf x = Eigen::MatrixXf::Zero(5, 10);
  deepstruct::Labels y = deepstruct::Labels::Zero(9);
  deepstruct::MaskedDeepFFN<float> model(5, 3, {4});
  deepstruct::SGD<float> sgd;
  deepstruct::FitOptions options;
  CHECK_THROWS_AS(deepstruct::fit(model, sgd, x, y, options), deepstruct::shape_error);
  y = deepstruct::Labels::Zero(10);
  options.batch_size = 0;
  CHECK_THROWS_AS(deepstruct::fit(model, sgd, x, y, options), deepstruct::value_error);
  options.batch_size = 4;
  CHECK_THROWS_AS(deepstruct::fit(model, sgd, x, y, options, &x, nullptr), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::evaluate(model, x, y, 0), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::evaluate(model, Eigen::MatrixXf::Zero(4, 10), y), deepstruct::shape_error);
}
