// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_deep_rnn.hpp
/// MaskedDeepRNN<Scalar>: deepstruct's MaskedDeepRNN, a stack of masked recurrent layers of one
/// kind (RNN with tanh or ReLU, GRU, LSTM), each starting from the zero state, returning the last
/// time step of the last layer; optionally the whole sequence, and optionally a linear head (off by
/// default: deepstruct has none).
///
/// Inputs follow the library's rule of one sample per column: a sequence of `steps` steps of
/// input_size features is one column of (steps * input_size) values, step by step - the memory of
/// PyTorch's batch-first tensor [batch][steps][features] (deepstruct's batch_first=True). Time-major
/// data ([steps][batch][features], deepstruct's default) becomes that with sequence_columns(). So
/// fit, evaluate and predict take sequences as they take images, and any sequence length works.

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/masked_recurrent.hpp"
#include "deepstruct/model.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

struct RNNOptions {
  RecurrentKind kind = RecurrentKind::rnn_tanh;  ///< the cell of every layer (deepstruct: one kind per model)
  bool return_sequence = false;  ///< every step's output, (steps * size) x batch, instead of the last step's
  Eigen::Index head = 0;         ///< a linear head to this many outputs on top (0: none, as deepstruct)
  std::uint64_t seed = 0;        ///< initialisation seed (ignored by the Generator& constructor)
};

/// Time-major sequences (input_size x (steps * batch), column t * batch + b: PyTorch's
/// [steps][batch][features] memory) as one sequence per column ((steps * input_size) x batch).
template <typename Derived>
Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> sequence_columns(const Eigen::MatrixBase<Derived>& time_major,
                                                                                         Eigen::Index steps) {
  if (steps <= 0 || time_major.cols() % steps != 0)
    DEEPSTRUCT_THROW(shape_error, "sequence_columns: expected steps >= 1 dividing the " + std::to_string(time_major.cols()) +
                                      " columns (steps * batch), found steps = " + std::to_string(steps));
  const Eigen::Index f = time_major.rows(), batch = time_major.cols() / steps;
  Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic> out(steps * f, batch);
  for (Eigen::Index t = 0; t < steps; ++t) out.block(t * f, 0, f, batch) = time_major.middleCols(t * batch, batch);
  return out;
}

template <typename Scalar_>
class MaskedDeepRNN : public ModelBase<MaskedDeepRNN<Scalar_>, Scalar_> {
  using Base = ModelBase<MaskedDeepRNN<Scalar_>, Scalar_>;

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Layer = MaskedRecurrentLayer<Scalar>;
  using Matrix = typename Layer::Matrix;
  using Vector = typename Layer::Vector;
  using Mask = typename Layer::Mask;

  /// input_size -> hidden[0] -> ... -> hidden[k-1] (-> head), initialised from options.seed:
  /// deepstruct's initialisation, layer by layer, then the head (PyTorch's Linear).
  MaskedDeepRNN(Index input_size, const std::vector<Index>& hidden, const RNNOptions& options = {}) : options_(options) {
    Generator gen(options.seed);
    build(input_size, hidden, gen);
  }
  MaskedDeepRNN(Index input_size, const std::vector<Index>& hidden, const RNNOptions& options, Generator& gen)
      : options_(options) {
    build(input_size, hidden, gen);
  }

  static const char* model_name() { return "MaskedDeepRNN"; }

  Index input_size() const { return layers_.front().input_size(); }
  std::size_t num_layers() const { return layers_.size(); }
  Layer& layer(std::size_t l) { return layers_[check_layer(l)]; }
  const Layer& layer(std::size_t l) const { return layers_[check_layer(l)]; }
  bool has_head() const { return !head_.empty(); }
  MaskedLinear<Scalar>& head() { return head_.at(check_head()); }
  const MaskedLinear<Scalar>& head() const { return head_.at(check_head()); }
  const RNNOptions& options() const { return options_; }
  /// Features per step of the output: the head's outputs, or the last layer's hidden size.
  Index output_size() const { return has_head() ? head_.front().out_features() : layers_.back().hidden_size(); }

  /// deepstruct's keys: _recurrent_layers.<i>.*; the head (not in deepstruct) as head.*.
  template <typename Fn>
  void visit_modules(Fn&& fn) {
    for (std::size_t l = 0; l < layers_.size(); ++l) fn(layers_[l], "_recurrent_layers", l);
    if (has_head()) fn(head_.front(), "head", Base::no_index);
  }

  using Base::apply_mask;
  /// deepstruct's MaskedDeepRNN.apply_mask(threshold, i2h, h2h): the masks of the chosen weights
  /// (input-to-hidden, hidden-to-hidden) become |W| >= threshold; nothing when neither is chosen.
  void apply_mask(double threshold, bool i2h, bool h2h) {
    if (!(threshold >= 0.0))
      DEEPSTRUCT_THROW(value_error, "MaskedDeepRNN::apply_mask: expected a threshold >= 0, found " + detail::number_str(threshold));
    for (auto& l : layers_)
      for (std::size_t k = 0; k < 2; ++k)
        if ((k == 0 && i2h) || (k == 1 && h2h))
          l.set_mask(k, (l.weight(k).array().abs() >= static_cast<Scalar>(threshold)).matrix());
  }

  // ---- forward / backward / predict ----------------------------------------------------------

  /// The output for sequences x ((steps * input_size) x batch, one sequence per column): the last
  /// step of the last layer (output_size() x batch), or every step ((steps * output_size()) x
  /// batch) with return_sequence. Keeps the activations for backward, not the input.
  const Matrix& forward(const Eigen::Ref<const Matrix>& x) {
    batch_ = -1;
    const Index steps = steps_of(x, "forward");
    const Index batch = x.cols();
    to_time_major(x, steps, in_);
    outs_.resize(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) layers_[l].forward(l == 0 ? in_ : outs_[l - 1], steps, outs_[l]);
    finish(outs_.back(), steps, batch, out_, head_in_);
    steps_ = steps;
    batch_ = batch;
    return out_;
  }

  /// The same output for evaluation, into a caller-owned matrix: keeps nothing and changes nothing
  /// backward uses.
  void predict(const Eigen::Ref<const Matrix>& x, Matrix& output) {
    const Index steps = steps_of(x, "predict");
    Matrix in, out;
    to_time_major(x, steps, in);
    for (auto& l : layers_) {
      l.predict(in, steps, out);
      in.swap(out);
    }
    Matrix head_in;
    finish(in, steps, x.cols(), output, head_in);
  }

  /// Backpropagation through time for the input x of the last forward and dL/doutput (its shape).
  /// Adds every parameter gradient; writes dL/dx (x's shape) when grad_input is not null.
  void backward(const Eigen::Ref<const Matrix>& x, const Eigen::Ref<const Matrix>& grad_output, Matrix* grad_input = nullptr) {
    if (batch_ < 0)
      DEEPSTRUCT_THROW(state_error, "MaskedDeepRNN::backward: expected a preceding forward(x), found none (or a failed one)");
    const Index steps = steps_, batch = batch_;
    if (x.rows() != steps * input_size() || x.cols() != batch)
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepRNN::backward: expected the input of the last forward, of shape " +
                                        detail::shape_str(steps * input_size(), batch) + ", found " + detail::shape_str(x.rows(), x.cols()));
    if (grad_output.rows() != out_.rows() || grad_output.cols() != out_.cols())
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepRNN::backward: expected dL/doutput of shape " + detail::shape_str(out_.rows(), out_.cols()) +
                                        " (that of the last output), found " +
                                        detail::shape_str(grad_output.rows(), grad_output.cols()));
    const Index H = layers_.back().hidden_size(), TB = steps * batch;
    // dL/d(every hidden state of the last layer), time-major; zero where the output does not read.
    Matrix g_head;
    if (options_.return_sequence) {
      to_time_major(grad_output, steps, g_head);  // output_size x TB
      if (has_head()) {
        head_.front().backward(head_in_, g_head, &dy_);
      } else {
        dy_ = std::move(g_head);
      }
    } else {
      dy_.setZero(H, TB);
      if (has_head()) {
        head_.front().backward(head_in_, grad_output, &g_head);
        dy_.rightCols(batch) = g_head;
      } else {
        dy_.rightCols(batch) = grad_output;
      }
    }
    for (std::size_t l = layers_.size(); l-- > 0;) {
      const Matrix& in = l == 0 ? in_ : outs_[l - 1];
      const bool need_dx = l > 0 || grad_input != nullptr;
      layers_[l].backward(in, dy_, need_dx ? &dx_ : nullptr);
      if (l > 0) dy_.swap(dx_);
    }
    if (grad_input != nullptr) from_time_major(dx_, steps, *grad_input);
  }

 private:
  void build(Index input_size, const std::vector<Index>& hidden, Generator& gen) {
    if (hidden.empty()) DEEPSTRUCT_THROW(shape_error, "MaskedDeepRNN: expected at least one recurrent layer, found none");
    if (input_size <= 0) DEEPSTRUCT_THROW(shape_error, "MaskedDeepRNN: expected input_size >= 1, found " + std::to_string(input_size));
    if (options_.head < 0) DEEPSTRUCT_THROW(shape_error, "MaskedDeepRNN: expected head >= 0 outputs, found " + std::to_string(options_.head));
    Index in = input_size;
    for (std::size_t l = 0; l < hidden.size(); ++l) {
      if (hidden[l] <= 0)
        DEEPSTRUCT_THROW(shape_error, "MaskedDeepRNN: expected hidden sizes >= 1, found " + std::to_string(hidden[l]) + " at position " +
                                          std::to_string(l));
      layers_.emplace_back(options_.kind, in, hidden[l], false, gen);  // time-major inside the model
      in = hidden[l];
    }
    if (options_.head > 0) head_.emplace_back(in, options_.head, true, gen);
  }

  Index steps_of(const Eigen::Ref<const Matrix>& x, const char* where) const {
    const Index f = input_size();
    if (x.rows() == 0 || x.rows() % f != 0)
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedDeepRNN::") + where + ": expected sequences of steps * " + std::to_string(f) +
                                        " rows (steps * input_size x batch, one sequence per column), found " +
                                        detail::shape_str(x.rows(), x.cols()));
    return x.rows() / f;
  }

  /// One sequence per column ((steps * f) x batch) to time-major columns (f x (steps * batch)).
  static void to_time_major(const Eigen::Ref<const Matrix>& x, Index steps, Matrix& out) {
    const Index f = x.rows() / steps, batch = x.cols();
    out.resize(f, steps * batch);
    for (Index t = 0; t < steps; ++t) out.middleCols(t * batch, batch) = x.middleRows(t * f, f);
  }
  /// Time-major columns (f x (steps * batch)) to one sequence per column.
  static void from_time_major(const Eigen::Ref<const Matrix>& y, Index steps, Matrix& out) {
    const Index f = y.rows(), batch = y.cols() / steps;
    out.resize(steps * f, batch);
    for (Index t = 0; t < steps; ++t) out.middleRows(t * f, f) = y.middleCols(t * batch, batch);
  }

  /// The model's output from the last layer's states (hidden x (steps * batch), time-major).
  void finish(const Matrix& states, Index steps, Index batch, Matrix& output, Matrix& head_in) {
    if (options_.return_sequence) {
      if (has_head()) {
        head_in = states;
        Matrix y;
        head_.front().forward(head_in, y);
        from_time_major(y, steps, output);
      } else {
        from_time_major(states, steps, output);
      }
    } else if (has_head()) {
      head_in = states.rightCols(batch);
      head_.front().forward(head_in, output);
    } else {
      output = states.rightCols(batch);
    }
  }

  std::size_t check_layer(std::size_t l) const {
    if (l >= layers_.size())
      DEEPSTRUCT_THROW(index_error, "MaskedDeepRNN::layer: expected a layer below " + std::to_string(layers_.size()) + ", found " +
                                        std::to_string(l));
    return l;
  }
  std::size_t check_head() const {
    if (head_.empty()) DEEPSTRUCT_THROW(index_error, "MaskedDeepRNN::head: expected a model with a head (RNNOptions::head > 0), found none");
    return 0;
  }

  RNNOptions options_;
  std::vector<Layer> layers_;
  std::vector<MaskedLinear<Scalar>> head_;  // empty or one
  // The last forward: the input (time-major), every layer's states, the head's input, the output.
  Matrix in_, head_in_, out_;
  std::vector<Matrix> outs_;
  Index steps_ = 0, batch_ = -1;
  Matrix dy_, dx_;
};

using MaskedDeepRNNf = MaskedDeepRNN<float>;
using MaskedDeepRNNd = MaskedDeepRNN<double>;

}  // namespace deepstruct
