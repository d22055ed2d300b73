// SPDX-License-Identifier: MIT
#pragma once

/// \file batch_norm2d.hpp
/// BatchNorm2d<Scalar>: torch.nn.BatchNorm2d on images (image.hpp's layout). In training mode
/// each channel is normalised with the mean and the biased variance of its values over the batch
/// and all positions, and the running statistics move by PyTorch's momentum (0.1): running_mean
/// += m (mean - running_mean), running_var += m (unbiased variance - running_var), and
/// num_batches_tracked counts the batches. In evaluation mode (and predict) the running
/// statistics normalise. weight (gamma, ones) and bias (beta, zeros) are the parameters.

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "deepstruct/detail/alias.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/image.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

template <typename Scalar_>
class BatchNorm2d : public Module<Scalar_> {
  static_assert(std::is_floating_point<Scalar_>::value, "BatchNorm2d<Scalar>: Scalar must be float or double");

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;

  /// `channels` channels; eps and momentum as PyTorch's defaults. Throws shape_error for
  /// channels < 1, value_error for eps <= 0 or a momentum outside [0, 1].
  explicit BatchNorm2d(Index channels, double eps = 1e-5, double momentum = 0.1) : eps_(eps), momentum_(momentum) {
    if (channels < 1) DEEPSTRUCT_THROW(shape_error, "BatchNorm2d: expected channels >= 1, found " + std::to_string(channels));
    if (!(eps > 0.0)) DEEPSTRUCT_THROW(value_error, "BatchNorm2d: expected eps > 0, found " + detail::number_str(eps));
    if (!(momentum >= 0.0 && momentum <= 1.0))
      DEEPSTRUCT_THROW(value_error, "BatchNorm2d: expected a momentum in [0, 1], found " + detail::number_str(momentum));
    weight_.setOnes(channels);
    bias_.setZero(channels);
    running_mean_.setZero(channels);
    running_var_.setOnes(channels);
    weight_grad_.setZero(channels);
    bias_grad_.setZero(channels);
  }

  // ---- the module contract ----------------------------------------------------------------------

  const char* type_name() const override { return "BatchNorm2d"; }
  void for_each_parameter(ParameterVisitor<Scalar> fn) override {
    fn(ParameterRef<Scalar>{weight_.data(), weight_grad_.data(), weight_.size(), nullptr});
    fn(ParameterRef<Scalar>{bias_.data(), bias_grad_.data(), bias_.size(), nullptr});
  }
  void zero_grad() override {
    weight_grad_.setZero();
    bias_grad_.setZero();
  }
  Index num_parameters() const override { return weight_.size() + bias_.size(); }
  /// PyTorch's reset: weight 1, bias 0, running statistics and the batch count reset. Draws nothing.
  void reset_parameters(Generator&, bool) override {
    weight_.setOnes();
    bias_.setZero();
    running_mean_.setZero();
    running_var_.setOnes();
    num_batches_tracked_ = 0;
  }
  /// PyTorch's state_dict entries: weight, bias, running_mean, running_var, num_batches_tracked.
  void for_each_tensor(TensorVisitor<Scalar> fn) const override {
    const Index C = channels();
    fn(TensorRef<Scalar>{"weight", TensorKind::vector, C, 1, weight_.data(), nullptr});
    fn(TensorRef<Scalar>{"bias", TensorKind::vector, C, 1, bias_.data(), nullptr});
    fn(TensorRef<Scalar>{"running_mean", TensorKind::vector, C, 1, running_mean_.data(), nullptr});
    fn(TensorRef<Scalar>{"running_var", TensorKind::vector, C, 1, running_var_.data(), nullptr});
    TensorRef<Scalar> n{"num_batches_tracked", TensorKind::count, 1, 1, nullptr, nullptr};
    n.count = &num_batches_tracked_;
    fn(n);
  }

  Index channels() const { return weight_.size(); }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  const Vector& weight() const { return weight_; }
  const Vector& bias() const { return bias_; }
  Vector& weight() { return weight_; }
  Vector& bias() { return bias_; }
  const Vector& running_mean() const { return running_mean_; }
  const Vector& running_var() const { return running_var_; }
  std::int64_t num_batches_tracked() const { return num_batches_tracked_; }
  const Vector& weight_grad() const { return weight_grad_; }
  const Vector& bias_grad() const { return bias_grad_; }

  // ---- forward and backward ---------------------------------------------------------------------

  /// Normalises the images x (shape `in`, in.channels == channels()) into y. Training mode uses
  /// the batch statistics and updates the running ones (value_error, changing nothing, when a
  /// channel has a single value: PyTorch's "more than 1 value per channel"); evaluation mode the
  /// running ones. Keeps the statistics backward needs (per channel), not x. y may share memory
  /// with x.
  void forward(const ConstMatrixRef& x, const ImageShape& in, Matrix& y, bool training) {
    forward_batch_ = -1;  // a forward that throws leaves none for backward
    check(x, in, "forward");
    const Index C = channels(), P = in.plane(), B = x.cols();
    const double n = static_cast<double>(P) * static_cast<double>(B);
    mean_.resize(C);
    inv_std_.resize(C);
    if (training) {
      if (n < 2)
        DEEPSTRUCT_THROW(value_error, "BatchNorm2d::forward: expected more than 1 value per channel in training mode, found " +
                                          std::to_string(B) + " image(s) of " + to_string(in));
      for (Index c = 0; c < C; ++c) {
        // Sums of one image's plane in Scalar (vectorised), across images in double.
        double sum = 0, sq = 0;
        for (Index b = 0; b < B; ++b) sum += static_cast<double>(x.col(b).segment(c * P, P).sum());
        const double mean = sum / n;
        const Scalar m = static_cast<Scalar>(mean);
        for (Index b = 0; b < B; ++b) sq += static_cast<double>((x.col(b).segment(c * P, P).array() - m).square().sum());
        const double var = sq / n;
        mean_[c] = static_cast<Scalar>(mean);
        inv_std_[c] = static_cast<Scalar>(1.0 / std::sqrt(var + eps_));
        running_mean_[c] = static_cast<Scalar>((1.0 - momentum_) * running_mean_[c] + momentum_ * mean);
        running_var_[c] = static_cast<Scalar>((1.0 - momentum_) * running_var_[c] + momentum_ * var * n / (n - 1.0));
      }
      ++num_batches_tracked_;
    } else {
      for (Index c = 0; c < C; ++c) {
        mean_[c] = running_mean_[c];
        inv_std_[c] = static_cast<Scalar>(1.0 / std::sqrt(static_cast<double>(running_var_[c]) + eps_));
      }
    }
    trained_ = training;
    forward_shape_ = in;
    forward_batch_ = B;
    normalize(x, P, y);
  }

  /// Evaluation with the running statistics into y; keeps nothing, changes nothing.
  /// y may be the matrix x refers to (in place), or share other memory with it.
  void predict(const ConstMatrixRef& x, const ImageShape& in, Matrix& y) const {
    check(x, in, "predict");
    const Index C = channels();
    Vector mean(C), inv_std(C);
    for (Index c = 0; c < C; ++c) {
      mean[c] = running_mean_[c];
      inv_std[c] = static_cast<Scalar>(1.0 / std::sqrt(static_cast<double>(running_var_[c]) + eps_));
    }
    apply(x, in.plane(), mean, inv_std, y);
  }

  /// Backward for the images x that the last forward saw, in the mode it ran: adds dL/dweight and
  /// dL/dbias, writes dL/dx into *grad_x unless null (which may be grad_y's or x's matrix, or
  /// share other memory with them). Throws state_error without a forward (or after a failed
  /// one), shape_error for images of another shape or number than the forward's.
  void backward(const ConstMatrixRef& x, const ImageShape& in, const ConstMatrixRef& grad_y, Matrix* grad_x) {
    check(x, in, "backward");
    if (grad_y.rows() != x.rows() || grad_y.cols() != x.cols())
      DEEPSTRUCT_THROW(shape_error, "BatchNorm2d::backward: expected grad_y of shape " + detail::shape_str(x.rows(), x.cols()) + ", found " +
                                        detail::shape_str(grad_y.rows(), grad_y.cols()));
    if (forward_batch_ < 0)
      DEEPSTRUCT_THROW(state_error, "BatchNorm2d::backward: expected a forward before backward, found none (or a failed one)");
    if (!(in == forward_shape_) || x.cols() != forward_batch_)
      DEEPSTRUCT_THROW(shape_error, "BatchNorm2d::backward: expected the images of the last forward, " + std::to_string(forward_batch_) +
                                        " of " + to_string(forward_shape_) + ", found " + std::to_string(x.cols()) + " of " + to_string(in));
    const Index C = channels(), P = in.plane(), B = x.cols();
    const double n = static_cast<double>(P) * static_cast<double>(B);
    // dL/dx is written channel by channel after the channel is read: in place into grad_y's or
    // x's own matrix works, into memory they share otherwise it goes through a temporary.
    Matrix buffer;
    Matrix* out = grad_x;
    if (grad_x != nullptr && (detail::partly_shares_memory(grad_y, *grad_x) || detail::partly_shares_memory(x, *grad_x))) out = &buffer;
    if (out != nullptr) out->resize(x.rows(), B);
    for (Index c = 0; c < C; ++c) {
      // sum(g) and sum(g * xhat) over the channel's values (per plane in Scalar, across in double).
      double sg = 0, sgx = 0;
      const Scalar mean = mean_[c], is = inv_std_[c];
      for (Index b = 0; b < B; ++b) {
        const auto g = grad_y.col(b).segment(c * P, P).array();
        sg += static_cast<double>(g.sum());
        sgx += static_cast<double>((g * ((x.col(b).segment(c * P, P).array() - mean) * is)).sum());
      }
      weight_grad_[c] += static_cast<Scalar>(sgx);
      bias_grad_[c] += static_cast<Scalar>(sg);
      if (out == nullptr) continue;
      const Scalar scale = weight_[c] * is;
      const Scalar mg = static_cast<Scalar>(sg / n), mgx = static_cast<Scalar>(sgx / n);
      for (Index b = 0; b < B; ++b) {
        const auto g = grad_y.col(b).segment(c * P, P).array();
        auto dx = out->col(b).segment(c * P, P);
        if (trained_) {
          // dx = gamma / sqrt(var + eps) * (g - mean(g) - xhat * mean(g * xhat))
          dx = (scale * (g - mg - ((x.col(b).segment(c * P, P).array() - mean) * is) * mgx)).matrix();
        } else {
          dx = (scale * g).matrix();
        }
      }
    }
    if (out == &buffer) *grad_x = std::move(buffer);
  }

 protected:
  void tensors_loaded() override {}

 private:
  template <typename X>
  void check(const X& x, const ImageShape& in, const char* where) const {
    detail::check_image_shape(in, std::string("BatchNorm2d::") + where);
    if (in.channels != channels())
      DEEPSTRUCT_THROW(shape_error, std::string("BatchNorm2d::") + where + ": expected images of " + std::to_string(channels()) +
                                        " channels, found " + to_string(in));
    detail::check_images(x, in, std::string("BatchNorm2d::") + where);
  }
  void normalize(const ConstMatrixRef& x, Index P, Matrix& y) const { apply(x, P, mean_, inv_std_, y); }
  void apply(const ConstMatrixRef& x, Index P, const Vector& mean, const Vector& inv_std, Matrix& y) const {
    if (detail::partly_shares_memory(x, y)) {  // resizing or writing y would lose parts of x
      Matrix out;
      apply(x, P, mean, inv_std, out);
      y = std::move(out);
      return;
    }
    y.resize(x.rows(), x.cols());
    for (Index b = 0; b < x.cols(); ++b)
      for (Index c = 0; c < channels(); ++c) {
        const Scalar scale = weight_[c] * inv_std[c], shift = bias_[c] - mean[c] * scale;
        y.col(b).segment(c * P, P) = (x.col(b).segment(c * P, P).array() * scale + shift).matrix();
      }
  }

  double eps_, momentum_;
  Vector weight_, bias_, running_mean_, running_var_;
  std::int64_t num_batches_tracked_ = 0;
  Vector weight_grad_, bias_grad_;
  // The statistics of the last forward, per channel, its mode and its images (batch -1: none).
  Vector mean_, inv_std_;
  bool trained_ = true;
  ImageShape forward_shape_{};
  Index forward_batch_ = -1;
};

}  // namespace deepstruct
