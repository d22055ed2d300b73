// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_recurrent.hpp
/// Masked recurrent layers, as deepstruct's deepstruct.recurrent: MaskedRNNLayer (tanh or ReLU),
/// MaskedGRULayer and MaskedLSTMLayer. Each has an input-to-hidden weight W_ih (gates * hidden x
/// input) and a hidden-to-hidden weight W_hh (gates * hidden x hidden), each with its own boolean
/// mask, and two unmasked biases b_ih, b_hh; the gate blocks are stacked as PyTorch and deepstruct
/// stack them (GRU: reset, update, new; LSTM: input, forget, cell, output).
///
///   RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh)
///   GRU:  r = s(i_r + h_r), z = s(i_z + h_z), n = tanh(i_n + r * h_n), h' = (1 - z) n + z h
///         where i = W_ih x + b_ih and h_. = W_hh h + b_hh (PyTorch's GRU)
///   LSTM: i, f, g, o = s, s, tanh, s of (W_ih x + b_ih + W_hh h + b_hh); c' = f c + i g;
///         h' = o tanh(c')
///
/// A sequence is a matrix input_size x (steps * batch): column t * batch + b is step t of sample b
/// (time-major, PyTorch's [steps][batch][features] memory) or, with batch_first, column
/// b * steps + t (PyTorch's [batch][steps][features] memory: one sample's steps side by side).
/// The input-to-hidden product runs once for all steps, the hidden-to-hidden one per step; each is
/// a MaskedLinear, so a sparse mask runs the sparse kernels. Backward is backpropagation through
/// time; masked weights get zero gradients.
///
/// The initial state is zero unless given (deepstruct's MaskedDeepRNN starts every layer from
/// zeros). deepstruct's LSTM starts its cell state as a copy of the initial hidden state; so does
/// this one when an initial hidden state is given without a cell state.
///
/// The layer keeps the activations of the last sequence forward (the gates and states every step
/// needs), never the input: backward takes the input again, as every layer and model here.

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

/// The cell of a recurrent layer.
enum class RecurrentKind {
  rnn_tanh,  ///< h' = tanh(...) (deepstruct's MaskedRecurrentLayer with torch.nn.Tanh, its default)
  rnn_relu,  ///< h' = relu(...)
  gru,       ///< PyTorch's GRU cell
  lstm       ///< PyTorch's LSTM cell
};

inline const char* to_string(RecurrentKind kind) {
  switch (kind) {
    case RecurrentKind::rnn_tanh: return "rnn_tanh";
    case RecurrentKind::rnn_relu: return "rnn_relu";
    case RecurrentKind::gru: return "gru";
    case RecurrentKind::lstm: return "lstm";
  }
  return "?";
}

/// Gate blocks of a kind: 1 (RNN), 3 (GRU), 4 (LSTM).
inline Eigen::Index gate_count(RecurrentKind kind) {
  return kind == RecurrentKind::gru ? 3 : kind == RecurrentKind::lstm ? 4 : 1;
}

/// The state of a recurrent layer: hidden x batch, and for an LSTM the cell state (same shape;
/// empty for the others).
template <typename Scalar>
struct RecurrentState {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> h, c;
};

template <typename Scalar_>
class MaskedRecurrentLayer : public MaskedLayer<Scalar_> {
  static_assert(std::is_floating_point<Scalar_>::value, "MaskedRecurrentLayer<Scalar>: Scalar must be float or double");
  using Base = MaskedLayer<Scalar_>;

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;
  using State = RecurrentState<Scalar>;

  /// input_size -> hidden_size, deepstruct's initialisation: every parameter uniform in
  /// [-1/sqrt(hidden), 1/sqrt(hidden)), drawn from `gen` in the order W_ih, W_hh, b_ih, b_hh.
  MaskedRecurrentLayer(RecurrentKind kind, Index input_size, Index hidden_size, bool batch_first, Generator& gen)
      : kind_(kind),
        batch_first_(batch_first),
        ih_(checked(input_size, "input_size"), gate_rows(kind, hidden_size), true, std::uint64_t{0}),
        hh_(hidden_size, gate_rows(kind, hidden_size), true, std::uint64_t{0}) {
    reset_parameters(gen, false);
  }
  MaskedRecurrentLayer(RecurrentKind kind, Index input_size, Index hidden_size, bool batch_first = false, std::uint64_t seed = 0)
      : kind_(kind),
        batch_first_(batch_first),
        ih_(checked(input_size, "input_size"), gate_rows(kind, hidden_size), true, std::uint64_t{0}),
        hh_(hidden_size, gate_rows(kind, hidden_size), true, std::uint64_t{0}) {
    Generator gen(seed);
    reset_parameters(gen, false);
  }

  RecurrentKind kind() const { return kind_; }
  Index input_size() const { return ih_.in_features(); }
  Index hidden_size() const { return hh_.in_features(); }
  Index gates() const { return gate_count(kind_); }
  bool batch_first() const { return batch_first_; }
  void set_batch_first(bool batch_first) { batch_first_ = batch_first; }

  /// The two products: i = W_ih x + b_ih and W_hh h + b_hh, each a MaskedLinear.
  const MaskedLinear<Scalar>& input_to_hidden() const { return ih_; }
  const MaskedLinear<Scalar>& hidden_to_hidden() const { return hh_; }
  /// deepstruct's masks: _mask_i2h (masked weight 0) and _mask_h2h (masked weight 1).
  const Mask& mask_i2h() const { return ih_.mask(); }
  const Mask& mask_h2h() const { return hh_.mask(); }
  void set_i2h_mask(const Mask& m) { this->set_mask(0, m); }
  void set_h2h_mask(const Mask& m) { this->set_mask(1, m); }
  const Vector& bias_ih() const { return ih_.bias(); }
  const Vector& bias_hh() const { return hh_.bias(); }
  /// Gradients accumulated since zero_grad().
  const Matrix& weight_ih_grad() const { return ih_.weight_grad(); }
  const Matrix& weight_hh_grad() const { return hh_.weight_grad(); }
  const Vector& bias_ih_grad() const { return ih_.bias_grad(); }
  const Vector& bias_hh_grad() const { return hh_.bias_grad(); }
  void set_bias_ih(const Eigen::Ref<const Vector>& b) { ih_.set_bias(b); }
  void set_bias_hh(const Eigen::Ref<const Vector>& b) { hh_.set_bias(b); }

  // ---- the contract ----------------------------------------------------------------------------

  const char* type_name() const override {
    return kind_ == RecurrentKind::gru ? "MaskedGRULayer" : kind_ == RecurrentKind::lstm ? "MaskedLSTMLayer" : "MaskedRNNLayer";
  }
  std::size_t num_masks() const override { return 2; }
  const char* weight_name(std::size_t k) const override { return this->check_k(k, "weight_name") == 0 ? "_weight_ih" : "_weight_hh"; }
  const MaskedWeight<Scalar>& masked(std::size_t k) const override { return part(this->check_k(k, "masked")).masked(0); }
  const std::vector<Index>* active_positions(std::size_t k) const override {
    return part(this->check_k(k, "active_positions")).active_positions(0);
  }
  void for_each_parameter(ParameterVisitor<Scalar> fn) override {
    ih_.for_each_parameter(fn);
    hh_.for_each_parameter(fn);
  }
  void zero_grad() override {
    ih_.zero_grad();
    hh_.zero_grad();
  }
  Index num_parameters() const override { return ih_.num_parameters() + hh_.num_parameters(); }
  /// deepstruct's initialisation (see the constructor); masks all true unless keep_mask.
  void reset_parameters(Generator& gen, bool keep_mask) override {
    const double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size()));
    auto draw = [&](Scalar* p, Index n) {
      for (Index i = 0; i < n; ++i) p[i] = static_cast<Scalar>(random::uniform(gen, -bound, bound));
    };
    ih_.update_weight([&](Matrix& w) { draw(w.data(), w.size()); });
    hh_.update_weight([&](Matrix& w) { draw(w.data(), w.size()); });
    ih_.update_bias([&](Vector& b) { draw(b.data(), b.size()); });
    hh_.update_bias([&](Vector& b) { draw(b.data(), b.size()); });
    if (!keep_mask) {
      ih_.set_mask(Mask::Constant(ih_.out_features(), ih_.in_features(), true));
      hh_.set_mask(Mask::Constant(hh_.out_features(), hh_.in_features(), true));
    }
    this->clear_saliency();
  }
  /// deepstruct's state_dict entries, in its order.
  void for_each_tensor(TensorVisitor<Scalar> fn) const override {
    const auto& wi = ih_.masked(0);
    const auto& wh = hh_.masked(0);
    fn(TensorRef<Scalar>{"_weight_ih", TensorKind::matrix, wi.value.rows(), wi.value.cols(), wi.value.data(), nullptr});
    fn(TensorRef<Scalar>{"_weight_hh", TensorKind::matrix, wh.value.rows(), wh.value.cols(), wh.value.data(), nullptr});
    fn(TensorRef<Scalar>{"_bias_ih", TensorKind::vector, ih_.bias().size(), 1, ih_.bias().data(), nullptr});
    fn(TensorRef<Scalar>{"_bias_hh", TensorKind::vector, hh_.bias().size(), 1, hh_.bias().data(), nullptr});
    fn(TensorRef<Scalar>{"_mask_i2h", TensorKind::mask, wi.mask.rows(), wi.mask.cols(), nullptr, wi.mask.data()});
    fn(TensorRef<Scalar>{"_mask_h2h", TensorKind::mask, wh.mask.rows(), wh.mask.cols(), nullptr, wh.mask.data()});
  }
  void set_execution(Execution e) override {
    Base::set_execution(e);
    ih_.set_execution(e);
    hh_.set_execution(e);
  }
  void set_dense_gradient(bool on) override {
    ih_.set_dense_gradient(on);
    hh_.set_dense_gradient(on);
  }
  const Matrix* dense_gradient(std::size_t k) const override { return part(this->check_k(k, "dense_gradient")).dense_gradient(0); }
  void set_sparse_threshold(double threshold) override {
    Base::set_sparse_threshold(threshold);
    ih_.set_sparse_threshold(threshold);
    hh_.set_sparse_threshold(threshold);
  }

  // ---- one step (evaluation: nothing is kept) ----------------------------------------------

  /// One step for a batch: x is input x batch, state.h (and state.c for an LSTM) hidden x batch;
  /// writes the next state into `next` (which must not be `state`).
  void step(const Eigen::Ref<const Matrix>& x, const State& state, State& next) {
    check_rows(x, input_size(), "step", "x", "input_size");
    check_state(state, x.cols(), "step");
    ih_.forward(x, gi_);
    hh_.forward(state.h, gh_);
    cell(gi_, gh_, state.h, state.c, next.h, next.c, nullptr, 0);
  }

  // ---- a whole sequence ------------------------------------------------------------------------

  /// Runs the sequence x (input_size x (steps * batch), in this layer's column order) from
  /// `initial` (zeros when null; for an LSTM without initial.c the cell starts as a copy of
  /// initial.h, deepstruct's rule) and writes every step's hidden state into y (hidden x
  /// (steps * batch), the same column order). Keeps the activations for backward.
  void forward(const Eigen::Ref<const Matrix>& x, Index steps, Matrix& y, const State* initial = nullptr) {
    last_batch_ = -1;  // a failed forward leaves nothing for backward
    const Index batch = batch_of(x, steps, "forward");
    if (initial != nullptr) check_state(*initial, batch, "forward", /*cell_optional=*/true);
    const Index H = hidden_size(), TB = steps * batch;
    to_time_major(x, steps, batch, xs_);
    ih_.forward(xs_, gi_);  // every step at once
    hs_.resize(H, (steps + 1) * batch);
    const bool lstm = kind_ == RecurrentKind::lstm;
    if (lstm) cs_.resize(H, (steps + 1) * batch);
    if (initial != nullptr) {
      hs_.leftCols(batch) = initial->h;
      if (lstm) cs_.leftCols(batch) = initial->c.size() != 0 ? initial->c : initial->h;
    } else {
      hs_.leftCols(batch).setZero();
      if (lstm) cs_.leftCols(batch).setZero();
    }
    cell_copied_ = lstm && initial != nullptr && initial->c.size() == 0;
    gates_.resize(gates() * H, kind_ == RecurrentKind::rnn_tanh || kind_ == RecurrentKind::rnn_relu ? 0 : TB);
    if (kind_ == RecurrentKind::gru) ghn_.resize(H, TB);
    for (Index t = 0; t < steps; ++t) {
      const auto h_prev = hs_.middleCols(t * batch, batch);
      if (t == 0 && initial == nullptr) {
        gh_ = hh_.bias().rowwise().replicate(batch);  // W_hh 0 + b_hh
      } else {
        hh_.forward(h_prev, gh_);
      }
      if (lstm) c_prev_ = cs_.middleCols(t * batch, batch);
      cell(gi_.middleCols(t * batch, batch), gh_, h_prev, c_prev_, h_next_, c_next_, gates_.size() != 0 ? &gates_ : nullptr, t * batch);
      hs_.middleCols((t + 1) * batch, batch) = h_next_;
      if (lstm) cs_.middleCols((t + 1) * batch, batch) = c_next_;
      if (kind_ == RecurrentKind::gru) ghn_.middleCols(t * batch, batch) = gh_.bottomRows(H);
    }
    from_time_major(hs_.rightCols(TB), steps, batch, y);
    last_steps_ = steps;
    last_batch_ = batch;
  }

  /// The same hidden states as forward, for evaluation: keeps nothing and changes nothing
  /// backward uses.
  void predict(const Eigen::Ref<const Matrix>& x, Index steps, Matrix& y, const State* initial = nullptr) {
    const Index batch = batch_of(x, steps, "predict");
    if (initial != nullptr) check_state(*initial, batch, "predict", /*cell_optional=*/true);
    const Index H = hidden_size();
    const bool lstm = kind_ == RecurrentKind::lstm;
    Matrix xs, gi, gh, ys(H, steps * batch);
    to_time_major(x, steps, batch, xs);
    ih_.forward(xs, gi);
    State s, next;
    s.h = initial != nullptr ? initial->h : Matrix::Zero(H, batch);
    if (lstm) s.c = initial != nullptr && initial->c.size() != 0 ? initial->c : s.h;
    for (Index t = 0; t < steps; ++t) {
      if (t == 0 && initial == nullptr) {
        gh = hh_.bias().rowwise().replicate(batch);
      } else {
        hh_.forward(s.h, gh);
      }
      cell(gi.middleCols(t * batch, batch), gh, s.h, s.c, next.h, next.c, nullptr, 0);
      ys.middleCols(t * batch, batch) = next.h;
      std::swap(s, next);
    }
    from_time_major(ys, steps, batch, y);
  }

  /// The state after the last step of the last forward (h, and c for an LSTM).
  State final_state() const {
    if (last_batch_ < 0)
      DEEPSTRUCT_THROW(state_error, std::string(type_name()) + "::final_state: expected a preceding forward, found none");
    State s;
    s.h = hs_.rightCols(last_batch_);
    if (kind_ == RecurrentKind::lstm) s.c = cs_.rightCols(last_batch_);
    return s;
  }

  /// Backpropagation through time for the sequence x of the last forward: grad_y is dL/dy
  /// (hidden x (steps * batch), y's column order; zero where the loss does not read a step).
  /// Adds the parameter gradients; writes dL/dx when grad_x is not null and dL/d(initial state)
  /// when grad_initial is not null (its c for an LSTM, unless the forward's cell state started as
  /// the copy of a given h: then dL/dc is in grad_initial->h and c is empty; without an initial
  /// state, h and c were independent zeros and get their own gradients).
  void backward(const Eigen::Ref<const Matrix>& x, const Eigen::Ref<const Matrix>& grad_y, Matrix* grad_x,
                State* grad_initial = nullptr) {
    if (last_batch_ < 0)
      DEEPSTRUCT_THROW(state_error, std::string(type_name()) + "::backward: expected a preceding forward, found none (or a failed one)");
    const Index steps = last_steps_, batch = last_batch_, H = hidden_size(), TB = steps * batch;
    if (x.rows() != input_size() || x.cols() != TB)
      DEEPSTRUCT_THROW(shape_error, std::string(type_name()) + "::backward: expected the input of the last forward, of shape " +
                                        detail::shape_str(input_size(), TB) + ", found " + detail::shape_str(x.rows(), x.cols()));
    check_rows(grad_y, H, "backward", "grad_y", "hidden_size");
    if (grad_y.cols() != TB)
      DEEPSTRUCT_THROW(shape_error, std::string(type_name()) + "::backward: expected grad_y of shape " + detail::shape_str(H, TB) +
                                        " (hidden x steps * batch), found " + detail::shape_str(grad_y.rows(), grad_y.cols()));
    to_time_major(grad_y, steps, batch, gy_);
    const bool lstm = kind_ == RecurrentKind::lstm, gru = kind_ == RecurrentKind::gru;
    dgi_.resize(gates() * H, TB);
    if (gru) dgh_.resize(gates() * H, TB);
    Matrix dh = Matrix::Zero(H, batch), dc, dh_prev;
    if (lstm) dc = Matrix::Zero(H, batch);
    for (Index t = steps; t-- > 0;) {
      const Index c0 = t * batch;
      dh += gy_.middleCols(c0, batch);
      const auto h = hs_.middleCols(c0 + batch, batch);
      const auto h_prev = hs_.middleCols(c0, batch);
      auto dg = dgi_.middleCols(c0, batch);
      switch (kind_) {
        case RecurrentKind::rnn_tanh: dg.array() = dh.array() * (Scalar(1) - h.array().square()); break;
        case RecurrentKind::rnn_relu: dg.array() = (h.array() <= Scalar(0)).select(Scalar(0), dh.array()); break;
        case RecurrentKind::gru: {
          const auto r = gates_.block(0, c0, H, batch).array(), z = gates_.block(H, c0, H, batch).array(),
                     n = gates_.block(2 * H, c0, H, batch).array();
          const auto hn = ghn_.middleCols(c0, batch).array();
          const Matrix dn_pre = (dh.array() * (Scalar(1) - z) * (Scalar(1) - n.square())).matrix();
          const Matrix dr_pre = (dn_pre.array() * hn * r * (Scalar(1) - r)).matrix();
          dg.topRows(H) = dr_pre;
          dg.middleRows(H, H).array() = dh.array() * (h_prev.array() - n) * z * (Scalar(1) - z);
          dg.bottomRows(H) = dn_pre;
          auto dgh = dgh_.middleCols(c0, batch);
          dgh.topRows(2 * H) = dg.topRows(2 * H);
          dgh.bottomRows(H).array() = dn_pre.array() * r;
          dh_prev = (dh.array() * z).matrix();  // the direct path h' = ... + z h
          break;
        }
        case RecurrentKind::lstm: {
          const auto i = gates_.block(0, c0, H, batch).array(), f = gates_.block(H, c0, H, batch).array(),
                     g = gates_.block(2 * H, c0, H, batch).array(), o = gates_.block(3 * H, c0, H, batch).array();
          const auto c = cs_.middleCols(c0 + batch, batch).array(), c_prev = cs_.middleCols(c0, batch).array();
          const auto tc = c.tanh();
          dc.array() += dh.array() * o * (Scalar(1) - tc.square());
          dg.topRows(H).array() = dc.array() * g * i * (Scalar(1) - i);
          dg.middleRows(H, H).array() = dc.array() * c_prev * f * (Scalar(1) - f);
          dg.middleRows(2 * H, H).array() = dc.array() * i * (Scalar(1) - g.square());
          dg.bottomRows(H).array() = dh.array() * tc * o * (Scalar(1) - o);
          dc.array() *= f;  // dL/dc_prev
          break;
        }
      }
      // dL/dh_prev through W_hh (per step: the next step back needs it).
      const auto dgh = gru ? Eigen::Ref<const Matrix>(dgh_.middleCols(c0, batch)) : Eigen::Ref<const Matrix>(dgi_.middleCols(c0, batch));
      if (t > 0 || grad_initial != nullptr) {
        hh_.backward_input(dgh, through_hh_);
        if (gru) dh = dh_prev + through_hh_;
        else dh = through_hh_;
      }
    }
    // Parameter gradients once for the whole sequence (h_0 is zeros without an initial state:
    // its columns add only to the bias gradient); dL/dx for every step at once.
    hh_.backward(hs_.leftCols(TB), gru ? dgh_ : dgi_, nullptr);
    if (grad_x != nullptr) {
      ih_.backward(xs_, dgi_, &dx_);
      from_time_major(dx_, steps, batch, *grad_x);
    } else {
      ih_.backward(xs_, dgi_, nullptr);
    }
    if (grad_initial != nullptr) {
      grad_initial->h = dh;
      if (lstm) {
        if (cell_copied_) {
          grad_initial->h += dc;
          grad_initial->c.resize(0, 0);
        } else {
          grad_initial->c = dc;
        }
      } else {
        grad_initial->c.resize(0, 0);
      }
    }
  }

 protected:
  MaskedWeight<Scalar>& masked_storage(std::size_t k) override { return Base::storage_of(part(this->check_k(k, "masked_storage")), 0); }
  void weight_changed(std::size_t k) override { Base::weight_changed_of(part(k), 0); }
  void mask_changed(std::size_t k) override { Base::mask_changed_of(part(k), 0); }
  void mask_entries_changed(std::size_t k, const std::vector<Index>& removed, const std::vector<Index>& added) override {
    Base::mask_entries_changed_of(part(k), 0, removed, added);
  }
  void tensors_loaded() override {
    Base::tensors_loaded_of(ih_);
    Base::tensors_loaded_of(hh_);
  }
  std::string shape_note(std::size_t k) const override {
    return k == 0 ? "gates * hidden_size x input_size" : "gates * hidden_size x hidden_size";
  }

 private:
  static Index checked(Index n, const char* what) {
    if (n <= 0) DEEPSTRUCT_THROW(shape_error, std::string("MaskedRecurrentLayer: expected ") + what + " >= 1, found " + std::to_string(n));
    return n;
  }
  /// The rows of the gate blocks, gates x hidden_size (shape_error when that overflows an Index).
  static Index gate_rows(RecurrentKind kind, Index hidden_size) {
    checked(hidden_size, "hidden_size");
    if (hidden_size > std::numeric_limits<Index>::max() / gate_count(kind))
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedRecurrentLayer: expected hidden_size x ") + std::to_string(gate_count(kind)) +
                                        " gates to fit an index, found hidden_size " + std::to_string(hidden_size));
    return gate_count(kind) * hidden_size;
  }
  MaskedLinear<Scalar>& part(std::size_t k) { return k == 0 ? ih_ : hh_; }
  const MaskedLinear<Scalar>& part(std::size_t k) const { return k == 0 ? ih_ : hh_; }

  void check_rows(const Eigen::Ref<const Matrix>& m, Index rows, const char* where, const char* what, const char* size_name) const {
    if (m.rows() != rows)
      DEEPSTRUCT_THROW(shape_error, std::string(type_name()) + "::" + where + ": expected " + what + " with " + std::to_string(rows) +
                                        " rows (" + size_name + "), found " + detail::shape_str(m.rows(), m.cols()));
  }
  void check_state(const State& s, Index batch, const char* where, bool cell_optional = false) const {
    if (s.h.rows() != hidden_size() || s.h.cols() != batch)
      DEEPSTRUCT_THROW(shape_error, std::string(type_name()) + "::" + where + ": expected a hidden state of shape " +
                                        detail::shape_str(hidden_size(), batch) + " (hidden x batch), found " +
                                        detail::shape_str(s.h.rows(), s.h.cols()));
    if (kind_ != RecurrentKind::lstm) return;
    if (cell_optional && s.c.size() == 0) return;
    if (s.c.rows() != hidden_size() || s.c.cols() != batch)
      DEEPSTRUCT_THROW(shape_error, std::string(type_name()) + "::" + where + ": expected a cell state of shape " +
                                        detail::shape_str(hidden_size(), batch) + ", found " + detail::shape_str(s.c.rows(), s.c.cols()));
  }
  Index batch_of(const Eigen::Ref<const Matrix>& x, Index steps, const char* where) const {
    check_rows(x, input_size(), where, "x", "input_size");
    if (steps <= 0 || x.cols() % steps != 0)
      DEEPSTRUCT_THROW(shape_error, std::string(type_name()) + "::" + where + ": expected steps >= 1 dividing the " +
                                        std::to_string(x.cols()) + " columns of x (steps * batch), found steps = " + std::to_string(steps));
    return x.cols() / steps;
  }

  /// Columns in time-major order (t * batch + b) from this layer's order.
  void to_time_major(const Eigen::Ref<const Matrix>& in, Index steps, Index batch, Matrix& out) const {
    if (!batch_first_) {
      out = in;
      return;
    }
    out.resize(in.rows(), in.cols());
    for (Index b = 0; b < batch; ++b)
      for (Index t = 0; t < steps; ++t) out.col(t * batch + b) = in.col(b * steps + t);
  }
  /// Columns in this layer's order from time-major ones.
  void from_time_major(const Eigen::Ref<const Matrix>& in, Index steps, Index batch, Matrix& out) const {
    if (!batch_first_) {
      out = in;
      return;
    }
    out.resize(in.rows(), in.cols());
    for (Index b = 0; b < batch; ++b)
      for (Index t = 0; t < steps; ++t) out.col(b * steps + t) = in.col(t * batch + b);
  }

  /// One step of the cell: gi = W_ih x + b_ih and gh = W_hh h + b_hh for the step's batch,
  /// h_prev (and c_prev, LSTM) the previous state; writes h_next (and c_next). With `gates` it
  /// stores the activated gates (GRU r, z, n; LSTM i, f, g, o) at columns col.. for backward.
  void cell(const Eigen::Ref<const Matrix>& gi, const Eigen::Ref<const Matrix>& gh, const Eigen::Ref<const Matrix>& h_prev,
            const Eigen::Ref<const Matrix>& c_prev, Matrix& h_next, Matrix& c_next, Matrix* gates, Index col) {
    const Index H = hidden_size(), batch = gi.cols();
    switch (kind_) {
      case RecurrentKind::rnn_tanh: h_next = (gi + gh).array().tanh().matrix(); break;
      case RecurrentKind::rnn_relu: h_next = (gi + gh).cwiseMax(Scalar(0)); break;
      case RecurrentKind::gru: {
        const Matrix r = sigmoid(gi.topRows(H) + gh.topRows(H));
        const Matrix z = sigmoid(gi.middleRows(H, H) + gh.middleRows(H, H));
        const Matrix n = (gi.bottomRows(H).array() + r.array() * gh.bottomRows(H).array()).tanh().matrix();
        h_next = (n.array() + z.array() * (h_prev.array() - n.array())).matrix();
        if (gates != nullptr) {
          gates->block(0, col, H, batch) = r;
          gates->block(H, col, H, batch) = z;
          gates->block(2 * H, col, H, batch) = n;
        }
        break;
      }
      case RecurrentKind::lstm: {
        const Matrix pre = gi + gh;
        const Matrix i = sigmoid(pre.topRows(H)), f = sigmoid(pre.middleRows(H, H)), o = sigmoid(pre.bottomRows(H));
        const Matrix g = pre.middleRows(2 * H, H).array().tanh().matrix();
        c_next = (f.array() * c_prev.array() + i.array() * g.array()).matrix();
        h_next = (o.array() * c_next.array().tanh()).matrix();
        if (gates != nullptr) {
          gates->block(0, col, H, batch) = i;
          gates->block(H, col, H, batch) = f;
          gates->block(2 * H, col, H, batch) = g;
          gates->block(3 * H, col, H, batch) = o;
        }
        break;
      }
    }
  }
  template <typename E>
  static Matrix sigmoid(const E& e) {
    return (Scalar(1) / (Scalar(1) + (-e.array()).exp())).matrix();
  }

  RecurrentKind kind_;
  bool batch_first_;
  MaskedLinear<Scalar> ih_, hh_;
  // The last sequence forward: inputs in time-major order, the input products of every step, the
  // states h_0..h_T (and c_0..c_T), the activated gates, GRU's h_n = W_hn h + b_hn.
  Matrix xs_, gi_, gh_, hs_, cs_, gates_, ghn_, h_next_, c_next_, c_prev_;
  Index last_steps_ = 0, last_batch_ = -1;
  bool cell_copied_ = false;
  // backward's buffers
  Matrix gy_, dgi_, dgh_, through_hh_, dx_;
};

/// deepstruct's MaskedRecurrentLayer: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or ReLU.
template <typename Scalar>
class MaskedRNNLayer : public MaskedRecurrentLayer<Scalar> {
 public:
  MaskedRNNLayer(Eigen::Index input_size, Eigen::Index hidden_size, bool relu = false, bool batch_first = false, std::uint64_t seed = 0)
      : MaskedRecurrentLayer<Scalar>(relu ? RecurrentKind::rnn_relu : RecurrentKind::rnn_tanh, input_size, hidden_size, batch_first,
                                     seed) {}
};

/// deepstruct's MaskedGRULayer (PyTorch's GRU cell; gate blocks reset, update, new).
template <typename Scalar>
class MaskedGRULayer : public MaskedRecurrentLayer<Scalar> {
 public:
  MaskedGRULayer(Eigen::Index input_size, Eigen::Index hidden_size, bool batch_first = false, std::uint64_t seed = 0)
      : MaskedRecurrentLayer<Scalar>(RecurrentKind::gru, input_size, hidden_size, batch_first, seed) {}
};

/// deepstruct's MaskedLSTMLayer (PyTorch's LSTM cell; gate blocks input, forget, cell, output).
template <typename Scalar>
class MaskedLSTMLayer : public MaskedRecurrentLayer<Scalar> {
 public:
  MaskedLSTMLayer(Eigen::Index input_size, Eigen::Index hidden_size, bool batch_first = false, std::uint64_t seed = 0)
      : MaskedRecurrentLayer<Scalar>(RecurrentKind::lstm, input_size, hidden_size, batch_first, seed) {}
};

}  // namespace deepstruct
