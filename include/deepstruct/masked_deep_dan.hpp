// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_deep_dan.hpp
/// MaskedDeepDAN<Scalar>: deepstruct's deep directed acyclic network. Its neurons and skip-layer
/// connections come from any DAG, given here as a plain DanDescription (layer sizes and a mask per
/// connected pair of layers; <deepstruct/graph/convert.hpp> makes one from a Boost.Graph DAG, and
/// make_dan() in <deepstruct/graph.hpp> builds the network directly).
///
/// Semantics (deepstruct's): the input is flattened and fully connected to every vertex of layer 0,
/// then activated: h_0 = act(first(x)). Layer t >= 1 is
///     h_t = act(main_t(h_{t-1})) + sum over skip sources s <= t-2: act(skip_{s,t}(h_s))
/// (each skip term activated on its own, the sum not activated again; with LayerNorm enabled it sits
/// between main_t and its activation). The last layer is fully connected to the outputs (logits).
/// Every connection is a MaskedLinear with its own bias.

#include <Eigen/Core>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/activation.hpp"
#include "deepstruct/dan_description.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/layer_norm.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/parameter.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

struct DANOptions {
  bool use_layer_norm = false;  ///< LayerNorm between main_t and its activation, t >= 1 (our extension)
  Activation activation = Activation::relu;
  bool bias = true;
  std::uint64_t seed = 0;
};

template <typename Scalar_>
class MaskedDeepDAN {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Layer = MaskedLinear<Scalar>;
  using Norm = LayerNorm<Scalar>;
  using Matrix = typename Layer::Matrix;
  using Vector = typename Layer::Vector;
  using Mask = typename Layer::Mask;

  /// A skip connection: masked layer from hidden layer `source` into hidden layer `target`.
  struct Skip {
    std::size_t source;
    std::size_t target;
    Layer layer;
  };

  MaskedDeepDAN(Index inputs, Index outputs, const DanDescription& structure, const DANOptions& options = {})
      : options_(options) {
    Generator gen(options.seed);
    build(inputs, outputs, structure, gen);
  }
  MaskedDeepDAN(Index inputs, Index outputs, const DanDescription& structure, const DANOptions& options,
                Generator& gen)
      : options_(options) {
    build(inputs, outputs, structure, gen);
  }
  /// A multi-dimensional input shape is flattened to its product.
  MaskedDeepDAN(const std::vector<Index>& input_shape, Index outputs, const DanDescription& structure,
                const DANOptions& options = {})
      : MaskedDeepDAN(flattened(input_shape), outputs, structure, options) {}

  MaskedDeepDAN(const MaskedDeepDAN& other)
      : options_(other.options_), layer_vertices_(other.layer_vertices_), first_(other.first_), main_(other.main_),
        skips_(other.skips_), skips_into_(other.skips_into_), norms_(other.norms_), out_(other.out_) {
    allocate_buffers();
  }
  MaskedDeepDAN& operator=(const MaskedDeepDAN& other) {
    if (this != &other) *this = MaskedDeepDAN(other);
    return *this;
  }
  MaskedDeepDAN(MaskedDeepDAN&& other) noexcept { *this = std::move(other); }
  MaskedDeepDAN& operator=(MaskedDeepDAN&& other) noexcept {
    options_ = other.options_;
    layer_vertices_ = std::move(other.layer_vertices_);
    first_ = std::move(other.first_);
    main_ = std::move(other.main_);
    skips_ = std::move(other.skips_);
    skips_into_ = std::move(other.skips_into_);
    norms_ = std::move(other.norms_);
    out_ = std::move(other.out_);
    main_pre_ = std::move(other.main_pre_);
    main_post_ = std::move(other.main_post_);
    skip_pre_ = std::move(other.skip_pre_);
    skip_post_ = std::move(other.skip_post_);
    hidden_ = std::move(other.hidden_);
    grad_hidden_ = std::move(other.grad_hidden_);
    logits_ = std::move(other.logits_);
    input_copy_ = std::move(other.input_copy_);
    input_ = other.input_ == &other.input_copy_ ? &input_copy_ : other.input_;
    other.input_ = nullptr;
    return *this;
  }

  // ---- structure ------------------------------------------------------------------------------

  Index inputs() const { return first_->in_features(); }
  Index outputs() const { return out_->out_features(); }
  /// Number of hidden layers of the structure.
  std::size_t num_hidden_layers() const { return main_.size() + 1; }
  Index hidden_layer_size(std::size_t t) const { return t == 0 ? first_->out_features() : main_.at(t - 1).out_features(); }
  /// The structure's vertex ids of hidden layer t (the order of mask rows and columns); for a
  /// description without vertex lists, consecutive ids layer by layer.
  const std::vector<std::size_t>& layer_vertices(std::size_t t) const { return layer_vertices_.at(t); }
  const DANOptions& options() const { return options_; }

  Layer& layer_first() { return *first_; }
  const Layer& layer_first() const { return *first_; }
  Layer& layer_out() { return *out_; }
  const Layer& layer_out() const { return *out_; }
  /// The main layer into hidden layer t (1 <= t < num_hidden_layers()).
  Layer& main_layer(std::size_t t) { return main_.at(t - 1); }
  const Layer& main_layer(std::size_t t) const { return main_.at(t - 1); }
  /// Skip layers in deepstruct's order (target ascending, then source ascending).
  std::vector<Skip>& skips() { return skips_; }
  const std::vector<Skip>& skips() const { return skips_; }
  Norm& layer_norm(std::size_t t) {
    check_norm(t);
    return norms_[t - 1];
  }

  /// All masked layers: first, main..., skip..., out (deepstruct's module order).
  std::vector<Layer*> maskable_layers() {
    std::vector<Layer*> v{&*first_};
    for (auto& l : main_) v.push_back(&l);
    for (auto& s : skips_) v.push_back(&s.layer);
    v.push_back(&*out_);
    return v;
  }
  std::vector<const Layer*> maskable_layers() const {
    std::vector<const Layer*> v{&*first_};
    for (const auto& l : main_) v.push_back(&l);
    for (const auto& s : skips_) v.push_back(&s.layer);
    v.push_back(&*out_);
    return v;
  }
  /// deepstruct's state_dict prefixes, in maskable_layers() order.
  std::vector<std::string> layer_names() const {
    std::vector<std::string> names{"layer_first"};
    for (std::size_t i = 0; i < main_.size(); ++i) names.push_back("layers_main_hidden." + std::to_string(i));
    for (std::size_t j = 0; j < skips_.size(); ++j) names.push_back("layers_skip_hidden." + std::to_string(j));
    names.push_back("layer_out");
    return names;
  }

  /// The structure of the hidden part as a DanDescription of the current masks (after pruning,
  /// the pruned structure); graph/convert.hpp turns it back into a DAG (generate_structure).
  DanDescription structure() const {
    DanDescription d;
    d.layer_vertices = layer_vertices_;
    for (std::size_t t = 0; t < num_hidden_layers(); ++t) d.layer_sizes.push_back(static_cast<std::size_t>(hidden_layer_size(t)));
    for (std::size_t t = 1; t < num_hidden_layers(); ++t) {
      for (std::size_t j : skips_into_[t]) d.connections.push_back({skips_[j].source, t, skips_[j].layer.mask()});
      d.connections.push_back({t - 1, t, main_[t - 1].mask()});
    }
    return d;
  }

  // ---- whole-model operations -------------------------------------------------------------------

  void apply_mask() {
    for (auto* l : maskable_layers()) l->apply_mask();
  }
  void recompute_mask(double theta = 1e-4) {
    for (auto* l : maskable_layers()) l->recompute_mask(theta);
  }
  void reset_parameters(Generator& gen, bool keep_mask = false) {
    for (auto* l : maskable_layers()) l->reset_parameters(gen, keep_mask);
    for (auto& n : norms_) n.reset_parameters();
  }
  void reset_parameters(std::uint64_t seed, bool keep_mask = false) {
    Generator gen(seed);
    reset_parameters(gen, keep_mask);
  }
  void set_execution(Execution e) {
    for (auto* l : maskable_layers()) l->set_execution(e);
  }
  Index num_parameters() const {
    Index n = 0;
    for (const auto* l : maskable_layers()) n += l->numel() + l->bias().size();
    for (const auto& norm : norms_) n += 2 * norm.features();
    return n;
  }
  Index num_weights() const {
    Index n = 0;
    for (const auto* l : maskable_layers()) n += l->numel();
    return n;
  }
  Index num_active_weights() const {
    Index n = 0;
    for (const auto* l : maskable_layers()) n += l->nnz();
    return n;
  }
  double density() const { return static_cast<double>(num_active_weights()) / static_cast<double>(num_weights()); }

  // ---- state_dict ------------------------------------------------------------------------------

  StateDict<Scalar> state_dict() const {
    StateDict<Scalar> sd;
    const auto names = layer_names();
    const auto layers = maskable_layers();
    for (std::size_t k = 0; k < layers.size(); ++k) {
      sd.matrices[names[k] + ".weight"] = layers[k]->weight();
      if (layers[k]->has_bias()) sd.vectors[names[k] + ".bias"] = layers[k]->bias();
      sd.masks[names[k] + "._mask"] = layers[k]->mask();
    }
    for (std::size_t i = 0; i < norms_.size(); ++i) {
      sd.vectors[norm_name(i) + ".weight"] = norms_[i].weight();
      sd.vectors[norm_name(i) + ".bias"] = norms_[i].bias();
    }
    return sd;
  }

  /// All-or-nothing, strict loading (see MaskedDeepFFN::load_state_dict).
  template <typename OtherScalar>
  void load_state_dict(const StateDict<OtherScalar>& sd) {
    const auto names = layer_names();
    auto layers = maskable_layers();
    std::vector<std::string> expected;
    for (std::size_t k = 0; k < layers.size(); ++k) {
      const Layer& l = *layers[k];
      sd.matrix(names[k] + ".weight", l.out_features(), l.in_features());
      sd.mask(names[k] + "._mask", l.out_features(), l.in_features());
      expected.push_back(names[k] + ".weight");
      expected.push_back(names[k] + "._mask");
      if (l.has_bias()) {
        sd.vector(names[k] + ".bias", l.out_features());
        expected.push_back(names[k] + ".bias");
      }
    }
    for (std::size_t i = 0; i < norms_.size(); ++i) {
      sd.vector(norm_name(i) + ".weight", norms_[i].features());
      sd.vector(norm_name(i) + ".bias", norms_[i].features());
      expected.push_back(norm_name(i) + ".weight");
      expected.push_back(norm_name(i) + ".bias");
    }
    detail::check_no_unexpected_keys(sd, expected, "MaskedDeepDAN");
    for (std::size_t k = 0; k < layers.size(); ++k) {
      Layer& l = *layers[k];
      l.set_weight(sd.matrices.at(names[k] + ".weight").template cast<Scalar>());
      l.set_mask(sd.masks.at(names[k] + "._mask"));
      if (l.has_bias()) l.set_bias(sd.vectors.at(names[k] + ".bias").template cast<Scalar>());
    }
    for (std::size_t i = 0; i < norms_.size(); ++i) {
      norms_[i].set_weight(sd.vectors.at(norm_name(i) + ".weight").template cast<Scalar>());
      norms_[i].set_bias(sd.vectors.at(norm_name(i) + ".bias").template cast<Scalar>());
    }
  }

  // ---- forward / backward ---------------------------------------------------------------------

  /// Logits (outputs x batch). Keeps the activations, and the input by address, for backward().
  const Matrix& forward(const Matrix& x) {
    input_ = &x;
    return run_forward(x, true);
  }
  template <typename Derived>
  const Matrix& forward(const Eigen::MatrixBase<Derived>& x) {
    input_copy_ = x;
    input_ = &input_copy_;
    return run_forward(input_copy_, true);
  }
  const Matrix& forward(Matrix&& x) {
    input_copy_ = std::move(x);
    input_ = &input_copy_;
    return run_forward(input_copy_, true);
  }
  /// Forward for evaluation: nothing is kept for backward (the activations are overwritten).
  void predict(const Eigen::Ref<const Matrix>& x, Matrix& logits) {
    input_ = nullptr;
    logits = run_forward(x, false);
  }

  void backward(const Eigen::Ref<const Matrix>& grad_logits, Matrix* grad_input = nullptr) {
    if (input_ == nullptr)
      DEEPSTRUCT_THROW(std::logic_error, "MaskedDeepDAN::backward: expected a preceding forward(x), found none");
    const Index batch = input_->cols();
    if (grad_logits.rows() != outputs() || grad_logits.cols() != batch)
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepDAN::backward: expected dL/dlogits of shape " +
                                        detail::shape_str(outputs(), batch) + " (outputs x batch of the last forward), found " +
                                        detail::shape_str(grad_logits.rows(), grad_logits.cols()));
    const std::size_t L = num_hidden_layers();
    // The first contribution to a layer's gradient is written in place, later ones are added: no
    // zero fill. Layers are visited from the last one down, so every contribution to dL/dh_t
    // (from main_{t+1} and the skips out of t) has arrived when t is reached.
    grad_written_.assign(L, 0);
    out_->backward(hidden_[L - 1], grad_logits, &grad_hidden_[L - 1]);
    grad_written_[L - 1] = 1;
    for (std::size_t t = L; t-- > 1;) {
      Matrix& g = grad_hidden_[t];
      // Skip terms into t: each activated on its own.
      for (std::size_t j : skips_into_[t]) {
        Skip& s = skips_[j];
        activation_backward(options_.activation, skip_pre_[j], skip_post(j), g, scratch_);
        s.layer.backward(hidden_[s.source], scratch_, input_gradient_target(s.source));
        add_input_gradient(s.source);
      }
      // The main term: through the activation (and the norm) into main_t, whose input gradient
      // reaches layer t-1. g is not needed afterwards: the activation's backward runs in place.
      activation_backward(options_.activation, main_pre_[t], main_post(t), g, g);
      if (options_.use_layer_norm) norms_[t - 1].backward(g, g);
      main_[t - 1].backward(hidden_[t - 1], g, input_gradient_target(t - 1));
      add_input_gradient(t - 1);
    }
    Matrix& g0 = grad_hidden_[0];
    activation_backward(options_.activation, main_pre_[0], main_post(0), g0, g0);
    first_->backward(*input_, g0, grad_input);
  }

  void zero_grad() {
    for (auto* l : maskable_layers()) l->zero_grad();
    for (auto& n : norms_) n.zero_grad();
  }

  /// Every trainable tensor in maskable_layers() order (weight, bias), then the norms.
  template <typename Fn>
  void for_each_parameter(Fn&& fn) {
    for (auto* l : maskable_layers()) deepstruct::for_each_parameter(*l, fn);
    for (auto& n : norms_) n.for_each_parameter(fn);
  }

 private:
  static Index flattened(const std::vector<Index>& shape) {
    if (shape.empty()) DEEPSTRUCT_THROW(shape_error, "MaskedDeepDAN: expected a non-empty input shape, found {}");
    Index n = 1;
    for (Index d : shape) {
      if (d <= 0)
        DEEPSTRUCT_THROW(shape_error, "MaskedDeepDAN: expected positive input dimensions, found " + std::to_string(d));
      n *= d;
    }
    return n;
  }

  std::string norm_name(std::size_t i) const { return "layers_norm_hidden." + std::to_string(i); }

  void check_norm(std::size_t t) const {
    if (!options_.use_layer_norm || t == 0 || t >= num_hidden_layers())
      DEEPSTRUCT_THROW(std::out_of_range, "MaskedDeepDAN::layer_norm: expected a hidden layer 1.." +
                                              std::to_string(num_hidden_layers() - 1) +
                                              " of a network with LayerNorm, found layer " + std::to_string(t));
  }

  void build(Index inputs, Index outputs, const DanDescription& d, Generator& gen) {
    check_dan_description(d);
    if (inputs <= 0 || outputs <= 0)
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepDAN: expected inputs >= 1 and outputs >= 1, found " +
                                        std::to_string(inputs) + " and " + std::to_string(outputs));
    for (std::size_t t = 0; t < d.layer_sizes.size(); ++t)
      if (d.layer_sizes[t] == 0)
        DEEPSTRUCT_THROW(shape_error, "MaskedDeepDAN: expected every layer of the structure to have a vertex, found layer " +
                                          std::to_string(t) + " empty");
    layer_vertices_ = layer_vertices_or_default(d);  // none given: consecutive ids layer by layer
    const std::size_t L = d.layer_sizes.size();
    const auto size = [&](std::size_t t) { return static_cast<Index>(d.layer_sizes[t]); };
    // deepstruct's creation order: first, mains, skips, out.
    first_.emplace(inputs, size(0), options_.bias, gen);
    for (std::size_t t = 1; t < L; ++t) main_.emplace_back(size(t - 1), size(t), options_.bias, gen);
    skips_into_.assign(L, {});
    for (const auto& c : d.connections) {
      if (c.source_layer + 1 == c.target_layer) {
        main_[c.target_layer - 1].set_mask(c.mask);
      } else {
        skips_into_[c.target_layer].push_back(skips_.size());
        skips_.push_back(Skip{c.source_layer, c.target_layer, Layer(size(c.source_layer), size(c.target_layer), options_.bias, gen)});
        skips_.back().layer.set_mask(c.mask);
      }
    }
    out_.emplace(size(L - 1), outputs, options_.bias, gen);
    if (options_.use_layer_norm)
      for (std::size_t t = 1; t < L; ++t) norms_.emplace_back(size(t));
    allocate_buffers();
  }

  void allocate_buffers() {
    const std::size_t L = num_hidden_layers();
    main_pre_.resize(L);
    main_post_.resize(L);
    hidden_.resize(L);
    grad_hidden_.resize(L);
    skip_pre_.resize(skips_.size());
    skip_post_.resize(skips_.size());
  }

  const Matrix& run_forward(const Eigen::Ref<const Matrix>& x, bool training) {
    if (x.rows() != inputs())
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedDeepDAN::") + (training ? "forward" : "predict") +
                                        ": expected input with " + std::to_string(inputs()) +
                                        " rows (flattened features x batch, one sample per column), found " +
                                        detail::shape_str(x.rows(), x.cols()));
    const std::size_t L = num_hidden_layers();
    const bool keep_post = needs_post();
    first_->forward(x, main_pre_[0]);
    hidden_[0].resize(main_pre_[0].rows(), main_pre_[0].cols());
    activate(options_.activation, main_pre_[0], hidden_[0]);  // no skips into layer 0: h_0 is its post
    for (std::size_t t = 1; t < L; ++t) {
      main_[t - 1].forward(hidden_[t - 1], main_pre_[t]);
      if (options_.use_layer_norm) {
        if (training) {
          norms_[t - 1].forward(main_pre_[t], scratch_);
          main_pre_[t].swap(scratch_);
        } else {
          norms_[t - 1].apply(main_pre_[t], main_pre_[t]);  // keeps no state for a backward
        }
      }
      Matrix& h = hidden_[t];
      h.resize(main_pre_[t].rows(), main_pre_[t].cols());
      if (keep_post && !skips_into_[t].empty()) {
        // The derivative needs act(main_t) apart from the sum h_t.
        main_post_[t].resize(h.rows(), h.cols());
        activate(options_.activation, main_pre_[t], main_post_[t]);
        h = main_post_[t];
      } else {
        activate(options_.activation, main_pre_[t], h);
      }
      for (std::size_t j : skips_into_[t]) {
        skips_[j].layer.forward(hidden_[skips_[j].source], skip_pre_[j]);
        if (keep_post) {
          skip_post_[j].resize(skip_pre_[j].rows(), skip_pre_[j].cols());
          activate(options_.activation, skip_pre_[j], skip_post_[j]);
          h += skip_post_[j];
        } else {
          add_activated(skip_pre_[j], h);
        }
      }
    }
    out_->forward(hidden_[L - 1], logits_);
    return logits_;
  }

  /// True if the activation's derivative is computed from its output (tanh, sigmoid); the others
  /// need the pre-activation only, and the activated terms are then not kept apart.
  bool needs_post() const {
    return options_.activation == Activation::tanh || options_.activation == Activation::sigmoid;
  }
  /// act(main_t(...)) of the last forward: h_t itself when no skip adds to it. Only meaningful
  /// when needs_post(); otherwise the derivative ignores it.
  const Matrix& main_post(std::size_t t) const {
    if (!needs_post()) return main_pre_[t];
    return skips_into_[t].empty() ? hidden_[t] : main_post_[t];
  }
  const Matrix& skip_post(std::size_t j) const { return needs_post() ? skip_post_[j] : skip_pre_[j]; }

  /// out += act(pre) without a temporary for the common activations.
  void add_activated(const Matrix& pre, Matrix& out) {
    switch (options_.activation) {
      case Activation::relu: out.array() += pre.array().max(Scalar(0)); break;
      case Activation::identity: out += pre; break;
      case Activation::leaky_relu:
        out.array() += (pre.array() > Scalar(0)).select(pre.array(), Scalar(leaky_relu_slope) * pre.array());
        break;
      default:
        scratch_.resize(pre.rows(), pre.cols());
        activate(options_.activation, pre, scratch_);
        out += scratch_;
    }
  }

  /// Where a layer writes its input gradient into hidden layer s: straight into dL/dh_s for the
  /// first contribution, into scratch otherwise (then added by add_input_gradient).
  Matrix* input_gradient_target(std::size_t s) { return grad_written_[s] ? &scratch_in_ : &grad_hidden_[s]; }
  void add_input_gradient(std::size_t s) {
    if (grad_written_[s])
      grad_hidden_[s] += scratch_in_;
    else
      grad_written_[s] = 1;
  }

  DANOptions options_;
  std::vector<std::vector<std::size_t>> layer_vertices_;
  std::optional<Layer> first_;
  std::vector<Layer> main_;  // main_[t-1] feeds hidden layer t
  std::vector<Skip> skips_;
  std::vector<std::vector<std::size_t>> skips_into_;  // indices into skips_ by target layer
  std::vector<Norm> norms_;                           // norms_[t-1] after main_[t-1]
  std::optional<Layer> out_;
  // Activations of the last forward.
  std::vector<Matrix> main_pre_, main_post_, skip_pre_, skip_post_, hidden_, grad_hidden_;
  Matrix logits_, scratch_, scratch_in_, input_copy_;
  std::vector<char> grad_written_;  // backward: has dL/dh_t received its first contribution?
  const Matrix* input_ = nullptr;
};

using MaskedDeepDANf = MaskedDeepDAN<float>;
using MaskedDeepDANd = MaskedDeepDAN<double>;

}  // namespace deepstruct
