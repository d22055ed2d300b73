// SPDX-License-Identifier: MIT
#pragma once

/// \file train.hpp
/// A small, explicit training loop: shuffled mini-batches from a seed, epochs, evaluation and
/// progress output on a stream (a bar on a terminal, one line per epoch otherwise; nothing when
/// quiet). Works with any model that follows the Model contract (forward, backward(x, grad,
/// grad_input*), zero_grad, predict, for_each_parameter: MaskedDeepFFN, MaskedDeepDAN, ...) and
/// any loss: classification with class labels (Labels targets, cross-entropy by default, with
/// accuracies) and regression with target matrices (outputs x samples, mean squared error by
/// default).

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#if __has_include(<unistd.h>)
#include <unistd.h>
#define DEEPSTRUCT_HAS_ISATTY 1
#endif

#include "deepstruct/errors.hpp"
#include "deepstruct/loss.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

struct EpochStats {
  int epoch = 0;                ///< 1-based
  double train_loss = 0.0;      ///< mean of the mini-batch losses (weighted by their sizes)
  double train_accuracy = 0.0;  ///< on the mini-batches, during training (classification only)
  double test_loss = 0.0;       ///< when test data was given, otherwise 0
  double test_accuracy = 0.0;   ///< classification only
  double train_seconds = 0.0;   ///< forward, backward and optimizer steps only
  bool has_accuracy = false;    ///< true for class-label targets
};

/// What fit() tells the per-step callback after every optimizer step.
struct StepInfo {
  int epoch = 0;                ///< 1-based
  long step = 0;                ///< 1-based, counted over all epochs
  Eigen::Index batch_size = 0;  ///< samples in this mini-batch
  double loss = 0.0;            ///< the mini-batch loss before the step
};

struct FitOptions {
  int epochs = 1;
  Eigen::Index batch_size = 128;
  std::uint64_t seed = 0;       ///< the shuffling seed: same seed, same batches
  bool shuffle = true;
  bool quiet = false;           ///< no progress output at all
  std::ostream* log = &std::cerr;
  /// Called after every optimizer step (e.g. a learning-rate schedule, a mask update, logging).
  std::function<void(const StepInfo&)> on_step;
  /// Called after every epoch with its statistics (e.g. to adjust the learning rate).
  std::function<void(const EpochStats&)> on_epoch_end;
};

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;      ///< fraction of samples whose largest logit is the label (classification)
  bool has_accuracy = false;  ///< true for class-label targets
};

namespace detail {

template <typename Target>
struct is_labels : std::is_same<Target, Labels> {};

/// The loss train_step, fit and evaluate use when none is given: cross-entropy for class labels,
/// mean squared error for target matrices.
template <typename Target>
using default_loss_t = std::conditional_t<is_labels<Target>::value, CrossEntropyLoss, MSELoss>;

/// Targets are class labels (Labels) or a matrix of the model's Scalar (outputs x samples).
template <typename Model, typename Target>
constexpr void check_target_type() {
  static_assert(is_labels<Target>::value || std::is_same<Target, typename Model::Matrix>::value,
                "deepstruct training helpers: targets are deepstruct::Labels (class labels) or a matrix of the model's "
                "Scalar, Model::Matrix (outputs x samples, e.g. Eigen::MatrixXf for a float model); convert with .cast<Scalar>()");
}

/// Number of samples of a target: labels, or columns of a target matrix.
inline Eigen::Index num_samples(const Labels& y) { return y.size(); }
template <typename Derived>
Eigen::Index num_samples(const Eigen::MatrixBase<Derived>& y) {
  return y.cols();
}

template <typename Target>
void check_dataset(Eigen::Index columns, const Target& y, const char* where) {
  if (columns != num_samples(y))
    DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected one target per sample (" + std::to_string(columns) +
                                      "), found " + std::to_string(num_samples(y)) +
                                      (is_labels<Target>::value ? " labels" : " target columns"));
}

/// Gathers samples idx[first..first+n) of (x, y) into (batch_x, batch_y).
template <typename Matrix, typename Target>
void gather_batch(const Matrix& x, const Target& y, const std::vector<Eigen::Index>& idx, std::size_t first,
                  Eigen::Index n, Matrix& batch_x, Target& batch_y) {
  batch_x.resize(x.rows(), n);
  if constexpr (is_labels<Target>::value) batch_y.resize(n);
  else batch_y.resize(y.rows(), n);
  for (Eigen::Index j = 0; j < n; ++j) {
    const Eigen::Index src = idx[first + static_cast<std::size_t>(j)];
    batch_x.col(j) = x.col(src);
    if constexpr (is_labels<Target>::value) batch_y[j] = y[src];
    else batch_y.col(j) = y.col(src);
  }
}

/// Samples b0..b0+n of a target.
inline auto target_block(const Labels& y, Eigen::Index b0, Eigen::Index n) { return y.segment(b0, n); }
template <typename Derived>
auto target_block(const Eigen::MatrixBase<Derived>& y, Eigen::Index b0, Eigen::Index n) {
  return y.middleCols(b0, n);
}

inline bool stream_is_terminal(const std::ostream* s) {
#ifdef DEEPSTRUCT_HAS_ISATTY
  if (s == &std::cerr) return ::isatty(2) != 0;
  if (s == &std::cout) return ::isatty(1) != 0;
#else
  (void)s;
#endif
  return false;
}

}  // namespace detail

/// One step on a mini-batch: zero_grad, forward, loss, backward, optimizer step. Returns the
/// loss; for class labels, `correct` (if not null) gets the number of correctly classified
/// samples (for target matrices it is set to 0).
template <typename Model, typename Optimizer, typename Target, typename Loss = detail::default_loss_t<Target>>
double train_step(Model& model, Optimizer& optimizer, const typename Model::Matrix& x, const Target& y,
                  Eigen::Index* correct = nullptr, const Loss& loss = Loss{}) {
  detail::check_target_type<Model, Target>();
  detail::check_dataset(x.cols(), y, "train_step");
  model.zero_grad();
  const auto& logits = model.forward(x);
  typename Model::Matrix grad;
  const double value = loss(logits, y, &grad);
  if (correct != nullptr) {
    if constexpr (detail::is_labels<Target>::value) *correct = (argmax_columns(logits).array() == y.array()).count();
    else *correct = 0;
  }
  model.backward(x, grad);
  optimizer.step(model);
  return value;
}

/// Mean loss (and, for class labels, accuracy) over a dataset (samples as columns), in batches.
template <typename Model, typename Target, typename Loss = detail::default_loss_t<Target>>
Evaluation evaluate(Model& model, const typename Model::Matrix& x, const Target& y, Eigen::Index batch_size = 1000,
                    const Loss& loss = Loss{}) {
  detail::check_target_type<Model, Target>();
  detail::check_dataset(x.cols(), y, "evaluate");
  if (x.cols() == 0) DEEPSTRUCT_THROW(shape_error, "evaluate: expected at least one sample, found 0");
  if (batch_size <= 0) DEEPSTRUCT_THROW(value_error, "evaluate: expected batch_size >= 1, found " + std::to_string(batch_size));
  typename Model::Matrix logits;
  Evaluation result;
  result.has_accuracy = detail::is_labels<Target>::value;
  Eigen::Index correct = 0;
  for (Eigen::Index b0 = 0; b0 < x.cols(); b0 += batch_size) {
    const Eigen::Index n = std::min(batch_size, x.cols() - b0);
    model.predict(x.middleCols(b0, n), logits);
    const auto yb = detail::target_block(y, b0, n);
    result.loss += loss(logits, yb, nullptr) * static_cast<double>(n);
    if constexpr (detail::is_labels<Target>::value) correct += (argmax_columns(logits).array() == yb.array()).count();
  }
  result.loss /= static_cast<double>(x.cols());
  if (result.has_accuracy) result.accuracy = static_cast<double>(correct) / static_cast<double>(x.cols());
  return result;
}

/// Trains for options.epochs epochs of shuffled mini-batches (the last one may be smaller) and
/// evaluates on the test data after every epoch when it is given. Targets are class labels
/// (Labels) or a target matrix (outputs x samples); `loss` defaults to cross-entropy or MSE.
template <typename Model, typename Optimizer, typename Target, typename Loss = detail::default_loss_t<Target>>
std::vector<EpochStats> fit(Model& model, Optimizer& optimizer, const typename Model::Matrix& x_train,
                            const Target& y_train, const FitOptions& options,
                            const typename Model::Matrix* x_test = nullptr, const Target* y_test = nullptr,
                            const Loss& loss = Loss{}) {
  detail::check_target_type<Model, Target>();
  detail::check_dataset(x_train.cols(), y_train, "fit");
  if (x_train.cols() == 0) DEEPSTRUCT_THROW(shape_error, "fit: expected at least one training sample, found 0");
  if (options.batch_size <= 0)
    DEEPSTRUCT_THROW(value_error, "fit: expected batch_size >= 1, found " + std::to_string(options.batch_size));
  if (options.epochs < 0) DEEPSTRUCT_THROW(value_error, "fit: expected epochs >= 0, found " + std::to_string(options.epochs));
  if ((x_test == nullptr) != (y_test == nullptr))
    DEEPSTRUCT_THROW(value_error, "fit: expected both test samples and test targets, or neither");
  if (x_test != nullptr) {  // test data that evaluate() would refuse, refused before any training
    detail::check_dataset(x_test->cols(), *y_test, "fit (test data)");
    if (x_test->cols() == 0) DEEPSTRUCT_THROW(shape_error, "fit: expected at least one test sample, found 0");
    if (x_test->rows() != x_train.rows())
      DEEPSTRUCT_THROW(shape_error, "fit: expected test samples with the training samples' " + std::to_string(x_train.rows()) +
                                        " features (rows), found " + std::to_string(x_test->rows()));
    if constexpr (!detail::is_labels<Target>::value)
      if (y_test->rows() != y_train.rows())
        DEEPSTRUCT_THROW(shape_error, "fit: expected test targets with the training targets' " + std::to_string(y_train.rows()) +
                                          " rows, found " + std::to_string(y_test->rows()));
  }

  constexpr bool classification = detail::is_labels<Target>::value;
  Generator gen(options.seed);
  std::vector<Eigen::Index> idx(static_cast<std::size_t>(x_train.cols()));
  std::iota(idx.begin(), idx.end(), Eigen::Index{0});
  const Eigen::Index n = x_train.cols();
  const Eigen::Index batches = n / options.batch_size + (n % options.batch_size != 0);  // no overflow for a huge batch_size
  const bool bar = !options.quiet && options.log != nullptr && detail::stream_is_terminal(options.log);
  typename Model::Matrix batch_x;
  Target batch_y;
  std::vector<EpochStats> history;
  long global_step = 0;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    if (options.shuffle) random::shuffle(idx.begin(), idx.end(), gen);
    EpochStats stats;
    stats.epoch = epoch;
    stats.has_accuracy = classification;
    Eigen::Index correct_total = 0;
    double seconds = 0.0;
    for (Eigen::Index b = 0; b < batches; ++b) {
      const Eigen::Index first = b * options.batch_size;
      const Eigen::Index count = std::min(options.batch_size, n - first);
      detail::gather_batch(x_train, y_train, idx, static_cast<std::size_t>(first), count, batch_x, batch_y);
      const auto start = std::chrono::steady_clock::now();
      Eigen::Index correct = 0;
      const double batch_loss = train_step(model, optimizer, batch_x, batch_y, &correct, loss);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      stats.train_loss += batch_loss * static_cast<double>(count);
      correct_total += correct;
      ++global_step;
      if (options.on_step) options.on_step(StepInfo{epoch, global_step, count, batch_loss});
      if (bar && (b % 8 == 0 || b + 1 == batches)) {
        const int width = 30;
        const auto done = static_cast<int>(width * (b + 1) / batches);
        *options.log << "\repoch " << epoch << "/" << options.epochs << " [" << std::string(done, '=')
                     << std::string(width - done, ' ') << "] " << (b + 1) << "/" << batches << std::flush;
      }
    }
    stats.train_loss /= static_cast<double>(n);
    if (classification) stats.train_accuracy = static_cast<double>(correct_total) / static_cast<double>(n);
    stats.train_seconds = seconds;
    if (x_test != nullptr) {
      const Evaluation e = evaluate(model, *x_test, *y_test, 1000, loss);
      stats.test_loss = e.loss;
      stats.test_accuracy = e.accuracy;
    }
    if (!options.quiet && options.log != nullptr) {
      char line[200];
      std::snprintf(line, sizeof line, "epoch %d/%d  loss %.4f", epoch, options.epochs, stats.train_loss);
      *options.log << (bar ? "\r" : "") << line;
      if (classification) {
        std::snprintf(line, sizeof line, "  train acc %.2f%%", 100.0 * stats.train_accuracy);
        *options.log << line;
      }
      if (x_test != nullptr) {
        std::snprintf(line, sizeof line, "  test loss %.4f", stats.test_loss);
        *options.log << line;
        if (classification) {
          std::snprintf(line, sizeof line, "  test acc %.2f%%", 100.0 * stats.test_accuracy);
          *options.log << line;
        }
      }
      std::snprintf(line, sizeof line, "  (%.2f s)", seconds);
      *options.log << line << (bar ? "          \n" : "\n") << std::flush;
    }
    history.push_back(stats);
    if (options.on_epoch_end) options.on_epoch_end(stats);
  }
  return history;
}

}  // namespace deepstruct
