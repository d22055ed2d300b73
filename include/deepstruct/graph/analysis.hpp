// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/analysis.hpp
/// Structure analysis of a DAG in one call: sizes, densities (overall and per layer pair), layer
/// sizes, degree statistics, sources/sinks/isolated vertices, dead neurons, the number of
/// input-to-output paths, skip lengths, weakly connected components, and on the undirected
/// projection the average clustering coefficient and the average shortest-path length.
///
///     deepstruct::StructureReport r = deepstruct::analyze(g);
///     std::cout << deepstruct::to_text(r);      // aligned, human-readable
///     std::ofstream("report.json") << deepstruct::to_json(r);
///
/// Works on any Boost.Graph that models IncidenceGraph and VertexListGraph with a vertex_index
/// map (deepstruct::Dag, boost::compressed_sparse_row_graph, vecS adjacency_list, ...). The graph
/// is copied once into compact adjacency arrays (32-bit ids); everything is O(V + E) except the
/// clustering coefficient (O(E^1.5) worst case, by the degree-ordered "forward" triangle count)
/// and the shortest paths (one BFS, O(V + E), per source). Definitions: docs/graph.md#analysis.

#include <boost/graph/graph_concepts.hpp>
#include <boost/graph/graph_traits.hpp>
#include <boost/graph/properties.hpp>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "deepstruct/detail/text_output.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/graph/layer_index.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

/// What analyze() computes and how.
struct AnalysisOptions {
  /// Input vertices (ids) for dead neurons and path counts; empty = the sources (in-degree 0).
  std::vector<std::size_t> inputs;
  /// Output vertices (ids) for dead neurons and path counts; empty = the sinks (out-degree 0).
  std::vector<std::size_t> outputs;
  /// When false, an empty `inputs` or `outputs` is an empty set, not the sources or sinks: no
  /// vertex is reached from no input, none reaches no output, and there are no paths.
  bool empty_sets_mean_sources_and_sinks = true;
  /// Average clustering coefficient of the undirected projection (NaN in the report when off).
  bool clustering = true;
  /// Average shortest-path length of the undirected projection (NaN in the report when off).
  bool shortest_paths = true;
  /// Up to this many vertices the shortest-path length is exact (a BFS from every vertex); above
  /// it, it is estimated from path_length_samples BFS sources drawn without replacement.
  std::size_t exact_path_length_limit = 2000;
  std::size_t path_length_samples = 32;
  std::uint64_t seed = 0;  ///< seed of the source sample (same seed, same estimate)
};

/// Minimum, maximum, mean, population standard deviation and histogram of a degree sequence.
struct DegreeStats {
  std::size_t min = 0;
  std::size_t max = 0;
  double mean = 0.0;
  double stddev = 0.0;
  std::vector<std::size_t> histogram;  ///< histogram[d] = number of vertices of degree d (size max+1)
};

/// Edges from layer `source_layer` to layer `target_layer` and their density
/// edges / (|source_layer| * |target_layer|).
struct LayerPairDensity {
  std::size_t source_layer = 0;
  std::size_t target_layer = 0;
  std::size_t edges = 0;
  double density = 0.0;
};

/// The result of analyze(); definitions in docs/graph.md#analysis. Counts of edges include
/// parallel edges; the undirected measures (components, clustering, path length) use the simple
/// undirected projection, as networkx.Graph(g) does.
struct StructureReport {
  std::size_t vertices = 0;
  std::size_t edges = 0;
  double density = 0.0;  ///< edges / (n (n - 1) / 2), the most edges a DAG on n vertices can have; 0 for n < 2

  std::size_t depth = 0;                               ///< number of layers
  std::vector<std::size_t> layer_sizes;                ///< vertices per layer
  std::vector<LayerPairDensity> layer_pair_densities;  ///< pairs with at least one edge, sorted by (source, target)
  std::vector<std::size_t> skip_lengths;               ///< skip_lengths[k] = edges spanning k layers (k >= 1; [0] is 0)

  DegreeStats in_degree;
  DegreeStats out_degree;
  std::size_t sources = 0;   ///< in-degree 0
  std::size_t sinks = 0;     ///< out-degree 0
  std::size_t isolated = 0;  ///< in- and out-degree 0

  std::size_t inputs = 0;   ///< size of the input set (given, or the sources)
  std::size_t outputs = 0;  ///< size of the output set (given, or the sinks)
  std::size_t unreachable_from_inputs = 0;  ///< no path from any input (inputs reach themselves)
  std::size_t cannot_reach_outputs = 0;     ///< no path to any output (outputs reach themselves)
  std::vector<std::size_t> dead_neurons;    ///< ids of the vertices in either group, ascending

  /// Input-to-output paths with at least one edge (parallel edges give distinct paths). Exact
  /// below 2^53, rounded above, +inf beyond the double range; log10_input_output_paths stays finite
  /// (-inf when there is no path).
  double input_output_paths = 0.0;
  double log10_input_output_paths = -std::numeric_limits<double>::infinity();

  std::size_t components = 0;                ///< weakly connected components
  std::vector<std::size_t> component_sizes;  ///< descending

  double average_clustering = std::numeric_limits<double>::quiet_NaN();
  /// Mean BFS distance over ordered pairs (s, t), s != t, t reachable from s in the undirected
  /// projection; networkx.average_shortest_path_length when the graph is connected.
  double average_shortest_path_length = std::numeric_limits<double>::quiet_NaN();
  bool shortest_paths_exact = false;           ///< BFS from every vertex (else from a sample)
  std::size_t shortest_path_sources = 0;       ///< BFS sources used
  std::uint64_t shortest_path_pairs = 0;       ///< ordered pairs averaged over
};

namespace detail {
namespace analysis {  // internals of analyze(), apart from the other graph headers' detail names

/// Compressed adjacency: the neighbours of v are adj[offset[v] .. offset[v + 1]).
struct Adjacency {
  std::vector<std::size_t> offset;
  std::vector<std::uint32_t> adj;
  std::size_t degree(std::size_t v) const { return offset[v + 1] - offset[v]; }
  const std::uint32_t* begin(std::size_t v) const { return adj.data() + offset[v]; }
  const std::uint32_t* end(std::size_t v) const { return adj.data() + offset[v + 1]; }
};

/// One bit per vertex; a million vertices take 128 KiB, which stays in cache.
struct Bits {
  std::vector<std::uint64_t> words;
  explicit Bits(std::size_t n = 0) : words((n + 63) / 64, 0) {}
  bool test(std::size_t i) const { return (words[i >> 6] >> (i & 63)) & 1u; }
  void set(std::size_t i) { words[i >> 6] |= std::uint64_t{1} << (i & 63); }
  void reset(std::size_t i) { words[i >> 6] &= ~(std::uint64_t{1} << (i & 63)); }
  void clear() { std::fill(words.begin(), words.end(), 0); }
};

/// Out-adjacency of g by vertex index; each list sorted ascending.
template <typename Graph>
Adjacency out_adjacency(const Graph& g) {
  const auto index = get(boost::vertex_index, g);
  const std::size_t n = num_vertices(g);
  if (n > std::numeric_limits<std::uint32_t>::max())
    DEEPSTRUCT_THROW(value_error, "analyze: expected at most 2^32 - 1 vertices, found " + std::to_string(n));
  Adjacency out;
  out.offset.assign(n + 1, 0);
  for (auto [v, v_end] = vertices(g); v != v_end; ++v) out.offset[get(index, *v) + 1] = out_degree(*v, g);
  for (std::size_t v = 0; v < n; ++v) out.offset[v + 1] += out.offset[v];
  out.adj.resize(out.offset[n]);
  for (auto [v, v_end] = vertices(g); v != v_end; ++v) {
    const std::size_t i = get(index, *v);
    std::uint32_t* dst = out.adj.data() + out.offset[i];
    for (auto [e, e_end] = out_edges(*v, g); e != e_end; ++e) *dst++ = static_cast<std::uint32_t>(get(index, target(*e, g)));
    std::uint32_t* first = out.adj.data() + out.offset[i];
    if (!std::is_sorted(first, dst)) std::sort(first, dst);
  }
  return out;
}

/// The reverse adjacency (in-neighbours), each list sorted ascending since sources are visited in order.
inline Adjacency reverse_adjacency(const Adjacency& out) {
  const std::size_t n = out.offset.size() - 1;
  Adjacency in;
  in.offset.assign(n + 1, 0);
  for (std::uint32_t w : out.adj) ++in.offset[w + 1];
  for (std::size_t v = 0; v < n; ++v) in.offset[v + 1] += in.offset[v];
  in.adj.resize(out.adj.size());
  std::vector<std::size_t> fill(in.offset.begin(), in.offset.end() - 1);
  for (std::size_t u = 0; u < n; ++u)
    for (const std::uint32_t* w = out.begin(u); w != out.end(u); ++w) in.adj[fill[*w]++] = static_cast<std::uint32_t>(u);
  return in;
}

/// The simple undirected projection: merge of the sorted in- and out-lists, without repeats.
inline Adjacency undirected_adjacency(const Adjacency& out, const Adjacency& in) {
  const std::size_t n = out.offset.size() - 1;
  Adjacency und;
  und.offset.assign(n + 1, 0);
  und.adj.reserve(out.adj.size() + in.adj.size());
  for (std::size_t v = 0; v < n; ++v) {
    const std::uint32_t *a = out.begin(v), *a_end = out.end(v), *b = in.begin(v), *b_end = in.end(v);
    std::int64_t last = -1;
    while (a != a_end || b != b_end) {
      std::uint32_t next;
      if (b == b_end || (a != a_end && *a < *b))
        next = *a++;
      else
        next = *b++;
      if (static_cast<std::int64_t>(next) != last) und.adj.push_back(next);
      last = next;
    }
    und.offset[v + 1] = und.adj.size();
  }
  return und;
}

inline DegreeStats degree_stats(const Adjacency& a) {
  const std::size_t n = a.offset.size() - 1;
  DegreeStats s;
  if (n == 0) return s;
  s.min = std::numeric_limits<std::size_t>::max();
  for (std::size_t v = 0; v < n; ++v) {
    const std::size_t d = a.degree(v);
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
  }
  s.histogram.assign(s.max + 1, 0);
  for (std::size_t v = 0; v < n; ++v) ++s.histogram[a.degree(v)];
  s.mean = static_cast<double>(a.adj.size()) / static_cast<double>(n);
  double sq = 0.0;
  for (std::size_t d = 0; d <= s.max; ++d) {
    const double diff = static_cast<double>(d) - s.mean;
    sq += static_cast<double>(s.histogram[d]) * diff * diff;
  }
  s.stddev = std::sqrt(sq / static_cast<double>(n));
  return s;
}

/// Marks the given vertex ids; an empty list marks the vertices whose list in `adj` is empty.
inline std::vector<char> vertex_set(const std::vector<std::size_t>& ids, const Adjacency& adj, const char* what,
                                    bool empty_means_ends) {
  const std::size_t n = adj.offset.size() - 1;
  std::vector<char> mark(n, 0);
  if (ids.empty() && empty_means_ends) {
    for (std::size_t v = 0; v < n; ++v) mark[v] = adj.degree(v) == 0;
    return mark;
  }
  for (std::size_t v : ids) {
    if (v >= n)
      DEEPSTRUCT_THROW(value_error, std::string("analyze: expected ") + what + " vertex ids below " + std::to_string(n) +
                                        ", found " + std::to_string(v));
    mark[v] = 1;
  }
  return mark;
}

inline void prefetch(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p);
#else
  (void)p;
#endif
}

/// Triangles through each vertex of a simple undirected graph: orient every edge from lower to
/// higher (degree, id) rank, then each triangle is found once by intersecting out-lists (marked).
inline std::vector<std::uint64_t> triangles(const Adjacency& und) {
  const std::size_t n = und.offset.size() - 1;
  std::vector<std::uint32_t> degree(n);
  for (std::size_t v = 0; v < n; ++v) degree[v] = static_cast<std::uint32_t>(und.degree(v));
  Adjacency fwd;  // 32-bit offsets would do, but the lists are what is read at random
  fwd.offset.assign(n + 1, 0);
  fwd.adj.reserve(und.adj.size() / 2);
  for (std::size_t v = 0; v < n; ++v) {
    const std::uint32_t dv = degree[v];
    for (const std::uint32_t* w = und.begin(v); w != und.end(v); ++w)
      if (degree[*w] > dv || (degree[*w] == dv && *w > v)) fwd.adj.push_back(*w);
    fwd.offset[v + 1] = fwd.adj.size();
  }
  std::vector<std::uint64_t> t(n, 0);
  Bits mark(n);
  for (std::size_t u = 0; u < n; ++u) {
    // The lists of u's forward neighbours are read next, at random places: fetch them early.
    if (u + 1 < n)
      for (const std::uint32_t* v = fwd.begin(u + 1); v != fwd.end(u + 1); ++v) prefetch(&fwd.offset[*v]);
    for (const std::uint32_t* v = fwd.begin(u); v != fwd.end(u); ++v) prefetch(fwd.adj.data() + fwd.offset[*v]);
    if (fwd.degree(u) < 2) continue;
    for (const std::uint32_t* v = fwd.begin(u); v != fwd.end(u); ++v) mark.set(*v);
    for (const std::uint32_t* v = fwd.begin(u); v != fwd.end(u); ++v)
      for (const std::uint32_t* w = fwd.begin(*v); w != fwd.end(*v); ++w)
        if (mark.test(*w)) {
          ++t[u];
          ++t[*v];
          ++t[*w];
        }
    for (const std::uint32_t* v = fwd.begin(u); v != fwd.end(u); ++v) mark.reset(*v);
  }
  return t;
}

/// Sums of BFS distances on the undirected adjacency. Level-synchronous and direction-optimizing
/// (Beamer, Asanovic, Patterson 2012): a level is expanded top-down from a queue while its
/// frontier is small, and bottom-up (every unvisited vertex looks for a neighbour in the
/// frontier, stopping at the first) while it is large. Distances are summed per level, never
/// stored; the per-vertex state is three bitmaps.
class DistanceSums {
 public:
  explicit DistanceSums(const Adjacency& und)
      : und_(und), n_(und.offset.size() - 1), visited_(n_), frontier_(n_), next_(n_) {}

  /// Sum of the distances from s and the number of vertices reached (without s).
  std::pair<double, std::uint64_t> from(std::uint32_t s) {
    visited_.clear();
    visited_.set(s);
    queue_.assign(1, s);
    std::uint64_t unexplored_edges = und_.adj.size() - und_.degree(s);
    std::size_t frontier_size = 1;
    bool bottom_up = false;
    double sum = 0.0;
    std::uint64_t reached = 0;
    for (double level = 1.0; frontier_size > 0; level += 1.0) {
      if (!bottom_up) {
        std::uint64_t frontier_edges = 0;
        for (std::uint32_t u : queue_) frontier_edges += und_.degree(u);
        if (frontier_edges > unexplored_edges / 14) {  // Beamer's alpha
          bottom_up = true;
          frontier_.clear();
          for (std::uint32_t u : queue_) frontier_.set(u);
        }
      } else if (frontier_size < n_ / 24) {  // Beamer's beta
        bottom_up = false;
        queue_.clear();
        for (std::size_t i = 0; i < frontier_.words.size(); ++i)
          for (std::uint64_t bits = frontier_.words[i]; bits != 0; bits &= bits - 1)
            queue_.push_back(static_cast<std::uint32_t>(64 * i + static_cast<std::size_t>(lowest_bit(bits))));
      }
      std::size_t found = 0;
      if (bottom_up) {
        next_.clear();
        for (std::size_t i = 0; i < visited_.words.size(); ++i) {
          std::uint64_t open = ~visited_.words[i];
          if (i + 1 == visited_.words.size() && n_ % 64 != 0) open &= (std::uint64_t{1} << (n_ % 64)) - 1;
          for (; open != 0; open &= open - 1) {
            const std::size_t v = 64 * i + static_cast<std::size_t>(lowest_bit(open));
            for (const std::uint32_t* w = und_.begin(v); w != und_.end(v); ++w)
              if (frontier_.test(*w)) {
                next_.set(v);
                ++found;
                unexplored_edges -= und_.degree(v);
                break;
              }
          }
        }
        for (std::size_t i = 0; i < visited_.words.size(); ++i) visited_.words[i] |= next_.words[i];
        std::swap(frontier_, next_);
      } else {
        next_queue_.clear();
        for (std::uint32_t u : queue_)
          for (const std::uint32_t* w = und_.begin(u); w != und_.end(u); ++w)
            if (!visited_.test(*w)) {
              visited_.set(*w);
              next_queue_.push_back(*w);
              unexplored_edges -= und_.degree(*w);
            }
        found = next_queue_.size();
        std::swap(queue_, next_queue_);
      }
      sum += level * static_cast<double>(found);
      reached += found;
      frontier_size = found;
    }
    return {sum, reached};
  }

 private:
  static int lowest_bit(std::uint64_t x) {
    int k = 0;
#if defined(__GNUC__) || defined(__clang__)
    k = __builtin_ctzll(x);
#else
    while (!(x & 1u)) {
      x >>= 1;
      ++k;
    }
#endif
    return k;
  }

  const Adjacency& und_;
  std::size_t n_;
  Bits visited_, frontier_, next_;
  std::vector<std::uint32_t> queue_, next_queue_;
};

inline double log_add(double a, double b) {
  if (a == -std::numeric_limits<double>::infinity()) return b;
  if (b == -std::numeric_limits<double>::infinity()) return a;
  return a > b ? a + std::log1p(std::exp(b - a)) : b + std::log1p(std::exp(a - b));
}

}  // namespace analysis
}  // namespace detail

/// Analyses g with the given layering (layers[v] for vertex index v; every edge must go to a
/// strictly higher layer, as layer_index() guarantees). Throws value_error when the layering does
/// not fit or an input/output id is out of range.
template <typename Graph>
StructureReport analyze(const Graph& g, const std::vector<std::size_t>& layers, const AnalysisOptions& options = {}) {
  BOOST_CONCEPT_ASSERT((boost::IncidenceGraphConcept<Graph>));
  BOOST_CONCEPT_ASSERT((boost::VertexListGraphConcept<Graph>));
  using detail::analysis::Adjacency;
  const std::size_t n = num_vertices(g);
  if (layers.size() != n)
    DEEPSTRUCT_THROW(value_error, "analyze: expected one layer per vertex (" + std::to_string(n) + "), found " +
                                      std::to_string(layers.size()));
  const Adjacency out = detail::analysis::out_adjacency(g);
  const Adjacency in = detail::analysis::reverse_adjacency(out);
  StructureReport r;
  r.vertices = n;
  r.edges = out.adj.size();
  r.density = n < 2 ? 0.0 : static_cast<double>(r.edges) / (0.5 * static_cast<double>(n) * static_cast<double>(n - 1));

  // Layers: sizes, a topological order (counting sort by layer), pair densities, skip lengths.
  // Every layer below n before any "+ 1" (a layer of SIZE_MAX would wrap to 0) and any indexing.
  r.depth = 0;
  for (std::size_t v = 0; v < n; ++v) {
    if (layers[v] >= n)
      DEEPSTRUCT_THROW(value_error, "analyze: expected layers below the number of vertices (" + std::to_string(n) +
                                        "), found layer " + std::to_string(layers[v]) + " at vertex " + std::to_string(v));
    r.depth = std::max(r.depth, layers[v] + 1);
  }
  r.layer_sizes.assign(r.depth, 0);
  for (std::size_t l : layers) ++r.layer_sizes[l];
  std::vector<std::uint32_t> order(n);
  {
    std::vector<std::size_t> start(r.depth + 1, 0);
    for (std::size_t l = 0; l < r.depth; ++l) start[l + 1] = start[l] + r.layer_sizes[l];
    for (std::size_t v = 0; v < n; ++v) order[start[layers[v]]++] = static_cast<std::uint32_t>(v);
  }
  // One pass over the edges in topological order checks the layering, counts layer pairs and
  // skip lengths, and carries reachability from the inputs and path counts forward; the state a
  // target needs sits in one 16-byte record, so each edge costs one random access.
  const bool ends = options.empty_sets_mean_sources_and_sinks;
  const std::vector<char> is_input = detail::analysis::vertex_set(options.inputs, in, "input", ends);
  const std::vector<char> is_output = detail::analysis::vertex_set(options.outputs, out, "output", ends);
  r.inputs = static_cast<std::size_t>(std::count(is_input.begin(), is_input.end(), 1));
  r.outputs = static_cast<std::size_t>(std::count(is_output.begin(), is_output.end(), 1));
  struct Forward {
    double paths;         // paths from an input (including the input itself)
    std::uint32_t layer;  // < n <= 2^32 - 1
    std::uint32_t from_input;
  };
  std::vector<Forward> fwd(n);
  for (std::size_t v = 0; v < n; ++v)
    fwd[v] = Forward{is_input[v] ? 1.0 : 0.0, static_cast<std::uint32_t>(layers[v]), is_input[v] ? 1u : 0u};
  r.skip_lengths.assign(r.depth > 0 ? r.depth : 1, 0);
  const bool dense_pairs = r.depth * r.depth <= (std::size_t{1} << 20);
  std::vector<std::size_t> pair_dense(dense_pairs ? r.depth * r.depth : 0, 0);
  std::unordered_map<std::uint64_t, std::size_t> pair_sparse;
  for (std::uint32_t u : order) {
    const Forward fu = fwd[u];
    for (const std::uint32_t* w = out.begin(u); w != out.end(u); ++w) {
      Forward& fw = fwd[*w];
      if (fw.layer <= fu.layer)
        DEEPSTRUCT_THROW(value_error, "analyze: expected layer(target) > layer(source) on every edge, found edge " +
                                          std::to_string(u) + " -> " + std::to_string(*w) + " from layer " +
                                          std::to_string(fu.layer) + " to layer " + std::to_string(fw.layer));
      ++r.skip_lengths[fw.layer - fu.layer];
      if (dense_pairs)
        ++pair_dense[std::size_t{fu.layer} * r.depth + fw.layer];
      else
        ++pair_sparse[std::uint64_t{fu.layer} * r.depth + fw.layer];
      fw.from_input |= fu.from_input;
      fw.paths += fu.paths;
    }
  }
  auto add_pair = [&](std::size_t key, std::size_t count) {
    LayerPairDensity p;
    p.source_layer = key / r.depth;
    p.target_layer = key % r.depth;
    p.edges = count;
    p.density = static_cast<double>(count) /
                (static_cast<double>(r.layer_sizes[p.source_layer]) * static_cast<double>(r.layer_sizes[p.target_layer]));
    r.layer_pair_densities.push_back(p);
  };
  if (dense_pairs) {
    for (std::size_t key = 0; key < pair_dense.size(); ++key)
      if (pair_dense[key] != 0) add_pair(key, pair_dense[key]);
  } else {
    std::vector<std::pair<std::uint64_t, std::size_t>> pairs(pair_sparse.begin(), pair_sparse.end());
    std::sort(pairs.begin(), pairs.end());
    for (const auto& p : pairs) add_pair(static_cast<std::size_t>(p.first), p.second);
  }

  // Degrees.
  r.in_degree = detail::analysis::degree_stats(in);
  r.out_degree = detail::analysis::degree_stats(out);
  for (std::size_t v = 0; v < n; ++v) {
    r.sources += in.degree(v) == 0;
    r.sinks += out.degree(v) == 0;
    r.isolated += in.degree(v) == 0 && out.degree(v) == 0;
  }

  // Dead neurons and path counts; reachability of the outputs goes backwards.
  std::vector<char> to_output(is_output);
  for (std::size_t i = n; i-- > 0;) {
    const std::uint32_t u = order[i];
    for (const std::uint32_t* w = out.begin(u); w != out.end(u) && !to_output[u]; ++w) to_output[u] = to_output[*w];
  }
  double total = 0.0, both = 0.0;
  for (std::size_t v = 0; v < n; ++v) {
    r.unreachable_from_inputs += !fwd[v].from_input;
    r.cannot_reach_outputs += !to_output[v];
    if (!fwd[v].from_input || !to_output[v]) r.dead_neurons.push_back(v);
    if (is_output[v]) total += fwd[v].paths;
    if (is_output[v] && is_input[v]) both += 1.0;
  }
  r.input_output_paths = total - both;  // drop the paths of length 0
  if (std::isfinite(r.input_output_paths)) {
    r.log10_input_output_paths = std::log10(r.input_output_paths);
  } else {  // the same count in the log domain
    const double none = -std::numeric_limits<double>::infinity();
    std::vector<double> paths(n);
    for (std::size_t v = 0; v < n; ++v) paths[v] = is_input[v] ? 0.0 : none;
    for (std::uint32_t u : order)
      for (const std::uint32_t* w = out.begin(u); w != out.end(u); ++w) paths[*w] = detail::analysis::log_add(paths[*w], paths[u]);
    double log_total = none;
    for (std::size_t v = 0; v < n; ++v)
      if (is_output[v]) log_total = detail::analysis::log_add(log_total, paths[v]);
    r.log10_input_output_paths = log_total / std::log(10.0);
  }
  fwd = {};

  // Undirected projection: components, clustering, shortest paths.
  const Adjacency und = detail::analysis::undirected_adjacency(out, in);
  {
    detail::analysis::Bits seen(n);
    std::vector<std::uint32_t> queue;
    for (std::size_t s = 0; s < n; ++s) {
      if (seen.test(s)) continue;
      queue.assign(1, static_cast<std::uint32_t>(s));
      seen.set(s);
      for (std::size_t head = 0; head < queue.size(); ++head)
        for (const std::uint32_t* w = und.begin(queue[head]); w != und.end(queue[head]); ++w)
          if (!seen.test(*w)) {
            seen.set(*w);
            queue.push_back(*w);
          }
      r.component_sizes.push_back(queue.size());
    }
    r.components = r.component_sizes.size();
    std::sort(r.component_sizes.begin(), r.component_sizes.end(), std::greater<std::size_t>());
  }
  if (options.clustering) {
    const std::vector<std::uint64_t> t = detail::analysis::triangles(und);
    double sum = 0.0;
    for (std::size_t v = 0; v < n; ++v) {
      const double d = static_cast<double>(und.degree(v));
      if (d >= 2) sum += 2.0 * static_cast<double>(t[v]) / (d * (d - 1.0));
    }
    r.average_clustering = n == 0 ? 0.0 : sum / static_cast<double>(n);
  }
  if (options.shortest_paths) {
    std::vector<std::uint32_t> sources;
    if (n <= options.exact_path_length_limit || options.path_length_samples >= n) {
      r.shortest_paths_exact = true;
      sources.resize(n);
      std::iota(sources.begin(), sources.end(), std::uint32_t{0});
    } else {
      // Partial Fisher-Yates: the first k entries are a uniform sample without replacement.
      const std::size_t k = options.path_length_samples;
      if (k == 0)
        DEEPSTRUCT_THROW(value_error, "analyze: expected path_length_samples > 0 above exact_path_length_limit, found 0");
      std::vector<std::uint32_t> all(n);
      std::iota(all.begin(), all.end(), std::uint32_t{0});
      Generator gen(options.seed);
      for (std::size_t i = 0; i < k; ++i)
        std::swap(all[i], all[i + static_cast<std::size_t>(random::uniform_index(gen, n - i))]);
      sources.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k));
    }
    detail::analysis::DistanceSums bfs(und);
    double sum = 0.0;
    for (std::uint32_t s : sources) {
      const auto [d, reached] = bfs.from(s);
      sum += d;
      r.shortest_path_pairs += reached;
    }
    r.shortest_path_sources = sources.size();
    r.average_shortest_path_length = r.shortest_path_pairs == 0 ? 0.0 : sum / static_cast<double>(r.shortest_path_pairs);
  }
  return r;
}

/// Analyses g with the layering of layer_index(g) (throws not_a_dag on a cycle).
template <typename Graph>
StructureReport analyze(const Graph& g, const AnalysisOptions& options = {}) {
  return analyze(g, layer_index(g), options);
}

namespace detail {
namespace analysis {

inline std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  return detail::c_number("%.17g", x);
}

inline std::string json_array(const std::vector<std::size_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s + ']';
}

inline std::string json_degrees(const DegreeStats& d) {
  return "{\"min\": " + std::to_string(d.min) + ", \"max\": " + std::to_string(d.max) + ", \"mean\": " + json_number(d.mean) +
         ", \"stddev\": " + json_number(d.stddev) + ", \"histogram\": " + json_array(d.histogram) + "}";
}

inline std::string text_number(double x) {
  if (std::isnan(x)) return "not computed";
  return detail::c_number("%.6g", x);
}

/// At most `limit` entries of v, then "... (k more)".
inline std::string text_list(const std::vector<std::size_t>& v, std::size_t limit) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < limit; ++i) s += (i ? " " : "") + std::to_string(v[i]);
  if (v.size() > limit) s += " ... (" + std::to_string(v.size() - limit) + " more)";
  return s.empty() ? "-" : s;
}

inline std::string text_histogram(const std::vector<std::size_t>& h, std::size_t limit) {
  std::string s;
  std::size_t shown = 0, more = 0;
  for (std::size_t k = 0; k < h.size(); ++k) {
    if (h[k] == 0) continue;
    if (shown < limit) {
      s += (shown ? " " : "") + std::to_string(k) + ':' + std::to_string(h[k]);
      ++shown;
    } else {
      ++more;
    }
  }
  if (more) s += " ... (" + std::to_string(more) + " more bins)";
  return s.empty() ? "-" : s;
}

}  // namespace analysis
}  // namespace detail

/// The report as JSON (an object; non-finite numbers as null). Every list is written in full.
inline std::string to_json(const StructureReport& r) {
  using detail::analysis::json_array;
  using detail::analysis::json_number;
  std::string s = "{\n";
  auto field = [&s](const char* key, const std::string& value, bool last = false) {
    s += "  \"";
    s += key;
    s += "\": ";
    s += value;
    s += last ? "\n" : ",\n";
  };
  field("vertices", std::to_string(r.vertices));
  field("edges", std::to_string(r.edges));
  field("density", json_number(r.density));
  field("depth", std::to_string(r.depth));
  field("layer_sizes", json_array(r.layer_sizes));
  std::string pairs = "[";
  for (std::size_t i = 0; i < r.layer_pair_densities.size(); ++i) {
    const LayerPairDensity& p = r.layer_pair_densities[i];
    pairs += (i ? ",\n    " : "\n    ");
    pairs += "{\"source_layer\": " + std::to_string(p.source_layer) + ", \"target_layer\": " + std::to_string(p.target_layer) +
             ", \"edges\": " + std::to_string(p.edges) + ", \"density\": " + json_number(p.density) + "}";
  }
  pairs += r.layer_pair_densities.empty() ? "]" : "\n  ]";
  field("layer_pair_densities", pairs);
  field("skip_lengths", json_array(r.skip_lengths));
  field("in_degree", detail::analysis::json_degrees(r.in_degree));
  field("out_degree", detail::analysis::json_degrees(r.out_degree));
  field("sources", std::to_string(r.sources));
  field("sinks", std::to_string(r.sinks));
  field("isolated", std::to_string(r.isolated));
  field("inputs", std::to_string(r.inputs));
  field("outputs", std::to_string(r.outputs));
  field("unreachable_from_inputs", std::to_string(r.unreachable_from_inputs));
  field("cannot_reach_outputs", std::to_string(r.cannot_reach_outputs));
  field("dead_neurons", json_array(r.dead_neurons));
  field("input_output_paths", json_number(r.input_output_paths));
  field("log10_input_output_paths", json_number(r.log10_input_output_paths));
  field("components", std::to_string(r.components));
  field("component_sizes", json_array(r.component_sizes));
  field("average_clustering", json_number(r.average_clustering));
  field("average_shortest_path_length", json_number(r.average_shortest_path_length));
  field("shortest_paths_exact", r.shortest_paths_exact ? "true" : "false");
  field("shortest_path_sources", std::to_string(r.shortest_path_sources));
  field("shortest_path_pairs", std::to_string(r.shortest_path_pairs), true);
  return s + "}\n";
}

/// The report as aligned text, one quantity per line; long lists are shortened ("... (k more)").
inline std::string to_text(const StructureReport& r) {
  using detail::analysis::text_number;
  std::ostringstream out;
  auto line = [&out](const std::string& label, const std::string& value) {
    out << label << std::string(label.size() < 30 ? 30 - label.size() : 1, ' ') << value << '\n';
  };
  line("vertices", std::to_string(r.vertices));
  line("edges", std::to_string(r.edges));
  line("density", text_number(r.density));
  line("depth (layers)", std::to_string(r.depth));
  line("layer sizes", detail::analysis::text_list(r.layer_sizes, 16));
  line("skip lengths (span:edges)", detail::analysis::text_histogram(r.skip_lengths, 12));
  auto degrees = [&](const std::string& name, const DegreeStats& d) {
    line(name + " degree min/mean/max", std::to_string(d.min) + " / " + text_number(d.mean) + " / " + std::to_string(d.max));
    line(name + " degree std-dev", text_number(d.stddev));
    line(name + " degrees (deg:count)", detail::analysis::text_histogram(d.histogram, 12));
  };
  degrees("in", r.in_degree);
  degrees("out", r.out_degree);
  line("sources / sinks / isolated", std::to_string(r.sources) + " / " + std::to_string(r.sinks) + " / " + std::to_string(r.isolated));
  line("inputs / outputs", std::to_string(r.inputs) + " / " + std::to_string(r.outputs));
  line("dead neurons", std::to_string(r.dead_neurons.size()) + " (" + std::to_string(r.unreachable_from_inputs) +
                           " unreachable from inputs, " + std::to_string(r.cannot_reach_outputs) + " cannot reach outputs)");
  if (!r.dead_neurons.empty()) line("dead neuron ids", detail::analysis::text_list(r.dead_neurons, 12));
  std::string paths = text_number(r.input_output_paths);
  if (!std::isfinite(r.input_output_paths) || r.input_output_paths >= 1e15)
    paths += " (log10 " + text_number(r.log10_input_output_paths) + ")";
  line("input-output paths", paths);
  line("weak components", std::to_string(r.components) + " (sizes " + detail::analysis::text_list(r.component_sizes, 8) + ")");
  line("average clustering", text_number(r.average_clustering));
  std::string spl = text_number(r.average_shortest_path_length);
  if (!std::isnan(r.average_shortest_path_length))
    spl += r.shortest_paths_exact ? " (exact, " + std::to_string(r.shortest_path_pairs) + " pairs)"
                                  : " (estimated from " + std::to_string(r.shortest_path_sources) + " BFS sources)";
  line("average shortest path", spl);
  if (!r.layer_pair_densities.empty()) {
    out << "layer pair densities (source -> target: edges, density)\n";
    const std::size_t limit = 24;
    for (std::size_t i = 0; i < r.layer_pair_densities.size() && i < limit; ++i) {
      const LayerPairDensity& p = r.layer_pair_densities[i];
      char buf[96];
      std::snprintf(buf, sizeof buf, "  %5zu -> %-5zu %10zu  %.6g\n", p.source_layer, p.target_layer, p.edges, p.density);
      out << buf;
    }
    if (r.layer_pair_densities.size() > limit)
      out << "  ... (" << r.layer_pair_densities.size() - limit << " more pairs)\n";
  }
  return out.str();
}

}  // namespace deepstruct
