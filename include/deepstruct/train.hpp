// SPDX-License-Identifier: MIT
#pragma once

/// \file train.hpp
/// A small, explicit training loop for classifiers: shuffled mini-batches from a seed, epochs,
/// evaluation (loss and accuracy) and progress output on a stream (a bar on a terminal, one line
/// per epoch otherwise; nothing when quiet). Works with any model that has forward, backward,
/// zero_grad, predict and for_each_parameter (MaskedDeepFFN, MaskedDeepDAN).

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <numeric>
#include <string>
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
  double train_loss = 0.0;      ///< mean of the mini-batch losses
  double train_accuracy = 0.0;  ///< on the mini-batches, during training
  double test_loss = 0.0;       ///< when test data was given, otherwise 0
  double test_accuracy = 0.0;
  double train_seconds = 0.0;   ///< forward, backward and optimizer steps only
};

struct FitOptions {
  int epochs = 1;
  Eigen::Index batch_size = 128;
  std::uint64_t seed = 0;       ///< the shuffling seed: same seed, same batches
  bool shuffle = true;
  bool quiet = false;           ///< no progress output at all
  std::ostream* log = &std::cerr;
  /// Called after every epoch with its statistics (e.g. to adjust the learning rate).
  std::function<void(const EpochStats&)> on_epoch_end;
};

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;  ///< fraction of samples whose largest logit is the label
};

namespace detail {

inline void check_dataset(Eigen::Index columns, Eigen::Index labels, const char* where) {
  if (columns != labels)
    DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected one label per sample (" + std::to_string(columns) +
                                      "), found " + std::to_string(labels));
}

/// Gathers columns idx[first..first+n) of x into batch (features x n), labels likewise.
template <typename Matrix>
void gather_batch(const Matrix& x, const Labels& y, const std::vector<Eigen::Index>& idx, std::size_t first,
                  Eigen::Index n, Matrix& batch_x, Labels& batch_y) {
  batch_x.resize(x.rows(), n);
  batch_y.resize(n);
  for (Eigen::Index j = 0; j < n; ++j) {
    const Eigen::Index src = idx[first + static_cast<std::size_t>(j)];
    batch_x.col(j) = x.col(src);
    batch_y[j] = y[src];
  }
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

/// One step on a mini-batch: zero_grad, forward, cross-entropy, backward, optimizer step.
/// Returns the loss; `correct` (if not null) gets the number of correctly classified samples.
template <typename Model, typename Optimizer>
double train_step(Model& model, Optimizer& optimizer, const typename Model::Matrix& x, const Labels& y,
                  Eigen::Index* correct = nullptr) {
  detail::check_dataset(x.cols(), y.size(), "train_step");
  model.zero_grad();
  const auto& logits = model.forward(x);
  typename Model::Matrix grad;
  const double loss = cross_entropy(logits, y, &grad);
  if (correct != nullptr) *correct = (argmax_columns(logits).array() == y.array()).count();
  model.backward(grad);
  optimizer.step(model);
  return loss;
}

/// Mean cross-entropy and accuracy over a dataset (samples as columns), in batches.
template <typename Model>
Evaluation evaluate(Model& model, const typename Model::Matrix& x, const Labels& y, Eigen::Index batch_size = 1000) {
  detail::check_dataset(x.cols(), y.size(), "evaluate");
  if (x.cols() == 0) DEEPSTRUCT_THROW(shape_error, "evaluate: expected at least one sample, found 0");
  if (batch_size <= 0) DEEPSTRUCT_THROW(value_error, "evaluate: expected batch_size >= 1, found " + std::to_string(batch_size));
  typename Model::Matrix logits;
  Evaluation result;
  Eigen::Index correct = 0;
  for (Eigen::Index b0 = 0; b0 < x.cols(); b0 += batch_size) {
    const Eigen::Index n = std::min(batch_size, x.cols() - b0);
    model.predict(x.middleCols(b0, n), logits);
    result.loss += cross_entropy(logits, y.segment(b0, n)) * static_cast<double>(n);
    correct += (argmax_columns(logits).array() == y.segment(b0, n).array()).count();
  }
  result.loss /= static_cast<double>(x.cols());
  result.accuracy = static_cast<double>(correct) / static_cast<double>(x.cols());
  return result;
}

/// Trains for options.epochs epochs of shuffled mini-batches (the last one may be smaller) and
/// evaluates on the test data after every epoch when it is given.
template <typename Model, typename Optimizer>
std::vector<EpochStats> fit(Model& model, Optimizer& optimizer, const typename Model::Matrix& x_train,
                            const Labels& y_train, const FitOptions& options,
                            const typename Model::Matrix* x_test = nullptr, const Labels* y_test = nullptr) {
  detail::check_dataset(x_train.cols(), y_train.size(), "fit");
  if (x_train.cols() == 0) DEEPSTRUCT_THROW(shape_error, "fit: expected at least one training sample, found 0");
  if (options.batch_size <= 0)
    DEEPSTRUCT_THROW(value_error, "fit: expected batch_size >= 1, found " + std::to_string(options.batch_size));
  if (options.epochs < 0) DEEPSTRUCT_THROW(value_error, "fit: expected epochs >= 0, found " + std::to_string(options.epochs));
  if ((x_test == nullptr) != (y_test == nullptr))
    DEEPSTRUCT_THROW(value_error, "fit: expected both test samples and test labels, or neither");
  if (x_test != nullptr) detail::check_dataset(x_test->cols(), y_test->size(), "fit (test data)");

  Generator gen(options.seed);
  std::vector<Eigen::Index> idx(static_cast<std::size_t>(x_train.cols()));
  std::iota(idx.begin(), idx.end(), Eigen::Index{0});
  const Eigen::Index n = x_train.cols();
  const Eigen::Index batches = (n + options.batch_size - 1) / options.batch_size;
  const bool bar = !options.quiet && options.log != nullptr && detail::stream_is_terminal(options.log);
  typename Model::Matrix batch_x;
  Labels batch_y;
  std::vector<EpochStats> history;
  for (int epoch = 1; epoch <= options.epochs; ++epoch) {
    if (options.shuffle) random::shuffle(idx.begin(), idx.end(), gen);
    EpochStats stats;
    stats.epoch = epoch;
    Eigen::Index correct_total = 0;
    double seconds = 0.0;
    for (Eigen::Index b = 0; b < batches; ++b) {
      const Eigen::Index first = b * options.batch_size;
      const Eigen::Index count = std::min(options.batch_size, n - first);
      detail::gather_batch(x_train, y_train, idx, static_cast<std::size_t>(first), count, batch_x, batch_y);
      const auto start = std::chrono::steady_clock::now();
      Eigen::Index correct = 0;
      stats.train_loss += train_step(model, optimizer, batch_x, batch_y, &correct) * static_cast<double>(count);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      correct_total += correct;
      if (bar && (b % 8 == 0 || b + 1 == batches)) {
        const int width = 30;
        const auto done = static_cast<int>(width * (b + 1) / batches);
        *options.log << "\repoch " << epoch << "/" << options.epochs << " [" << std::string(done, '=')
                     << std::string(width - done, ' ') << "] " << (b + 1) << "/" << batches << std::flush;
      }
    }
    stats.train_loss /= static_cast<double>(n);
    stats.train_accuracy = static_cast<double>(correct_total) / static_cast<double>(n);
    stats.train_seconds = seconds;
    if (x_test != nullptr) {
      const Evaluation e = evaluate(model, *x_test, *y_test);
      stats.test_loss = e.loss;
      stats.test_accuracy = e.accuracy;
    }
    if (!options.quiet && options.log != nullptr) {
      char line[200];
      std::snprintf(line, sizeof line, "epoch %d/%d  loss %.4f  train acc %.2f%%", epoch, options.epochs,
                    stats.train_loss, 100.0 * stats.train_accuracy);
      *options.log << (bar ? "\r" : "") << line;
      if (x_test != nullptr) {
        std::snprintf(line, sizeof line, "  test loss %.4f  test acc %.2f%%", stats.test_loss, 100.0 * stats.test_accuracy);
        *options.log << line;
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
