// Tests of <deepstruct/train.hpp>: the training loop, evaluation, seeds, progress output.
#include <deepstruct/masked_deep_ffn.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/train.hpp>

#include <Eigen/QR>
#include <cmath>
#include <limits>
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
  CHECK_THROWS_AS(deepstruct::fit(model, sgd, x, y, options, &x, static_cast<const deepstruct::Labels*>(nullptr)), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::evaluate(model, x, y, 0), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::evaluate(model, Eigen::MatrixXf::Zero(4, 10), y), deepstruct::shape_error);
  // Test data that evaluate() would refuse is refused before any training (it was after an epoch).
  const Eigen::MatrixXf w0 = model.layer(0).weight();
  const Eigen::MatrixXf empty(5, 0), narrow = Eigen::MatrixXf::Zero(4, 10);
  const deepstruct::Labels no_labels(0);
  options.quiet = true;
  CHECK_THROWS_WITH(deepstruct::fit(model, sgd, x, y, options, &empty, &no_labels), test::contains("at least one test sample"));
  CHECK_THROWS_WITH(deepstruct::fit(model, sgd, x, y, options, &narrow, &y), test::contains("test samples with the training samples' 5"));
  CHECK(model.layer(0).weight() == w0);
}

TEST_CASE("train: a batch_size beyond the number of samples is one batch, also near the index's limit", "[train]") {
  Eigen::MatrixXf x;
  deepstruct::Labels y;
  blobs(10, 3, x, y);
  for (const Eigen::Index batch_size : {Eigen::Index{64}, std::numeric_limits<Eigen::Index>::max()}) {
    deepstruct::MaskedDeepFFN<float> model(5, 3, {4});
    deepstruct::SGD<float> sgd;
    deepstruct::FitOptions options;
    options.quiet = true;
    options.epochs = 2;
    options.batch_size = batch_size;
    long steps = 0;
    options.on_step = [&](const deepstruct::StepInfo& info) {
      ++steps;
      CHECK(info.batch_size == 10);
    };
    const auto history = deepstruct::fit(model, sgd, x, y, options);
    CHECK(steps == 2);  // (n + batch_size - 1) overflowed: no step at all
    CHECK(history.back().train_loss > 0.0);
  }
}

TEST_CASE("train: regression with MSE - deepstruct's function-approximation example", "[train][regression]") {
  // deepstruct's README: f(x, y) = 20 + x - 1.8 (y - 5) + 3 sin(x + 2 y) y + (x / 4)^4 + (y / 4)^4,
  // 500 uniform samples of [-2, 2]^2 (FuncDataset), MaskedDeepFFN(2, 1, [50, 20]).
  auto f = [](double a, double b) {
    return 20 + a - 1.8 * (b - 5) + 3 * std::sin(a + 2 * b) * b + std::pow(a / 4, 4) + std::pow(b / 4, 4);
  };
  auto sample = [&](Eigen::Index n, std::uint64_t seed, Eigen::MatrixXf& x, Eigen::MatrixXf& y) {
    deepstruct::Generator gen(seed);
    x.resize(2, n);
    y.resize(1, n);
    for (Eigen::Index i = 0; i < n; ++i) {
      x(0, i) = static_cast<float>(deepstruct::random::uniform(gen, -2, 2));
      x(1, i) = static_cast<float>(deepstruct::random::uniform(gen, -2, 2));
      y(0, i) = static_cast<float>(f(x(0, i), x(1, i)));
    }
  };
  Eigen::MatrixXf x, y, xt, yt;
  sample(500, 1, x, y);
  sample(200, 2, xt, yt);
  deepstruct::MaskedDeepFFN<float> model(2, 1, {50, 20});
  deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
  const deepstruct::Evaluation before = deepstruct::evaluate(model, xt, yt);
  CHECK_FALSE(before.has_accuracy);
  deepstruct::FitOptions options;
  options.epochs = 150;
  options.batch_size = 100;  // deepstruct's example
  options.quiet = true;
  long steps = 0;
  options.on_step = [&](const deepstruct::StepInfo& s) {
    CHECK(s.step == ++steps);
    CHECK(s.batch_size == 100);
    CHECK(s.loss >= 0.0);
  };
  const auto history = deepstruct::fit(model, adam, x, y, options, &xt, &yt);
  CHECK(steps == 150 * 5);
  CHECK_FALSE(history.back().has_accuracy);
  // Better than the best linear fit by far: the network learned the nonlinear part (sin, ^4).
  const double mean = yt.mean(), var = (yt.array() - static_cast<float>(mean)).square().mean();
  Eigen::MatrixXd design(xt.cols(), 3);
  design << xt.transpose().cast<double>(), Eigen::VectorXd::Ones(xt.cols());
  const Eigen::VectorXd coef = design.colPivHouseholderQr().solve(yt.transpose().cast<double>());
  const double linear_mse = (design * coef - yt.transpose().cast<double>()).squaredNorm() / double(yt.cols());
  INFO("variance " << var << ", linear fit " << linear_mse << ", network " << history.back().test_loss);
  CHECK(before.loss > var);
  CHECK(linear_mse > 0.3 * var);  // a linear model leaves much unexplained...
  CHECK(history.back().test_loss < 0.35 * linear_mse);  // ...which the network explains
  // The reported loss is MSE over the test set, as mse_loss computes it.
  Eigen::MatrixXf prediction;
  model.predict(xt, prediction);
  CHECK(history.back().test_loss == Approx(deepstruct::mse_loss(prediction, yt)).epsilon(1e-4));
  // A step with an explicit loss object and a matrix target.
  Eigen::Index correct = 7;
  const double loss = deepstruct::train_step(model, adam, x, y, &correct, deepstruct::MSELoss{});
  CHECK(correct == 0);  // no accuracy for regression
  CHECK(loss < var);
  CHECK_THROWS_AS(deepstruct::train_step(model, adam, x, Eigen::MatrixXf(1, 3)), deepstruct::shape_error);
}

TEST_CASE("train: a custom loss object; regression progress lines have no accuracy", "[train]") {
  // Mean absolute error, a loss the library does not ship: any callable (outputs, targets, grad*).
  struct L1Loss {
    double operator()(const Eigen::MatrixXf& p, const Eigen::MatrixXf& t, Eigen::MatrixXf* grad) const {
      if (grad != nullptr) *grad = (p - t).unaryExpr([](float d) { return float((d > 0) - (d < 0)); }) / float(p.size());
      return static_cast<double>((p - t).cwiseAbs().mean());
    }
  };
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(3, 64), y = Eigen::MatrixXf::Zero(2, 64);
  y.row(0) = x.row(0) - x.row(1);
  y.row(1) = 0.5f * x.row(2);
  deepstruct::MaskedDeepFFN<float> model(3, 2, {8});
  deepstruct::SGD<float> sgd(deepstruct::SGDOptions{0.05});
  std::ostringstream log;
  deepstruct::FitOptions options;
  options.epochs = 30;
  options.batch_size = 16;
  options.log = &log;
  const auto history = deepstruct::fit(model, sgd, x, y, options, &x, &y, L1Loss{});
  CHECK(history.back().train_loss < history.front().train_loss);
  CHECK(log.str().find("acc") == std::string::npos);
  CHECK(log.str().find("test loss") != std::string::npos);
}
