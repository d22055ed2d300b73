// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/build.hpp
/// Building DAGs: from an edge list of vertex ids in bulk (dag_from_edges), and from labelled
/// edges the way a networkx/deepstruct user writes them (DagBuilder: add_edge(1, 3) names two
/// vertices "1" and "3" - with Boost's add_edge it would also create vertices 0 and 2, extra
/// neurons fed by the input). Labels are kept in the vertices (g[v].label) and travel through
/// make_dan, generate_structure and GraphML.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/layer_index.hpp"

namespace deepstruct {

/// The DAG on vertices 0..n-1 with the directed edges (u, v) as given, in that order (duplicates
/// kept, as Boost keeps parallel edges), its layers stored (layer_index). Throws value_error for
/// an id outside [0, n) (negative ones of signed pairs included, printed as given) or a self loop,
/// not_a_dag for a cycle. O(n + m): every out- and in-edge list and the
/// edge list are sized once before the edges are added (about a second for 10 million edges).
/// `edges` is any range (read twice) of pairs of integers: std::pair<std::size_t, std::size_t>,
/// std::pair<std::uint32_t, std::uint32_t>, ...
template <typename Edges = std::vector<std::pair<std::size_t, std::size_t>>>
Dag dag_from_edges(std::size_t n, const Edges& edges) {
  std::size_t k = 0;
  for (const auto& e : edges) {
    // A negative id of a signed pair converts to a huge one, so one comparison catches both; the
    // message prints the ids as given (-1, not 18446744073709551615).
    const auto u = static_cast<std::size_t>(e.first), v = static_cast<std::size_t>(e.second);
    const auto negative = [](const auto id) {
      if constexpr (std::is_signed_v<std::decay_t<decltype(id)>>) return id < 0;
      else return false;
    };
    if (negative(e.first) || negative(e.second) || u >= n || v >= n)
      DEEPSTRUCT_THROW(value_error, "dag_from_edges: expected vertex ids in [0, " + std::to_string(n) + "), found edge " +
                                        std::to_string(k) + " (" + std::to_string(e.first) + ", " + std::to_string(e.second) + ")");
    if (u == v)
      DEEPSTRUCT_THROW(value_error, "dag_from_edges: expected no self loop, found edge " + std::to_string(k) + " (" + std::to_string(u) +
                                        ", " + std::to_string(v) + ")");
    ++k;
  }
  detail::check_graph_size("dag_from_edges", n, static_cast<double>(k));
  Dag g(n);
  std::vector<std::size_t> out_degree(n, 0), in_degree(n, 0);
  for (const auto& e : edges) {
    ++out_degree[static_cast<std::size_t>(e.first)];
    ++in_degree[static_cast<std::size_t>(e.second)];
  }
  detail::reserve_edges(g, out_degree, in_degree);
  for (const auto& e : edges) boost::add_edge(static_cast<std::size_t>(e.first), static_cast<std::size_t>(e.second), g);
  const std::vector<std::size_t> layers = detail::layer_index_for(g, "dag_from_edges");  // not_a_dag for a cycle
  for (std::size_t v = 0; v < n; ++v) g[v].layer = layers[v];
  return g;
}

/// Builds a DAG from labelled vertices and edges, in insertion order as networkx does: a vertex is
/// created the first time its label appears (add_node, or either end of add_edge, source first),
/// and vertex ids follow that order. Labels are strings; integers are written in decimal
/// (add_edge(1, 3) and add_edge("1", "3") name the same vertices). A repeated edge is added once,
/// as in a networkx DiGraph. deepstruct's README recipe (add_edges_from(g.edges) then
/// add_nodes_from(g.nodes)) maps to add_edges then add_nodes.
class DagBuilder {
 public:
  /// The vertex of `label`, created if it does not exist yet.
  template <typename Label>
  std::size_t add_node(const Label& label) {
    const std::string key = to_label(label);
    const auto [it, inserted] = ids_.emplace(key, labels_.size());
    if (inserted) labels_.push_back(key);
    return it->second;
  }
  /// An edge from `from` to `to` (both created if needed). Throws value_error for a self loop,
  /// adding nothing.
  template <typename A, typename B>
  void add_edge(const A& from, const B& to) {
    const std::string a = to_label(from), b = to_label(to);
    if (a == b) DEEPSTRUCT_THROW(value_error, "DagBuilder::add_edge: expected no self loop, found " + a + " -> " + b);
    const std::size_t u = add_node(a), v = add_node(b);
    if (seen_.insert({u, v}).second) edges_.emplace_back(u, v);
  }
  /// Every pair (from, to) of a range, in order.
  template <typename Range>
  void add_edges(const Range& pairs) {
    for (const auto& p : pairs) add_edge(p.first, p.second);
  }
  /// Every label of a range, in order.
  template <typename Range>
  void add_nodes(const Range& labels) {
    for (const auto& l : labels) add_node(l);
  }

  std::size_t num_vertices() const { return labels_.size(); }
  std::size_t num_edges() const { return edges_.size(); }
  template <typename Label>
  bool contains(const Label& label) const {
    return ids_.count(to_label(label)) != 0;
  }
  /// The vertex id of `label`; throws value_error when there is none.
  template <typename Label>
  std::size_t vertex(const Label& label) const {
    const auto it = ids_.find(to_label(label));
    if (it == ids_.end()) DEEPSTRUCT_THROW(value_error, "DagBuilder::vertex: expected a label that was added, found '" + to_label(label) + "'");
    return it->second;
  }
  /// The labels by vertex id.
  const std::vector<std::string>& labels() const { return labels_; }

  /// The DAG: vertices in insertion order with their labels, edges in insertion order, layers
  /// stored. Throws not_a_dag for a cyclic graph, its message naming a vertex on the cycle by
  /// label (and id: e.vertex()).
  Dag build() const {
    try {
      Dag g = dag_from_edges(labels_.size(), edges_);
      for (std::size_t v = 0; v < labels_.size(); ++v) g[v].label = labels_[v];
      return g;
    } catch (const not_a_dag& e) {
      throw not_a_dag("DagBuilder::build: expected a directed acyclic graph, found a cycle through '" + labels_[e.vertex()] + "' (vertex " +
                          std::to_string(e.vertex()) + ")",
                      e.vertex());
    }
  }

 private:
  template <typename Label>
  static std::string to_label(const Label& label) {
    if constexpr (std::is_integral<Label>::value && !std::is_same<Label, bool>::value && !std::is_same<Label, char>::value) {
      return std::to_string(label);
    } else {
      static_assert(std::is_convertible<const Label&, std::string>::value, "DagBuilder: labels are integers or strings");
      return std::string(label);
    }
  }
  struct PairHash {
    std::size_t operator()(const std::pair<std::size_t, std::size_t>& p) const noexcept {
      return std::hash<std::size_t>()(p.first * 0x9E3779B97F4A7C15ull ^ p.second);
    }
  };

  std::unordered_map<std::string, std::size_t> ids_;
  std::vector<std::string> labels_;
  std::vector<std::pair<std::size_t, std::size_t>> edges_;
  std::unordered_set<std::pair<std::size_t, std::size_t>, PairHash> seen_;
};

}  // namespace deepstruct
