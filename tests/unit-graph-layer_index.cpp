// Tests of <deepstruct/graph/layer_index.hpp>.
#include <deepstruct/graph/layer_index.hpp>

#include <boost/graph/compressed_sparse_row_graph.hpp>
#include <utility>

#include "graph_test_support.hpp"
#include "test_support.hpp"

using test::dag_from_json;

TEST_CASE("layer_index: the longest path from a source, as deepstruct", "[graph][layer_index]") {
  const auto fixture = test::load_json("layer_index.json");
  REQUIRE(fixture["cases"].size() == 3);
  for (const auto& c : fixture["cases"]) {
    INFO(c["name"].get<std::string>());
    const deepstruct::Dag g = dag_from_json(c);
    CHECK(deepstruct::layer_index(g) == c["layer"].get<std::vector<std::size_t>>());
  }
}

TEST_CASE("layer_index: assign_layers stores the layer in the vertex bundle", "[graph][layer_index]") {
  const auto c = test::load_json("layer_index.json")["cases"][1];
  deepstruct::Dag g = dag_from_json(c);
  deepstruct::assign_layers(g);
  const auto expected = c["layer"].get<std::vector<std::size_t>>();
  for (std::size_t v = 0; v < expected.size(); ++v) CHECK(g[v].layer == expected[v]);
}

TEST_CASE("layer_index: a cycle throws not_a_dag naming a vertex on it", "[graph][layer_index]") {
  const auto c = test::load_json("layer_index.json")["cyclic_must_fail"];
  const deepstruct::Dag g = dag_from_json(c);
  try {
    deepstruct::layer_index(g);
    FAIL("expected not_a_dag");
  } catch (const deepstruct::not_a_dag& e) {
    CHECK(e.vertex() < 3);  // all three vertices lie on the cycle
    CHECK(std::string(e.what()).find("cycle") != std::string::npos);
  }

  // A cycle hanging behind an acyclic part: 0 -> 1 -> 2 -> 3 -> 1, and 3 -> 4. Only 1, 2, 3 are on it.
  deepstruct::Dag h(5);
  for (auto [u, v] : {std::pair{0, 1}, {1, 2}, {2, 3}, {3, 1}, {3, 4}}) add_edge(u, v, h);
  try {
    deepstruct::layer_index(h);
    FAIL("expected not_a_dag");
  } catch (const deepstruct::not_a_dag& e) {
    CHECK(e.vertex() >= 1);
    CHECK(e.vertex() <= 3);
  }

  deepstruct::Dag self_loop(2);
  add_edge(0, 1, self_loop);
  add_edge(1, 1, self_loop);
  try {
    deepstruct::layer_index(self_loop);
    FAIL("expected not_a_dag");
  } catch (const deepstruct::not_a_dag& e) {
    CHECK(e.vertex() == 1);
  }
}

TEST_CASE("layer_index: empty and edgeless graphs", "[graph][layer_index]") {
  CHECK(deepstruct::layer_index(deepstruct::Dag{}).empty());
  CHECK(deepstruct::layer_index(deepstruct::Dag(4)) == std::vector<std::size_t>(4, 0));
}

TEST_CASE("layer_index: any graph modelling the concepts, e.g. compressed_sparse_row_graph", "[graph][layer_index]") {
  using Csr = boost::compressed_sparse_row_graph<boost::directedS>;
  const auto fixture = test::load_json("layer_index.json");
  for (const auto& c : fixture["cases"]) {
    INFO(c["name"].get<std::string>());
    std::vector<std::pair<std::size_t, std::size_t>> edges;
    for (const auto& e : c["edges"]) edges.emplace_back(e[0].get<std::size_t>(), e[1].get<std::size_t>());
    const Csr g(boost::edges_are_unsorted_multi_pass, edges.begin(), edges.end(), c["num_nodes"].get<std::size_t>());
    CHECK(deepstruct::layer_index(g) == c["layer"].get<std::vector<std::size_t>>());
  }
  // ... and adjacency_list with a plain (non-bundled) vertex set and vecS out-edges.
  using Plain = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;
  Plain p(3);
  add_edge(2, 0, p);
  add_edge(0, 1, p);
  CHECK(deepstruct::layer_index(p) == std::vector<std::size_t>{1, 2, 0});
  add_edge(1, 2, p);
  CHECK_THROWS_AS(deepstruct::layer_index(p), deepstruct::not_a_dag);
}
