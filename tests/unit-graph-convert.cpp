// Tests of <deepstruct/graph/convert.hpp>.
#include <deepstruct/graph/build.hpp>
#include <deepstruct/graph/convert.hpp>
#include <deepstruct/random.hpp>

#include <algorithm>
#include <set>
#include <utility>

#include "graph_test_support.hpp"
#include "test_support.hpp"

using test::EdgeSet;
using test::edge_set;

namespace {

deepstruct::LayerMask random_mask(Eigen::Index out, Eigen::Index in, double density, deepstruct::Generator& gen) {
  deepstruct::LayerMask m(out, in);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, density);
  return m;
}

}  // namespace

TEST_CASE("convert: a mask as a bipartite DAG and back", "[graph][convert]") {
  deepstruct::Generator gen(3);
  for (const auto& [out, in] : {std::pair<Eigen::Index, Eigen::Index>{4, 7}, {1, 1}, {5, 2}, {0, 3}, {3, 0}})
    for (const double density : {0.0, 0.4, 1.0}) {
      const deepstruct::LayerMask m = random_mask(out, in, density, gen);
      const deepstruct::Dag g = deepstruct::bipartite_from_mask(m);
      REQUIRE(num_vertices(g) == std::size_t(in + out));
      CHECK(num_edges(g) == std::size_t(m.count()));
      for (Eigen::Index o = 0; o < out; ++o)
        for (Eigen::Index i = 0; i < in; ++i) CHECK(edge(std::size_t(i), std::size_t(in + o), g).second == m(o, i));
      CHECK(deepstruct::mask_from_bipartite(g, std::size_t(in)) == m);
      if (m.rows() > 0 && m.cols() > 0 && m.colwise().any().all() && m.rowwise().any().all()) {
        // Every input feeds and every output is fed: the layers say the same.
        CHECK(deepstruct::LayeredView(g).mask(0, 1) == m);
      }
    }
}

TEST_CASE("convert: mask_from_bipartite rejects what is not input -> output", "[graph][convert]") {
  deepstruct::Dag g(4);
  add_edge(0, 2, g);
  CHECK_THROWS_AS(deepstruct::mask_from_bipartite(g, 5), deepstruct::value_error);
  add_edge(2, 3, g);  // output -> output
  CHECK_THROWS_AS(deepstruct::mask_from_bipartite(g, 2), deepstruct::value_error);
  try {
    deepstruct::mask_from_bipartite(g, 2);
  } catch (const deepstruct::value_error& e) {
    CHECK(std::string(e.what()).find("2 -> 3") != std::string::npos);
  }
}

TEST_CASE("convert: ffn_structure matches deepstruct's generate_structure", "[graph][convert]") {
  const auto fixture = test::load_json("ffn_structure.json");
  REQUIRE(fixture["cases"].size() == 2);
  for (const auto& c : fixture["cases"]) {
    std::vector<deepstruct::LayerMask> masks;
    for (const auto& m : c["masks"]) masks.push_back(test::mask(m));
    const auto inputs = c["inputs"].get<std::size_t>(), outputs = c["outputs"].get<std::size_t>();
    const auto hidden = c["hidden"].get<std::vector<std::size_t>>();
    std::size_t hidden_total = 0;
    for (const std::size_t h : hidden) hidden_total += h;

    const deepstruct::Dag full = deepstruct::ffn_structure(masks, {true, true});
    CHECK(num_vertices(full) == inputs + hidden_total + outputs);
    CHECK(edge_set(full) == edge_set(c["edges_with_input_output"]));
    CHECK(num_edges(full) == c["edges_with_input_output"].size());

    // deepstruct's default: hidden neurons only, the first hidden layer starting at id 0.
    const deepstruct::Dag hid = deepstruct::ffn_structure(masks);
    CHECK(num_vertices(hid) == hidden_total);
    CHECK(edge_set(hid) == edge_set(c["edges_hidden_only"]));

    // The mixed cases follow by shifting ids: without inputs every id moves down by `inputs`.
    EdgeSet shifted;
    for (const auto& [u, v] : edge_set(c["edges_with_input_output"]))
      if (u >= inputs) shifted.emplace(u - inputs, v - inputs);
    const deepstruct::Dag no_input = deepstruct::ffn_structure(masks, {false, true});
    CHECK(num_vertices(no_input) == hidden_total + outputs);
    CHECK(edge_set(no_input) == shifted);
    EdgeSet no_out;
    for (const auto& [u, v] : edge_set(c["edges_with_input_output"]))
      if (v < inputs + hidden_total) no_out.emplace(u, v);
    const deepstruct::Dag no_output = deepstruct::ffn_structure(masks, {true, false});
    CHECK(num_vertices(no_output) == inputs + hidden_total);
    CHECK(edge_set(no_output) == no_out);

    // Layers of the full structure: a neuron with no path from an input may sit lower, but every edge climbs.
    const auto layer = deepstruct::layer_index(full);
    for (const auto& [u, v] : edge_set(full)) CHECK(layer[u] < layer[v]);
  }
}

TEST_CASE("convert: ffn_structure of a single layer and bad stacks", "[graph][convert]") {
  deepstruct::LayerMask m(2, 3);
  m << true, false, true, false, true, false;
  CHECK(edge_set(deepstruct::ffn_structure({m}, {true, true})) == edge_set(deepstruct::bipartite_from_mask(m)));
  CHECK(num_vertices(deepstruct::ffn_structure({m})) == 0);
  CHECK(num_vertices(deepstruct::ffn_structure({m}, {true, false})) == 3);
  CHECK(num_edges(deepstruct::ffn_structure({m}, {true, false})) == 0);
  CHECK(num_vertices(deepstruct::ffn_structure({m}, {false, true})) == 2);

  CHECK_THROWS_AS(deepstruct::ffn_structure({}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::ffn_structure({m, deepstruct::LayerMask(4, 3)}), deepstruct::shape_error);
  CHECK_NOTHROW(deepstruct::ffn_structure({m, deepstruct::LayerMask::Ones(4, 2)}));
}

TEST_CASE("convert: masks naming more neurons than a graph can hold are refused before allocating", "[graph][convert][robustness]") {
  // An empty mask holds no byte but names its neurons: these asked for a Dag of 2^44 vertices
  // (std::bad_alloc at best, the OOM killer at worst) instead of a value_error.
  const Eigen::Index huge = Eigen::Index{1} << 44;
  CHECK_THROWS_WITH(deepstruct::bipartite_from_mask(deepstruct::LayerMask(0, huge)),
                    test::contains("bipartite_from_mask: expected at most 2^31 - 1 = 2147483647 vertices, found n = " + std::to_string(huge)));
  CHECK_THROWS_WITH(deepstruct::ffn_structure({deepstruct::LayerMask(0, huge)}, {true, true}),
                    test::contains("ffn_structure: expected at most 2^31 - 1 = 2147483647 neurons, found " + std::to_string(huge) +
                                   " in neuron layers 0..0 alone"));
  // Neuron layers 0, 1.5e9, 0, 1.5e9, 0: each fits, together they do not.
  const Eigen::Index wide = 1500000000;
  const std::vector<deepstruct::LayerMask> stack = {deepstruct::LayerMask(wide, 0), deepstruct::LayerMask(0, wide),
                                                    deepstruct::LayerMask(wide, 0), deepstruct::LayerMask(0, wide)};
  CHECK_THROWS_WITH(deepstruct::ffn_structure(stack, {true, true}), test::contains("found 3000000000 in neuron layers 0..3 alone"));
  // Within the vertex limit, beyond this machine's memory (96 bytes a vertex at least): the
  // hidden layer of 2^31 - 1 neurons between two empty masks (206 GB at least).
  CHECK_THROWS_WITH(deepstruct::ffn_structure({deepstruct::LayerMask(2147483647, 0), deepstruct::LayerMask(0, 2147483647)}),
                    test::contains("ffn_structure: a graph of 2147483647 vertices"));
  // What fits is unaffected.
  CHECK(num_vertices(deepstruct::bipartite_from_mask(deepstruct::LayerMask(0, 1000))) == 1000);
  CHECK(num_vertices(deepstruct::ffn_structure({deepstruct::LayerMask::Ones(3, 1000), deepstruct::LayerMask::Ones(2, 3)}, {true, true})) == 1005);
}

TEST_CASE("build: dag_from_edges refuses ids outside [0, n), self loops and cycles, naming the edge as given", "[graph][build]") {
  using Signed = std::vector<std::pair<int, int>>;
  using Unsigned = std::vector<std::pair<std::size_t, std::size_t>>;
  // A negative id of a signed pair was printed as 18446744073709551615.
  CHECK_THROWS_WITH(deepstruct::dag_from_edges(3, Signed{{0, 1}, {-1, 2}}),
                    test::contains("expected vertex ids in [0, 3), found edge 1 (-1, 2)"));
  CHECK_THROWS_WITH(deepstruct::dag_from_edges(3, Unsigned{{0, 3}}), test::contains("expected vertex ids in [0, 3), found edge 0 (0, 3)"));
  CHECK_THROWS_WITH(deepstruct::dag_from_edges(3, Signed{{0, 1}, {2, 2}}), test::contains("expected no self loop, found edge 1 (2, 2)"));
  CHECK_THROWS_AS(deepstruct::dag_from_edges(3, Signed{{0, 1}, {1, 2}, {2, 0}}), deepstruct::not_a_dag);
  const deepstruct::Dag g = deepstruct::dag_from_edges(3, Signed{{0, 2}, {1, 2}, {0, 2}});
  CHECK(num_edges(g) == 3);  // duplicates kept
  CHECK(g[2].layer == 1);
}

TEST_CASE("build: a cycle is named as the caller knows it - dag_from_edges, and DagBuilder by label", "[graph][build]") {
  // Both said "layer_index: ... through vertex 0": a function the caller never called, and for the
  // builder an id where the caller wrote labels (here "1", as no label is "0").
  using Unsigned = std::vector<std::pair<std::size_t, std::size_t>>;
  CHECK_THROWS_WITH(deepstruct::dag_from_edges(3, Unsigned{{0, 1}, {1, 2}, {2, 1}}),
                    Catch::Matchers::StartsWith("dag_from_edges: expected a directed acyclic graph, found a cycle through vertex "));
  deepstruct::DagBuilder b;
  b.add_edge(1, 2);
  b.add_edge(2, 3);
  b.add_edge(3, 1);
  b.add_edge("in", 1);
  try {
    b.build();
    FAIL("expected not_a_dag");
  } catch (const deepstruct::not_a_dag& e) {
    CHECK(e.vertex() == 0);
    CHECK(std::string(e.what()) == "DagBuilder::build: expected a directed acyclic graph, found a cycle through '1' (vertex 0)");
  }
}

TEST_CASE("convert: masks larger than memory are value_error before allocating", "[graph][convert][robustness]") {
  // Two layers of a million neurons, 0 -> each of layer 1: a 1e6 x 1e6 mask is 1 TB. These ended
  // in std::bad_alloc (or, for masks just under the memory, in the OOM killer).
  const std::size_t half = 1000000;
  std::vector<std::pair<std::size_t, std::size_t>> edges;
  for (std::size_t v = half; v < 2 * half; ++v) edges.emplace_back(0, v);
  const deepstruct::Dag g = deepstruct::dag_from_edges(2 * half, edges);
  const deepstruct::LayeredView view(g);
  REQUIRE(view.layer_sizes() == std::vector<std::size_t>{half, half});
  CHECK_THROWS_WITH(deepstruct::dan_description(view), test::contains("dan_description: a description with 1 masks of 1e+12 entries in all needs at least") &&
                                                           test::contains("of physical memory of this machine"));
  CHECK_THROWS_WITH(view.mask(0, 1), test::contains("LayeredView::mask: the mask of layers 0 -> 1 (1000000 x 1000000) needs at least"));
  CHECK_THROWS_WITH(deepstruct::mask_from_bipartite(g, half), test::contains("mask_from_bipartite: a mask of 1000000 x 1000000 needs at least"));
}

TEST_CASE("convert: dan_description matches deepstruct's MaskedDeepDAN", "[graph][convert]") {
  const auto fixture = test::load_json("masked_dan.json");
  REQUIRE(fixture["cases"].size() == 2);
  for (const auto& c : fixture["cases"]) {
    deepstruct::Dag g(c["num_nodes"].get<std::size_t>());
    for (const auto& e : c["edges"]) add_edge(e[0].get<std::size_t>(), e[1].get<std::size_t>(), g);
    const deepstruct::DanDescription d = deepstruct::dan_description(g);
    CHECK_NOTHROW(deepstruct::check_dan_description(d));

    const auto& layers = c["layers"];
    REQUIRE(d.layer_sizes.size() == layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto expected = layers[std::to_string(l)].get<std::vector<std::size_t>>();
      CHECK(d.layer_vertices[l] == expected);
      CHECK(d.layer_sizes[l] == expected.size());
    }

    const auto& sd = c["state_dict"];
    std::size_t skip = 0;
    std::vector<std::size_t> main_seen;
    for (const auto& conn : d.connections) {
      const std::string key = conn.source_layer + 1 == conn.target_layer
                                  ? "layers_main_hidden." + std::to_string(conn.target_layer - 1) + "._mask"
                                  : "layers_skip_hidden." + std::to_string(skip) + "._mask";
      INFO(key);
      if (conn.source_layer + 1 == conn.target_layer) {
        main_seen.push_back(conn.target_layer);
      } else {
        REQUIRE(skip < c["skip_layers"].size());
        const auto& expected = c["skip_layers"][skip];
        CHECK(conn.source_layer == expected["source_layer"].get<std::size_t>());
        CHECK(conn.target_layer == expected["target_layer"].get<std::size_t>());
        ++skip;
      }
      REQUIRE(sd.contains(key));
      const deepstruct::LayerMask expected_mask = test::matrix<double>(sd[key]).array() != 0.0;
      CHECK(conn.mask == expected_mask);
    }
    CHECK(skip == c["skip_layers"].size());
    std::vector<std::size_t> all_targets(layers.size() - 1);
    for (std::size_t t = 0; t < all_targets.size(); ++t) all_targets[t] = t + 1;
    CHECK(main_seen == all_targets);
  }
}

TEST_CASE("convert: dan_description keeps an empty main connection and rejects empty graphs", "[graph][convert]") {
  CHECK_THROWS_AS(deepstruct::dan_description(deepstruct::Dag{}), deepstruct::value_error);
  deepstruct::Dag cyclic(2);
  add_edge(0, 1, cyclic);
  add_edge(1, 0, cyclic);
  CHECK_THROWS_AS(deepstruct::dan_description(cyclic), deepstruct::not_a_dag);

  // A single layer: no connections.
  const auto single = deepstruct::dan_description(deepstruct::Dag(3));
  CHECK(single.layer_sizes == std::vector<std::size_t>{3});
  CHECK(single.connections.empty());

  // 0 -> 1 -> 2 and 0 -> 2: layers {0}, {1}, {2}; connections (0,1), (0,2) skip, (1,2) main.
  deepstruct::Dag g(3);
  add_edge(0, 1, g);
  add_edge(1, 2, g);
  add_edge(0, 2, g);
  const auto d = deepstruct::dan_description(g);
  REQUIRE(d.connections.size() == 3);
  CHECK(d.connections[0].source_layer == 0);
  CHECK(d.connections[0].target_layer == 1);
  CHECK(d.connections[1].source_layer == 0);
  CHECK(d.connections[1].target_layer == 2);
  CHECK(d.connections[2].source_layer == 1);
  CHECK(d.connections[2].target_layer == 2);
  for (const auto& conn : d.connections) CHECK(conn.mask.all());
}

TEST_CASE("convert: the builders store the natural layer of every neuron", "[graph][convert]") {
  auto stored = [](const deepstruct::Dag& g) {
    std::vector<std::size_t> l(num_vertices(g));
    for (std::size_t v = 0; v < l.size(); ++v) l[v] = g[v].layer;
    return l;
  };
  // bipartite: inputs 0, outputs 1, also without any edge.
  CHECK(stored(deepstruct::bipartite_from_mask(deepstruct::LayerMask::Constant(2, 3, false))) ==
        std::vector<std::size_t>{0, 0, 0, 1, 1});
  // FFN 2-3-2-1 with an empty second mask: layer_index would flatten it, the stored layers do not.
  const std::vector<deepstruct::LayerMask> masks = {deepstruct::LayerMask::Constant(3, 2, true), deepstruct::LayerMask::Constant(2, 3, false),
                                                    deepstruct::LayerMask::Constant(1, 2, true)};
  CHECK(stored(deepstruct::ffn_structure(masks, {true, true})) == std::vector<std::size_t>{0, 0, 1, 1, 1, 2, 2, 3});
  CHECK(stored(deepstruct::ffn_structure(masks, {false, true})) == std::vector<std::size_t>{0, 0, 0, 1, 1, 2});
  CHECK(stored(deepstruct::ffn_structure(masks, {true, false})) == std::vector<std::size_t>{0, 0, 1, 1, 1, 2, 2});
  CHECK(stored(deepstruct::ffn_structure(masks)) == std::vector<std::size_t>{0, 0, 0, 1, 1});
  CHECK(deepstruct::layer_index(deepstruct::ffn_structure(masks, {true, true})) == std::vector<std::size_t>{0, 0, 1, 1, 1, 0, 0, 1});
}
