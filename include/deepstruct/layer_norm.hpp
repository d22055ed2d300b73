// SPDX-License-Identifier: MIT
#pragma once

/// \file layer_norm.hpp
/// LayerNorm<Scalar> over the features of each sample (column), as torch.nn.LayerNorm(features)
/// with elementwise affine parameters: y = (x - mean) / sqrt(var + eps) * weight + bias, where
/// mean and the biased variance are taken over the features of one sample.

#include <Eigen/Core>
#include <string>

#include "deepstruct/detail/alias.hpp"
#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/detail/exact_sqrt.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

template <typename Scalar_>
class LayerNorm : public Module<Scalar_> {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

  /// weight = 1, bias = 0, as PyTorch initialises them.
  explicit LayerNorm(Index features, double eps = 1e-5) : eps_(eps) {
    if (features <= 0)
      DEEPSTRUCT_THROW(shape_error, "LayerNorm: expected features >= 1, found " + std::to_string(features));
    if (!(eps > 0.0)) DEEPSTRUCT_THROW(value_error, "LayerNorm: expected eps > 0, found " + detail::number_str(eps));
    weight_ = Vector::Ones(features);
    bias_ = Vector::Zero(features);
    weight_grad_ = Vector::Zero(features);
    bias_grad_ = Vector::Zero(features);
  }

  Index features() const { return weight_.size(); }
  double eps() const { return eps_; }
  const Vector& weight() const { return weight_; }
  const Vector& bias() const { return bias_; }
  const Vector& weight_grad() const { return weight_grad_; }
  const Vector& bias_grad() const { return bias_grad_; }
  void set_weight(const Eigen::Ref<const Vector>& w) { set(weight_, w, "set_weight"); }
  void set_bias(const Eigen::Ref<const Vector>& b) { set(bias_, b, "set_bias"); }
  /// weight 1, bias 0.
  void reset_parameters() {
    weight_.setOnes();
    bias_.setZero();
  }
  /// The Module contract's reset: the same (nothing is random, nothing is masked).
  void reset_parameters(Generator&, bool) override { reset_parameters(); }

  const char* type_name() const override { return "LayerNorm"; }
  Index num_parameters() const override { return 2 * features(); }
  /// state_dict entries: weight, bias (torch.nn.LayerNorm's).
  void for_each_tensor(TensorVisitor<Scalar> fn) const override {
    fn(TensorRef<Scalar>{"weight", TensorKind::vector, weight_.size(), 1, weight_.data(), nullptr});
    fn(TensorRef<Scalar>{"bias", TensorKind::vector, bias_.size(), 1, bias_.data(), nullptr});
  }

  /// y = LayerNorm(x) for features x batch x; keeps the normalised input for backward.
  /// y may share memory with x.
  void forward(const Eigen::Ref<const Matrix>& x, Matrix& y) {
    has_forward_ = false;
    check_input(x, "forward");
    normalize(x, normalized_, inv_std_);
    has_forward_ = true;
    scale_shift(normalized_, y);
  }

  /// y = LayerNorm(x) for evaluation: the same arithmetic as forward(), but nothing is kept, so
  /// a later backward() is still the backward of the last forward(). y may be x itself, or share
  /// other memory with it (then through a temporary).
  void apply(const Eigen::Ref<const Matrix>& x, Matrix& y) const {
    check_input(x, "apply");
    RowVector inv_std;
    // Into y, unless writing y would resize it (freeing x) or overwrite columns of x not yet read.
    Matrix buffer;
    Matrix& out = detail::partly_shares_memory(x, y) ? buffer : y;
    normalize(x, out, inv_std);
    scale_shift(out, out);
    if (&out == &buffer) y = std::move(buffer);
  }

  /// Adds dL/dweight and dL/dbias to the gradients and writes dL/dx (may alias grad_output).
  /// Throws state_error without a forward (or after a failed one).
  void backward(const Eigen::Ref<const Matrix>& grad_output, Matrix& grad_input) {
    if (!has_forward_)
      DEEPSTRUCT_THROW(state_error, "LayerNorm::backward: expected a preceding forward, found none (or a failed one)");
    if (grad_output.rows() != normalized_.rows() || grad_output.cols() != normalized_.cols())
      DEEPSTRUCT_THROW(shape_error, "LayerNorm::backward: expected grad_output of shape " +
                                        detail::shape_str(normalized_.rows(), normalized_.cols()) +
                                        " (that of the last forward), found " +
                                        detail::shape_str(grad_output.rows(), grad_output.cols()));
    weight_grad_.noalias() += grad_output.cwiseProduct(normalized_).rowwise().sum();
    bias_grad_.noalias() += grad_output.rowwise().sum();
    const auto n = static_cast<Scalar>(normalized_.rows());
    grad_xhat_ = grad_output.array().colwise() * weight_.array();
    const RowVector sum_g = grad_xhat_.colwise().sum();
    const RowVector sum_gx = grad_xhat_.cwiseProduct(normalized_).colwise().sum();
    grad_input = ((n * grad_xhat_.array()).rowwise() - sum_g.array() -
                  normalized_.array().rowwise() * sum_gx.array());
    grad_input.array().rowwise() *= inv_std_.array() / n;
  }

  void zero_grad() override {
    weight_grad_.setZero();
    bias_grad_.setZero();
  }

  void for_each_parameter(ParameterVisitor<Scalar> fn) override {
    fn(ParameterRef<Scalar>{weight_.data(), weight_grad_.data(), weight_.size(), nullptr});
    fn(ParameterRef<Scalar>{bias_.data(), bias_grad_.data(), bias_.size(), nullptr});
  }

 protected:
  void tensors_loaded() override {}

 private:
  void check_input(const Eigen::Ref<const Matrix>& x, const char* where) const {
    if (x.rows() != features())
      DEEPSTRUCT_THROW(shape_error, std::string("LayerNorm::") + where + ": expected input with " +
                                        std::to_string(features()) + " rows (features x batch), found " +
                                        detail::shape_str(x.rows(), x.cols()));
  }

  /// xhat = (x - mean) / sqrt(var + eps) per column, and inv_std = 1 / sqrt(var + eps). xhat may
  /// share x's memory (every step is elementwise once mean is known).
  void normalize(const Eigen::Ref<const Matrix>& x, Matrix& xhat, RowVector& inv_std) const {
    const auto n = static_cast<Scalar>(x.rows());
    const RowVector mean = x.colwise().sum() / n;
    xhat = x.rowwise() - mean;
    // A correctly rounded sqrt, as PyTorch's (Eigen's rsqrt is an estimate under EIGEN_FAST_MATH).
    inv_std = (Scalar(1) / ((xhat.array().square().colwise().sum() / n) + static_cast<Scalar>(eps_))
                               .unaryExpr(detail::exact_sqrt_op<Scalar>()))
                  .matrix();
    xhat.array().rowwise() *= inv_std.array();
  }

  /// y = xhat * weight + bias per feature; y may be xhat itself.
  void scale_shift(const Matrix& xhat, Matrix& y) const {
    y = (xhat.array().colwise() * weight_.array()).colwise() + bias_.array();
  }

  void set(Vector& target, const Eigen::Ref<const Vector>& v, const char* where) {
    if (v.size() != features())
      DEEPSTRUCT_THROW(shape_error, std::string("LayerNorm::") + where + ": expected size " +
                                        std::to_string(features()) + ", found " + std::to_string(v.size()));
    target = v;
  }

  double eps_;
  Vector weight_, bias_, weight_grad_, bias_grad_;
  Matrix normalized_, grad_xhat_;
  RowVector inv_std_;
  bool has_forward_ = false;  ///< normalized_ and inv_std_ are those of a completed forward
};

}  // namespace deepstruct

// Compiled mode (detail/compiled_mode.hpp): the instantiations that instantiate.hpp compiles.
#define DEEPSTRUCT_INSTANTIATIONS_LAYER_NORM(prefix, S) prefix template class ::deepstruct::LayerNorm<S>;
DEEPSTRUCT_DECLARE_EXTERN(DEEPSTRUCT_INSTANTIATIONS_LAYER_NORM)
