// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_deep_dan.hpp
/// MaskedDeepDAN<Scalar>: deepstruct's deep directed acyclic network, and the network engine of
/// the library (MaskedDeepFFN is a chain-structured MaskedDeepDAN under deepstruct's FFN names).
/// Its neurons and skip-layer connections come from any DAG, given here as a plain DanDescription
/// (layer sizes and a mask per connected pair of layers; <deepstruct/graph/convert.hpp> makes one
/// from a Boost.Graph DAG, and make_dan() in <deepstruct/graph.hpp> builds the network directly).
///
/// Semantics (deepstruct's): the input is flattened and fully connected to every vertex of layer 0,
/// then activated: h_0 = act(first(x)). Layer t >= 1 is
///     h_t = act(LN_t(main_t(h_{t-1}))) + sum over skip sources s <= t-2: act(skip_{s,t}(h_s))
/// (each skip term activated on its own, the sum not activated again; LN_t only with LayerNorm).
/// The last layer is fully connected to the outputs (logits). Every connection is a MaskedLinear
/// with its own bias. With LayerNorm, deepstruct also creates LN_0, which no computation uses; it
/// is kept (state_dict key layer_normalizations.0) but not trained, as in PyTorch, where it gets
/// no gradient.

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/activation.hpp"
#include "deepstruct/dan_description.hpp"
#include "deepstruct/detail/alias.hpp"
#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/detail/input_probe.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/layer_norm.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/model.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

template <typename Scalar>
class MaskedDeepFFN;

struct DANOptions {
  bool use_layer_norm = false;  ///< LayerNorm between main_t and its activation, t >= 1 (deepstruct's use_layer_norm)
  Activation activation = Activation::relu;
  bool bias = true;
  std::uint64_t seed = 0;       ///< initialisation seed (ignored by the Generator& constructor)
};

template <typename Scalar_>
class MaskedDeepDAN : public ModelBase<MaskedDeepDAN<Scalar_>, Scalar_> {
  using Base = ModelBase<MaskedDeepDAN<Scalar_>, Scalar_>;

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Layer = MaskedLinear<Scalar>;
  using Norm = LayerNorm<Scalar>;
  using Matrix = typename Layer::Matrix;
  using Vector = typename Layer::Vector;
  using Mask = typename Layer::Mask;

  /// A skip connection from hidden layer `source` into hidden layer `target` (source <= target-2).
  struct SkipConnection {
    std::size_t source;
    std::size_t target;
  };

  MaskedDeepDAN(Index inputs, Index outputs, const DanDescription& structure, const DANOptions& options = {});
  MaskedDeepDAN(Index inputs, Index outputs, const DanDescription& structure, const DANOptions& options,
                Generator& gen);
  /// A multi-dimensional input shape is flattened to its product.
  MaskedDeepDAN(const std::vector<Index>& input_shape, Index outputs, const DanDescription& structure,
                const DANOptions& options = {})
      : MaskedDeepDAN(detail::flattened_input(input_shape, "MaskedDeepDAN"), outputs, structure, options) {}

  static const char* model_name() { return "MaskedDeepDAN"; }

  // ---- structure ------------------------------------------------------------------------------

  Index inputs() const { return layers_.front().in_features(); }
  Index outputs() const { return layers_.back().out_features(); }
  /// Number of hidden layers of the structure.
  std::size_t num_hidden_layers() const { return layer_vertices_.size(); }
  Index hidden_layer_size(std::size_t t) const { return main_index(check_layer(t, "hidden_layer_size")).out_features(); }
  /// The structure's vertex ids of hidden layer t (the order of mask rows and columns); for a
  /// description without vertex lists, consecutive ids layer by layer.
  const std::vector<std::size_t>& layer_vertices(std::size_t t) const { return layer_vertices_[check_layer(t, "layer_vertices")]; }
  /// The labels of the vertices of hidden layer t (DanDescription::layer_labels), or an empty
  /// list when the structure had none.
  const std::vector<std::string>& layer_labels(std::size_t t) const {
    static const std::vector<std::string> none;
    check_layer(t, "layer_labels");
    return layer_labels_.empty() ? none : layer_labels_[t];
  }
  const DANOptions& options() const { return options_; }
  bool uses_layer_norm() const { return options_.use_layer_norm; }
  Activation activation() const { return options_.activation; }

  Layer& layer_first() { return layers_.front(); }
  const Layer& layer_first() const { return layers_.front(); }
  Layer& layer_out() { return layers_.back(); }
  const Layer& layer_out() const { return layers_.back(); }
  /// The main layer into hidden layer t (1 <= t < num_hidden_layers()).
  Layer& main_layer(std::size_t t) { return layers_[check_main(t)]; }
  const Layer& main_layer(std::size_t t) const { return layers_[check_main(t)]; }
  /// Skip connections in deepstruct's order (target ascending, then source ascending).
  const std::vector<SkipConnection>& skips() const { return skips_; }
  Layer& skip_layer(std::size_t j) { return layers_[check_skip(j)]; }
  const Layer& skip_layer(std::size_t j) const { return layers_[check_skip(j)]; }
  /// Indices into skips() of the skip connections into hidden layer t.
  const std::vector<std::size_t>& skips_into(std::size_t t) const { return skips_into_[check_layer(t, "skips_into")]; }
  /// The LayerNorm of hidden layer t when uses_layer_norm(): t >= 1 normalises main_t; t = 0 is
  /// deepstruct's unused one (kept for its state_dict keys, never trained).
  Norm& layer_norm(std::size_t t) { return norms_[check_norm(t)]; }
  const Norm& layer_norm(std::size_t t) const { return norms_[check_norm(t)]; }

  /// The structure of the hidden part as a DanDescription of the current masks (after pruning,
  /// the pruned structure); graph/convert.hpp turns it back into a DAG (generate_structure).
  DanDescription structure() const {
    DanDescription d;
    d.layer_vertices = layer_vertices_;
    d.layer_labels = layer_labels_;
    for (std::size_t t = 0; t < num_hidden_layers(); ++t) d.layer_sizes.push_back(static_cast<std::size_t>(hidden_layer_size(t)));
    for (std::size_t t = 1; t < num_hidden_layers(); ++t) {
      for (std::size_t j : skips_into_[t]) d.connections.push_back({skips_[j].source, t, skip_layer(j).mask()});
      d.connections.push_back({t - 1, t, main_layer(t).mask()});
    }
    return d;
  }

  /// The modules in deepstruct's state_dict order: layer_first, layers_main_hidden.<i>,
  /// layer_normalizations.<t> (with LayerNorm), layers_skip_hidden.<j>, layer_out.
  template <typename Fn>
  void visit_modules(Fn&& fn) {
    const std::size_t L = num_hidden_layers();
    fn(layers_[0], "layer_first", Base::no_index);
    for (std::size_t t = 1; t < L; ++t) fn(layers_[t], "layers_main_hidden", t - 1);
    for (std::size_t t = 0; t < norms_.size(); ++t) fn(norms_[t], "layer_normalizations", t);
    for (std::size_t j = 0; j < skips_.size(); ++j) fn(layers_[L + j], "layers_skip_hidden", j);
    fn(layers_.back(), "layer_out", Base::no_index);
  }

  /// ModelBase's strict, all-or-nothing load; also reads files of this library before 0.2.0,
  /// whose LayerNorm keys were layers_norm_hidden.<t-1> (and had no layer_normalizations.0; for a
  /// network of one hidden layer no LayerNorm key at all).
  template <typename OtherScalar>
  void load_state_dict(const StateDict<OtherScalar>& sd) {
    // An old file: no layer_normalizations.* key, and the old keys (none at all for a network of
    // one hidden layer). Any other state_dict is checked as it is, so a message lists its own keys
    // (not the LN_0 the old-file path adds; a file without LayerNorm seemed to hold LN_0).
    // (Every kind of entry counts: a 2-D layer_normalizations.* is a wrong one, not an old file.)
    bool legacy = options_.use_layer_norm, old_keys = norms_.size() == 1;
    for (const auto& kv : sd.key_kinds()) {
      legacy = legacy && kv.first.rfind("layer_normalizations.", 0) != 0;
      old_keys = old_keys || kv.first.rfind("layers_norm_hidden.", 0) == 0;
    }
    legacy = legacy && old_keys;
    if (!legacy) {
      Base::load_state_dict(sd);
      return;
    }
    StateDict<OtherScalar> renamed = sd;
    for (std::size_t t = 1; t < norms_.size(); ++t)
      for (const char* p : {".weight", ".bias"}) {
        auto it = renamed.vectors.find("layers_norm_hidden." + std::to_string(t - 1) + p);
        if (it == renamed.vectors.end()) continue;
        renamed.vectors["layer_normalizations." + std::to_string(t) + p] = std::move(it->second);
        renamed.vectors.erase(it);
      }
    if (renamed.vectors.count("layer_normalizations.0.weight") == 0) {
      renamed.vectors["layer_normalizations.0.weight"] = norms_[0].weight().template cast<OtherScalar>();
      renamed.vectors["layer_normalizations.0.bias"] = norms_[0].bias().template cast<OtherScalar>();
    }
    Base::load_state_dict(renamed);
  }

  // ---- forward / backward / predict ----------------------------------------------------------

  /// Logits (outputs x batch, a buffer of the model valid until the next forward). Keeps the
  /// activations for backward(x, ...), never the input itself.
  const Matrix& forward(const Eigen::Ref<const Matrix>& x);

  /// Forward for evaluation into a caller-owned matrix. Keeps nothing and changes nothing
  /// backward() uses: a backward after predict is still that of the last forward. Without skips
  /// and LayerNorm, runs of consecutive sparse layers go through MaskedLinear::forward_chain.
  void predict(const Eigen::Ref<const Matrix>& x, Matrix& logits);

  /// Backpropagates dL/dlogits (outputs x batch) through the network of the last forward, whose
  /// input was `x` (the same matrix: the first layer's weight gradient reads it). Adds every
  /// parameter gradient and writes dL/dx into *grad_input unless it is null. Throws state_error
  /// before any forward and for an x whose values differ from that forward's input at any of 16
  /// entries spread over it (a cheap check that catches most mix-ups, not a proof); shape_error
  /// for x or grad_logits of another shape than that forward's, and for a grad_input sharing
  /// memory with x or grad_logits (before any gradient is added).
  void backward(const Eigen::Ref<const Matrix>& x, const Eigen::Ref<const Matrix>& grad_logits, Matrix* grad_input = nullptr);

 private:
  friend class MaskedDeepFFN<Scalar>;  // runs this engine under its own name

  /// What a forward keeps: pre-activations, activated terms apart from their sum (for tanh and
  /// sigmoid, whose derivative reads them), the hidden layers, the logits, the batch size.
  struct Activations {
    std::vector<Matrix> main_pre, main_post, skip_pre, skip_post, hidden;
    std::vector<Layer*> chain;  // predict_chain's layer pointers, set on every call (copies of a model point elsewhere)
    Matrix logits;
    Index batch = -1;           // of the last complete forward; -1: none
    detail::InputProbe<Scalar> probe;  // a few entries of its input (detail/input_probe.hpp)
  };

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
    layer_labels_ = d.layer_labels;
    const std::size_t L = d.layer_sizes.size();
    const auto size = [&](std::size_t t) { return static_cast<Index>(d.layer_sizes[t]); };
    // deepstruct's creation order (and so the order of the draws): first, mains, skips, out.
    layers_.reserve(L + d.connections.size() + 1);
    layers_.emplace_back(inputs, size(0), options_.bias, gen);
    for (std::size_t t = 1; t < L; ++t) layers_.emplace_back(size(t - 1), size(t), options_.bias, gen);
    skips_into_.assign(L, {});
    std::vector<Mask> skip_masks;
    for (const auto& c : d.connections) {
      if (c.source_layer + 1 == c.target_layer) {
        layers_[c.target_layer].set_mask(c.mask);
      } else {
        skips_into_[c.target_layer].push_back(skips_.size());
        skips_.push_back(SkipConnection{c.source_layer, c.target_layer});
        layers_.emplace_back(size(c.source_layer), size(c.target_layer), options_.bias, gen);
        layers_.back().set_mask(c.mask);
      }
    }
    layers_.emplace_back(size(L - 1), outputs, options_.bias, gen);
    if (options_.use_layer_norm) {
      for (std::size_t t = 0; t < L; ++t) norms_.emplace_back(size(t));
      norms_[0].set_trainable(false);  // deepstruct's LN_0: in the state_dict, in no computation
    }
  }

  void check_input(const Eigen::Ref<const Matrix>& x, bool training) const {
    if (x.rows() != inputs())
      DEEPSTRUCT_THROW(shape_error, std::string(name_) + "::" + (training ? "forward" : "predict") +
                                        ": expected input with " + std::to_string(inputs()) +
                                        " rows (flattened features x batch, one sample per column), found " +
                                        detail::shape_str(x.rows(), x.cols()));
  }

  void run_forward(const Eigen::Ref<const Matrix>& x, Activations& a, Matrix& logits, bool training) {
    check_input(x, training);
    const std::size_t L = num_hidden_layers();
    a.main_pre.resize(L);
    a.main_post.resize(L);
    a.hidden.resize(L);
    a.skip_pre.resize(skips_.size());
    a.skip_post.resize(skips_.size());
    const bool keep_post = training && needs_post();
    layers_[0].forward(x, a.main_pre[0]);
    a.hidden[0].resize(a.main_pre[0].rows(), a.main_pre[0].cols());
    activate(options_.activation, a.main_pre[0], a.hidden[0]);  // no skips into layer 0: h_0 is its post
    for (std::size_t t = 1; t < L; ++t) {
      layers_[t].forward(a.hidden[t - 1], a.main_pre[t]);
      if (options_.use_layer_norm) {
        if (training) {
          norms_[t].forward(a.main_pre[t], scratch_);
          a.main_pre[t].swap(scratch_);
        } else {
          norms_[t].apply(a.main_pre[t], a.main_pre[t]);  // keeps no state for a backward
        }
      }
      Matrix& h = a.hidden[t];
      h.resize(a.main_pre[t].rows(), a.main_pre[t].cols());
      if (keep_post && !skips_into_[t].empty()) {
        // The derivative needs act(main_t) apart from the sum h_t.
        a.main_post[t].resize(h.rows(), h.cols());
        activate(options_.activation, a.main_pre[t], a.main_post[t]);
        h = a.main_post[t];
      } else {
        activate(options_.activation, a.main_pre[t], h);
      }
      for (std::size_t j : skips_into_[t]) {
        layers_[L + j].forward(a.hidden[skips_[j].source], a.skip_pre[j]);
        if (keep_post) {
          a.skip_post[j].resize(a.skip_pre[j].rows(), a.skip_pre[j].cols());
          activate(options_.activation, a.skip_pre[j], a.skip_post[j]);
          h += a.skip_post[j];
        } else {
          add_activated(a.skip_pre[j], h);
        }
      }
    }
    layers_.back().forward(a.hidden[L - 1], logits);
  }

  /// predict() of a chain (no skips, no LayerNorm): every run of consecutive layers that take
  /// their sparse path for this batch goes through MaskedLinear::forward_chain, each batch tile
  /// through the whole run, activations included, while it is in cache; the other layers run
  /// forward() and activate() as in training. The same logits as the forward of training.
  void predict_chain(const Eigen::Ref<const Matrix>& x, Activations& a, Matrix& logits) {
    check_input(x, false);
    const std::size_t L = num_hidden_layers();  // layers_: the mains 0..L-1, then the output layer
    const Index batch = x.cols();
    const bool tiled = batch > detail::per_sample_batch<Scalar>;  // a few samples run one layer at a time
    a.hidden.resize(L);
    a.chain.resize(L + 1);
    for (std::size_t t = 0; t <= L; ++t) a.chain[t] = &layers_[t];
    // predict(m, m) worked layer by layer (x read by the first layer, logits written by the last);
    // a single run reads x and writes the logits in one call, so it writes a buffer of its own.
    const bool logits_overlap_x = detail::shares_memory(x, logits);
    for (std::size_t i = 0; i <= L;) {
      std::size_t j = i;  // the run [i, j]
      if (tiled && layers_[i].runs_sparse_forward(batch))
        while (j < L && layers_[j + 1].runs_sparse_forward(batch)) ++j;
      const bool via_buffer = j == L && i == 0 && logits_overlap_x;
      Matrix& out = j < L ? a.hidden[j] : via_buffer ? a.logits : logits;
      if (i == 0)
        Layer::forward_chain(&a.chain[i], j - i + 1, options_.activation, j < L, x, out);
      else
        Layer::forward_chain(&a.chain[i], j - i + 1, options_.activation, j < L, a.hidden[i - 1], out);
      if (via_buffer) logits = a.logits;
      i = j + 1;
    }
  }

  /// True if the activation's derivative is computed from its output (tanh, sigmoid); the others
  /// need the pre-activation only, and the activated terms are then not kept apart.
  bool needs_post() const {
    return options_.activation == Activation::tanh || options_.activation == Activation::sigmoid;
  }
  /// act(main_t(...)) of the last forward: h_t itself when no skip adds to it. Only meaningful
  /// when needs_post(); otherwise the derivative ignores it.
  const Matrix& main_post(const Activations& a, std::size_t t) const {
    if (!needs_post()) return a.main_pre[t];
    return skips_into_[t].empty() ? a.hidden[t] : a.main_post[t];
  }
  const Matrix& skip_post(const Activations& a, std::size_t j) const { return needs_post() ? a.skip_post[j] : a.skip_pre[j]; }

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

  std::size_t check_layer(std::size_t t, const char* where) const {
    if (t >= num_hidden_layers())
      DEEPSTRUCT_THROW(index_error, std::string("MaskedDeepDAN::") + where + ": expected a hidden layer below " +
                                        std::to_string(num_hidden_layers()) + ", found " + std::to_string(t));
    return t;
  }
  std::size_t check_main(std::size_t t) const {
    if (t == 0 || t >= num_hidden_layers())
      DEEPSTRUCT_THROW(index_error, "MaskedDeepDAN::main_layer: expected a hidden layer 1.." + std::to_string(num_hidden_layers() - 1) +
                                        " (layer 0 is fed by layer_first), found " + std::to_string(t));
    return t;
  }
  std::size_t check_skip(std::size_t j) const {
    if (j >= skips_.size())
      DEEPSTRUCT_THROW(index_error, "MaskedDeepDAN::skip_layer: expected a skip index below " + std::to_string(skips_.size()) +
                                        ", found " + std::to_string(j));
    return num_hidden_layers() + j;
  }
  std::size_t check_norm(std::size_t t) const {
    if (!options_.use_layer_norm || t >= num_hidden_layers())
      DEEPSTRUCT_THROW(index_error, "MaskedDeepDAN::layer_norm: expected a hidden layer 0.." + std::to_string(num_hidden_layers() - 1) +
                                        " of a network with LayerNorm, found layer " + std::to_string(t) +
                                        (options_.use_layer_norm ? "" : " of a network without LayerNorm"));
    return t;
  }
  /// The layer that produces hidden layer t: layer_first for t = 0, main_t otherwise.
  const Layer& main_index(std::size_t t) const { return layers_[t]; }

  DANOptions options_;
  const char* name_ = "MaskedDeepDAN";  // in messages of forward, predict, backward
  std::vector<std::vector<std::size_t>> layer_vertices_;
  std::vector<std::vector<std::string>> layer_labels_;
  // Every masked layer: [0] first, [t] main_t (1 <= t < L), [L + j] skip j, back() out.
  std::vector<Layer> layers_;
  std::vector<SkipConnection> skips_;
  std::vector<std::vector<std::size_t>> skips_into_;  // indices into skips_ by target layer
  std::vector<Norm> norms_;                           // norms_[t] of hidden layer t (0 unused)
  Activations train_, eval_;
  // backward's buffers
  std::vector<Matrix> grad_hidden_;
  Matrix scratch_, scratch_in_;
  std::vector<char> grad_written_;  // has dL/dh_t received its first contribution?
};

// The entry points are defined outside the class: not inline, so that with
// DEEPSTRUCT_EXTERN_TEMPLATES (docs/benchmarks.md#compile-time) a translation unit that calls
// them instantiates nothing of the engine beneath them.

template <typename Scalar_>
MaskedDeepDAN<Scalar_>::MaskedDeepDAN(Index inputs, Index outputs, const DanDescription& structure, const DANOptions& options)
    : options_(options) {
  Generator gen(options.seed);
  build(inputs, outputs, structure, gen);
}

template <typename Scalar_>
MaskedDeepDAN<Scalar_>::MaskedDeepDAN(Index inputs, Index outputs, const DanDescription& structure, const DANOptions& options,
                                      Generator& gen)
    : options_(options) {
  build(inputs, outputs, structure, gen);
}

template <typename Scalar_>
auto MaskedDeepDAN<Scalar_>::forward(const Eigen::Ref<const Matrix>& x) -> const Matrix& {
  train_.batch = -1;  // a failed forward leaves nothing for backward
  // Before the run: x may be the logits of the last forward (model.forward(model.forward(x0))),
  // which the run overwrites; backward then refuses what x has become.
  train_.probe = detail::InputProbe<Scalar>::of(x);
  run_forward(x, train_, train_.logits, true);
  train_.batch = x.cols();
  return train_.logits;
}

template <typename Scalar_>
void MaskedDeepDAN<Scalar_>::predict(const Eigen::Ref<const Matrix>& x, Matrix& logits) {
  // Here, not in run_forward: a program that only trains does not compile the chains.
  if (skips_.empty() && !options_.use_layer_norm)
    predict_chain(x, eval_, logits);
  else
    run_forward(x, eval_, logits, false);
}

template <typename Scalar_>
void MaskedDeepDAN<Scalar_>::backward(const Eigen::Ref<const Matrix>& x, const Eigen::Ref<const Matrix>& grad_logits,
                                      Matrix* grad_input) {
  if (train_.batch < 0)
    DEEPSTRUCT_THROW(state_error, std::string(name_) + "::backward: expected a preceding forward(x), found none (or a failed one)");
  const Index batch = train_.batch;
  if (x.rows() != inputs() || x.cols() != batch)
    DEEPSTRUCT_THROW(shape_error, std::string(name_) + "::backward: expected the input of the last forward, of shape " +
                                      detail::shape_str(inputs(), batch) + ", found " + detail::shape_str(x.rows(), x.cols()));
  if (!train_.probe.matches(x))
    DEEPSTRUCT_THROW(state_error, std::string(name_) + "::backward: expected the input of the last forward, found another " +
                                      detail::shape_str(x.rows(), x.cols()) + " matrix (its values differ)");
  if (grad_logits.rows() != outputs() || grad_logits.cols() != batch)
    DEEPSTRUCT_THROW(shape_error, std::string(name_) + "::backward: expected dL/dlogits of shape " +
                                      detail::shape_str(outputs(), batch) + " (outputs x batch of the last forward), found " +
                                      detail::shape_str(grad_logits.rows(), grad_logits.cols()));
  if (grad_input != nullptr) {  // before any gradient is added: a refused call changes nothing
    const std::string where = std::string(name_) + "::backward";
    detail::check_no_alias(x, *grad_input, where.c_str(), "grad_input", "x");
    detail::check_no_alias(grad_logits, *grad_input, where.c_str(), "grad_input", "grad_logits");
  }
  const std::size_t L = num_hidden_layers();
  Activations& a = train_;
  // The first contribution to a layer's gradient is written in place, later ones are added: no
  // zero fill. Layers are visited from the last one down, so every contribution to dL/dh_t
  // (from main_{t+1} and the skips out of t) has arrived when t is reached.
  grad_written_.assign(L, 0);
  grad_hidden_.resize(L);
  layers_.back().backward(a.hidden[L - 1], grad_logits, &grad_hidden_[L - 1]);
  grad_written_[L - 1] = 1;
  for (std::size_t t = L; t-- > 1;) {
    Matrix& g = grad_hidden_[t];
    // Skip terms into t: each activated on its own.
    for (std::size_t j : skips_into_[t]) {
      activation_backward(options_.activation, a.skip_pre[j], skip_post(a, j), g, scratch_);
      layers_[L + j].backward(a.hidden[skips_[j].source], scratch_, input_gradient_target(skips_[j].source));
      add_input_gradient(skips_[j].source);
    }
    // The main term: through the activation (and the norm) into main_t, whose input gradient
    // reaches layer t-1. g is not needed afterwards: the activation's backward runs in place.
    activation_backward(options_.activation, a.main_pre[t], main_post(a, t), g, g);
    if (options_.use_layer_norm) norms_[t].backward(g, g);
    layers_[t].backward(a.hidden[t - 1], g, input_gradient_target(t - 1));
    add_input_gradient(t - 1);
  }
  Matrix& g0 = grad_hidden_[0];
  activation_backward(options_.activation, a.main_pre[0], main_post(a, 0), g0, g0);
  layers_[0].backward(x, g0, grad_input);
}

using MaskedDeepDANf = MaskedDeepDAN<float>;
using MaskedDeepDANd = MaskedDeepDAN<double>;

}  // namespace deepstruct

// Compiled mode (detail/compiled_mode.hpp): the instantiations that instantiate.hpp compiles.
#define DEEPSTRUCT_INSTANTIATIONS_MASKED_DEEP_DAN(prefix, S) \
  prefix template class ::deepstruct::ModelBase<::deepstruct::MaskedDeepDAN<S>, S>; \
  prefix template class ::deepstruct::MaskedDeepDAN<S>;
DEEPSTRUCT_DECLARE_EXTERN(DEEPSTRUCT_INSTANTIATIONS_MASKED_DEEP_DAN)
