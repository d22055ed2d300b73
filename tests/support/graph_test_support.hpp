// Helpers shared by the graph tests (they bring Boost.Graph, so they are not in test_support.hpp,
// which the model tests include): a graph's edges as a set, a Dag from a JSON fixture.
#pragma once

#include <deepstruct/graph/dag.hpp>

#include <cstddef>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace test {

using EdgeSet = std::set<std::pair<std::size_t, std::size_t>>;

/// The edges of g as (source, target) pairs, duplicates merged.
inline EdgeSet edge_set(const deepstruct::Dag& g) {
  EdgeSet s;
  for (auto [e, end] = boost::edges(g); e != end; ++e) s.emplace(boost::source(*e, g), boost::target(*e, g));
  return s;
}

/// The pairs of a JSON edge list [[u, v], ...].
inline EdgeSet edge_set(const nlohmann::json& list) {
  EdgeSet s;
  for (const auto& e : list) s.emplace(e[0].get<std::size_t>(), e[1].get<std::size_t>());
  return s;
}

/// The Dag of a fixture {"num_nodes": n, "edges": [[u, v], ...]}, edges in the fixture's order.
inline deepstruct::Dag dag_from_json(const nlohmann::json& c) {
  deepstruct::Dag g(c["num_nodes"].get<std::size_t>());
  for (const auto& e : c["edges"]) boost::add_edge(e[0].get<std::size_t>(), e[1].get<std::size_t>(), g);
  return g;
}

}  // namespace test
