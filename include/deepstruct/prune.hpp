// SPDX-License-Identifier: MIT
#pragma once

/// \file prune.hpp
/// Pruning by magnitude (zeroth order: single weights) and by neuron norm (first order: whole
/// neurons), per layer or globally across layers, as torch.nn.utils.prune does it:
/// l1_unstructured, ln_structured (rows) and global_unstructured. Pruning only ever turns mask
/// entries off: it ranks the weights that are still active, so iterative pruning never revives a
/// pruned weight. Scores are the layers' saliency() (|W| unless a custom saliency was set).
///
/// Amounts follow PyTorch: a fraction f prunes round(f * candidates) (round half to even, as
/// Python's round), a count prunes exactly that many. Ties are broken by position (lower first).

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/parameter.hpp"

namespace deepstruct {

/// How much to prune: a fraction of the candidates, or a number of them.
class PruneAmount {
 public:
  static PruneAmount fraction(double f) {
    if (!(f >= 0.0 && f <= 1.0))
      DEEPSTRUCT_THROW(value_error, "PruneAmount::fraction: expected a fraction in [0, 1], found " + detail::number_str(f));
    return PruneAmount(f, -1);
  }
  static PruneAmount count(Eigen::Index n) {
    if (n < 0) DEEPSTRUCT_THROW(value_error, "PruneAmount::count: expected a count >= 0, found " + std::to_string(n));
    return PruneAmount(-1.0, n);
  }
  /// How many of `candidates` to prune; throws if a count exceeds them.
  Eigen::Index of(Eigen::Index candidates, const char* where) const {
    if (count_ >= 0) {
      if (count_ > candidates)
        DEEPSTRUCT_THROW(value_error, std::string(where) + ": expected to prune at most the " + std::to_string(candidates) +
                                          " remaining candidates, found a count of " + std::to_string(count_));
      return count_;
    }
    return static_cast<Eigen::Index>(std::nearbyint(fraction_ * static_cast<double>(candidates)));
  }

 private:
  PruneAmount(double f, Eigen::Index n) : fraction_(f), count_(n) {}
  double fraction_;
  Eigen::Index count_;
};

/// Which masked weights a pruning call ranks: every one (the default), or those a predicate
/// select(layer, k) accepts, e.g. weights_named({"_weight_hh"}) for the hidden-to-hidden weights of
/// recurrent layers only.
struct AllWeights {
  template <typename Layer>
  bool operator()(const Layer&, std::size_t) const {
    return true;
  }
};

/// Selects the masked weights whose weight_name(k) is one of `names`.
struct WeightsNamed {
  std::vector<std::string> names;
  template <typename Layer>
  bool operator()(const Layer& layer, std::size_t k) const {
    return std::find(names.begin(), names.end(), layer.weight_name(k)) != names.end();
  }
};
inline WeightsNamed weights_named(std::vector<std::string> names) { return WeightsNamed{std::move(names)}; }

/// Selects every masked weight of the layers whose type_name() is one of `types`, e.g.
/// layers_of_type({"MaskedConv2d"}) for the convolutions of a DeepCellDAN.
struct LayersOfType {
  std::vector<std::string> types;
  template <typename Layer>
  bool operator()(const Layer& layer, std::size_t) const {
    return std::find(types.begin(), types.end(), layer.type_name()) != types.end();
  }
};
inline LayersOfType layers_of_type(std::vector<std::string> types) { return LayersOfType{std::move(types)}; }

namespace detail {

struct Candidate {
  double score;
  std::size_t layer;
  std::size_t weight;     // masked weight k of the layer
  Eigen::Index position;  // column-major index into that weight
};

template <typename Scalar>
void check_layers(const std::vector<MaskedLayer<Scalar>*>& layers, const char* where) {
  for (std::size_t l = 0; l < layers.size(); ++l) {
    if (layers[l] == nullptr)
      DEEPSTRUCT_THROW(value_error, std::string(where) + ": expected pointers to masked layers, found a null pointer at position " +
                                        std::to_string(l));
    // A layer listed twice would have its weights counted twice (and pruned once).
    const auto first = std::find(layers.begin(), layers.begin() + static_cast<std::ptrdiff_t>(l), layers[l]);
    if (first != layers.begin() + static_cast<std::ptrdiff_t>(l))
      DEEPSTRUCT_THROW(value_error, std::string(where) + ": expected every layer once, found the layer at position " + std::to_string(l) +
                                        " already at position " + std::to_string(first - layers.begin()));
  }
}

/// Turns off the `k` lowest-scored candidates (ties by layer, masked weight, then position).
template <typename Scalar>
void prune_lowest(std::vector<Candidate>& candidates, Eigen::Index k, const std::vector<MaskedLayer<Scalar>*>& layers) {
  if (k <= 0) return;
  auto less = [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score < b.score;
    if (a.layer != b.layer) return a.layer < b.layer;
    if (a.weight != b.weight) return a.weight < b.weight;
    return a.position < b.position;
  };
  std::nth_element(candidates.begin(), candidates.begin() + (k - 1), candidates.end(), less);
  std::vector<std::vector<typename MaskedLayer<Scalar>::Mask>> masks(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (std::size_t w = 0; w < layers[l]->num_masks(); ++w) masks[l].push_back(layers[l]->mask(w));
  for (Eigen::Index i = 0; i < k; ++i) {
    const Candidate& c = candidates[static_cast<std::size_t>(i)];
    masks[c.layer][c.weight].data()[c.position] = false;
  }
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (std::size_t w = 0; w < layers[l]->num_masks(); ++w) layers[l]->set_mask(w, masks[l][w]);
}

template <typename Scalar, typename Select>
void collect_active(const MaskedLayer<Scalar>& layer, std::size_t index, std::vector<Candidate>& out, const Select& select) {
  for (std::size_t w = 0; w < layer.num_masks(); ++w) {
    if (!select(layer, w)) continue;
    const auto saliency = layer.saliency(w);
    const bool* mask = layer.mask(w).data();
    for (Eigen::Index i = 0; i < saliency.size(); ++i)
      if (mask[i]) {
        const double s = static_cast<double>(saliency.data()[i]);
        if (std::isnan(s))
          DEEPSTRUCT_THROW(value_error, "prune: expected finite saliency scores, found NaN at weight " + std::to_string(i) +
                                            " of masked weight '" + layer.weight_name(w) + "' of layer " + std::to_string(index));
        out.push_back(Candidate{s, index, w, i});
      }
  }
}

/// The masked layers of any container of pointers to types derived from MaskedLayer<Scalar>.
template <typename Scalar, typename LayerPtr>
std::vector<MaskedLayer<Scalar>*> as_masked_layers(const std::vector<LayerPtr>& layers) {
  return std::vector<MaskedLayer<Scalar>*>(layers.begin(), layers.end());
}

}  // namespace detail

/// torch.nn.utils.prune.l1_unstructured over the active weights of one layer (by saliency; a
/// layer with several masked weights ranks them together). Returns the number of weights pruned.
template <typename Scalar, typename Select = AllWeights>
Eigen::Index prune_layer(MaskedLayer<Scalar>& layer, PruneAmount amount, const Select& select = Select{}) {
  std::vector<detail::Candidate> candidates;
  detail::collect_active(layer, 0, candidates, select);
  const Eigen::Index k = amount.of(static_cast<Eigen::Index>(candidates.size()), "prune_layer");
  detail::prune_lowest<Scalar>(candidates, k, {&layer});
  return k;
}

/// torch.nn.utils.prune.global_unstructured (L1): ranks the active weights of all layers together.
/// Throws value_error (changing nothing) for a null pointer among the layers or a layer listed
/// twice.
template <typename Scalar, typename Select = AllWeights>
Eigen::Index prune_global(const std::vector<MaskedLayer<Scalar>*>& layers, PruneAmount amount, const Select& select = Select{}) {
  detail::check_layers(layers, "prune_global");
  std::vector<detail::Candidate> candidates;
  for (std::size_t l = 0; l < layers.size(); ++l) detail::collect_active(*layers[l], l, candidates, select);
  const Eigen::Index k = amount.of(static_cast<Eigen::Index>(candidates.size()), "prune_global");
  detail::prune_lowest<Scalar>(candidates, k, layers);
  return k;
}

/// The same for pointers to a concrete layer type (std::vector<MaskedLinear<float>*>).
template <typename LayerType, typename Select = AllWeights, typename = std::enable_if_t<!std::is_abstract<LayerType>::value>>
Eigen::Index prune_global(const std::vector<LayerType*>& layers, PruneAmount amount, const Select& select = Select{}) {
  return prune_global(detail::as_masked_layers<typename LayerType::Scalar>(layers), amount, select);
}

/// Global pruning over every masked layer of a model (MaskedDeepFFN, MaskedDeepDAN, ...), or
/// over the masked weights `select` accepts.
template <typename Model, typename Select = AllWeights>
auto prune_global(Model& model, PruneAmount amount, const Select& select = Select{})
    -> decltype(model.maskable_layers(), Eigen::Index()) {
  return prune_global(model.maskable_layers(), amount, select);
}

/// Per-layer pruning of every masked layer of a model: each layer loses the same fraction (of the
/// masked weights `select` accepts). All or nothing: every layer's candidates and count are
/// checked first, so a count larger than some layer's candidates or a NaN saliency throws
/// value_error before any layer is pruned.
template <typename Model, typename Select = AllWeights>
auto prune_each_layer(Model& model, PruneAmount amount, const Select& select = Select{})
    -> decltype(model.maskable_layers(), Eigen::Index()) {
  const auto layers = model.maskable_layers();
  using Scalar = typename std::remove_pointer_t<typename decltype(layers)::value_type>::Scalar;
  std::vector<std::vector<detail::Candidate>> candidates(layers.size());
  std::vector<Eigen::Index> counts(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    detail::collect_active(*layers[l], l, candidates[l], select);  // l: messages name the layer
    for (auto& c : candidates[l]) c.layer = 0;                      // prune_lowest below sees one layer
    const std::string where = "prune_each_layer (layer " + std::to_string(l) + ")";
    counts[l] = amount.of(static_cast<Eigen::Index>(candidates[l].size()), where.c_str());
  }
  Eigen::Index total = 0;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    detail::prune_lowest<Scalar>(candidates[l], counts[l], {layers[l]});
    total += counts[l];
  }
  return total;
}

/// torch.nn.utils.prune.ln_structured(dim=0): removes whole neurons (rows of masked weight `k`,
/// the units it feeds) with the smallest L_p norm of their effective weights, among the neurons
/// that still have an active weight. p may be any value > 0 or infinity. Returns the number of
/// neurons pruned. Throws value_error, changing nothing, when a candidate neuron has a NaN in an
/// active weight (a NaN behind the mask is ignored, as everywhere: W o M is taken with a select).
template <typename Scalar>
Eigen::Index prune_neurons(MaskedLayer<Scalar>& layer, PruneAmount amount, double p = 2.0, std::size_t k = 0) {
  if (!(p > 0.0)) DEEPSTRUCT_THROW(value_error, "prune_neurons: expected a norm order p > 0, found " + detail::number_str(p));
  const auto& mask = layer.mask(k);
  const auto w = mask.select(layer.weight(k), Scalar(0));
  std::vector<std::pair<double, Eigen::Index>> rows;
  for (Eigen::Index o = 0; o < w.rows(); ++o) {
    if (!mask.row(o).any()) continue;
    // NaN has no rank (and would break std::sort's ordering): refuse it, as the saliency scores.
    for (Eigen::Index i = 0; i < w.cols(); ++i)
      if (std::isnan(static_cast<double>(w(o, i))))
        DEEPSTRUCT_THROW(value_error, "prune_neurons: expected finite weights, found NaN at weight " + std::to_string(i) +
                                          " of neuron (row) " + std::to_string(o));
    double norm = 0.0;
    if (std::isinf(p)) {
      norm = static_cast<double>(w.row(o).cwiseAbs().maxCoeff());
    } else {
      for (Eigen::Index i = 0; i < w.cols(); ++i) norm += std::pow(std::abs(static_cast<double>(w(o, i))), p);
      norm = std::pow(norm, 1.0 / p);
    }
    rows.emplace_back(norm, o);
  }
  const Eigen::Index n = amount.of(static_cast<Eigen::Index>(rows.size()), "prune_neurons");
  if (n == 0) return 0;
  std::sort(rows.begin(), rows.end());
  auto new_mask = mask;
  for (Eigen::Index i = 0; i < n; ++i) new_mask.row(rows[static_cast<std::size_t>(i)].second).setConstant(false);
  layer.set_mask(k, new_mask);
  return n;
}

/// A copy of every parameter value of a model, in for_each_parameter order (for rewinding).
template <typename Scalar>
using ParameterSnapshot = std::vector<std::vector<Scalar>>;

template <typename Scalar, typename Model>
ParameterSnapshot<Scalar> snapshot_parameters(Model& model) {
  ParameterSnapshot<Scalar> snap;
  for_each_parameter(model, [&](const ParameterRef<Scalar>& p) { snap.emplace_back(p.value, p.value + p.size); });
  return snap;
}

/// Writes a snapshot back (masks are left as they are). All or nothing: every parameter's size is
/// checked against the snapshot before any value changes, so a snapshot of another model throws
/// shape_error and leaves the model as it was.
template <typename Scalar, typename Model>
void restore_parameters(Model& model, const ParameterSnapshot<Scalar>& snap) {
  std::size_t k = 0;
  for_each_parameter(model, [&](const ParameterRef<Scalar>& p) {
    if (k < snap.size() && static_cast<Eigen::Index>(snap[k].size()) != p.size)
      DEEPSTRUCT_THROW(shape_error, "restore_parameters: expected a snapshot of this model (parameter " + std::to_string(k) +
                                        " of size " + std::to_string(p.size) + "), found one whose parameter " +
                                        std::to_string(k) + " has size " + std::to_string(snap[k].size()));
    ++k;
  });
  if (k != snap.size())
    DEEPSTRUCT_THROW(shape_error, "restore_parameters: expected a snapshot of " + std::to_string(k) +
                                      " parameters, found one of " + std::to_string(snap.size()));
  k = 0;
  for_each_parameter(model, [&](const ParameterRef<Scalar>& p) {
    std::copy(snap[k].begin(), snap[k].end(), p.value);
    ++k;
  });
}

struct IterativePruningOptions {
  int rounds = 1;                  ///< train -> prune (-> rewind) this many times
  double fraction_per_round = 0.2; ///< of the weights still active, globally across layers
  bool rewind = true;              ///< lottery ticket: back to the initial weights after each prune
};

struct PruningRound {
  int round = 0;            ///< 1-based
  double density = 0.0;     ///< after pruning
  Eigen::Index pruned = 0;  ///< weights pruned in this round
};

/// Iterative magnitude pruning. Each round calls train(model, round) (1-based), prunes
/// fraction_per_round of the active weights globally, and with rewind resets every parameter to
/// its value at the start (Frankle & Carbin's lottery tickets; the masks stay). Without rewind
/// the training callable is the fine-tuning between prunes. Train the final network yourself.
template <typename Model, typename Train>
std::vector<PruningRound> iterative_magnitude_pruning(Model& model, const IterativePruningOptions& options, Train&& train) {
  if (options.rounds < 0)
    DEEPSTRUCT_THROW(value_error, "iterative_magnitude_pruning: expected rounds >= 0, found " + std::to_string(options.rounds));
  const PruneAmount amount = PruneAmount::fraction(options.fraction_per_round);
  using Scalar = typename Model::Scalar;
  const ParameterSnapshot<Scalar> initial =
      options.rewind ? snapshot_parameters<Scalar>(model) : ParameterSnapshot<Scalar>{};
  std::vector<PruningRound> history;
  for (int r = 1; r <= options.rounds; ++r) {
    train(model, r);
    PruningRound round;
    round.round = r;
    round.pruned = prune_global(model, amount);
    if (options.rewind) restore_parameters(model, initial);
    round.density = model.density();
    history.push_back(round);
  }
  return history;
}

}  // namespace deepstruct
