// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_linear.hpp
/// MaskedLinear<Scalar>: y = (W o M) x + b, a linear layer whose out x in weight matrix carries a
/// boolean mask of the same shape (deepstruct's MaskedLinearLayer). Samples are columns: a batch
/// is a features x batch column-major matrix, the same memory as PyTorch's batch-first tensor.
///
/// Two execution paths give the same results: dense (Eigen GEMM on the cached product W o M) and
/// sparse (CSR of the active weights, tiled over the batch). The path follows the density of the
/// mask and a threshold (see sparse_threshold()), or is forced with set_execution().

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/activation.hpp"
#include "deepstruct/detail/alias.hpp"
#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/detail/gemm.hpp"
#include "deepstruct/detail/memory.hpp"
#include "deepstruct/detail/sparse_kernels.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/threads.hpp"

namespace deepstruct {

template <typename Scalar_>
class MaskedLinear : public MaskedLayer<Scalar_> {
  static_assert(std::is_floating_point<Scalar_>::value, "MaskedLinear<Scalar>: Scalar must be float or double");
  using Base = MaskedLayer<Scalar_>;

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;

  /// in_features -> out_features with PyTorch's default initialisation: weights and bias uniform
  /// in [-1/sqrt(in_features), 1/sqrt(in_features)), drawn from `gen`. The mask is all true.
  MaskedLinear(Index in_features, Index out_features, bool bias, Generator& gen) {
    init_shape(in_features, out_features, bias, "MaskedLinear");
    reset_parameters(gen, false);
  }

  /// As above with a fresh generator seeded by `seed`: the same seed gives the same layer.
  explicit MaskedLinear(Index in_features, Index out_features, bool bias = true, std::uint64_t seed = 0) {
    init_shape(in_features, out_features, bias, "MaskedLinear");
    Generator gen(seed);
    reset_parameters(gen, false);
  }

  /// From given parameters: the weight w (out x in), the bias b (size 0: no bias) and the mask m
  /// (w's shape; all true when not given).
  MaskedLinear(const ConstMatrixRef& w, const Eigen::Ref<const Vector>& b, const Mask& m) {
    init_shape(w.cols(), w.rows(), b.size() != 0, "MaskedLinear(weight, bias, mask)");
    if (b.size() != 0 && b.size() != w.rows())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear(weight, bias, mask): expected a bias of size " +
                                        std::to_string(w.rows()) + " (out_features) or 0, found " +
                                        std::to_string(b.size()));
    if (m.rows() != w.rows() || m.cols() != w.cols())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear(weight, bias, mask): expected a mask of the weight's shape " +
                                        detail::shape_str(w.rows(), w.cols()) + " (out_features x in_features), found " +
                                        detail::shape_str(m.rows(), m.cols()));
    w_.value = w;
    bias_ = b;
    set_mask(m);
  }
  MaskedLinear(const ConstMatrixRef& w, const Eigen::Ref<const Vector>& b)
      : MaskedLinear(w, b, Mask::Constant(w.rows(), w.cols(), true)) {}

  // ---- the contract (Module, MaskedLayer) ------------------------------------------------------

  const char* type_name() const override { return "MaskedLinear"; }
  std::size_t num_masks() const override { return 1; }
  const char* weight_name(std::size_t) const override { return "weight"; }
  const MaskedWeight<Scalar>& masked(std::size_t k) const override {
    this->check_k(k, "masked");
    return w_;
  }
  /// The positions of the active weights, ascending (see active_positions()).
  const std::vector<Index>* active_positions(std::size_t k) const override {
    this->check_k(k, "active_positions");
    return &active_positions();
  }

  /// Visits the weight (with its mask) and the bias. Caches follow whatever fn changes.
  void for_each_parameter(ParameterVisitor<Scalar> fn) override {
    ensure_grad_buffers();
    const Scalar* weight_grad = weight_grad_.data();
    const bool* mask_data = w_.mask.data();
    const std::vector<Index>* active = &active_positions();
    update_weight([&](Matrix& w) { fn(ParameterRef<Scalar>{w.data(), weight_grad, w.size(), mask_data, active}); });
    if (has_bias_) update_bias([&](Vector& b) { fn(ParameterRef<Scalar>{b.data(), bias_grad_.data(), b.size(), nullptr}); });
  }
  /// deepstruct's state_dict entries, in its order: weight, bias (if any), _mask.
  void for_each_tensor(TensorVisitor<Scalar> fn) const override {
    fn(TensorRef<Scalar>{"weight", TensorKind::matrix, w_.value.rows(), w_.value.cols(), w_.value.data(), nullptr});
    if (has_bias_) fn(TensorRef<Scalar>{"bias", TensorKind::vector, bias_.size(), 1, bias_.data(), nullptr});
    TensorRef<Scalar> m{"_mask", TensorKind::mask, w_.mask.rows(), w_.mask.cols(), nullptr, w_.mask.data()};
    m.optional = optional_mask_;
    fn(m);
  }
  /// With `optional`, the "_mask" entry is left out of state_dict() while every weight is active
  /// and a state_dict without it loads as all active: the keys of a plain torch.nn.Linear (as
  /// DeepCellDAN's _last_fc). Off by default (deepstruct's MaskedLinearLayer always has _mask).
  void set_optional_mask(bool optional) { optional_mask_ = optional; }
  bool optional_mask() const { return optional_mask_; }
  Index num_parameters() const override { return w_.value.size() + bias_.size(); }

  // ---- shape and parameters -----------------------------------------------------------------

  Index in_features() const { return w_.value.cols(); }
  Index out_features() const { return w_.value.rows(); }
  bool has_bias() const { return has_bias_; }

  using Base::weight;
  using Base::mask;
  using Base::set_weight;
  using Base::set_mask;
  using Base::update_weight;
  using Base::update_mask;
  using Base::saliency;
  using Base::set_saliency;
  using Base::has_custom_saliency;
  using Base::effective_weight;

  /// The bias (size out_features; size 0 without bias).
  const Vector& bias() const { return bias_; }

  void set_bias(const Eigen::Ref<const Vector>& bias) {
    if (bias.size() != bias_.size())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::set_bias: expected a bias of size " + std::to_string(bias_.size()) +
                                        ", found " + std::to_string(bias.size()));
    bias_ = bias;
  }
  /// Changes the bias in place: `fn(Vector& bias)`. fn must keep the size: if it resizes the bias,
  /// the bias is reset to zeros of the layer's size and shape_error is thrown.
  template <typename Fn>
  void update_bias(Fn&& fn) {
    const Index size = bias_.size();
    try {
      fn(bias_);
    } catch (...) {
      if (bias_.size() != size) bias_.setZero(size);
      throw;
    }
    if (bias_.size() != size) {
      const Index found = bias_.size();
      bias_.setZero(size);
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::update_bias: expected fn to keep the bias size " +
                                        std::to_string(size) + (has_bias_ ? " (out_features)" : " (a layer without bias)") +
                                        ", found " + std::to_string(found) +
                                        " (the bias was reset to zeros of the expected size)");
    }
  }

  // ---- initialisation -------------------------------------------------------------------------

  using Base::reset_parameters;
  /// PyTorch's default initialisation again; the mask becomes all true unless keep_mask.
  void reset_parameters(Generator& gen, bool keep_mask = false) override {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features()));
    for (Index i = 0; i < w_.value.size(); ++i)
      w_.value.data()[i] = static_cast<Scalar>(random::uniform(gen, -bound, bound));
    for (Index i = 0; i < bias_.size(); ++i) bias_[i] = static_cast<Scalar>(random::uniform(gen, -bound, bound));
    if (!keep_mask) {
      w_.mask.setConstant(w_.value.rows(), w_.value.cols(), true);
      w_.nnz = w_.mask.size();
      mask_changed(0);
    }
    weight_changed(0);
    this->clear_saliency();
  }

  // ---- forward --------------------------------------------------------------------------------

  /// y = (W o M) x + b into a caller-owned out x batch matrix (no allocation once y has its size).
  /// Keeps nothing of x. y must not share memory with x (shape_error otherwise).
  void forward(const ConstMatrixRef& x, Matrix& y) {
    check_input(x, "forward");
    detail::check_no_alias(x, y, "MaskedLinear::forward", "y", "x");
    y.resize(out_features(), x.cols());
    if (x.cols() == 0) return;
    if (sparse_forward_path(x.cols())) {
      refresh_sparse();
      const int threads = sparse_threads(x.cols(), sparse_flops(x.cols()));
      scratch_.prepare(in_features(), out_features(), fwd_.nnz(), threads, false);
      detail::sparse_forward<Scalar>(fwd_, has_bias_ ? bias_.data() : nullptr, x.data(), x.outerStride(), in_features(),
                                     out_features(), x.cols(), y.data(), y.outerStride(), scratch_, threads);
    } else {
      // Threads only for large products, split by deepstruct (detail::split_product).
      if (has_bias_) {
        // GEMM accumulates into the bias: one pass over y instead of two.
        y.colwise() = bias_;
        detail::split_product(y, detail::gemm_operand(dense_weight()), detail::gemm_operand(x), true);
      } else {
        detail::split_product(y, detail::gemm_operand(dense_weight()), detail::gemm_operand(x), false);
      }
    }
  }

  /// y = (W o M) x + b, returned by value (allocates; forward(x, y) reuses y's memory).
  Matrix forward(const ConstMatrixRef& x) {
    Matrix y;
    forward(x, y);
    return y;
  }

  /// Whether forward() over `batch` samples runs the sparse kernels (execution(), the mask's
  /// density and sparse_threshold(); a single sample under Execution::automatic has a threshold
  /// of its own, detail::single_sample_sparse_threshold).
  bool runs_sparse_forward(Index batch) const { return sparse_forward_path(batch); }

  /// The forward of a chain of n layers with an activation f between them: y = L_n(f(... f(L_1
  /// x))), and f of that too when activate_output (chain[l + 1]'s inputs are chain[l]'s outputs).
  /// The results of the layers' forward() with activate() between them. When every layer runs its
  /// sparse forward for this batch and the batch is more than a few samples, each tile of the
  /// batch goes through all n layers while it is in cache (detail::sparse_chain_forward): no hidden
  /// layer is transposed, written to memory or activated in a pass of its own. MaskedDeepDAN's
  /// predict() runs its layers this way. y must not share memory with x.
  static void forward_chain(MaskedLinear* const* chain, std::size_t n, Activation f, bool activate_output,
                            const ConstMatrixRef& x, Matrix& y) {
    if (n == 0 || chain == nullptr)
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::forward_chain: expected at least one layer, found none");
    for (std::size_t l = 0; l < n; ++l) {
      if (chain[l] == nullptr)
        DEEPSTRUCT_THROW(shape_error, "MaskedLinear::forward_chain: expected a layer at position " + std::to_string(l) + ", found null");
      if (l > 0 && chain[l]->in_features() != chain[l - 1]->out_features())
        DEEPSTRUCT_THROW(shape_error, "MaskedLinear::forward_chain: expected layer " + std::to_string(l) + " to take the " +
                                          std::to_string(chain[l - 1]->out_features()) + " outputs of layer " +
                                          std::to_string(l - 1) + ", found " + std::to_string(chain[l]->in_features()) +
                                          " inputs");
    }
    MaskedLinear& first = *chain[0];
    first.check_input(x, "forward_chain");
    detail::check_no_alias(x, y, "MaskedLinear::forward_chain", "y", "x");
    const Index batch = x.cols();
    bool tiled = batch > detail::per_sample_batch<Scalar>;
    for (std::size_t l = 0; l < n && tiled; ++l) tiled = chain[l]->sparse_forward_path(batch);
    if (!tiled) {
      Matrix hidden[2];
      for (std::size_t l = 0; l < n; ++l) {
        Matrix& out = l + 1 == n ? y : hidden[l % 2];
        if (l == 0)
          chain[l]->forward(x, out);
        else
          chain[l]->forward(hidden[(l - 1) % 2], out);
        if (l + 1 < n || activate_output) activate(f, out, out);
      }
      return;
    }
    y.resize(chain[n - 1]->out_features(), batch);
    std::vector<detail::ChainLayer<Scalar>>& layers = first.scratch_.chain;  // no allocation once sized
    layers.resize(n);
    Index widest = 0;
    double flops = 0;
    for (std::size_t l = 0; l < n; ++l) {
      MaskedLinear& layer = *chain[l];
      layer.refresh_sparse();
      layers[l].blocks = &layer.fwd_;
      layers[l].bias = layer.has_bias_ ? layer.bias_.data() : nullptr;
      layers[l].out = layer.out_features();
      widest = std::max(widest, layer.out_features());
      flops += layer.sparse_flops(batch);
    }
    const int threads = first.sparse_threads(batch, flops);
    first.scratch_.prepare_chain(first.in_features(), widest, threads, n);
    constexpr Index T = detail::batch_tile<Scalar>;
    detail::sparse_chain_forward<Scalar>(layers.data(), n, activate_output, x.data(), x.outerStride(), first.in_features(),
                                         batch, y.data(), y.outerStride(), first.scratch_, threads,
                                         [f](Scalar* tile, Index rows, Index columns) {
                                           // rows x columns of a row-major tile with row stride T:
                                           // all of it in one run when the tile is full
                                           if (columns == T) {
                                             activate_values(f, tile, tile, rows * T);
                                           } else {
                                             for (Index r = 0; r < rows; ++r) activate_values(f, tile + r * T, tile + r * T, columns);
                                           }
                                         });
  }

  // ---- backward -------------------------------------------------------------------------------

  /// Backward through the layer for the input `x` that forward saw: adds dL/dW (zero behind the
  /// mask) and dL/db to the gradients, and writes dL/dx into *grad_input unless it is null
  /// (the first layer of a network needs no input gradient). *grad_input must not share memory
  /// with x or grad_output (shape_error otherwise).
  void backward(const ConstMatrixRef& x, const ConstMatrixRef& grad_output, Matrix* grad_input) {
    check_input(x, "backward");
    if (grad_output.rows() != out_features() || grad_output.cols() != x.cols())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::backward: expected grad_output of shape " +
                                        detail::shape_str(out_features(), x.cols()) +
                                        " (out_features x batch), found " +
                                        detail::shape_str(grad_output.rows(), grad_output.cols()));
    if (grad_input != nullptr) {
      detail::check_no_alias(x, *grad_input, "MaskedLinear::backward", "grad_input", "x");
      detail::check_no_alias(grad_output, *grad_input, "MaskedLinear::backward", "grad_input", "grad_output");
    }
    ensure_grad_buffers();
    if (grad_input != nullptr) grad_input->resize(in_features(), x.cols());
    if (x.cols() == 0) {
      if (grad_input != nullptr) grad_input->setZero();
      return;
    }
    if (dense_.on) {
      // Sparse training's update step: the gradient of every weight, one dense product, then the
      // parameter gradient behind the mask from it; the input gradient as usual.
      dense_.step.resize(out_features(), in_features());
      detail::split_product(dense_.step, detail::gemm_operand(grad_output), detail::gemm_transposed(x), false);
      dense_.finish(w_.mask, weight_grad_);
      grad_touched_outside_pattern_ = true;
      if (has_bias_) bias_grad_.noalias() += grad_output * Vector::Ones(x.cols());
      if (grad_input != nullptr) backward_input(grad_output, *grad_input);
      return;
    }
    if (this->uses_sparse_path(0)) {
      refresh_sparse();
      const double flops = 2.0 * sparse_flops(x.cols());
      const int groups = sparse_groups(x.cols(), flops), threads = std::min(sparse_threads(x.cols(), flops), groups);
      scratch_.prepare(in_features(), out_features(), bwd_.nnz(), threads, true, groups);
      grad_values_.assign(bwd_.value.size(), Scalar(0));
      detail::sparse_backward<Scalar>(bwd_, x.data(), x.outerStride(), grad_output.data(), grad_output.outerStride(),
                                      in_features(), out_features(), x.cols(), grad_values_.data(),
                                      has_bias_ ? bias_grad_.data() : nullptr,
                                      grad_input != nullptr ? grad_input->data() : nullptr,
                                      grad_input != nullptr ? grad_input->outerStride() : 0, scratch_, threads, groups);
      // The gradients in column-major order (the blocked CSC's): nearby positions, not one
      // 4 * out_features bytes apart per entry as in row order.
      Scalar* gw = weight_grad_.data();
      const Index* pos = bwd_.pos.data();
      const std::size_t n = grad_values_.size();
      constexpr std::size_t ahead = 16;  // prefetch distance: the lines are scattered, often not cached
      for (std::size_t k = 0; k < n; ++k) {
        if (k + ahead < n) Eigen::internal::prefetch(gw + pos[k + ahead]);
        gw[pos[k]] += grad_values_[k];
      }
    } else {
      // dL/db = g 1: a matrix-vector product reads g column by column, once.
      if (has_bias_) bias_grad_.noalias() += grad_output * Vector::Ones(x.cols());
      // GEMM accumulates straight into the gradient, which is zero behind the mask; one pass of
      // the mask then clears what landed there (none to clear when every weight is active).
      detail::split_product(weight_grad_, detail::gemm_operand(grad_output), detail::gemm_transposed(x), true);
      if (w_.nnz != w_.value.size()) weight_grad_ = w_.mask.select(weight_grad_, Scalar(0));
      grad_touched_outside_pattern_ = true;
      if (grad_input != nullptr)
        detail::split_product(*grad_input, detail::gemm_transposed(dense_weight()), detail::gemm_operand(grad_output), false);
    }
  }

  /// dL/dx = (W o M)^T grad_output into *grad_input, and nothing else: no parameter gradient
  /// (a recurrent layer needs the input gradient step by step and the weight gradient once for
  /// the whole sequence). grad_input must not share memory with grad_output.
  void backward_input(const ConstMatrixRef& grad_output, Matrix& grad_input) {
    if (grad_output.rows() != out_features())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::backward_input: expected grad_output with " + std::to_string(out_features()) +
                                        " rows (out_features x batch), found " +
                                        detail::shape_str(grad_output.rows(), grad_output.cols()));
    detail::check_no_alias(grad_output, grad_input, "MaskedLinear::backward_input", "grad_input", "grad_output");
    grad_input.resize(in_features(), grad_output.cols());
    if (grad_output.cols() == 0) return;
    if (this->uses_sparse_path(0)) {
      refresh_sparse();
      const int threads = sparse_threads(grad_output.cols(), sparse_flops(grad_output.cols()));
      scratch_.prepare(in_features(), out_features(), bwd_.nnz(), threads, true);
      // No gradient sums: each tile's input gradient is its own, so one group per thread.
      detail::sparse_backward<Scalar>(bwd_, nullptr, 0, grad_output.data(), grad_output.outerStride(), in_features(),
                                      out_features(), grad_output.cols(), nullptr, nullptr, grad_input.data(),
                                      grad_input.outerStride(), scratch_, threads, threads);
    } else {
      detail::split_product(grad_input, detail::gemm_transposed(dense_weight()), detail::gemm_operand(grad_output), false);
    }
  }

  /// backward(x, grad_output, &grad_input), returning dL/dx.
  Matrix backward(const ConstMatrixRef& x, const ConstMatrixRef& grad_output) {
    Matrix grad_input;
    backward(x, grad_output, &grad_input);
    return grad_input;
  }

  /// dL/dW accumulated since zero_grad() (out x in; exactly zero behind the mask).
  const Matrix& weight_grad() const {
    ensure_grad_buffers();
    return weight_grad_;
  }
  /// dL/db accumulated since zero_grad() (size 0 without bias).
  const Vector& bias_grad() const {
    ensure_grad_buffers();
    return bias_grad_;
  }
  /// Sets the gradients to zero. After sparse-only backward passes this touches only the active
  /// positions.
  void zero_grad() override {
    dense_.zero(out_features(), in_features());
    if (weight_grad_.size() == 0) return;
    if (grad_touched_outside_pattern_) {
      weight_grad_.setZero();
      grad_touched_outside_pattern_ = false;
    } else {
      refresh_sparse_pattern();
      Scalar* gw = weight_grad_.data();
      for (const Index pos : bwd_.pos) gw[pos] = Scalar(0);
    }
    bias_grad_.setZero();
  }

  void set_dense_gradient(bool on) override {
    dense_.set(on, out_features(), in_features());
  }
  const Matrix* dense_gradient(std::size_t k) const override {
    this->check_k(k, "dense_gradient");
    return dense_.get();
  }

  /// Positions (o + i * out_features, column-major) of the active weights, ascending.
  const std::vector<Index>& active_positions() const {
    refresh_sparse_pattern();
    return active_sorted_;
  }

 protected:
  MaskedWeight<Scalar>& masked_storage(std::size_t k) override {
    this->check_k(k, "masked_storage");
    return w_;
  }
  void weight_changed(std::size_t) override {
    dense_stale_ = true;
    sparse_values_stale_ = true;
  }
  void mask_changed(std::size_t) override {
    dense_stale_ = true;
    sparse_pattern_stale_ = true;
    sparse_values_stale_ = true;
    // Gradients may sit at positions that just became inactive.
    if (weight_grad_.size() != 0) weight_grad_ = w_.mask.select(weight_grad_, Scalar(0));
    grad_touched_outside_pattern_ = true;
  }
  void mask_entries_changed(std::size_t, const std::vector<Index>& removed, const std::vector<Index>& added) override {
    if (weight_grad_.size() != 0)
      for (const Index p : removed) weight_grad_.data()[p] = Scalar(0);
    // The dense path's W o M, patched where it is up to date.
    if (!dense_stale_ && masked_weight_.size() == w_.value.size()) {
      for (const Index p : removed) masked_weight_.data()[p] = Scalar(0);
      for (const Index p : added) masked_weight_.data()[p] = w_.value.data()[p];
    } else {
      dense_stale_ = true;
    }
    // The sparse index, rebuilt from the old one in O(nnz + rows + columns + changes), no pass over W.
    if (!sparse_pattern_stale_) {
      csr_.apply_changes(removed, added, w_.mask.data(), out_features(), in_features());
      std::vector<Index> merged;
      merged.reserve(static_cast<std::size_t>(w_.nnz));
      std::size_t a = 0;
      for (const Index p : active_sorted_) {
        while (a < added.size() && added[a] < p) merged.push_back(added[a++]);
        if (w_.mask.data()[p]) merged.push_back(p);  // removed ones are false in the new mask
      }
      while (a < added.size()) merged.push_back(added[a++]);
      active_sorted_.swap(merged);
      build_blocks();
      sparse_values_stale_ = true;
    }
  }
  void tensors_loaded() override {
    w_.nnz = w_.mask.count();
    mask_changed(0);
  }
  std::string shape_note(std::size_t) const override { return "out_features x in_features"; }

 private:
  void init_shape(Index in, Index out, bool bias, const char* where) {
    if (in <= 0 || out <= 0)
      DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected in_features >= 1 and out_features >= 1, found " +
                                        std::to_string(in) + " -> " + std::to_string(out));
    // The sparse index stores input and output features as int32 (CSR columns, CSC rows).
    if (in > std::numeric_limits<std::int32_t>::max())
      DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected in_features < 2^31, found " + std::to_string(in));
    if (out > std::numeric_limits<std::int32_t>::max())
      DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected out_features < 2^31, found " + std::to_string(out));
    // The weight and its mask, before anything is allocated (2^31 x 2^31 would be a bad_alloc).
    detail::check_fits_memory<shape_error>(where, std::to_string(out) + " x " + std::to_string(in) + " weights and their mask",
                                           static_cast<double>(out) * static_cast<double>(in) * static_cast<double>(sizeof(Scalar) + 1));
    has_bias_ = bias;
    w_.resize(out, in);
    bias_.resize(bias ? out : 0);
  }

  void check_input(const ConstMatrixRef& x, const char* where) const {
    if (x.rows() != in_features())
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedLinear::") + where + ": expected input with " +
                                        std::to_string(in_features()) +
                                        " rows (in_features x batch, one sample per column), found " +
                                        detail::shape_str(x.rows(), x.cols()));
  }

  /// Groups of batch tiles in the sparse backward, each summing its weight gradients on its own
  /// (detail::sparse_backward): detail::gradient_groups(), at most one per tile.
  int sparse_groups(Index batch, double flops) const {
    return detail::gradient_groups(flops, (batch + detail::batch_tile<Scalar> - 1) / detail::batch_tile<Scalar>);
  }

  /// Floating-point operations of one sparse product over `batch` samples, with the tile
  /// transposes counted as one operation per moved scalar.
  double sparse_flops(Index batch) const {
    return (2.0 * static_cast<double>(w_.nnz) + static_cast<double>(in_features() + out_features())) * static_cast<double>(batch);
  }

  /// Threads for the sparse kernels over `batch` samples: by the work (detail::threads_for), and
  /// at most one per batch tile, the unit the kernels share out; the scratch holds tiles per thread.
  int sparse_threads(Index batch, double flops) const {
    const Index tiles = (batch + detail::batch_tile<Scalar> - 1) / detail::batch_tile<Scalar>;
    return static_cast<int>(std::min<Index>(detail::threads_for(flops), std::max<Index>(1, tiles)));
  }

  /// The path of a forward over `batch` samples: uses_sparse_path(), except that
  /// Execution::automatic runs a single sample densely above single_sample_sparse_threshold.
  bool sparse_forward_path(Index batch) const {
    if (!this->uses_sparse_path(0)) return false;
    return this->execution() != Execution::automatic || batch > detail::per_sample_batch<Scalar> ||
           this->density(0) <= detail::single_sample_sparse_threshold;
  }

  /// The weights the dense path multiplies with: W itself when every weight is active (no copy),
  /// otherwise the cached W o M (refreshed when W or M changed).
  const Matrix& dense_weight() {
    if (w_.nnz == w_.value.size()) return w_.value;
    if (dense_stale_) {
      // select, not W * M: a NaN or Inf behind the mask must not reach the outputs (NaN * 0 is
      // NaN), so that both paths compute with the active weights only.
      masked_weight_ = w_.mask.select(w_.value, Scalar(0));
      dense_stale_ = false;
    }
    return masked_weight_;
  }
  void refresh_sparse_pattern() const {
    if (!sparse_pattern_stale_) return;
    csr_.build_pattern(w_.mask);
    build_blocks();
    active_sorted_.clear();
    active_sorted_.reserve(static_cast<std::size_t>(w_.nnz));
    const bool* m = w_.mask.data();
    for (Index i = 0; i < w_.mask.size(); ++i)
      if (m[i]) active_sorted_.push_back(i);
    sparse_pattern_stale_ = false;
    sparse_values_stale_ = true;
  }
  void refresh_sparse() const {
    refresh_sparse_pattern();
    if (!sparse_values_stale_) return;
    fwd_.gather(w_.value.data());
    bwd_.gather(w_.value.data());
    sparse_values_stale_ = false;
  }
  /// The blocked forms of the CSR (forward) and CSC (backward) the kernels run on.
  void build_blocks() const {
    const Index out = out_features(), in = in_features(), T = detail::batch_tile<Scalar>;
    fwd_.build(out, in, csr_.row_start.data(), csr_.col.data(), T, [out](Index o, Index i) { return o + i * out; });
    bwd_.build(in, out, csr_.col_start.data(), csr_.row.data(), T, [out](Index i, Index o) { return o + i * out; });
  }
  /// Allocates the (zero) gradients on first use: layers that only run forward carry none.
  void ensure_grad_buffers() const {
    if (weight_grad_.size() == 0) {
      weight_grad_.setZero(out_features(), in_features());
      bias_grad_.setZero(bias_.size());
    }
  }

  MaskedWeight<Scalar> w_;
  Vector bias_;
  bool has_bias_ = true;
  bool optional_mask_ = false;

  // Allocated lazily (all zero until then), also by the const accessors.
  mutable Matrix weight_grad_;
  mutable Vector bias_grad_;
  bool grad_touched_outside_pattern_ = false;

  // Caches, refreshed lazily when W or M changed (the sparse ones also by active_positions() const).
  Matrix masked_weight_;
  bool dense_stale_ = true;
  mutable detail::CsrWeights<Scalar> csr_;
  mutable detail::SparseBlocks<Scalar> fwd_, bwd_;  // what the kernels run on (built from csr_)
  mutable std::vector<Index> active_sorted_;  // the active positions, ascending (optimizers)
  mutable bool sparse_pattern_stale_ = true;
  mutable bool sparse_values_stale_ = true;

  // Scratch reused across calls.
  detail::SparseScratch<Scalar> scratch_;  // the kernels' tiles, per thread (cache-line aligned)
  std::vector<Scalar> grad_values_;
  // Sparse training: the dense gradient while captured, and one backward's share of it.
  detail::DenseGradient<Scalar> dense_;
};

using MaskedLinearf = MaskedLinear<float>;
using MaskedLineard = MaskedLinear<double>;

}  // namespace deepstruct

// Compiled mode (detail/compiled_mode.hpp): the instantiations that instantiate.hpp compiles.
#define DEEPSTRUCT_INSTANTIATIONS_MASKED_LINEAR(prefix, S) prefix template class ::deepstruct::MaskedLinear<S>;
DEEPSTRUCT_DECLARE_EXTERN(DEEPSTRUCT_INSTANTIATIONS_MASKED_LINEAR)
