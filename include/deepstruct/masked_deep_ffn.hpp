// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_deep_ffn.hpp
/// MaskedDeepFFN<Scalar>: deepstruct's masked feed-forward network of any width and depth.
/// Linear -> act, then for every further hidden layer Linear -> (LayerNorm) -> act, then the
/// output Linear without activation (logits). Every Linear is a MaskedLinear.
///
/// The network is a chain-structured MaskedDeepDAN (layer t fully connected to layer t+1, no
/// skips), whose forward, backward and predict it runs; this class keeps deepstruct's FFN names
/// (_layer_first, _layers_hidden.<i>, _layer_out), constructors and accessors.

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/activation.hpp"
#include "deepstruct/dan_description.hpp"
#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/layer_norm.hpp"
#include "deepstruct/masked_deep_dan.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/model.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

struct FFNOptions {
  bool use_layer_norm = false;             ///< LayerNorm (eps 1e-5) after hidden layers 2.., as deepstruct
  Activation activation = Activation::relu;
  bool bias = true;
  std::uint64_t seed = 0;                  ///< initialisation seed (ignored by the Generator& constructor)
};

template <typename Scalar_>
class MaskedDeepFFN : public ModelBase<MaskedDeepFFN<Scalar_>, Scalar_> {
  using Base = ModelBase<MaskedDeepFFN<Scalar_>, Scalar_>;

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Layer = MaskedLinear<Scalar>;
  using Norm = LayerNorm<Scalar>;
  using Network = MaskedDeepDAN<Scalar>;
  using Matrix = typename Layer::Matrix;
  using Vector = typename Layer::Vector;
  using Mask = typename Layer::Mask;

  /// inputs -> hidden[0] -> ... -> hidden[k-1] -> outputs, initialised from options.seed.
  MaskedDeepFFN(Index inputs, Index outputs, const std::vector<Index>& hidden, const FFNOptions& options = {})
      : options_(options), net_(make_network(inputs, outputs, hidden, options)) {
    net_.name_ = "MaskedDeepFFN";
  }
  /// As above, drawing the initial weights from `gen`.
  MaskedDeepFFN(Index inputs, Index outputs, const std::vector<Index>& hidden, const FFNOptions& options,
                Generator& gen)
      : options_(options), net_(make_network(inputs, outputs, hidden, options, &gen)) {
    net_.name_ = "MaskedDeepFFN";
  }
  /// A multi-dimensional input shape (e.g. {1, 28, 28}) is flattened to its product.
  MaskedDeepFFN(const std::vector<Index>& input_shape, Index outputs, const std::vector<Index>& hidden,
                const FFNOptions& options = {})
      : MaskedDeepFFN(detail::flattened_input(input_shape, "MaskedDeepFFN"), outputs, hidden, options) {}
  /// The feed-forward network of a chain-structured MaskedDeepDAN (no skip connections; every
  /// mask kept as it is). Throws value_error for a network with skip connections.
  explicit MaskedDeepFFN(Network chain) : options_(options_of(chain)), net_(std::move(chain)) {
    if (!net_.skips().empty())
      DEEPSTRUCT_THROW(value_error, "MaskedDeepFFN(MaskedDeepDAN): expected a chain without skip connections, found " +
                                        std::to_string(net_.skips().size()));
    net_.name_ = "MaskedDeepFFN";
  }

  static const char* model_name() { return "MaskedDeepFFN"; }

  // ---- structure ------------------------------------------------------------------------------

  Index inputs() const { return net_.inputs(); }
  Index outputs() const { return net_.outputs(); }
  /// The hidden layer sizes.
  std::vector<Index> hidden_sizes() const {
    std::vector<Index> sizes;
    for (std::size_t t = 0; t < net_.num_hidden_layers(); ++t) sizes.push_back(net_.hidden_layer_size(t));
    return sizes;
  }
  const FFNOptions& options() const { return options_; }
  bool uses_layer_norm() const { return options_.use_layer_norm; }
  Activation activation() const { return options_.activation; }
  /// The network engine: this FFN as a chain-structured MaskedDeepDAN (its hidden layer t is the
  /// FFN's hidden layer t; layer(k) is the DAN's layer_first, main_layer(k) or layer_out).
  const Network& network() const { return net_; }

  /// Number of masked layers: first, hidden..., output (deepstruct's maskable_layers).
  std::size_t num_layers() const { return net_.num_hidden_layers() + 1; }
  Layer& layer(std::size_t k) { return const_cast<Layer&>(static_cast<const MaskedDeepFFN&>(*this).layer(k)); }
  const Layer& layer(std::size_t k) const {
    if (k >= num_layers())
      DEEPSTRUCT_THROW(index_error, "MaskedDeepFFN::layer: expected a masked layer below " + std::to_string(num_layers()) +
                                        ", found " + std::to_string(k));
    if (k == 0) return net_.layer_first();
    if (k + 1 == num_layers()) return net_.layer_out();
    return net_.main_layer(k);
  }
  /// The LayerNorm after masked layer k (1 <= k < num_layers()-1) when uses_layer_norm().
  Norm& layer_norm(std::size_t k) { return const_cast<Norm&>(static_cast<const MaskedDeepFFN&>(*this).layer_norm(k)); }
  const Norm& layer_norm(std::size_t k) const { return net_.layer_norm(check_norm(k)); }
  bool has_layer_norm(std::size_t k) const { return options_.use_layer_norm && k >= 1 && k + 1 < num_layers(); }
  /// deepstruct's state_dict prefix of masked layer k: "_layer_first", "_layers_hidden.<i>",
  /// "_layer_out" (hidden modules are Linear, [LayerNorm,] ReLU in one ModuleList).
  std::string layer_name(std::size_t k) const {
    (void)layer(k);
    if (k == 0) return "_layer_first";
    if (k + 1 == num_layers()) return "_layer_out";
    return "_layers_hidden." + std::to_string(hidden_slot(k));
  }
  /// deepstruct's state_dict prefix of the LayerNorm after masked layer k.
  std::string layer_norm_name(std::size_t k) const { return "_layers_hidden." + std::to_string(hidden_slot(check_norm(k)) + 1); }

  /// The modules in deepstruct's state_dict order: _layer_first, then per hidden layer its
  /// Linear and LayerNorm, then _layer_out.
  template <typename Fn>
  void visit_modules(Fn&& fn) {
    const std::size_t K = num_layers();
    fn(net_.layer_first(), "_layer_first", Base::no_index);
    for (std::size_t k = 1; k + 1 < K; ++k) {
      fn(net_.main_layer(k), "_layers_hidden", hidden_slot(k));
      if (options_.use_layer_norm) fn(net_.layer_norm(k), "_layers_hidden", hidden_slot(k) + 1);
    }
    fn(net_.layer_out(), "_layer_out", Base::no_index);
  }

  // ---- forward / backward / predict (the engine's) -------------------------------------------

  /// Logits (outputs x batch) for inputs x batch (see MaskedDeepDAN::forward).
  const Matrix& forward(const Eigen::Ref<const Matrix>& x) { return net_.forward(x); }
  /// Evaluation into a caller-owned matrix; changes nothing backward() uses.
  void predict(const Eigen::Ref<const Matrix>& x, Matrix& logits) { net_.predict(x, logits); }
  /// Backpropagates dL/dlogits through the network of the last forward, whose input was x.
  void backward(const Eigen::Ref<const Matrix>& x, const Eigen::Ref<const Matrix>& grad_logits, Matrix* grad_input = nullptr) {
    net_.backward(x, grad_logits, grad_input);
  }

 private:
  static Network make_network(Index inputs, Index outputs, const std::vector<Index>& hidden, const FFNOptions& options,
                              Generator* gen = nullptr);
  static FFNOptions options_of(const Network& net) {
    FFNOptions o;
    o.use_layer_norm = net.options().use_layer_norm;
    o.activation = net.options().activation;
    o.bias = net.options().bias;
    o.seed = net.options().seed;
    return o;
  }
  /// deepstruct's ModuleList index of the Linear of hidden masked layer k (1 <= k < K-1).
  std::size_t hidden_slot(std::size_t k) const { return (k - 1) * (options_.use_layer_norm ? 3 : 2); }
  std::size_t check_norm(std::size_t k) const {
    if (!has_layer_norm(k))
      DEEPSTRUCT_THROW(index_error, "MaskedDeepFFN::layer_norm: expected a hidden layer 1.." + std::to_string(num_layers() - 2) +
                                        " of a network with LayerNorm, found layer " + std::to_string(k) +
                                        (options_.use_layer_norm ? "" : " of a network without LayerNorm"));
    return k;
  }

  FFNOptions options_;
  Network net_;
};

// Defined outside the class (not inline): with DEEPSTRUCT_EXTERN_TEMPLATES a translation unit that
// constructs an FFN instantiates nothing of the engine (docs/benchmarks.md#compile-time).
template <typename Scalar_>
auto MaskedDeepFFN<Scalar_>::make_network(Index inputs, Index outputs, const std::vector<Index>& hidden,
                                          const FFNOptions& options, Generator* gen) -> Network {
  if (hidden.empty()) DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected at least one hidden layer, found none");
  if (inputs <= 0 || outputs <= 0)
    DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected inputs >= 1 and outputs >= 1, found " + std::to_string(inputs) +
                                      " and " + std::to_string(outputs));
  DanDescription d;
  for (std::size_t k = 0; k < hidden.size(); ++k) {
    if (hidden[k] <= 0)
      DEEPSTRUCT_THROW(shape_error, "MaskedDeepFFN: expected hidden sizes >= 1, found " + std::to_string(hidden[k]) +
                                        " at position " + std::to_string(k));
    d.layer_sizes.push_back(static_cast<std::size_t>(hidden[k]));
    if (k > 0) d.connections.push_back({k - 1, k, Mask::Constant(hidden[k], hidden[k - 1], true)});
  }
  DANOptions o;
  o.use_layer_norm = options.use_layer_norm;
  o.activation = options.activation;
  o.bias = options.bias;
  o.seed = options.seed;
  if (gen != nullptr) return Network(inputs, outputs, d, o, *gen);
  return Network(inputs, outputs, d, o);
}

using MaskedDeepFFNf = MaskedDeepFFN<float>;
using MaskedDeepFFNd = MaskedDeepFFN<double>;

}  // namespace deepstruct

// Compiled mode (detail/compiled_mode.hpp): the instantiations that instantiate.hpp compiles.
#define DEEPSTRUCT_INSTANTIATIONS_MASKED_DEEP_FFN(prefix, S) \
  prefix template class ::deepstruct::ModelBase<::deepstruct::MaskedDeepFFN<S>, S>; \
  prefix template class ::deepstruct::MaskedDeepFFN<S>;
DEEPSTRUCT_DECLARE_EXTERN(DEEPSTRUCT_INSTANTIATIONS_MASKED_DEEP_FFN)
