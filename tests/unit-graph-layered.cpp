// Tests of <deepstruct/graph/layered.hpp>.
#include <deepstruct/graph/layered.hpp>

#include <boost/graph/compressed_sparse_row_graph.hpp>
#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "graph_test_support.hpp"
#include "test_support.hpp"

using test::dag_from_json;

namespace {

// What the view answers, by brute force from the edge list and the layer of every vertex.
struct Brute {
  std::map<std::pair<std::size_t, std::size_t>, std::size_t> count;
  explicit Brute(const nlohmann::json& c, const std::vector<std::size_t>& layer) {
    std::set<std::pair<std::size_t, std::size_t>> distinct;
    for (const auto& e : c["edges"]) distinct.emplace(e[0].get<std::size_t>(), e[1].get<std::size_t>());
    for (const auto& [u, v] : distinct) ++count[{layer[u], layer[v]}];
  }
};

}  // namespace

TEST_CASE("LayeredView: layers and vertex order as deepstruct's CachedLayeredGraph", "[graph][layered]") {
  const auto fixture = test::load_json("layer_index.json");
  for (const auto& c : fixture["cases"]) {
    INFO(c["name"].get<std::string>());
    const deepstruct::LayeredView view(dag_from_json(c));
    const auto layer = c["layer"].get<std::vector<std::size_t>>();
    const auto& order = c["deepstruct_vertex_order"];
    REQUIRE(view.num_vertices() == layer.size());
    CHECK(view.layer_index() == layer);
    REQUIRE(view.num_layers() == order.size());
    std::vector<std::size_t> sizes;
    for (std::size_t l = 0; l < view.num_layers(); ++l) {
      const auto expected = order[std::to_string(l)].get<std::vector<std::size_t>>();
      CHECK(view.vertices(l) == expected);
      CHECK(view.layer_size(l) == expected.size());
      sizes.push_back(expected.size());
      for (std::size_t i = 0; i < expected.size(); ++i) {
        CHECK(view.layer_of(expected[i]) == l);
        CHECK(view.position_in_layer(expected[i]) == i);
      }
    }
    CHECK(view.layer_sizes() == sizes);
  }
}

TEST_CASE("LayeredView: connections, counts, densities and masks between layers", "[graph][layered]") {
  const auto fixture = test::load_json("layer_index.json");
  for (const auto& c : fixture["cases"]) {
    INFO(c["name"].get<std::string>());
    const deepstruct::Dag g = dag_from_json(c);
    const deepstruct::LayeredView view(g);
    const Brute brute(c, view.layer_index());
    const std::size_t L = view.num_layers();

    // connections(): exactly the connected pairs, by target then source.
    std::vector<std::pair<std::size_t, std::size_t>> listed, expected;
    for (const auto& conn : view.connections()) {
      listed.emplace_back(conn.target, conn.source);
      CHECK(conn.edges == brute.count.at({conn.source, conn.target}));
    }
    for (const auto& [st, n] : brute.count) expected.emplace_back(st.second, st.first);
    std::sort(expected.begin(), expected.end());
    CHECK(listed == expected);

    std::size_t total = 0;
    for (std::size_t s = 0; s < L; ++s)
      for (std::size_t t = 0; t < L; ++t) {
        const auto it = brute.count.find({s, t});
        const std::size_t n = it == brute.count.end() ? 0 : it->second;
        CHECK(view.connection_count(s, t) == n);
        CHECK(view.connected(s, t) == (n > 0));
        CHECK(view.connection_density(s, t) == Approx(double(n) / double(view.layer_size(s) * view.layer_size(t))));
        if (s >= t) CHECK(n == 0);
        const auto m = view.mask(s, t);
        REQUIRE(m.rows() == Eigen::Index(view.layer_size(t)));
        REQUIRE(m.cols() == Eigen::Index(view.layer_size(s)));
        CHECK(std::size_t(m.count()) == n);
        for (Eigen::Index i = 0; i < m.rows(); ++i)
          for (Eigen::Index j = 0; j < m.cols(); ++j)
            CHECK(m(i, j) == edge(view.vertices(s)[std::size_t(j)], view.vertices(t)[std::size_t(i)], g).second);
        total += n;
      }
    std::size_t distinct = 0;
    for (const auto& [st, n] : brute.count) distinct += n;
    CHECK(total == distinct);
  }
}

TEST_CASE("LayeredView: parallel edges count once; successors", "[graph][layered]") {
  deepstruct::Dag g(4);
  add_edge(0, 2, g);
  add_edge(0, 2, g);  // parallel
  add_edge(1, 2, g);
  add_edge(2, 3, g);
  add_edge(0, 3, g);
  const deepstruct::LayeredView view(g);
  CHECK(view.num_layers() == 3);
  CHECK(view.connection_count(0, 1) == 2);
  CHECK(view.connection_count(0, 2) == 1);
  CHECK(view.connection_density(0, 1) == 1.0);
  CHECK(view.connection_density(0, 2) == 0.5);
  CHECK(view.successors(0) == std::vector<std::size_t>{2, 3});
  const auto m = view.mask(0, 1);
  CHECK(m.rows() == 1);
  CHECK(m.cols() == 2);
  CHECK(m.all());
}

TEST_CASE("LayeredView: bad arguments and cycles", "[graph][layered]") {
  deepstruct::Dag g(3);
  add_edge(0, 1, g);
  const deepstruct::LayeredView view(g);
  CHECK_THROWS_AS(view.vertices(2), deepstruct::value_error);
  CHECK_THROWS_AS(view.layer_of(3), deepstruct::value_error);
  CHECK_THROWS_AS(view.mask(0, 5), deepstruct::value_error);
  CHECK_THROWS_AS(view.connection_count(7, 0), deepstruct::value_error);
  add_edge(1, 0, g);
  CHECK_THROWS_AS(deepstruct::LayeredView(g), deepstruct::not_a_dag);

  const deepstruct::LayeredView empty{deepstruct::Dag{}};
  CHECK(empty.num_layers() == 0);
  CHECK(empty.connections().empty());
}

TEST_CASE("LayeredView: built from a compressed_sparse_row_graph", "[graph][layered]") {
  using Csr = boost::compressed_sparse_row_graph<boost::directedS>;
  const auto c = test::load_json("layer_index.json")["cases"][2];
  std::vector<std::pair<std::size_t, std::size_t>> edges;
  for (const auto& e : c["edges"]) edges.emplace_back(e[0].get<std::size_t>(), e[1].get<std::size_t>());
  const Csr csr(boost::edges_are_unsorted_multi_pass, edges.begin(), edges.end(), c["num_nodes"].get<std::size_t>());
  const deepstruct::LayeredView a(csr), b(dag_from_json(c));
  REQUIRE(a.num_layers() == b.num_layers());
  for (std::size_t s = 0; s < a.num_layers(); ++s) {
    CHECK(a.vertices(s) == b.vertices(s));
    for (std::size_t t = s + 1; t < a.num_layers(); ++t) CHECK(a.mask(s, t) == b.mask(s, t));
  }
}
