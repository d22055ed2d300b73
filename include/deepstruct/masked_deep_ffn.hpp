// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_deep_ffn.hpp
/// MaskedDeepFFN<Scalar>: deepstruct's masked feed-forward network of any width and depth.
/// Linear -> act, then for every further hidden layer Linear -> (LayerNorm) -> act, then the
/// output Linear without activation (logits). Every Linear is a MaskedLinear.

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/activation.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/layer_norm.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/parameter.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

/// deepstruct's default threshold of MaskableModule.recompute_mask (models), 1e-4.
inline constexpr double default_model_theta = 1e-4;

struct FFNOptions {
  bool use_layer_norm = false;             ///< LayerNorm (eps 1e-5) after hidden layers 2.., as deepstruct
  Activation activation = Activation::relu;
  bool bias = true;
  std::uint64_t seed = 0;                  ///< initialisation seed (ignored by the Generator& constructor)
};

template <typename Scalar_>
class MaskedDeepFFN {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Layer = MaskedLinear<Scalar>;
  using Norm = LayerNorm<Scalar>;
  using Matrix = typename Layer::Matrix;
  using Vector = typename Layer::Vector;
  using Mask = typename Layer::Mask;

  /// inputs -> hidden[0] -> ... -> hidden[k-1] -> outputs, initialised from options.seed.
  MaskedDeepFFN(Index inputs, Index outputs, const std::vector<Index>& hidden, const FFNOptions& options = {})
      : options_(options) {
    Generator gen(options.seed);
    build(inputs, outputs, hidden, gen);
  }
  /// As above, drawing the initial weights from `gen`.
  MaskedDeepFFN(Index inputs, Index outputs, const std::vector<Index>& hidden, const FFNOptions& options,
                Generator& gen)
      : options_(options) {
    build(inputs, outputs, hidden, gen);
  }
  /// A multi-dimensional input shape (e.g. {1, 28, 28}) is flattened to its product.
  MaskedDeepFFN(const std::vector<Index>& input_shape, Index outputs, const std::vector<Index>& hidden,
                const FFNOptions& options = {})
      : MaskedDeepFFN(flattened(input_shape), outputs, hidden, options) {}

  // Copies and moves never carry a pointer to another model's input.
  MaskedDeepFFN(const MaskedDeepFFN& other)
      : options_(other.options_), layers_(other.layers_), norms_(other.norms_), pre_(other.pre_.size()),
        post_(other.post_.size()) {}
  MaskedDeepFFN& operator=(const MaskedDeepFFN& other) {
    if (this != &other) *this = MaskedDeepFFN(other);
    return *this;
  }
  MaskedDeepFFN(MaskedDeepFFN&& other) noexcept { *this = std::move(other); }
  MaskedDeepFFN& operator=(MaskedDeepFFN&& other) noexcept {
    options_ = other.options_;
    layers_ = std::move(other.layers_);
    norms_ = std::move(other.norms_);
    pre_ = std::move(other.pre_);
    post_ = std::move(other.post_);
    input_copy_ = std::move(other.input_copy_);
    input_ = other.input_ == &other.input_copy_ ? &input_copy_ : other.input_;
    other.input_ = nullptr;
    return *this;
  }

  // ---- structure ------------------------------------------------------------------------------

  Index inputs() const { return layers_.front().in_features(); }
  Index outputs() const { return layers_.back().out_features(); }
  /// The hidden layer sizes.
  std::vector<Index> hidden_sizes() const {
    std::vector<Index> sizes;
    for (std::size_t k = 0; k + 1 < layers_.size(); ++k) sizes.push_back(layers_[k].out_features());
    return sizes;
  }
  const FFNOptions& options() const { return options_; }
  bool uses_layer_norm() const { return options_.use_layer_norm; }
  Activation activation() const { return options_.activation; }

  /// Number of masked layers: first, hidden..., output (deepstruct's maskable_layers).
  std::size_t num_layers() const { return layers_.size(); }
  Layer& layer(std::size_t k) { return layers_.at(k); }
  const Layer& layer(std::size_t k) const { return layers_.at(k); }
  /// The masked layers in order, as deepstruct's maskable_layers(model).
  std::vector<Layer*> maskable_layers() {
    std::vector<Layer*> out;
    for (auto& l : layers_) out.push_back(&l);
    return out;
  }
  std::vector<const Layer*> maskable_layers() const {
    std::vector<const Layer*> out;
    for (const auto& l : layers_) out.push_back(&l);
    return out;
  }
  /// The LayerNorm after masked layer k (1 <= k < num_layers()-1) when uses_layer_norm().
  Norm& layer_norm(std::size_t k) { return norms_.at(norm_slot(k)); }
  const Norm& layer_norm(std::size_t k) const { return norms_.at(norm_slot(k)); }
  bool has_layer_norm(std::size_t k) const {
    return options_.use_layer_norm && k >= 1 && k + 1 < layers_.size();
  }
  /// deepstruct's state_dict prefix of masked layer k: "_layer_first", "_layers_hidden.<i>",
  /// "_layer_out" (hidden modules are Linear, [LayerNorm,] ReLU in one ModuleList).
  std::string layer_name(std::size_t k) const {
    if (k == 0) return "_layer_first";
    if (k + 1 == layers_.size()) return "_layer_out";
    return "_layers_hidden." + std::to_string((k - 1) * (options_.use_layer_norm ? 3 : 2));
  }
  /// deepstruct's state_dict prefix of the LayerNorm after masked layer k.
  std::string layer_norm_name(std::size_t k) const {
    (void)norm_slot(k);
    return "_layers_hidden." + std::to_string((k - 1) * 3 + 1);
  }

  /// The masks of all masked layers in order.
  std::vector<Mask> masks() const {
    std::vector<Mask> out;
    for (const auto& l : layers_) out.push_back(l.mask());
    return out;
  }

  // ---- state_dict ------------------------------------------------------------------------------

  /// Parameters and masks under deepstruct's state_dict keys.
  StateDict<Scalar> state_dict() const {
    StateDict<Scalar> sd;
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      const std::string name = layer_name(k);
      sd.matrices[name + ".weight"] = layers_[k].weight();
      if (layers_[k].has_bias()) sd.vectors[name + ".bias"] = layers_[k].bias();
      sd.masks[name + "._mask"] = layers_[k].mask();
      if (has_layer_norm(k)) {
        const std::string norm = layer_norm_name(k);
        sd.vectors[norm + ".weight"] = norms_[norm_slot(k)].weight();
        sd.vectors[norm + ".bias"] = norms_[norm_slot(k)].bias();
      }
    }
    return sd;
  }

  /// Takes every parameter and mask from `sd`. All keys and shapes are checked first: on any
  /// error nothing is changed. Keys this model does not have are an error (PyTorch's strict mode).
  template <typename OtherScalar>
  void load_state_dict(const StateDict<OtherScalar>& sd) {
    std::vector<std::string> expected;
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      const std::string name = layer_name(k);
      const Layer& l = layers_[k];
      sd.matrix(name + ".weight", l.out_features(), l.in_features());
      sd.mask(name + "._mask", l.out_features(), l.in_features());
      expected.push_back(name + ".weight");
      expected.push_back(name + "._mask");
      if (l.has_bias()) {
        sd.vector(name + ".bias", l.out_features());
        expected.push_back(name + ".bias");
      }
      if (has_layer_norm(k)) {
        const std::string norm = layer_norm_name(k);
        sd.vector(norm + ".weight", l.out_features());
        sd.vector(norm + ".bias", l.out_features());
        expected.push_back(norm + ".weight");
        expected.push_back(norm + ".bias");
      }
    }
    detail::check_no_unexpected_keys(sd, expected, "MaskedDeepFFN");
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      const std::string name = layer_name(k);
      Layer& l = layers_[k];
      l.set_weight(sd.matrices.at(name + ".weight").template cast<Scalar>());
      l.set_mask(sd.masks.at(name + "._mask"));
      if (l.has_bias()) l.set_bias(sd.vectors.at(name + ".bias").template cast<Scalar>());
      if (has_layer_norm(k)) {
        const std::string norm = layer_norm_name(k);
        norms_[norm_slot(k)].set_weight(sd.vectors.at(norm + ".weight").template cast<Scalar>());
        norms_[norm_slot(k)].set_bias(sd.vectors.at(norm + ".bias").template cast<Scalar>());
      }
    }
  }

  // ---- whole-model mask operations --------------------------------------------------------------

  void apply_mask() {
    for (auto& l : layers_) l.apply_mask();
  }
  /// Every layer's mask becomes |W| >= theta (deepstruct's model default theta 1e-4).
  void recompute_mask(double theta = default_model_theta) {
    for (auto& l : layers_) l.recompute_mask(theta);
  }
  void reset_parameters(Generator& gen, bool keep_mask = false) {
    for (auto& l : layers_) l.reset_parameters(gen, keep_mask);
    for (auto& n : norms_) n.reset_parameters();
  }
  void reset_parameters(std::uint64_t seed, bool keep_mask = false) {
    Generator gen(seed);
    reset_parameters(gen, keep_mask);
  }
  /// Forces every layer onto one execution path (or back to automatic).
  void set_execution(Execution e) {
    for (auto& l : layers_) l.set_execution(e);
  }

  /// All trainable scalars: weights (active or not), biases, LayerNorm parameters.
  Index num_parameters() const {
    Index n = 0;
    for (const auto& l : layers_) n += l.numel() + l.bias().size();
    for (const auto& norm : norms_) n += 2 * norm.features();
    return n;
  }
  Index num_weights() const {
    Index n = 0;
    for (const auto& l : layers_) n += l.numel();
    return n;
  }
  Index num_active_weights() const {
    Index n = 0;
    for (const auto& l : layers_) n += l.nnz();
    return n;
  }
  /// Active weights / all weights, over the masked layers.
  double density() const { return static_cast<double>(num_active_weights()) / static_cast<double>(num_weights()); }
  std::vector<double> layer_densities() const {
    std::vector<double> d;
    for (const auto& l : layers_) d.push_back(l.density());
    return d;
  }

  // ---- forward / backward ---------------------------------------------------------------------

  /// Logits (outputs x batch) for inputs x batch. Keeps the activations for backward(); the input
  /// itself is kept by address (no copy): it must stay alive and unchanged until backward().
  const Matrix& forward(const Matrix& x) {
    input_ = &x;
    return run_forward(x);
  }
  /// For a temporary input: it is copied once, so backward() stays valid.
  template <typename Derived>
  const Matrix& forward(const Eigen::MatrixBase<Derived>& x) {
    input_copy_ = x;
    input_ = &input_copy_;
    return run_forward(input_copy_);
  }
  const Matrix& forward(Matrix&& x) {
    input_copy_ = std::move(x);
    input_ = &input_copy_;
    return run_forward(input_copy_);
  }
  /// Forward without keeping anything for backward (evaluation). Changes nothing backward()
  /// uses: a backward() after predict() is still the backward of the last forward().
  void predict(const Eigen::Ref<const Matrix>& x, Matrix& logits) {
    check_input(x, "predict");
    const Matrix* h = nullptr;
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      Matrix& out = eval_buffer_[k % 2];
      if (k == 0) layers_[0].forward(x, out);
      else layers_[k].forward(*h, out);
      if (k + 1 == layers_.size()) {
        logits = out;
        return;
      }
      // apply(), not forward(): the norm keeps what the last forward() left for backward().
      if (has_layer_norm(k)) norms_[norm_slot(k)].apply(out, out);
      activate(options_.activation, out, out);
      h = &out;
    }
  }

  /// Backpropagates dL/dlogits (outputs x batch) through the network of the last forward():
  /// adds every parameter gradient; writes dL/dx into *grad_input if it is not null.
  void backward(const Eigen::Ref<const Matrix>& grad_logits, Matrix* grad_input = nullptr) {
    if (input_ == nullptr)
      DEEPSTRUCT_THROW(std::logic_error, "MaskedDeepFFN::backward: expected a preceding forward(x), found none");
    const Index batch = input_->cols();
    if (grad_logits.rows() != outputs() || grad_logits.cols() != batch)
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN::backward: expected dL/dlogits of shape " +
                                        detail::shape_str(outputs(), batch) + " (outputs x batch of the last forward), found " +
                                        detail::shape_str(grad_logits.rows(), grad_logits.cols()));
    const std::size_t last = layers_.size() - 1;
    // Output layer: dL/dh_{last-1}.
    layers_[last].backward(post_[last - 1], grad_logits, &grad_a_);
    for (std::size_t k = last - 1;; --k) {
      // grad_a_ is dL/d(post_k); through the activation, the norm, then the linear layer.
      activation_backward(options_.activation, pre_[k], post_[k], grad_a_, grad_a_);
      if (has_layer_norm(k)) norms_[norm_slot(k)].backward(grad_a_, grad_a_);
      const Matrix& layer_input = k == 0 ? *input_ : post_[k - 1];
      Matrix* grad_in = k == 0 ? grad_input : &grad_b_;
      layers_[k].backward(layer_input, grad_a_, grad_in);
      if (k == 0) break;
      grad_a_.swap(grad_b_);
    }
  }

  void zero_grad() {
    for (auto& l : layers_) l.zero_grad();
    for (auto& n : norms_) n.zero_grad();
  }

  /// Visits every trainable tensor in a fixed order (layer by layer: weight, bias, then the
  /// LayerNorm's weight and bias) - the order optimizers keep their state in.
  template <typename Fn>
  void for_each_parameter(Fn&& fn) {
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      deepstruct::for_each_parameter(layers_[k], fn);
      if (has_layer_norm(k)) norms_[norm_slot(k)].for_each_parameter(fn);
    }
  }

 private:
  static Index flattened(const std::vector<Index>& shape) {
    if (shape.empty()) DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected a non-empty input shape, found {}");
    Index n = 1;
    for (Index d : shape) {
      if (d <= 0)
        DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected positive input dimensions, found " + std::to_string(d));
      n *= d;
    }
    return n;
  }

  void build(Index inputs, Index outputs, const std::vector<Index>& hidden, Generator& gen) {
    if (hidden.empty())
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected at least one hidden layer, found none");
    if (inputs <= 0 || outputs <= 0)
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected inputs >= 1 and outputs >= 1, found " +
                                        std::to_string(inputs) + " and " + std::to_string(outputs));
    for (std::size_t k = 0; k < hidden.size(); ++k)
      if (hidden[k] <= 0)
        DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected hidden sizes >= 1, found " + std::to_string(hidden[k]) +
                                          " at position " + std::to_string(k));
    Index in = inputs;
    for (Index h : hidden) {
      layers_.emplace_back(in, h, options_.bias, gen);
      in = h;
    }
    layers_.emplace_back(in, outputs, options_.bias, gen);
    if (options_.use_layer_norm)
      for (std::size_t k = 1; k + 1 < layers_.size(); ++k) norms_.emplace_back(layers_[k].out_features());
    pre_.resize(layers_.size() - 1);
    post_.resize(layers_.size() - 1);
  }

  std::size_t norm_slot(std::size_t k) const {
    if (!has_layer_norm(k))
      DEEPSTRUCT_THROW(std::out_of_range, "MaskedDeepFFN::layer_norm: expected a hidden layer 1.." +
                                              std::to_string(layers_.size() - 2) +
                                              " of a network with LayerNorm, found layer " + std::to_string(k));
    return k - 1;
  }

  void check_input(const Eigen::Ref<const Matrix>& x, const char* where) const {
    if (x.rows() != inputs())
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedDeepFFN::") + where + ": expected input with " +
                                        std::to_string(inputs()) +
                                        " rows (flattened features x batch, one sample per column), found " +
                                        detail::shape_str(x.rows(), x.cols()));
  }

  const Matrix& run_forward(const Matrix& x) {
    check_input(x, "forward");
    const std::size_t last = layers_.size() - 1;
    for (std::size_t k = 0; k < last; ++k) {
      layers_[k].forward(k == 0 ? x : post_[k - 1], pre_[k]);
      if (has_layer_norm(k)) {
        // pre_ holds the activation's input: the normalised value.
        norms_[norm_slot(k)].forward(pre_[k], norm_out_);
        pre_[k].swap(norm_out_);
      }
      post_[k].resize(pre_[k].rows(), pre_[k].cols());
      activate(options_.activation, pre_[k], post_[k]);
    }
    layers_[last].forward(post_[last - 1], logits_);
    return logits_;
  }

  FFNOptions options_;
  std::vector<Layer> layers_;
  std::vector<Norm> norms_;
  // Activations of the last forward: pre_[k] enters the activation of hidden layer k, post_[k]
  // leaves it.
  std::vector<Matrix> pre_, post_;
  Matrix logits_, norm_out_, grad_a_, grad_b_, input_copy_;
  Matrix eval_buffer_[2];
  const Matrix* input_ = nullptr;
};

using MaskedDeepFFNf = MaskedDeepFFN<float>;
using MaskedDeepFFNd = MaskedDeepFFN<double>;

}  // namespace deepstruct
