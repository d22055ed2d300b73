// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/dag.hpp
/// The DAG type of deepstruct's graph side: a Boost.Graph adjacency_list (bidirectional, vecS)
/// with bundled vertex and edge properties. Vertex descriptors are the ids 0..n-1.

#include <boost/graph/adjacency_list.hpp>
#include <cstddef>

namespace deepstruct {

/// Bundled vertex properties.
struct VertexProperties {
  /// The vertex's layer. The builders fill it: ffn_structure (the FFN layer, counted from the
  /// first layer kept), bipartite_from_mask and conv2d_structure (inputs 0, outputs 1), the random
  /// generators and assign_layers() (layer_index(), the longest path from a source), read_graphml
  /// (the file's `layer` data). A graph built by add_edge has 0 everywhere until assign_layers().
  std::size_t layer = 0;
};

/// Bundled edge properties.
struct EdgeProperties {
  double weight = 1.0;  ///< e.g. the trained weight of the connection
};

/// A directed acyclic graph of neurons (acyclicity is checked where it matters: layer_index()).
using Dag = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, VertexProperties, EdgeProperties>;
using DagVertex = boost::graph_traits<Dag>::vertex_descriptor;
using DagEdge = boost::graph_traits<Dag>::edge_descriptor;

}  // namespace deepstruct
