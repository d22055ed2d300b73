// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/convert.hpp
/// From masks to neuron graphs and back: a layer mask as a bipartite DAG, a feed-forward stack of
/// masks as the DAG of all its neurons (deepstruct's MaskedDeepFFN.generate_structure), and a DAG
/// as the layers and masks a MaskedDeepDAN is built from.

#include <Eigen/Core>
#include <cstddef>
#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/dan_description.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/layered.hpp"

namespace deepstruct {

/// A layer's connectivity, out x in: entry (o, i) is true when input i feeds output o.
using LayerMask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

/// The bipartite DAG of one layer: inputs are vertices 0..in-1, outputs in..in+out-1, and
/// i -> in+o is an edge (weight 1) when mask(o, i). Every neuron is a vertex, also unconnected ones.
/// Stored layers: 0 for the inputs, 1 for the outputs. Throws value_error, before allocating, for
/// more than max_dag_vertices neurons or a graph that cannot fit in memory (an empty mask of
/// 0 x 2^40 holds no byte but names 2^40 neurons). O(in + out + in * out).
inline Dag bipartite_from_mask(const LayerMask& mask) {
  const auto out = static_cast<std::size_t>(mask.rows()), in = static_cast<std::size_t>(mask.cols());
  detail::check_graph_size("bipartite_from_mask", in + out, static_cast<double>(mask.count()));
  Dag g(in + out);
  for (std::size_t v = in; v < in + out; ++v) g[v].layer = 1;
  for (std::size_t i = 0; i < in; ++i)
    for (std::size_t o = 0; o < out; ++o)
      if (mask(static_cast<Eigen::Index>(o), static_cast<Eigen::Index>(i))) add_edge(i, in + o, g);
  return g;
}

/// The mask of a bipartite DAG whose first `in_count` vertices are the inputs and the others the
/// outputs (the inverse of bipartite_from_mask). Throws value_error when in_count exceeds the
/// number of vertices, when the in x out mask cannot fit in memory, or when an edge does not go
/// from an input to an output. O(V + E + in * out).
/// For a DAG whose layers say which vertices are inputs, LayeredView(g).mask(0, 1) is the same.
inline LayerMask mask_from_bipartite(const Dag& g, std::size_t in_count) {
  const std::size_t n = num_vertices(g);
  if (in_count > n)
    DEEPSTRUCT_THROW(value_error, "mask_from_bipartite: expected at most " + std::to_string(n) + " inputs (the number of vertices), found " +
                                      std::to_string(in_count));
  detail::check_fits_memory<value_error>("mask_from_bipartite", "a mask of " + std::to_string(n - in_count) + " x " + std::to_string(in_count),
                                         static_cast<double>(n - in_count) * static_cast<double>(in_count));
  LayerMask mask = LayerMask::Constant(static_cast<Eigen::Index>(n - in_count), static_cast<Eigen::Index>(in_count), false);
  for (auto [e, e_end] = edges(g); e != e_end; ++e) {
    const std::size_t u = source(*e, g), v = target(*e, g);
    if (u >= in_count || v < in_count)
      DEEPSTRUCT_THROW(value_error, "mask_from_bipartite: expected edges from inputs 0.." + std::to_string(in_count) + ") to outputs " +
                                        std::to_string(in_count) + ".." + std::to_string(n) + "), found " + std::to_string(u) + " -> " +
                                        std::to_string(v));
    mask(static_cast<Eigen::Index>(v - in_count), static_cast<Eigen::Index>(u)) = true;
  }
  return mask;
}

/// Which end layers of a feed-forward stack become vertices (deepstruct's generate_structure flags).
struct StructureOptions {
  bool include_input = false;   ///< the network inputs and the first mask
  bool include_output = false;  ///< the network outputs and the last mask
};

/// The neuron DAG of a feed-forward stack of masks, masks[k] out_k x in_k with in_{k+1} == out_k:
/// the neurons of layer 0 (inputs), 1, ..., K (outputs) get consecutive ids layer by layer, and
/// masks[k](o, i) gives the edge (i in layer k) -> (o in layer k+1). As deepstruct's
/// MaskedDeepFFN.generate_structure, include_input = false leaves out the inputs and masks[0] (the
/// first hidden neuron is vertex 0) and include_output = false leaves out the outputs and the last
/// mask. Unlike deepstruct, every neuron is a vertex, also one without edges, so ids do not depend on
/// the masks. The stored layer of a vertex is its neuron layer counted from the first layer kept
/// (with include_input the inputs are layer 0; without, the first hidden layer is), also for a
/// neuron without edges, which layer_index() would put in layer 0. Throws shape_error when
/// consecutive masks do not chain, value_error when masks is empty, and value_error, before
/// allocating, for more than max_dag_vertices neurons or a graph that cannot fit in memory.
/// O(neurons + sum of mask sizes).
inline Dag ffn_structure(const std::vector<LayerMask>& masks, const StructureOptions& options = {}) {
  if (masks.empty()) DEEPSTRUCT_THROW(value_error, "ffn_structure: expected at least one mask, found none");
  for (std::size_t k = 1; k < masks.size(); ++k)
    if (masks[k].cols() != masks[k - 1].rows())
      DEEPSTRUCT_THROW(shape_error, "ffn_structure: mask " + std::to_string(k) + " is " + detail::shape_str(masks[k].rows(), masks[k].cols()) +
                                        " but expected " + std::to_string(masks[k - 1].rows()) + " inputs (the outputs of mask " +
                                        std::to_string(k - 1) + ", " + detail::shape_str(masks[k - 1].rows(), masks[k - 1].cols()) + ")");
  // Neuron layers 0..K; the vertices are those of layers first..last.
  const std::size_t K = masks.size();
  const std::size_t first = options.include_input ? 0 : 1;
  const std::size_t last = options.include_output ? K : K - 1;
  auto layer_size = [&](std::size_t l) { return static_cast<std::size_t>(l == 0 ? masks[0].cols() : masks[l - 1].rows()); };
  std::vector<std::size_t> offset(K + 2, 0);
  double edges = 0.0;
  for (std::size_t k = first; k < last; ++k) edges += static_cast<double>(masks[k].count());
  for (std::size_t l = first; l <= last && l <= K; ++l) {
    offset[l + 1] = offset[l] + layer_size(l);  // < 2^63 + 2^31: no wrap, the sum so far was checked
    if (offset[l + 1] > max_dag_vertices)
      DEEPSTRUCT_THROW(value_error, "ffn_structure: expected at most 2^31 - 1 = " + std::to_string(max_dag_vertices) +
                                        " neurons, found " + std::to_string(offset[l + 1]) + " in neuron layers " + std::to_string(first) +
                                        ".." + std::to_string(l) + " alone");
  }
  detail::check_graph_size("ffn_structure", first <= last ? offset[last + 1] : 0, edges);
  Dag g(first <= last ? offset[last + 1] : 0);
  for (std::size_t l = first; l <= last && l <= K; ++l)
    for (std::size_t v = offset[l]; v < offset[l + 1]; ++v) g[v].layer = l - first;
  // The degrees first, so every edge list is sized once; then the edges.
  std::vector<std::size_t> out_degree(num_vertices(g), 0), in_degree(num_vertices(g), 0);
  for (std::size_t k = first; k < last; ++k) {
    const LayerMask& m = masks[k];
    for (Eigen::Index i = 0; i < m.cols(); ++i) out_degree[offset[k] + static_cast<std::size_t>(i)] += static_cast<std::size_t>(m.col(i).count());
    for (Eigen::Index o = 0; o < m.rows(); ++o) in_degree[offset[k + 1] + static_cast<std::size_t>(o)] += static_cast<std::size_t>(m.row(o).count());
  }
  detail::reserve_edges(g, out_degree, in_degree);
  for (std::size_t k = first; k < last; ++k) {  // mask k connects layer k to layer k+1
    const LayerMask& m = masks[k];
    for (Eigen::Index i = 0; i < m.cols(); ++i)
      for (Eigen::Index o = 0; o < m.rows(); ++o)
        if (m(o, i)) add_edge(offset[k] + static_cast<std::size_t>(i), offset[k + 1] + static_cast<std::size_t>(o), g);
  }
  return g;
}

/// The layers and masks of a MaskedDeepDAN built on the DAG behind `view` (see DanDescription for
/// which connections are listed). Throws value_error for a graph without vertices, and, before
/// allocating any mask, when the masks together (one byte an entry) exceed the physical memory (a
/// sparse random DAG of a million vertices has a first layer of 600,000 and a second of 250,000:
/// 150 GB for that mask alone). O(V + sum over listed connections of |s| * |t|).
inline DanDescription dan_description(const LayeredView& view) {
  if (view.num_layers() == 0) DEEPSTRUCT_THROW(value_error, "dan_description: expected a graph with at least one vertex, found an empty graph");
  const std::vector<std::size_t> sizes = view.layer_sizes();
  // The (source, target) layers of every connection, in deepstruct's order: by target, then source.
  std::vector<std::pair<std::size_t, std::size_t>> listed;
  const auto& pairs = view.connections();
  std::size_t k = 0;
  for (std::size_t t = 1; t < view.num_layers(); ++t) {
    while (k < pairs.size() && pairs[k].target < t) ++k;
    bool main_done = false;
    for (; k < pairs.size() && pairs[k].target == t; ++k) {
      const std::size_t s = pairs[k].source;
      if (s + 1 == t) main_done = true;
      listed.emplace_back(s, t);
    }
    if (!main_done) listed.emplace_back(t - 1, t);  // empty main layer, last source
  }
  double entries = 0.0;
  for (const auto& [s, t] : listed) entries += static_cast<double>(sizes[s]) * static_cast<double>(sizes[t]);
  char count[64];
  std::snprintf(count, sizeof count, "%.4g", entries);
  detail::check_fits_memory<value_error>("dan_description", "a description with " + std::to_string(listed.size()) + " masks of " +
                                                                count + " entries in all",
                                         entries);
  DanDescription d;
  d.layer_sizes = sizes;
  d.layer_vertices.reserve(view.num_layers());
  for (std::size_t l = 0; l < view.num_layers(); ++l) d.layer_vertices.push_back(view.vertices(l));
  d.connections.reserve(listed.size());
  for (const auto& [s, t] : listed) d.connections.push_back({s, t, view.mask(s, t)});
  return d;
}

/// dan_description(LayeredView(g)); throws not_a_dag when g has a cycle. For a Dag, the layers
/// follow the stored positions (LayeredView), and the vertices' labels, when any vertex has one,
/// become the description's layer_labels (an unlabelled vertex gets its id as label).
template <typename Graph>
DanDescription dan_description(const Graph& g) {
  const LayeredView view(g);
  DanDescription d = dan_description(view);
  if constexpr (std::is_same<Graph, Dag>::value) {
    bool any = false;
    for (std::size_t v = 0; v < boost::num_vertices(g) && !any; ++v) any = !g[v].label.empty();
    if (any)
      for (const auto& vs : d.layer_vertices) {
        d.layer_labels.emplace_back();
        for (const std::size_t v : vs) d.layer_labels.back().push_back(g[v].label.empty() ? std::to_string(v) : g[v].label);
      }
  }
  return d;
}

}  // namespace deepstruct
