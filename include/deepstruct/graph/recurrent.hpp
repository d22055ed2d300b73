// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/recurrent.hpp
/// The structure of recurrent networks as graphs (deepstruct offers neither): the directed graph
/// of one recurrent layer's neurons, cyclic where its hidden-to-hidden mask closes a loop, and
/// the DAG of a MaskedDeepRNN unrolled over time, which the analysis and the SVG drawing take as
/// they take any layered DAG.
///
/// A neuron is a hidden unit j; the gate rows g * hidden + j of a GRU or LSTM all belong to it.
/// An edge goes from a source neuron to unit j when any gate of j has an active weight from it;
/// the edge's weight is the number of such gates (1 for a plain RNN, up to 3 or 4). The unrolled
/// DAG also has the carry of a GRU or LSTM unit from one step to the next, which no mask controls
/// (one more on that edge); the one-layer graph shows the masks only.

#include <cstddef>
#include <string>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/analysis.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/masked_deep_rnn.hpp"
#include "deepstruct/masked_recurrent.hpp"

namespace deepstruct {

namespace detail {

/// For every (unit j, source i): the number of gates of j with an active weight from i.
inline Eigen::MatrixXi gate_counts(const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& mask, Eigen::Index hidden) {
  Eigen::MatrixXi count = Eigen::MatrixXi::Zero(hidden, mask.cols());
  for (Eigen::Index g = 0; g < mask.rows() / hidden; ++g) count += mask.middleRows(g * hidden, hidden).cast<int>();
  return count;
}

}  // namespace detail

/// The neuron graph of one recurrent layer: inputs 0..input_size-1 (stored layer 0), hidden units
/// input_size.. (stored layer 1, labelled "h<j>"; inputs "x<i>"); an edge input i -> unit j for the
/// active input-to-hidden weights, unit k -> unit j for the active hidden-to-hidden ones (k == j
/// is a self loop). Cyclic in general: analyze() and layer_index() reject it; its degrees, edges
/// and the SVG of the unrolled DAG describe it. O(gates * hidden * (input + hidden)).
template <typename Scalar>
Dag recurrent_structure(const MaskedRecurrentLayer<Scalar>& layer) {
  const auto in = static_cast<std::size_t>(layer.input_size()), h = static_cast<std::size_t>(layer.hidden_size());
  Dag g(in + h);
  for (std::size_t i = 0; i < in; ++i) {
    g[i].label = "x" + std::to_string(i);
    g[i].position = i;
  }
  for (std::size_t j = 0; j < h; ++j) {
    g[in + j].layer = 1;
    g[in + j].position = j;
    g[in + j].label = "h" + std::to_string(j);
  }
  const Eigen::MatrixXi ih = detail::gate_counts(layer.mask_i2h(), layer.hidden_size());
  const Eigen::MatrixXi hh = detail::gate_counts(layer.mask_h2h(), layer.hidden_size());
  for (std::size_t i = 0; i < in; ++i)
    for (std::size_t j = 0; j < h; ++j)
      if (const int c = ih(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i))) add_edge(i, in + j, EdgeProperties{double(c)}, g);
  for (std::size_t k = 0; k < h; ++k)
    for (std::size_t j = 0; j < h; ++j)
      if (const int c = hh(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(k))) add_edge(in + k, in + j, EdgeProperties{double(c)}, g);
  return g;
}

/// Where unrolled_structure puts its vertices.
struct UnrolledLayout {
  std::size_t steps = 0;
  std::size_t input_size = 0;
  std::vector<std::size_t> hidden;        ///< hidden size of every layer
  std::vector<std::size_t> layer_offset;  ///< first unit of layer l within one step's block
  std::size_t units_per_step = 0;         ///< sum of hidden
  /// Vertex of input feature i at step t.
  std::size_t input(std::size_t t, std::size_t i) const { return t * input_size + i; }
  /// Vertex of unit j of layer l at step t.
  std::size_t unit(std::size_t l, std::size_t t, std::size_t j) const {
    return steps * input_size + t * units_per_step + layer_offset[l] + j;
  }
  std::size_t num_vertices() const { return steps * (input_size + units_per_step); }
};

/// The DAG of a MaskedDeepRNN unrolled over `steps` steps: the input features of every step
/// (stored layer 0), then for every step t and layer l the hidden units h^l_t (stored layer
/// t + l + 1: one layer per time step and stack level, the longest path from the inputs). Edges:
/// x_t -> h^0_t and h^(l-1)_t -> h^l_t from the input-to-hidden masks, h^l_(t-1) -> h^l_t from the
/// hidden-to-hidden masks, and for a GRU or LSTM layer h^l_(t-1)[j] -> h^l_t[j] for every unit j
/// whatever the masks hold (GRU's z * h, LSTM's cell state carry the unit), its weight one more
/// than the gates that have an active weight there. Labels "x<t>.<i>" and "h<l>.<t>.<j>"; `layout` (if given) says where
/// every neuron is. A linear head is not part of it (its mask is a plain layer's). Throws
/// value_error for steps == 0, and, before allocating, for more than max_dag_vertices vertices or
/// a graph that cannot fit in the physical memory. O(steps * edges of one step).
template <typename Scalar>
Dag unrolled_structure(const MaskedDeepRNN<Scalar>& model, std::size_t steps, UnrolledLayout* layout = nullptr) {
  if (steps == 0) DEEPSTRUCT_THROW(value_error, "unrolled_structure: expected steps >= 1, found 0");
  UnrolledLayout u;
  u.steps = steps;
  u.input_size = static_cast<std::size_t>(model.input_size());
  for (std::size_t l = 0; l < model.num_layers(); ++l) {
    u.layer_offset.push_back(u.units_per_step);
    u.hidden.push_back(static_cast<std::size_t>(model.layer(l).hidden_size()));
    u.units_per_step += u.hidden.back();
  }
  // steps * (inputs + units) vertices, checked before it is computed (it may wrap around) and
  // before anything is allocated; the edges (at least): the masks' every step.
  const std::size_t per_step = u.input_size + u.units_per_step;
  if (steps > max_dag_vertices / per_step)
    DEEPSTRUCT_THROW(value_error, "unrolled_structure: expected at most 2^31 - 1 = " + std::to_string(max_dag_vertices) +
                                      " vertices, found steps * (inputs + units) = " + std::to_string(steps) + " * " + std::to_string(per_step));
  {
    double edges = 0;
    for (std::size_t l = 0; l < u.hidden.size(); ++l) {
      const auto& layer = model.layer(l);
      const auto ih = (detail::gate_counts(layer.mask_i2h(), layer.hidden_size()).array() != 0).count();
      const auto hh = (detail::gate_counts(layer.mask_h2h(), layer.hidden_size()).array() != 0).count();
      edges += static_cast<double>(steps) * static_cast<double>(ih) + static_cast<double>(steps - 1) * static_cast<double>(hh);
    }
    detail::check_graph_size("unrolled_structure", u.num_vertices(), edges);
  }
  Dag g(u.num_vertices());
  for (std::size_t t = 0; t < steps; ++t) {
    for (std::size_t i = 0; i < u.input_size; ++i) {
      const std::size_t v = u.input(t, i);
      g[v].position = v;
      g[v].label = "x" + std::to_string(t) + "." + std::to_string(i);
    }
    for (std::size_t l = 0; l < u.hidden.size(); ++l)
      for (std::size_t j = 0; j < u.hidden[l]; ++j) {
        const std::size_t v = u.unit(l, t, j);
        g[v].layer = t + l + 1;
        g[v].label = "h" + std::to_string(l) + "." + std::to_string(t) + "." + std::to_string(j);
      }
  }
  // Positions inside a stored layer: by layer then unit (the vertices of layer t + l + 1 come from
  // several (l, t) pairs).
  {
    std::vector<std::size_t> next(steps + u.hidden.size() + 1, 0);
    for (std::size_t t = 0; t < steps; ++t)
      for (std::size_t l = 0; l < u.hidden.size(); ++l)
        for (std::size_t j = 0; j < u.hidden[l]; ++j) g[u.unit(l, t, j)].position = next[t + l + 1]++;
  }
  for (std::size_t l = 0; l < u.hidden.size(); ++l) {
    const auto& layer = model.layer(l);
    const Eigen::MatrixXi ih = detail::gate_counts(layer.mask_i2h(), layer.hidden_size());
    const Eigen::MatrixXi hh = detail::gate_counts(layer.mask_h2h(), layer.hidden_size());
    for (std::size_t t = 0; t < steps; ++t) {
      for (Eigen::Index i = 0; i < ih.cols(); ++i)
        for (Eigen::Index j = 0; j < ih.rows(); ++j)
          if (const int c = ih(j, i)) {
            const std::size_t from = l == 0 ? u.input(t, static_cast<std::size_t>(i)) : u.unit(l - 1, t, static_cast<std::size_t>(i));
            add_edge(from, u.unit(l, t, static_cast<std::size_t>(j)), EdgeProperties{double(c)}, g);
          }
      if (t == 0) continue;
      // GRU (h' = (1 - z) n + z h) and LSTM (through the cell state) carry unit j to unit j
      // whatever the masks hold: one more on that edge.
      const bool carry = layer.kind() == RecurrentKind::gru || layer.kind() == RecurrentKind::lstm;
      for (Eigen::Index k = 0; k < hh.cols(); ++k)
        for (Eigen::Index j = 0; j < hh.rows(); ++j)
          if (const int c = hh(j, k) + (carry && j == k ? 1 : 0))
            add_edge(u.unit(l, t - 1, static_cast<std::size_t>(k)), u.unit(l, t, static_cast<std::size_t>(j)), EdgeProperties{double(c)}, g);
    }
  }
  if (layout != nullptr) *layout = u;
  return g;
}

/// The structure report of a MaskedDeepRNN unrolled over `steps` steps (unrolled_structure, its
/// stored layers): inputs are every step's input features, outputs the last layer's units at the
/// last step (at every step with return_sequence), so a dead neuron is one no input reaches or one
/// that cannot reach what the model returns.
template <typename Scalar>
StructureReport analyze(const MaskedDeepRNN<Scalar>& model, std::size_t steps, AnalysisOptions options = {}) {
  UnrolledLayout u;
  const Dag g = unrolled_structure(model, steps, &u);
  std::vector<std::size_t> layers(boost::num_vertices(g));
  for (std::size_t v = 0; v < layers.size(); ++v) layers[v] = g[v].layer;
  options.inputs.clear();
  options.outputs.clear();
  for (std::size_t v = 0; v < steps * u.input_size; ++v) options.inputs.push_back(v);
  const std::size_t last = u.hidden.size() - 1;
  for (std::size_t t = model.options().return_sequence ? 0 : steps - 1; t < steps; ++t)
    for (std::size_t j = 0; j < u.hidden[last]; ++j) options.outputs.push_back(u.unit(last, t, j));
  options.empty_sets_mean_sources_and_sinks = false;
  return analyze(g, layers, options);
}

}  // namespace deepstruct
