// SPDX-License-Identifier: MIT
#pragma once

/// \file compact.hpp
/// Compaction: removes the dead neurons of a MaskedDeepDAN or MaskedDeepFFN - hidden neurons with
/// no path of active weights from an input or none to an output - and gives a smaller network with
/// the same outputs. Written once, on the network engine (a MaskedDeepFFN is a chain DAN).
///
/// A neuron no input reaches still sends a constant to the neurons it feeds: in a DAN, the sum
/// over its incoming connections of act(bias + the constants of its own sources). Where that
/// constant reaches a kept neuron it is folded into the bias of the connection that carries it
/// (every main and skip connection has its own bias and activation), so the outputs stay the same
/// (up to rounding). Neurons that reach no output are dropped outright. Inputs and outputs are
/// never removed. A hidden layer left without neurons keeps one whose connections are all masked
/// (a network needs at least one neuron per layer), so it changes nothing. Every connection of the
/// structure is kept, also when its mask becomes empty.

#include <Eigen/Core>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/activation.hpp"
#include "deepstruct/dan_description.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/masked_deep_dan.hpp"
#include "deepstruct/masked_deep_ffn.hpp"

namespace deepstruct {

template <typename Model>
struct Compaction {
  Model model;                                  ///< the smaller network
  std::vector<std::vector<Eigen::Index>> kept;  ///< per hidden layer: the positions (in the layer) kept
  Eigen::Index removed = 0;                     ///< hidden neurons removed
};

/// The compacted network of `model`. Throws value_error for a network with LayerNorm (removing a
/// neuron changes every other neuron's normalisation) and for a network without biases whose dead
/// neurons send a nonzero constant to a kept neuron (there is no bias to fold it into).
/// O(sum of mask sizes).
template <typename Scalar>
Compaction<MaskedDeepDAN<Scalar>> compact(const MaskedDeepDAN<Scalar>& model) {
  using Index = Eigen::Index;
  using Net = MaskedDeepDAN<Scalar>;
  using Matrix = typename Net::Matrix;
  using Vector = typename Net::Vector;
  using Mask = typename Net::Mask;
  using Layer = typename Net::Layer;
  if (model.uses_layer_norm())
    DEEPSTRUCT_THROW(value_error, "compact: expected a network without LayerNorm, found one with LayerNorm (removing a "
                                  "neuron would change the normalisation of the others)");
  const std::size_t L = model.num_hidden_layers();
  const auto size = [&](std::size_t t) { return static_cast<std::size_t>(model.hidden_layer_size(t)); };
  // The connections into every hidden layer t >= 1: (source layer, layer), main first.
  struct In {
    std::size_t source;
    const Layer* layer;
  };
  std::vector<std::vector<In>> into(L);
  for (std::size_t t = 1; t < L; ++t) {
    into[t].push_back({t - 1, &model.main_layer(t)});
    for (std::size_t j : model.skips_into(t)) into[t].push_back({model.skips()[j].source, &model.skip_layer(j)});
  }

  // Reachability over active weights.
  std::vector<std::vector<char>> from_input(L), to_output(L);
  for (std::size_t t = 0; t < L; ++t) {
    from_input[t].assign(size(t), 0);
    for (std::size_t j = 0; j < size(t); ++j) {
      const auto r = static_cast<Index>(j);
      if (t == 0) {
        from_input[t][j] = model.layer_first().mask().row(r).any();
        continue;
      }
      for (const In& c : into[t]) {
        const Mask& m = c.layer->mask();
        for (Index i = 0; i < m.cols() && !from_input[t][j]; ++i) from_input[t][j] = m(r, i) && from_input[c.source][static_cast<std::size_t>(i)];
      }
    }
  }
  for (std::size_t t = L; t-- > 0;) {
    to_output[t].assign(size(t), 0);
    if (t + 1 == L)
      for (std::size_t i = 0; i < size(t); ++i) to_output[t][i] = model.layer_out().mask().col(static_cast<Index>(i)).any();
    for (std::size_t u = t + 1; u < L; ++u)
      for (const In& c : into[u]) {
        if (c.source != t) continue;
        const Mask& m = c.layer->mask();
        for (Index i = 0; i < m.cols(); ++i)
          for (Index o = 0; o < m.rows() && !to_output[t][static_cast<std::size_t>(i)]; ++o)
            to_output[t][static_cast<std::size_t>(i)] = m(o, i) && to_output[u][static_cast<std::size_t>(o)];
      }
  }

  // The folded constant of connection c for neuron j: the active weights from unreached sources
  // times their constants (their outputs whatever the input).
  std::vector<Vector> constant(L);
  auto folded = [&](const Layer& layer, std::size_t source, Index j) {
    Scalar sum(0);
    for (Index i = 0; i < layer.in_features(); ++i)
      if (layer.mask()(j, i) && !from_input[source][static_cast<std::size_t>(i)])
        sum += layer.weight()(j, i) * constant[source][i];
    return sum;
  };
  auto bias_of = [](const Layer& layer, Index j) { return layer.has_bias() ? layer.bias()[j] : Scalar(0); };
  for (std::size_t t = 0; t < L; ++t) {
    constant[t] = Vector::Zero(static_cast<Index>(size(t)));
    for (std::size_t j = 0; j < size(t); ++j) {
      if (from_input[t][j]) continue;
      const auto r = static_cast<Index>(j);
      Vector pre(1), post(1);
      if (t == 0) {
        pre[0] = bias_of(model.layer_first(), r);
        activate(model.activation(), pre, post);
        constant[t][r] = post[0];
        continue;
      }
      for (const In& c : into[t]) {
        pre[0] = bias_of(*c.layer, r) + folded(*c.layer, c.source, r);
        activate(model.activation(), pre, post);
        constant[t][r] += post[0];
      }
    }
  }

  // The kept neurons of every hidden layer, and the smaller structure.
  Compaction<MaskedDeepDAN<Scalar>> result{model, {}, 0};
  std::vector<char> placeholder(L, 0);
  const DanDescription old = model.structure();
  DanDescription d;
  for (std::size_t t = 0; t < L; ++t) {
    std::vector<Index> keep;
    for (std::size_t j = 0; j < size(t); ++j)
      if (from_input[t][j] && to_output[t][j]) keep.push_back(static_cast<Index>(j));
    result.removed += static_cast<Index>(size(t) - keep.size());
    if (keep.empty()) {
      keep.push_back(0);
      placeholder[t] = 1;
      --result.removed;
    }
    d.layer_sizes.push_back(keep.size());
    std::vector<std::size_t> ids;
    std::vector<std::string> labels;
    for (const Index j : keep) {
      ids.push_back(model.layer_vertices(t)[static_cast<std::size_t>(j)]);
      if (!model.layer_labels(t).empty()) labels.push_back(model.layer_labels(t)[static_cast<std::size_t>(j)]);
    }
    d.layer_vertices.push_back(ids);
    if (!model.layer_labels(t).empty()) d.layer_labels.push_back(labels);
    result.kept.push_back(keep);
  }
  for (const auto& c : old.connections) d.connections.push_back({c.source_layer, c.target_layer, Mask()});

  // Copies the kept rows and columns of `from` into `to`; rows and columns of placeholders are
  // masked, constants of unreached sources folded into the bias.
  auto copy = [&](const Layer& from, Layer& to, const std::vector<Index>& rows, const std::vector<Index>& cols, bool rows_masked,
                  bool cols_masked, int source) {
    Matrix w(static_cast<Index>(rows.size()), static_cast<Index>(cols.size()));
    Mask m(w.rows(), w.cols());
    Vector b(from.has_bias() ? w.rows() : 0);
    for (Index r = 0; r < w.rows(); ++r) {
      const Index j = rows[static_cast<std::size_t>(r)];
      for (Index c = 0; c < w.cols(); ++c) {
        const Index i = cols[static_cast<std::size_t>(c)];
        w(r, c) = from.weight()(j, i);
        m(r, c) = from.mask()(j, i) && !rows_masked && !cols_masked;
      }
      const Scalar f = source >= 0 ? folded(from, static_cast<std::size_t>(source), j) : Scalar(0);
      if (from.has_bias()) {
        b[r] = from.bias()[j] + f;
      } else if (f != Scalar(0)) {
        DEEPSTRUCT_THROW(value_error, "compact: neuron " + std::to_string(j) + " receives a constant from unreached neurons of hidden layer " +
                                          std::to_string(source) + ", but the network has no biases to fold it into");
      }
    }
    to.set_weight(w);
    to.set_mask(m);
    if (from.has_bias()) to.set_bias(b);
    to.set_execution(from.execution());
    to.set_sparse_threshold(from.sparse_threshold());
  };
  std::vector<Index> all_inputs(static_cast<std::size_t>(model.inputs())), all_outputs(static_cast<std::size_t>(model.outputs()));
  for (std::size_t i = 0; i < all_inputs.size(); ++i) all_inputs[i] = static_cast<Index>(i);
  for (std::size_t o = 0; o < all_outputs.size(); ++o) all_outputs[o] = static_cast<Index>(o);
  // Masks of the description: whatever the copy below sets; the shapes must fit the new sizes.
  for (auto& c : d.connections)
    c.mask = Mask::Constant(static_cast<Index>(d.layer_sizes[c.target_layer]), static_cast<Index>(d.layer_sizes[c.source_layer]), false);
  DANOptions options = model.options();
  Net small(model.inputs(), model.outputs(), d, options);
  copy(model.layer_first(), small.layer_first(), result.kept[0], all_inputs, placeholder[0] != 0, false, -1);
  for (std::size_t t = 1; t < L; ++t)
    copy(model.main_layer(t), small.main_layer(t), result.kept[t], result.kept[t - 1], placeholder[t] != 0, placeholder[t - 1] != 0,
         static_cast<int>(t - 1));
  for (std::size_t j = 0; j < model.skips().size(); ++j) {
    const auto& s = model.skips()[j];
    copy(model.skip_layer(j), small.skip_layer(j), result.kept[s.target], result.kept[s.source], placeholder[s.target] != 0,
         placeholder[s.source] != 0, static_cast<int>(s.source));
  }
  copy(model.layer_out(), small.layer_out(), all_outputs, result.kept[L - 1], false, placeholder[L - 1] != 0, static_cast<int>(L - 1));
  result.model = std::move(small);
  return result;
}

/// The same for a MaskedDeepFFN (a chain DAN): the result is a MaskedDeepFFN.
template <typename Scalar>
Compaction<MaskedDeepFFN<Scalar>> compact(const MaskedDeepFFN<Scalar>& model) {
  Compaction<MaskedDeepDAN<Scalar>> c = compact(model.network());
  return Compaction<MaskedDeepFFN<Scalar>>{MaskedDeepFFN<Scalar>(std::move(c.model)), std::move(c.kept), c.removed};
}

}  // namespace deepstruct
