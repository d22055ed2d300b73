// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/layer_index.hpp
/// The layer index of a DAG: layer 0 for vertices without in-edges, otherwise 1 + the largest
/// layer of the predecessors (the longest path from a source), in O(V + E) by Kahn's topological
/// order. Works on any Boost.Graph that models IncidenceGraph and VertexListGraph with an index
/// map (vecS adjacency_list, compressed_sparse_row_graph, ...).

#include <boost/graph/graph_concepts.hpp>
#include <boost/graph/graph_traits.hpp>
#include <boost/graph/properties.hpp>
#include <cstddef>
#include <string>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"

namespace deepstruct {

namespace detail {

/// layer_index, its cycle message naming `who` (the function the caller called).
template <typename Graph>
std::vector<std::size_t> layer_index_for(const Graph& g, const char* who) {
  BOOST_CONCEPT_ASSERT((boost::IncidenceGraphConcept<Graph>));
  BOOST_CONCEPT_ASSERT((boost::VertexListGraphConcept<Graph>));
  const auto index = get(boost::vertex_index, g);
  const std::size_t n = num_vertices(g);
  std::vector<std::size_t> in_degree(n, 0), layer(n, 0), queue;
  queue.reserve(n);
  for (auto [v, v_end] = vertices(g); v != v_end; ++v)
    for (auto [e, e_end] = out_edges(*v, g); e != e_end; ++e) ++in_degree[get(index, target(*e, g))];
  std::vector<typename boost::graph_traits<Graph>::vertex_descriptor> vertex_of(n);
  for (auto [v, v_end] = vertices(g); v != v_end; ++v) {
    const std::size_t i = get(index, *v);
    vertex_of[i] = *v;
    if (in_degree[i] == 0) queue.push_back(i);
  }
  for (std::size_t head = 0; head < queue.size(); ++head) {
    const std::size_t u = queue[head];
    for (auto [e, e_end] = out_edges(vertex_of[u], g); e != e_end; ++e) {
      const std::size_t w = get(index, target(*e, g));
      if (layer[u] + 1 > layer[w]) layer[w] = layer[u] + 1;
      if (--in_degree[w] == 0) queue.push_back(w);
    }
  }
  if (queue.size() != n) {
    // Every vertex left has an unprocessed predecessor: walking back along those must repeat a
    // vertex, and the first vertex seen twice lies on a cycle.
    constexpr std::size_t none = static_cast<std::size_t>(-1);
    std::vector<std::size_t> pred(n, none);
    for (auto [u, u_end] = vertices(g); u != u_end; ++u) {
      const std::size_t ui = get(index, *u);
      if (in_degree[ui] == 0) continue;
      for (auto [e, e_end] = out_edges(*u, g); e != e_end; ++e) {
        const std::size_t w = get(index, target(*e, g));
        if (in_degree[w] != 0) pred[w] = ui;
      }
    }
    std::size_t v = 0;
    while (in_degree[v] == 0) ++v;
    std::vector<bool> seen(n, false);
    while (!seen[v]) {
      seen[v] = true;
      v = pred[v];
    }
    throw not_a_dag(std::string(who) + ": expected a directed acyclic graph, found a cycle through vertex " +
                        std::to_string(v) + " (" + std::to_string(n - queue.size()) + " of " + std::to_string(n) +
                        " vertices are on or behind cycles)",
                    v);
  }
  return layer;
}

}  // namespace detail

/// The layer of every vertex, indexed by get(vertex_index, g, v). Throws not_a_dag naming a
/// vertex on a cycle when g has one.
template <typename Graph>
std::vector<std::size_t> layer_index(const Graph& g) {
  return detail::layer_index_for(g, "layer_index");
}

/// Stores layer_index(g) in the bundled `layer` property of a Dag.
inline void assign_layers(Dag& g) {
  const std::vector<std::size_t> layer = layer_index(g);
  for (std::size_t v = 0; v < layer.size(); ++v) g[v].layer = layer[v];
}

}  // namespace deepstruct
