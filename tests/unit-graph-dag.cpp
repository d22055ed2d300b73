// Tests of <deepstruct/graph/dag.hpp>.
#include <deepstruct/graph/dag.hpp>

#include <type_traits>

#include "test_support.hpp"

TEST_CASE("Dag: vertex descriptors are the ids, bundles default to layer 0 and weight 1", "[graph][dag]") {
  static_assert(std::is_same_v<deepstruct::DagVertex, std::size_t>, "vecS vertex descriptors are indices");
  deepstruct::Dag g(3);
  const auto [e, added] = add_edge(0, 2, g);
  REQUIRE(added);
  CHECK(num_vertices(g) == 3);
  CHECK(num_edges(g) == 1);
  CHECK(g[e].weight == 1.0);
  CHECK(g[2].layer == 0);
  CHECK(source(e, g) == 0);
  CHECK(target(e, g) == 2);
  CHECK(in_degree(2, g) == 1);  // bidirectional: in-edges are available
  g[e].weight = -0.5;
  g[2].layer = 1;
  CHECK(g[edge(0, 2, g).first].weight == -0.5);
  CHECK(g[2].layer == 1);
  add_edge(1, 2, deepstruct::EdgeProperties{0.25}, g);
  CHECK(g[edge(1, 2, g).first].weight == 0.25);
}
