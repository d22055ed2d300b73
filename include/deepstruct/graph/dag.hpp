// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/dag.hpp
/// The DAG type of deepstruct's graph side: a Boost.Graph adjacency_list (bidirectional, vecS
/// vertices, out- and in-edge lists and edge list) with bundled vertex and edge properties.
/// Vertex descriptors are the ids 0..n-1. The edges are kept in one vector (EdgeList vecS): adding
/// an edge allocates nothing once the storage is sized (dag_from_edges, the converters do), so
/// building 10 million edges takes about a second; removing an edge (Boost's remove_edge) costs
/// O(edges), which the library never does.

#include <boost/graph/adjacency_list.hpp>
#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "deepstruct/detail/memory.hpp"
#include "deepstruct/errors.hpp"

namespace deepstruct {

/// The `position` of a vertex whose place inside its layer is not stored.
inline constexpr std::size_t no_position = std::numeric_limits<std::size_t>::max();

/// Bundled vertex properties.
struct VertexProperties {
  /// The vertex's layer. The builders fill it: ffn_structure (the FFN layer, counted from the
  /// first layer kept), bipartite_from_mask and conv2d_structure (inputs 0, outputs 1), the random
  /// generators and assign_layers() (layer_index(), the longest path from a source), read_graphml
  /// (the file's `layer` data). A graph built by add_edge has 0 everywhere until assign_layers().
  std::size_t layer = 0;
  /// The vertex's place among the vertices of its layer: the row or column it gets in the masks
  /// of a network built from the graph (LayeredView orders a layer by stored position, then id).
  /// no_position unless stored: by generate_structure, by read_graphml (a file's `position` data,
  /// which write_graphml and deepstruct's export script write) or by hand. This is how a neuron
  /// order that is not ascending id (deepstruct's, in general) travels with a graph.
  std::size_t position = no_position;
  /// A name for the vertex (empty: none). Labelled builders, read_graphml (node ids that are not
  /// the vertex numbers, or `label` data) and generate_structure fill it; networks built from the
  /// graph keep it (DanDescription::layer_labels), and write_graphml writes it.
  std::string label;
};

/// Bundled edge properties.
struct EdgeProperties {
  double weight = 1.0;  ///< e.g. the trained weight of the connection
};

/// A directed acyclic graph of neurons (acyclicity is checked where it matters: layer_index()).
using Dag = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, VertexProperties, EdgeProperties, boost::no_property,
                                  boost::vecS>;
using DagVertex = boost::graph_traits<Dag>::vertex_descriptor;
using DagEdge = boost::graph_traits<Dag>::edge_descriptor;

/// The most vertices the generators (erdos_renyi_*, watts_strogatz, newman_watts_strogatz,
/// barabasi_albert), conv2d_structure and ScalableDAN::grow make: 2^31 - 1, as many neurons as
/// one layer of a network may have (max_layer_vertices). Larger sizes throw value_error before
/// anything is allocated.
inline constexpr std::size_t max_dag_vertices = 2147483647;

namespace detail {

/// Throws value_error naming `who` and the size, before anything is allocated, when a graph of
/// `vertices` vertices and (at least) `edges` edges has more than max_dag_vertices vertices or
/// cannot fit in the physical memory of this machine (a Dag takes at least 96 bytes per vertex
/// and 64 per edge). `edges` is a double, so it may be computed without overflow.
inline void check_graph_size(const char* who, std::size_t vertices, double edges) {
  if (vertices > max_dag_vertices)
    DEEPSTRUCT_THROW(value_error, std::string(who) + ": expected at most 2^31 - 1 = " + std::to_string(max_dag_vertices) +
                                      " vertices, found n = " + std::to_string(vertices));
  char count[64];
  std::snprintf(count, sizeof count, "%.4g", edges);
  check_fits_memory<value_error>(who, "a graph of " + std::to_string(vertices) + " vertices and " + count + " edges",
                                 96.0 * static_cast<double>(vertices) + 64.0 * edges);
}

/// Sizes g's storage for the edges to come - every vertex's out- and in-edge list and the edge
/// list - so that add_edge then never reallocates (Boost's vecS storage: the adjacency_list's
/// public members m_vertices and m_edges). out_degree and in_degree have one entry per vertex.
inline void reserve_edges(Dag& g, const std::vector<std::size_t>& out_degree, const std::vector<std::size_t>& in_degree) {
  std::size_t m = 0;
  for (std::size_t v = 0; v < num_vertices(g) && v < out_degree.size() && v < in_degree.size(); ++v) {
    auto& stored = g.m_vertices[v];
    stored.m_out_edges.reserve(stored.m_out_edges.size() + out_degree[v]);
    stored.m_in_edges.reserve(stored.m_in_edges.size() + in_degree[v]);
    m += out_degree[v];
  }
  g.m_edges.reserve(g.m_edges.size() + m);
}

}  // namespace detail

}  // namespace deepstruct
