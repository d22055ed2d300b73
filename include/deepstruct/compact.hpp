// SPDX-License-Identifier: MIT
#pragma once

/// \file compact.hpp
/// Compaction: removes the dead neurons of a MaskedDeepFFN - hidden neurons with no path of active
/// weights from an input or none to an output - and gives a smaller network with the same outputs.
///
/// A neuron no input reaches still sends a constant, act(bias + ...), to the next layer. Where that
/// constant reaches an output it is folded into the biases of the neurons it feeds, so the outputs
/// stay the same (up to rounding). Neurons that reach no output are dropped outright. Inputs and
/// outputs are never removed. A hidden layer left without neurons keeps one whose connections are
/// all masked (a network needs at least one neuron per layer), so it changes nothing.

#include <Eigen/Core>
#include <string>
#include <vector>

#include "deepstruct/activation.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/masked_deep_ffn.hpp"

namespace deepstruct {

template <typename Scalar>
struct Compaction {
  MaskedDeepFFN<Scalar> model;                  ///< the smaller network
  std::vector<std::vector<Eigen::Index>> kept;  ///< per hidden layer: the original indices kept
  Eigen::Index removed = 0;                     ///< hidden neurons removed
};

/// The compacted network of `model`. Throws value_error for a network with LayerNorm (removing a
/// neuron changes every other neuron's normalisation) and for a network without biases whose dead
/// neurons send a nonzero constant to a kept neuron (there is no bias to fold it into).
template <typename Scalar>
Compaction<Scalar> compact(const MaskedDeepFFN<Scalar>& model) {
  using Index = Eigen::Index;
  using Matrix = typename MaskedDeepFFN<Scalar>::Matrix;
  using Vector = typename MaskedDeepFFN<Scalar>::Vector;
  using Mask = typename MaskedDeepFFN<Scalar>::Mask;
  if (model.uses_layer_norm())
    DEEPSTRUCT_THROW(value_error, "compact: expected a network without LayerNorm, found one with LayerNorm (removing a "
                                  "neuron would change the normalisation of the others)");
  const std::size_t K = model.num_layers();  // masked layers; hidden layer k is the output of layer k < K-1
  const std::size_t H = K - 1;
  // Reachability over active weights.
  std::vector<std::vector<bool>> from_input(H), to_output(H);
  for (std::size_t k = 0; k < H; ++k) {
    const Mask& m = model.layer(k).mask();
    from_input[k].assign(static_cast<std::size_t>(m.rows()), false);
    for (Index j = 0; j < m.rows(); ++j)
      for (Index i = 0; i < m.cols() && !from_input[k][static_cast<std::size_t>(j)]; ++i)
        from_input[k][static_cast<std::size_t>(j)] = m(j, i) && (k == 0 || from_input[k - 1][static_cast<std::size_t>(i)]);
  }
  for (std::size_t k = H; k-- > 0;) {
    const Mask& m = model.layer(k + 1).mask();  // from hidden layer k to layer k+1
    to_output[k].assign(static_cast<std::size_t>(m.cols()), false);
    for (Index i = 0; i < m.cols(); ++i)
      for (Index o = 0; o < m.rows() && !to_output[k][static_cast<std::size_t>(i)]; ++o)
        to_output[k][static_cast<std::size_t>(i)] = m(o, i) && (k + 1 == H || to_output[k + 1][static_cast<std::size_t>(o)]);
  }
  // The constant of every neuron no input reaches (0 for the others: never used).
  std::vector<Vector> constant(H);
  for (std::size_t k = 0; k < H; ++k) {
    const auto& layer = model.layer(k);
    const Index n = layer.out_features();
    Vector pre = layer.has_bias() ? Vector(layer.bias()) : Vector(Vector::Zero(n));
    if (k > 0)
      for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < layer.in_features(); ++i)
          if (layer.mask()(j, i) && !from_input[k - 1][static_cast<std::size_t>(i)]) pre[j] += layer.weight()(j, i) * constant[k - 1][i];
    constant[k].resize(n);
    activate(model.activation(), pre, constant[k]);
    for (Index j = 0; j < n; ++j)
      if (from_input[k][static_cast<std::size_t>(j)]) constant[k][j] = Scalar(0);
  }
  // The kept neurons of every hidden layer.
  Compaction<Scalar> result{model, {}, 0};
  std::vector<Index> sizes;
  std::vector<bool> placeholder(H, false);
  for (std::size_t k = 0; k < H; ++k) {
    std::vector<Index> keep;
    for (std::size_t j = 0; j < from_input[k].size(); ++j)
      if (from_input[k][j] && to_output[k][j]) keep.push_back(static_cast<Index>(j));
    result.removed += static_cast<Index>(from_input[k].size() - keep.size());
    if (keep.empty()) {
      keep.push_back(0);
      placeholder[k] = true;
      --result.removed;
    }
    sizes.push_back(static_cast<Index>(keep.size()));
    result.kept.push_back(keep);
  }
  FFNOptions options = model.options();
  MaskedDeepFFN<Scalar> small(model.inputs(), model.outputs(), sizes, options);
  for (std::size_t k = 0; k < K; ++k) {
    const auto& layer = model.layer(k);
    const bool first = k == 0, last = k + 1 == K;
    std::vector<Index> rows, cols;
    if (last)
      for (Index o = 0; o < layer.out_features(); ++o) rows.push_back(o);
    else
      rows = result.kept[k];
    if (first)
      for (Index i = 0; i < layer.in_features(); ++i) cols.push_back(i);
    else
      cols = result.kept[k - 1];
    Matrix w(static_cast<Index>(rows.size()), static_cast<Index>(cols.size()));
    Mask m(w.rows(), w.cols());
    Vector b = layer.has_bias() ? Vector(layer.bias()) : Vector();
    Vector new_bias(layer.has_bias() ? w.rows() : 0);
    for (Index r = 0; r < w.rows(); ++r) {
      const Index j = rows[static_cast<std::size_t>(r)];
      for (Index c = 0; c < w.cols(); ++c) {
        const Index i = cols[static_cast<std::size_t>(c)];
        w(r, c) = layer.weight()(j, i);
        m(r, c) = layer.mask()(j, i) && !(!last && placeholder[k]) && !(!first && placeholder[k - 1]);
      }
      // Fold the constants of the previous layer's unreached neurons into the bias.
      Scalar folded(0);
      if (!first)
        for (Index i = 0; i < layer.in_features(); ++i)
          if (layer.mask()(j, i) && !from_input[k - 1][static_cast<std::size_t>(i)]) folded += layer.weight()(j, i) * constant[k - 1][i];
      if (layer.has_bias()) {
        new_bias[r] = b[j] + folded;
      } else if (folded != Scalar(0)) {
        DEEPSTRUCT_THROW(value_error, "compact: neuron " + std::to_string(j) + " of layer " + std::to_string(k) +
                                          " receives a constant from unreached neurons, but the network has no "
                                          "biases to fold it into");
      }
    }
    auto& target = small.layer(k);
    target.set_weight(w);
    target.set_mask(m);
    if (layer.has_bias()) target.set_bias(new_bias);
    target.set_execution(layer.execution());
    target.set_sparse_threshold(layer.sparse_threshold());
  }
  result.model = std::move(small);
  return result;
}

}  // namespace deepstruct
