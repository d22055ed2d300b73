// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/generators.hpp
/// Random structural priors: the classic random graph models (as networkx generates them), each
/// returned as a DAG by orienting every edge from the lower to the higher id. Every generator takes
/// a deepstruct::Generator and draws only through deepstruct::random, so the same seed gives the
/// same graph with every compiler and standard library. No self-loops, no parallel edges. Edge
/// order (a Dag's edges(g) lists edges in insertion order, out_edges(v, g) too):
/// erdos_renyi_gnm, watts_strogatz, newman_watts_strogatz and barabasi_albert add their edges in
/// ascending (source, target) order; erdos_renyi_gnp adds them in ascending (target, source)
/// order, the order of its geometric skips. Either way every vertex's out-edges have ascending
/// targets. Every generator stores layer_index() in the vertices' `layer` (one O(V + E) pass in
/// id order).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

namespace detail {

inline void check_probability(const char* who, double p) {
  if (!(p >= 0.0 && p <= 1.0))
    DEEPSTRUCT_THROW(value_error, std::string(who) + ": expected a probability p in [0, 1], found " + detail::number_str(p));
}

/// Stores layer_index() in g[v].layer for a graph whose every edge goes from a lower to a higher
/// id: visiting the vertices by id, a vertex's layer is final before its out-edges are read.
inline void store_layers_of_upward_graph(Dag& g) {
  for (std::size_t u = 0; u < num_vertices(g); ++u)
    for (auto [e, e_end] = out_edges(u, g); e != e_end; ++e) {
      const std::size_t v = target(*e, g);
      g[v].layer = std::max(g[v].layer, g[u].layer + 1);
    }
}

/// A DAG on n vertices from undirected pairs, oriented low -> high and added in sorted order,
/// with its layers stored.
inline Dag dag_from_pairs(std::size_t n, std::vector<std::pair<std::size_t, std::size_t>> pairs) {
  for (auto& [u, v] : pairs)
    if (u > v) std::swap(u, v);
  std::sort(pairs.begin(), pairs.end());
  Dag g(n);
  for (const auto& [u, v] : pairs) add_edge(u, v, g);
  store_layers_of_upward_graph(g);
  return g;
}

/// An undirected simple graph as adjacency lists, small enough for the ring models.
struct UndirectedGraph {
  explicit UndirectedGraph(std::size_t n) : adj(n) {}
  bool has_edge(std::size_t u, std::size_t v) const {
    const auto& a = adj[u].size() <= adj[v].size() ? adj[u] : adj[v];
    const std::size_t x = adj[u].size() <= adj[v].size() ? v : u;
    return std::find(a.begin(), a.end(), x) != a.end();
  }
  void add_edge(std::size_t u, std::size_t v) {
    adj[u].push_back(v);
    adj[v].push_back(u);
  }
  void remove_edge(std::size_t u, std::size_t v) {
    adj[u].erase(std::find(adj[u].begin(), adj[u].end(), v));
    adj[v].erase(std::find(adj[v].begin(), adj[v].end(), u));
  }
  std::vector<std::pair<std::size_t, std::size_t>> pairs() const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (std::size_t u = 0; u < adj.size(); ++u)
      for (const std::size_t v : adj[u])
        if (u < v) out.emplace_back(u, v);
    return out;
  }
  std::vector<std::vector<std::size_t>> adj;
};

/// The ring lattice of the small-world models: u -- (u + j) mod n for j = 1..floor(k/2) (an odd k
/// acts as k - 1, as in networkx).
inline void check_ring(const char* who, std::size_t n, std::size_t k, double p) {
  check_probability(who, p);
  if (k >= n && k > 0)
    DEEPSTRUCT_THROW(value_error, std::string(who) + ": expected k < n (k = " + std::to_string(k) + " neighbours, n = " + std::to_string(n) +
                                      " vertices)");
  // The lattice alone has n * floor(k/2) edges, each also twice in the undirected lists.
  check_graph_size(who, n, 1.25 * static_cast<double>(n) * static_cast<double>(k / 2));
}

}  // namespace detail

/// Erdos-Renyi G(n, p): every pair {u, v} is an edge with probability p, independently. Geometric
/// skipping (Batagelj and Brandes 2005) draws one number per edge, so the cost is O(n + m). Edges
/// are added by target ascending, then source ascending.
/// Throws value_error unless 0 <= p <= 1, and (before allocating) for n > max_dag_vertices or an
/// expected graph that cannot fit in memory.
inline Dag erdos_renyi_gnp(std::size_t n, double p, Generator& gen) {
  detail::check_probability("erdos_renyi_gnp", p);
  detail::check_graph_size("erdos_renyi_gnp", n, p * 0.5 * static_cast<double>(n) * (static_cast<double>(n) - 1.0));
  Dag g(n);
  if (n < 2 || p == 0.0) return g;
  if (p == 1.0) {
    for (std::size_t u = 0; u < n; ++u)
      for (std::size_t v = u + 1; v < n; ++v) add_edge(u, v, g);
    detail::store_layers_of_upward_graph(g);
    return g;
  }
  // Pairs (w, v), w < v, enumerated v = 1, 2, ... and inside by w ascending; edge w -> v. The gap
  // to the next edge is geometric: floor(log(1 - r) / log(1 - p)).
  const double log_q = std::log1p(-p);
  const double pairs = 0.5 * static_cast<double>(n) * static_cast<double>(n - 1);
  std::size_t v = 1;
  std::uint64_t w = static_cast<std::uint64_t>(-1);  // w + 1 == 0 before the first skip
  while (v < n) {
    const double skip = std::floor(std::log1p(-random::uniform01(gen)) / log_q);
    if (skip >= pairs) break;  // beyond the last pair
    w += 1 + static_cast<std::uint64_t>(skip);
    while (w >= v && v < n) {
      w -= v;
      ++v;
    }
    if (v < n) add_edge(static_cast<std::size_t>(w), v, g);
  }
  detail::store_layers_of_upward_graph(g);
  return g;
}

/// Erdos-Renyi G(n, m): m distinct pairs drawn uniformly among the n(n-1)/2 (Floyd's sampling,
/// O(m) expected time and memory, then a sort). Throws value_error when m > n(n-1)/2, and (before
/// allocating) for n > max_dag_vertices or a graph that cannot fit in memory.
inline Dag erdos_renyi_gnm(std::size_t n, std::size_t m, Generator& gen) {
  detail::check_graph_size("erdos_renyi_gnm", n, 0.0);  // n <= 2^31 - 1: n(n-1)/2 below fits
  const std::uint64_t total = n < 2 ? 0 : static_cast<std::uint64_t>(n) * (n - 1) / 2;
  if (m > total)
    DEEPSTRUCT_THROW(value_error, "erdos_renyi_gnm: expected at most n(n-1)/2 = " + std::to_string(total) + " edges for n = " +
                                      std::to_string(n) + ", found m = " + std::to_string(m));
  detail::check_graph_size("erdos_renyi_gnm", n, 2.0 * static_cast<double>(m));  // the graph and the set of drawn pairs
  std::unordered_set<std::uint64_t> chosen;
  chosen.reserve(m);
  for (std::uint64_t j = total - m; j < total; ++j) {
    const std::uint64_t t = random::uniform_index(gen, j + 1);
    chosen.insert(chosen.count(t) != 0 ? j : t);
  }
  std::vector<std::uint64_t> sorted(chosen.begin(), chosen.end());
  std::sort(sorted.begin(), sorted.end());
  // Pair index i = v(v-1)/2 + w with w < v.
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  pairs.reserve(m);
  for (const std::uint64_t i : sorted) {
    auto v = static_cast<std::uint64_t>((1.0 + std::sqrt(1.0 + 8.0 * static_cast<double>(i))) / 2.0);
    while (v * (v - 1) / 2 > i) --v;
    while ((v + 1) * v / 2 <= i) ++v;
    pairs.emplace_back(static_cast<std::size_t>(i - v * (v - 1) / 2), static_cast<std::size_t>(v));
  }
  return detail::dag_from_pairs(n, std::move(pairs));
}

/// Watts-Strogatz small world, as networkx.watts_strogatz_graph: a ring of n vertices each joined
/// to its k nearest neighbours (floor(k/2) on each side, so an odd k acts as k - 1, as in
/// networkx); then every lattice edge (u, u + j) is, with
/// probability p, replaced by (u, w) for a uniform w that is neither u nor already a neighbour of u
/// (left alone when u is adjacent to all others). Keeps exactly n*floor(k/2) edges. k < n,
/// 0 <= p <= 1, else value_error; n > max_dag_vertices or a lattice that cannot fit in memory:
/// value_error before anything is allocated. O(n k^2) (neighbour lists are scanned).
inline Dag watts_strogatz(std::size_t n, std::size_t k, double p, Generator& gen) {
  detail::check_ring("watts_strogatz", n, k, p);
  detail::UndirectedGraph g(n);
  for (std::size_t j = 1; j <= k / 2; ++j)
    for (std::size_t u = 0; u < n; ++u) g.add_edge(u, (u + j) % n);
  for (std::size_t j = 1; j <= k / 2; ++j)
    for (std::size_t u = 0; u < n; ++u) {
      if (!random::bernoulli(gen, p)) continue;
      if (g.adj[u].size() >= n - 1) continue;  // no free endpoint
      std::size_t w = random::uniform_index(gen, n);
      while (w == u || g.has_edge(u, w)) w = random::uniform_index(gen, n);
      g.remove_edge(u, (u + j) % n);
      g.add_edge(u, w);
    }
  return detail::dag_from_pairs(n, g.pairs());
}

/// Newman-Watts-Strogatz small world, as networkx.newman_watts_strogatz_graph: the same ring
/// lattice, and for every lattice edge, with probability p, a shortcut (u, w) is added from its
/// lower endpoint u for a uniform w that is neither u nor a neighbour of u, the lattice edges
/// taken in networkx's order (list(G.edges()): by lower endpoint, then as its neighbours were
/// inserted; so vertex 0 gets k chances and vertex n-1 none, as there). The lattice stays, so
/// there are n*floor(k/2) + (number of shortcuts) edges. Same arguments and complexity as
/// watts_strogatz.
inline Dag newman_watts_strogatz(std::size_t n, std::size_t k, double p, Generator& gen) {
  detail::check_ring("newman_watts_strogatz", n, k, p);
  detail::UndirectedGraph g(n);
  for (std::size_t j = 1; j <= k / 2; ++j)
    for (std::size_t u = 0; u < n; ++u) g.add_edge(u, (u + j) % n);
  // networkx's list(G.edges()) of the lattice: vertex a lists its neighbours b > a in the order
  // their edges were added (j by j; within j, edge (a - j, a) before (a, a + j) unless it wraps).
  std::vector<std::pair<std::size_t, std::size_t>> lattice;
  lattice.reserve(n * (k / 2));
  std::vector<std::size_t> order;
  for (std::size_t a = 0; a < n; ++a) {
    order.clear();
    for (std::size_t j = 1; j <= k / 2; ++j) {
      const std::size_t lo = (a + n - j) % n, hi = (a + j) % n;
      for (const std::size_t b : a >= j ? std::array<std::size_t, 2>{lo, hi} : std::array<std::size_t, 2>{hi, lo})
        if (std::find(order.begin(), order.end(), b) == order.end()) order.push_back(b);
    }
    for (const std::size_t b : order)
      if (b > a) lattice.emplace_back(a, b);
  }
  for (const auto& edge : lattice) {
    const std::size_t u = edge.first;
    if (!random::bernoulli(gen, p)) continue;
    if (g.adj[u].size() >= n - 1) continue;
    std::size_t w = random::uniform_index(gen, n);
    while (w == u || g.has_edge(u, w)) w = random::uniform_index(gen, n);
    g.add_edge(u, w);
  }
  return detail::dag_from_pairs(n, g.pairs());
}

/// Barabasi-Albert preferential attachment, as networkx.barabasi_albert_graph: start from the star
/// 0 -- 1..m, then every new vertex s = m+1, ..., n-1 attaches to m distinct earlier vertices drawn
/// with probability proportional to their degree. m(n - m) edges, each old -> new.
/// Requires 1 <= m < n, else value_error; n > max_dag_vertices or m(n - m) edges that cannot fit
/// in memory: value_error before anything is allocated. O(n m) expected.
inline Dag barabasi_albert(std::size_t n, std::size_t m, Generator& gen) {
  if (m < 1 || m >= n)
    DEEPSTRUCT_THROW(value_error, "barabasi_albert: expected 1 <= m < n, found m = " + std::to_string(m) + ", n = " + std::to_string(n));
  // m(n - m) edges, each also kept as a pair and twice in the degree list (16 + 16 bytes).
  detail::check_graph_size("barabasi_albert", n, 1.5 * static_cast<double>(m) * static_cast<double>(n - m));
  std::vector<std::pair<std::size_t, std::size_t>> pairs;
  pairs.reserve(m * (n - m));
  std::vector<std::size_t> repeated;  // every vertex once per incident edge
  repeated.reserve(2 * m * (n - m));
  for (std::size_t i = 1; i <= m; ++i) {
    pairs.emplace_back(0, i);
    repeated.push_back(0);
    repeated.push_back(i);
  }
  std::vector<std::size_t> targets;
  for (std::size_t s = m + 1; s < n; ++s) {
    targets.clear();
    while (targets.size() < m) {
      const std::size_t x = repeated[random::uniform_index(gen, repeated.size())];
      if (std::find(targets.begin(), targets.end(), x) == targets.end()) targets.push_back(x);
    }
    for (const std::size_t t : targets) {
      pairs.emplace_back(t, s);
      repeated.push_back(t);
      repeated.push_back(s);
    }
  }
  return detail::dag_from_pairs(n, std::move(pairs));
}

}  // namespace deepstruct
