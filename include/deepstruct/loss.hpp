// SPDX-License-Identifier: MIT
#pragma once

/// \file loss.hpp
/// Losses with PyTorch's definitions and reductions: softmax cross-entropy from logits (mean over
/// the batch, numerically stable) and mean squared error (mean over all entries). Each returns the
/// loss and, if asked, writes dL/dinput.

#include <Eigen/Core>
#include <cmath>
#include <string>

#include "deepstruct/errors.hpp"

namespace deepstruct {

/// Class labels, one per sample (column).
using Labels = Eigen::VectorXi;

/// torch.nn.functional.cross_entropy(logits^T, labels): mean over the batch of
/// logsumexp(z) - z[label]. logits are classes x batch. grad (if not null) gets
/// (softmax(z) - onehot(label)) / batch.
template <typename Derived>
double cross_entropy(const Eigen::MatrixBase<Derived>& logits, const Eigen::Ref<const Labels>& labels,
                     Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>* grad = nullptr) {
  using Scalar = typename Derived::Scalar;
  const Eigen::Index classes = logits.rows(), batch = logits.cols();
  if (labels.size() != batch)
    DEEPSTRUCT_THROW(shape_error, "cross_entropy: expected " + std::to_string(batch) +
                                      " labels (one per column of the logits), found " + std::to_string(labels.size()));
  if (batch == 0) DEEPSTRUCT_THROW(shape_error, "cross_entropy: expected a batch of at least one sample, found 0");
  for (Eigen::Index b = 0; b < batch; ++b)  // every label before anything is written
    if (labels[b] < 0 || labels[b] >= classes)
      DEEPSTRUCT_THROW(value_error, "cross_entropy: expected labels in [0, " + std::to_string(classes) + "), found " +
                                        std::to_string(labels[b]) + " for sample " + std::to_string(b));
  if (grad != nullptr) grad->resize(classes, batch);
  double total = 0.0;
  for (Eigen::Index b = 0; b < batch; ++b) {
    const int label = labels[b];
    const auto z = logits.col(b);
    const Scalar zmax = z.maxCoeff();
    const Scalar sum = (z.array() - zmax).exp().sum();
    const Scalar log_sum = zmax + std::log(sum);
    total += static_cast<double>(log_sum - z[label]);
    if (grad != nullptr) {
      grad->col(b) = ((z.array() - log_sum).exp() / Scalar(batch)).matrix();
      (*grad)(label, b) -= Scalar(1) / Scalar(batch);
    }
  }
  return total / static_cast<double>(batch);
}

/// torch.nn.functional.mse_loss(prediction, target): mean over all entries of (p - t)^2.
/// grad (if not null) gets 2 (p - t) / numel.
template <typename A, typename B>
double mse_loss(const Eigen::MatrixBase<A>& prediction, const Eigen::MatrixBase<B>& target,
                Eigen::Matrix<typename A::Scalar, Eigen::Dynamic, Eigen::Dynamic>* grad = nullptr) {
  using Scalar = typename A::Scalar;
  if (prediction.rows() != target.rows() || prediction.cols() != target.cols())
    DEEPSTRUCT_THROW(shape_error, "mse_loss: expected a target of shape " +
                                      detail::shape_str(prediction.rows(), prediction.cols()) + ", found " +
                                      detail::shape_str(target.rows(), target.cols()));
  if (prediction.size() == 0) DEEPSTRUCT_THROW(shape_error, "mse_loss: expected a non-empty prediction, found 0x0");
  const auto n = static_cast<double>(prediction.size());
  if (grad != nullptr) *grad = (prediction - target) * Scalar(2.0 / n);
  return static_cast<double>((prediction - target).squaredNorm()) / n;
}

/// Loss function objects for the training helpers (train_step, fit, evaluate): each is called as
/// loss(outputs, targets, grad*) and returns the mean loss, writing dL/doutputs when grad is not
/// null. A loss for class labels (Labels targets) also gives accuracies.

/// Softmax cross-entropy from logits against class labels (the default for Labels targets).
struct CrossEntropyLoss {
  template <typename Derived>
  double operator()(const Eigen::MatrixBase<Derived>& logits, const Eigen::Ref<const Labels>& labels,
                    Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>* grad = nullptr) const {
    return cross_entropy(logits, labels, grad);
  }
};

/// Mean squared error against target values, outputs x batch (the default for matrix targets:
/// regression, function approximation).
struct MSELoss {
  template <typename A, typename B>
  double operator()(const Eigen::MatrixBase<A>& prediction, const Eigen::MatrixBase<B>& target,
                    Eigen::Matrix<typename A::Scalar, Eigen::Dynamic, Eigen::Dynamic>* grad = nullptr) const {
    return mse_loss(prediction, target, grad);
  }
};

/// The predicted class of every column: the index of its largest logit (first on ties; a NaN
/// counts as the largest, as torch.argmax). shape_error for logits without rows.
template <typename Derived>
Labels argmax_columns(const Eigen::MatrixBase<Derived>& logits) {
  if (logits.rows() == 0 && logits.cols() > 0)
    DEEPSTRUCT_THROW(shape_error, "argmax_columns: expected logits with at least one row (class), found " +
                                      detail::shape_str(logits.rows(), logits.cols()));
  Labels out(logits.cols());
  for (Eigen::Index b = 0; b < logits.cols(); ++b) {
    Eigen::Index best = 0;
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
      const auto v = logits(i, b);
      if (std::isnan(v)) {
        best = i;
        break;
      }
      if (v > logits(best, b)) best = i;
    }
    out[b] = static_cast<int>(best);
  }
  return out;
}

}  // namespace deepstruct
