// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/scalable.hpp
/// ScalableDAN (deepstruct's): grows a small base DAG into a large one. Every base vertex v
/// becomes a block of round(p_v * scale) neurons, and every base edge (u, v) becomes a complete
/// bipartite connection from block(u) to block(v). A vertex keeps its layer: the blocks of layer-l
/// vertices are in layer l of the grown DAG. Parallel base edges connect their blocks once (as in
/// deepstruct, whose base graph is a networkx DiGraph), so the grown DAG has no parallel edges.
///
/// A proportion that rounds to zero would silently cut every path through its vertex (deepstruct
/// does that); here such a block keeps one neuron instead, and block_sizes() tells the sizes used.
///
/// The base graph must be acyclic: the constructor throws not_a_dag naming a vertex on a cycle.

#include <cmath>
#include <cstddef>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/layer_index.hpp"

namespace deepstruct {

class ScalableDAN {
 public:
  /// `proportions[v]` for every vertex of `base`: positive, summing to 1 (within 1e-6). Throws
  /// value_error for an empty base graph or bad proportions, shape_error for a proportion count
  /// other than the vertex count, and not_a_dag when the base graph has a cycle.
  ScalableDAN(Dag base, std::vector<double> proportions) : base_(std::move(base)), proportions_(std::move(proportions)) {
    const std::size_t n = boost::num_vertices(base_);
    if (n == 0) DEEPSTRUCT_THROW(value_error, "ScalableDAN: expected a base graph with at least one vertex, found none");
    try {
      (void)layer_index(base_);
    } catch (const not_a_dag& e) {
      throw not_a_dag("ScalableDAN: expected an acyclic base graph, found a cycle through base vertex " + std::to_string(e.vertex()),
                      e.vertex());
    }
    if (proportions_.size() != n)
      DEEPSTRUCT_THROW(shape_error, "ScalableDAN: expected one proportion per base vertex (" + std::to_string(n) +
                                        "), found " + std::to_string(proportions_.size()));
    double sum = 0.0;
    for (std::size_t v = 0; v < n; ++v) {
      if (!(proportions_[v] > 0.0))
        DEEPSTRUCT_THROW(value_error, "ScalableDAN: expected positive proportions, found " + detail::number_str(proportions_[v]) +
                                          " for vertex " + std::to_string(v));
      sum += proportions_[v];
    }
    if (std::abs(sum - 1.0) > 1e-6)
      DEEPSTRUCT_THROW(value_error, "ScalableDAN: expected proportions summing to 1, found a sum of " + detail::number_str(sum));
  }
  /// Equal proportions 1/n (deepstruct's default).
  explicit ScalableDAN(Dag base) : ScalableDAN(base, std::vector<double>(boost::num_vertices(base), 1.0 / double(boost::num_vertices(base)))) {}

  const Dag& base() const { return base_; }
  const std::vector<double>& proportions() const { return proportions_; }

  /// Block sizes at `scale`: max(1, round(p_v * scale)) (round half to even). Throws value_error
  /// when the blocks together have more than max_dag_vertices vertices.
  std::vector<std::size_t> block_sizes(std::size_t scale) const {
    if (scale == 0) DEEPSTRUCT_THROW(value_error, "ScalableDAN: expected scale >= 1, found 0");
    std::vector<std::size_t> sizes;
    double total = 0.0;
    for (double p : proportions_) {
      const double s = std::nearbyint(p * static_cast<double>(scale));
      total += s < 1.0 ? 1.0 : s;
      if (total > static_cast<double>(max_dag_vertices))  // also before the cast below could overflow
        DEEPSTRUCT_THROW(value_error, "ScalableDAN: expected at most 2^31 - 1 = " + std::to_string(max_dag_vertices) +
                                          " vertices in the grown graph, found more at scale " + std::to_string(scale));
      sizes.push_back(s < 1.0 ? 1 : static_cast<std::size_t>(s));
    }
    return sizes;
  }

  /// The grown DAG. Blocks get consecutive ids in base-vertex order; `blocks` (if given) receives
  /// the ids of every block. Throws value_error, before allocating, when it has more than
  /// max_dag_vertices vertices or cannot fit in memory.
  Dag grow(std::size_t scale, std::vector<std::vector<std::size_t>>* blocks = nullptr) const {
    const std::vector<std::size_t> sizes = block_sizes(scale);
    // The distinct base edges, in edge order: a parallel edge would repeat every block edge.
    std::vector<std::pair<std::size_t, std::size_t>> base_edges;
    std::set<std::pair<std::size_t, std::size_t>> seen;
    for (auto [e, e_end] = boost::edges(base_); e != e_end; ++e) {
      const std::pair<std::size_t, std::size_t> uv(boost::source(*e, base_), boost::target(*e, base_));
      if (seen.insert(uv).second) base_edges.push_back(uv);
    }
    double edges = 0.0;
    for (const auto& [u, v] : base_edges) edges += static_cast<double>(sizes[u]) * static_cast<double>(sizes[v]);
    std::size_t vertices = 0;
    for (const std::size_t s : sizes) vertices += s;
    detail::check_graph_size("ScalableDAN::grow", vertices, edges);
    std::vector<std::size_t> first(sizes.size() + 1, 0);
    for (std::size_t v = 0; v < sizes.size(); ++v) first[v + 1] = first[v] + sizes[v];
    Dag g(first.back());
    for (const auto& [u, v] : base_edges) {
      for (std::size_t a = first[u]; a < first[u + 1]; ++a)
        for (std::size_t b = first[v]; b < first[v + 1]; ++b) boost::add_edge(a, b, g);
    }
    if (blocks != nullptr) {
      blocks->assign(sizes.size(), {});
      for (std::size_t v = 0; v < sizes.size(); ++v)
        for (std::size_t a = first[v]; a < first[v + 1]; ++a) (*blocks)[v].push_back(a);
    }
    return g;
  }

 private:
  Dag base_;
  std::vector<double> proportions_;
};

}  // namespace deepstruct
