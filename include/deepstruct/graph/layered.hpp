// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/layered.hpp
/// Layer queries on a DAG, as deepstruct's CachedLayeredGraph: built once in O(V + E + P log P)
/// (P = number of connected layer pairs), then every query is O(1) or proportional to its answer.
/// Works on any Boost.Graph that models IncidenceGraph and VertexListGraph with an index map.

#include <Eigen/Core>
#include <algorithm>
#include <boost/graph/graph_concepts.hpp>
#include <boost/graph/graph_traits.hpp>
#include <boost/graph/properties.hpp>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/layer_index.hpp"

namespace deepstruct {

namespace detail {

/// The distinct successors of every vertex as CSR (offsets has n + 1 entries), in the order of the
/// out-edges; a stamp per vertex removes parallel edges in O(V + E).
template <typename Graph>
void distinct_successors(const Graph& g, std::size_t n, std::vector<std::size_t>& offsets, std::vector<std::size_t>& targets) {
  constexpr std::size_t none = static_cast<std::size_t>(-1);
  const auto index = get(boost::vertex_index, g);
  std::vector<std::size_t> next(n + 1, 0), stamp(n, none);
  for (auto [v, v_end] = vertices(g); v != v_end; ++v) {
    const std::size_t u = get(index, *v);
    for (auto [e, e_end] = out_edges(*v, g); e != e_end; ++e) {
      const std::size_t w = get(index, target(*e, g));
      if (stamp[w] != u) {
        stamp[w] = u;
        ++next[u + 1];
      }
    }
  }
  for (std::size_t u = 0; u < n; ++u) next[u + 1] += next[u];
  offsets = next;
  targets.assign(offsets[n], 0);
  std::fill(stamp.begin(), stamp.end(), none);
  for (auto [v, v_end] = vertices(g); v != v_end; ++v) {
    const std::size_t u = get(index, *v);
    for (auto [e, e_end] = out_edges(*v, g); e != e_end; ++e) {
      const std::size_t w = get(index, target(*e, g));
      if (stamp[w] != u) {
        stamp[w] = u;
        targets[next[u]++] = w;
      }
    }
  }
}

}  // namespace detail

/// The edges from layer `source` to layer `target` (source < target), as LayeredView lists them.
struct LayerConnection {
  std::size_t source = 0;
  std::size_t target = 0;
  std::size_t edges = 0;  ///< number of distinct vertex pairs (u, v) with an edge u -> v
};

/// A DAG seen layer by layer: layer l holds the vertices whose longest path from a source has l
/// edges (layer_index()). Inside a layer, vertices are ordered by their stored position (a Dag's
/// g[v].position, or the keys given to the constructor), vertices without one after those with,
/// ties and the rest by ascending id; this is the order of rows and columns of every mask(), and
/// so of the neurons of a network built from the graph. A graph without positions is in ascending
/// id, which is deepstruct's get_vertices() order for a graph whose vertices were added layer by
/// layer (as deepstruct's loader reads a file that lists them layer-major); deepstruct's order in
/// general follows insertion order and Python's set iteration, which is why positions exist.
/// Parallel edges count once. The view copies what it needs: it stays valid when the graph
/// changes, but does not follow the change.
class LayeredView {
 public:
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

  LayeredView() = default;

  /// Builds the view; throws not_a_dag (naming a vertex on a cycle) when g has a cycle. A Dag's
  /// stored positions order its layers (see above).
  template <typename Graph>
  explicit LayeredView(const Graph& g) : LayeredView(g, stored_positions(g)) {}

  /// The same with explicit order keys: position[v] for every vertex (no_position: none), or an
  /// empty vector (ascending id). Throws value_error for a vector of another size.
  template <typename Graph>
  LayeredView(const Graph& g, const std::vector<std::size_t>& position) {
    BOOST_CONCEPT_ASSERT((boost::IncidenceGraphConcept<Graph>));
    BOOST_CONCEPT_ASSERT((boost::VertexListGraphConcept<Graph>));
    layer_ = deepstruct::layer_index(g);
    const std::size_t n = layer_.size();

    detail::distinct_successors(g, n, out_offsets_, out_targets_);

    if (!position.empty() && position.size() != n)
      DEEPSTRUCT_THROW(value_error, "LayeredView: expected a position for each of the " + std::to_string(n) +
                                        " vertices or none, found " + std::to_string(position.size()));
    // Vertices by layer, ascending id (counting sort keeps the id order), then by stored position
    // (a stable sort keeps ascending id among equal positions).
    std::size_t num_layers = 0;
    for (const std::size_t l : layer_) num_layers = std::max(num_layers, l + 1);
    layers_.assign(num_layers, {});
    for (std::size_t v = 0; v < n; ++v) layers_[layer_[v]].push_back(v);
    if (!position.empty())
      for (auto& vs : layers_)
        std::stable_sort(vs.begin(), vs.end(), [&](std::size_t a, std::size_t b) { return position[a] < position[b]; });
    position_.assign(n, 0);
    for (auto& vs : layers_)
      for (std::size_t i = 0; i < vs.size(); ++i) position_[vs[i]] = i;

    // Edge counts per (source layer, target layer), grouped by target layer, sources ascending.
    std::vector<std::vector<std::size_t>> by_target(num_layers);  // source layer of each edge
    std::vector<std::size_t> per_source(num_layers, 0);
    std::vector<std::size_t> touched;
    pair_offsets_.assign(num_layers + 1, 0);
    // Group edges by target layer in O(E): bucket (source layer) per target layer.
    for (std::size_t u = 0; u < n; ++u)
      for (std::size_t k = out_offsets_[u]; k < out_offsets_[u + 1]; ++k) by_target[layer_[out_targets_[k]]].push_back(layer_[u]);
    for (std::size_t t = 0; t < num_layers; ++t) {
      touched.clear();
      for (const std::size_t s : by_target[t])
        if (per_source[s]++ == 0) touched.push_back(s);
      std::sort(touched.begin(), touched.end());
      for (const std::size_t s : touched) {
        connections_.push_back(LayerConnection{s, t, per_source[s]});
        per_source[s] = 0;
      }
      pair_offsets_[t + 1] = connections_.size();
    }
  }

  /// Number of vertices of the graph the view was built from.
  std::size_t num_vertices() const noexcept { return layer_.size(); }

  /// Number of layers (0 for an empty graph).
  std::size_t num_layers() const noexcept { return layers_.size(); }

  /// The layer of every vertex (what layer_index() returns).
  const std::vector<std::size_t>& layer_index() const noexcept { return layer_; }

  /// The layer of vertex v.
  std::size_t layer_of(std::size_t v) const {
    check_vertex(v);
    return layer_[v];
  }

  /// Index of v among the vertices of its layer (its row or column in a mask).
  std::size_t position_in_layer(std::size_t v) const {
    check_vertex(v);
    return position_[v];
  }

  /// The vertices of layer l, in layer order (stored position, then id).
  const std::vector<std::size_t>& vertices(std::size_t l) const {
    check_layer(l);
    return layers_[l];
  }

  /// Number of vertices of layer l.
  std::size_t layer_size(std::size_t l) const { return vertices(l).size(); }

  /// Number of vertices of every layer.
  std::vector<std::size_t> layer_sizes() const {
    std::vector<std::size_t> sizes(layers_.size());
    for (std::size_t l = 0; l < layers_.size(); ++l) sizes[l] = layers_[l].size();
    return sizes;
  }

  /// The distinct successors of vertex v, in the order of its out-edges.
  std::vector<std::size_t> successors(std::size_t v) const {
    check_vertex(v);
    return {out_targets_.begin() + static_cast<std::ptrdiff_t>(out_offsets_[v]),
            out_targets_.begin() + static_cast<std::ptrdiff_t>(out_offsets_[v + 1])};
  }

  /// Every connected pair of layers, by target ascending and for each target by source ascending
  /// (the order in which deepstruct's MaskedDeepDAN creates its skip layers).
  const std::vector<LayerConnection>& connections() const noexcept { return connections_; }

  /// Number of edges from a vertex of layer s to a vertex of layer t. Edges only go from lower to
  /// higher layers, so this is 0 when s >= t. O(log P).
  std::size_t connection_count(std::size_t s, std::size_t t) const {
    check_layer(s);
    check_layer(t);
    const auto first = connections_.begin() + static_cast<std::ptrdiff_t>(pair_offsets_[t]);
    const auto last = connections_.begin() + static_cast<std::ptrdiff_t>(pair_offsets_[t + 1]);
    const auto it = std::lower_bound(first, last, s, [](const LayerConnection& c, std::size_t x) { return c.source < x; });
    return it != last && it->source == s ? it->edges : 0;
  }

  /// Whether some vertex of layer s has an edge to some vertex of layer t (deepstruct's
  /// layer_connected, but directed: s must be the lower layer).
  bool connected(std::size_t s, std::size_t t) const { return connection_count(s, t) != 0; }

  /// connection_count(s, t) / (|s| * |t|): the density of the mask between the two layers.
  double connection_density(std::size_t s, std::size_t t) const {
    const std::size_t edges = connection_count(s, t);
    return static_cast<double>(edges) / (static_cast<double>(layers_[s].size()) * static_cast<double>(layers_[t].size()));
  }

  /// The mask between layers s and t: rows are the vertices of t, columns those of s, both in
  /// layer order; entry (i, j) is true when vertices(s)[j] -> vertices(t)[i] is an edge.
  /// Throws value_error, before allocating, when the |t| x |s| bytes exceed the physical memory.
  /// O(|s| * |t| + out-edges of layer s).
  Mask mask(std::size_t s, std::size_t t) const {
    check_layer(s);
    check_layer(t);
    detail::check_fits_memory<value_error>("LayeredView::mask", "the mask of layers " + std::to_string(s) + " -> " + std::to_string(t) + " (" +
                                               std::to_string(layers_[t].size()) + " x " + std::to_string(layers_[s].size()) + ")",
                                           static_cast<double>(layers_[t].size()) * static_cast<double>(layers_[s].size()));
    Mask m = Mask::Constant(static_cast<Eigen::Index>(layers_[t].size()), static_cast<Eigen::Index>(layers_[s].size()), false);
    for (std::size_t j = 0; j < layers_[s].size(); ++j) {
      const std::size_t u = layers_[s][j];
      for (std::size_t k = out_offsets_[u]; k < out_offsets_[u + 1]; ++k) {
        const std::size_t w = out_targets_[k];
        if (layer_[w] == t) m(static_cast<Eigen::Index>(position_[w]), static_cast<Eigen::Index>(j)) = true;
      }
    }
    return m;
  }

 private:
  /// A Dag's stored positions, or none (an empty vector) when no vertex has one or g is another
  /// graph type.
  template <typename Graph>
  static std::vector<std::size_t> stored_positions(const Graph& g) {
    if constexpr (std::is_same<Graph, Dag>::value) {
      std::vector<std::size_t> p(boost::num_vertices(g));
      bool any = false;
      for (std::size_t v = 0; v < p.size(); ++v) {
        p[v] = g[v].position;
        any = any || p[v] != no_position;
      }
      if (any) return p;
    } else {
      (void)g;
    }
    return {};
  }

  void check_vertex(std::size_t v) const {
    if (v >= layer_.size())
      DEEPSTRUCT_THROW(value_error, "LayeredView: expected a vertex id below " + std::to_string(layer_.size()) +
                                        ", found " + std::to_string(v));
  }
  void check_layer(std::size_t l) const {
    if (l >= layers_.size())
      DEEPSTRUCT_THROW(value_error, "LayeredView: expected a layer below " + std::to_string(layers_.size()) +
                                        ", found " + std::to_string(l));
  }

  std::vector<std::size_t> layer_;     // layer of each vertex
  std::vector<std::size_t> position_;  // index inside its layer
  std::vector<std::vector<std::size_t>> layers_;
  std::vector<std::size_t> out_offsets_{0}, out_targets_;
  std::vector<std::size_t> pair_offsets_{0};  // connections_ grouped by target layer
  std::vector<LayerConnection> connections_;
};

}  // namespace deepstruct
