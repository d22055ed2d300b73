// Tests of <deepstruct/graph/models.hpp>: DAG -> MaskedDeepDAN (parity through the graph path),
// generate_structure round trips (also after pruning), FFN structure, ScalableDAN networks.
#include <deepstruct/graph/generators.hpp>
#include <deepstruct/graph/layer_index.hpp>
#include <deepstruct/graph/models.hpp>
#include <deepstruct/compact.hpp>
#include <deepstruct/prune.hpp>

#include <set>

#include "test_support.hpp"

using deepstruct::Dag;

namespace {

using EdgeSet = std::set<std::pair<std::size_t, std::size_t>>;

EdgeSet edges_of(const Dag& g) {
  EdgeSet s;
  for (auto [e, end] = boost::edges(g); e != end; ++e) s.insert({boost::source(*e, g), boost::target(*e, g)});
  return s;
}

Dag dag_from_json(const nlohmann::json& c) {
  Dag g(c["num_nodes"].get<std::size_t>());
  for (const auto& e : c["edges"]) boost::add_edge(e[0].get<std::size_t>(), e[1].get<std::size_t>(), g);
  return g;
}


// generate_structure's hidden vertices mapped back to the ids of the DAG the network came from.
EdgeSet mapped_structure(const deepstruct::MaskedDeepDAN<float>& model) {
  std::vector<std::size_t> ids;
  const Dag back = deepstruct::generate_structure(model, {}, &ids);
  REQUIRE(ids.size() == boost::num_vertices(back));
  EdgeSet s;
  for (const auto& e : edges_of(back)) s.insert({ids[e.first], ids[e.second]});
  return s;
}

}  // namespace

TEST_CASE("graph/models: make_dan on the fixtures' graphs gives deepstruct's networks", "[graph][models][parity]") {
  const nlohmann::json fixture = test::load_json("masked_dan.json");
  for (const auto& c : fixture["cases"]) {
    const Dag g = dag_from_json(c);
    auto model = deepstruct::make_dan<float>(c["inputs"].get<Eigen::Index>(), c["outputs"].get<Eigen::Index>(), g);
    REQUIRE(model.num_hidden_layers() == c["layers"].size());
    for (std::size_t t = 0; t < model.num_hidden_layers(); ++t) {
      std::vector<std::size_t> expected;
      for (const auto& v : c["layers"][std::to_string(t)]) expected.push_back(v.get<std::size_t>());
      CHECK(model.layer_vertices(t) == expected);
    }
    model.load_state_dict(test::state_dict<float>(c["state_dict"]));  // also checks every mask shape
    const auto sd = test::state_dict<float>(c["state_dict"]);
    for (const auto& kv : sd.masks) CHECK(model.state_dict().masks.at(kv.first) == kv.second);
    const Eigen::MatrixXf x = test::matrix<float>(c["x"]).transpose();
    CHECK(test::max_rel_diff(model.forward(x).cast<double>(), test::matrix<double>(c["output_float32"]).transpose().eval()) <= 1e-5);
  }
}

TEST_CASE("graph/models: DAG -> DAN -> generate_structure is the DAG, also after pruning", "[graph][models]") {
  deepstruct::Generator gen(11);
  for (int trial = 0; trial < 3; ++trial) {
    const Dag g = deepstruct::watts_strogatz(60, 4, 0.5, gen);
    auto model = deepstruct::make_dan<float>(20, 4, g);
    CHECK(mapped_structure(model) == edges_of(g));
    // Every hidden neuron is a vertex, also isolated ones.
    CHECK(boost::num_vertices(deepstruct::generate_structure(model)) == boost::num_vertices(g));
    // Prune the hidden connections: the structure is the pruned DAG.
    std::vector<deepstruct::MaskedLinear<float>*> hidden;
    for (std::size_t t = 1; t < model.num_hidden_layers(); ++t) hidden.push_back(&model.main_layer(t));
    for (auto& s : model.skips()) hidden.push_back(&s.layer);
    deepstruct::prune_global(hidden, deepstruct::PruneAmount::fraction(0.5));
    const EdgeSet pruned = mapped_structure(model);
    Eigen::Index active = 0;
    for (const auto* l : hidden) active += l->nnz();
    CHECK(static_cast<Eigen::Index>(pruned.size()) == active);
    for (const auto& e : pruned) CHECK(edges_of(g).count(e) == 1);
    // With inputs and outputs: the dense first and last layers appear as complete bipartite edges.
    deepstruct::StructureOptions io;
    io.include_input = io.include_output = true;
    const Dag full = deepstruct::generate_structure(model, io);
    CHECK(boost::num_vertices(full) == 20 + boost::num_vertices(g) + 4);
    CHECK(boost::num_edges(full) ==
          pruned.size() + std::size_t(model.layer_first().nnz()) + std::size_t(model.layer_out().nnz()));
  }
}

TEST_CASE("graph/models: generate_structure of a MaskedDeepFFN matches deepstruct", "[graph][models][parity]") {
  const nlohmann::json fixture = test::load_json("ffn_structure.json");
  for (const auto& c : fixture["cases"]) {
    std::vector<Eigen::Index> hidden;
    for (const auto& h : c["hidden"]) hidden.push_back(h.get<Eigen::Index>());
    deepstruct::MaskedDeepFFN<float> model(c["inputs"].get<Eigen::Index>(), c["outputs"].get<Eigen::Index>(), hidden);
    for (std::size_t k = 0; k < model.num_layers(); ++k) model.layer(k).set_mask(test::mask(c["masks"][k]));
    EdgeSet expected;
    for (const auto& e : c["edges_with_input_output"]) expected.insert({e[0].get<std::size_t>(), e[1].get<std::size_t>()});
    deepstruct::StructureOptions io;
    io.include_input = io.include_output = true;
    CHECK(edges_of(deepstruct::generate_structure(model, io)) == expected);
  }
}

TEST_CASE("graph/models: ScalableDAN grows blocks, keeps layers, never drops a vertex", "[graph][models][scalable]") {
  // 0 -> 1 -> 3, 0 -> 2 -> 3, 0 -> 3 (a skip).
  Dag base(4);
  for (auto [u, v] : std::vector<std::pair<int, int>>{{0, 1}, {1, 3}, {0, 2}, {2, 3}, {0, 3}}) boost::add_edge(u, v, base);
  const deepstruct::ScalableDAN family(base, {0.4, 0.3, 0.299, 0.001});
  CHECK(family.block_sizes(100) == std::vector<std::size_t>{40, 30, 30, 1});  // 0.1 rounds to 0: one neuron kept
  std::vector<std::vector<std::size_t>> blocks;
  const Dag grown = family.grow(100, &blocks);
  CHECK(boost::num_vertices(grown) == 101);
  CHECK(boost::num_edges(grown) == 40 * 30 + 30 * 1 + 40 * 30 + 30 * 1 + 40 * 1);
  const auto layers = deepstruct::layer_index(grown);
  const auto base_layers = deepstruct::layer_index(base);
  for (std::size_t v = 0; v < 4; ++v)
    for (std::size_t a : blocks[v]) CHECK(layers[a] == base_layers[v]);
  auto model = deepstruct::make_scalable_dan<float>(family, 10, 2, 100);
  CHECK(model.num_hidden_layers() == 3);
  CHECK(model.hidden_layer_size(1) == 60);
  CHECK(model.skips().size() == 1);
  CHECK(model.skips()[0].layer.density() == 1.0);
  CHECK_THROWS_AS(deepstruct::ScalableDAN(base, {0.5, 0.5, 0.5, -0.5}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::ScalableDAN(base, {0.5, 0.5}), deepstruct::shape_error);
  CHECK_THROWS_AS(family.grow(0), deepstruct::value_error);
  const deepstruct::ScalableDAN equal(base);
  CHECK(equal.block_sizes(8) == std::vector<std::size_t>{2, 2, 2, 2});
}

TEST_CASE("graph/models: analyze a model; dead neurons agree with compaction", "[graph][models][analysis]") {
  deepstruct::MaskedDeepFFN<double> model(8, 3, {10, 6});
  deepstruct::Generator gen(4);
  for (auto* l : model.maskable_layers()) {
    deepstruct::MaskedDeepFFN<double>::Mask m(l->out_features(), l->in_features());
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, 0.2);
    l->set_mask(m);
  }
  const deepstruct::StructureReport r = deepstruct::analyze(model);
  CHECK(r.vertices == 8 + 10 + 6 + 3);
  CHECK(r.edges == static_cast<std::size_t>(model.num_active_weights()));
  CHECK(r.layer_sizes == std::vector<std::size_t>{8, 10, 6, 3});
  CHECK(r.inputs == 8);
  CHECK(r.outputs == 3);
  // The dead hidden neurons are the ones compaction removes (the analysis also lists dead inputs
  // and outputs, which compaction keeps).
  std::size_t dead_hidden = 0;
  for (std::size_t v : r.dead_neurons) dead_hidden += (v >= 8 && v < 24);
  CHECK(static_cast<Eigen::Index>(dead_hidden) == deepstruct::compact(model).removed);

  const nlohmann::json fixture = test::load_json("masked_dan.json");
  auto dan = deepstruct::make_dan<float>(10, 3, dag_from_json(fixture["cases"][0]));
  const auto dr = deepstruct::analyze(dan);
  CHECK(dr.vertices == 10 + 24 + 3);
  CHECK(dr.depth == dan.num_hidden_layers() + 2);
  CHECK(dr.edges == static_cast<std::size_t>(dan.num_active_weights()));
  CHECK(nlohmann::json::parse(deepstruct::to_json(dr))["vertices"] == 37);
}
