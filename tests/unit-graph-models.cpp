// Tests of <deepstruct/graph/models.hpp>: DAG -> MaskedDeepDAN (parity through the graph path),
// generate_structure round trips (also after pruning), FFN structure, ScalableDAN networks, the
// analysis of a pruned DAN (dead neurons).
#include <deepstruct/graph/generators.hpp>
#include <deepstruct/graph/layer_index.hpp>
#include <deepstruct/graph/models.hpp>
#include <deepstruct/compact.hpp>
#include <deepstruct/prune.hpp>

#include <algorithm>
#include <limits>
#include <set>

#include "graph_test_support.hpp"
#include "test_support.hpp"

using test::dag_from_json;
using test::EdgeSet;
using test::edge_set;

using deepstruct::Dag;

namespace {

// generate_structure's hidden vertices mapped back to the ids of the DAG the network came from.
EdgeSet mapped_structure(const deepstruct::MaskedDeepDAN<float>& model) {
  std::vector<std::size_t> ids;
  const Dag back = deepstruct::generate_structure(model, {}, &ids);
  REQUIRE(ids.size() == boost::num_vertices(back));
  EdgeSet s;
  for (const auto& e : edge_set(back)) s.insert({ids[e.first], ids[e.second]});
  return s;
}

// The position of DAG vertex v in hidden layer t of the model (its mask row or column).
Eigen::Index position(const deepstruct::MaskedDeepDAN<double>& model, std::size_t t, std::size_t v) {
  const auto& vs = model.layer_vertices(t);
  const auto it = std::find(vs.begin(), vs.end(), v);
  REQUIRE(it != vs.end());
  return static_cast<Eigen::Index>(it - vs.begin());
}

// The DAG ids of a report's dead hidden neurons, through generate_structure's original_ids.
std::set<std::size_t> dead_ids(const deepstruct::StructureReport& r, const std::vector<std::size_t>& ids) {
  std::set<std::size_t> s;
  for (std::size_t v : r.dead_neurons)
    if (ids.at(v) != deepstruct::no_original_id) s.insert(ids.at(v));
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
    CHECK(mapped_structure(model) == edge_set(g));
    // Every hidden neuron is a vertex, also isolated ones.
    CHECK(boost::num_vertices(deepstruct::generate_structure(model)) == boost::num_vertices(g));
    // Prune the hidden connections: the structure is the pruned DAG.
    std::vector<deepstruct::MaskedLinear<float>*> hidden;
    for (std::size_t t = 1; t < model.num_hidden_layers(); ++t) hidden.push_back(&model.main_layer(t));
    for (std::size_t j = 0; j < model.skips().size(); ++j) hidden.push_back(&model.skip_layer(j));
    deepstruct::prune_global(hidden, deepstruct::PruneAmount::fraction(0.5));
    const EdgeSet pruned = mapped_structure(model);
    Eigen::Index active = 0;
    for (const auto* l : hidden) active += l->nnz();
    CHECK(static_cast<Eigen::Index>(pruned.size()) == active);
    for (const auto& e : pruned) CHECK(edge_set(g).count(e) == 1);
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
    CHECK(edge_set(deepstruct::generate_structure(model, io)) == expected);
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
  CHECK(model.skip_layer(0).density() == 1.0);
  CHECK_THROWS_AS(deepstruct::ScalableDAN(base, {0.5, 0.5, 0.5, -0.5}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::ScalableDAN(base, {0.5, 0.5}), deepstruct::shape_error);
  CHECK_THROWS_AS(family.grow(0), deepstruct::value_error);
  const deepstruct::ScalableDAN equal(base);
  CHECK(equal.block_sizes(8) == std::vector<std::size_t>{2, 2, 2, 2});
}

TEST_CASE("graph/models: ScalableDAN connects the blocks of a parallel base edge once", "[graph][models][scalable]") {
  // deepstruct's base is a DiGraph: 0 -> 1 twice is one edge there, and one complete bipartite
  // connection of the blocks. Here each copy added all 3 x 3 block edges again (36 edges instead
  // of 18, and as many extra paths in analyze()).
  Dag base(3);
  for (auto [u, v] : std::vector<std::pair<int, int>>{{0, 1}, {0, 1}, {1, 2}, {0, 1}}) boost::add_edge(u, v, base);
  const Dag grown = deepstruct::ScalableDAN(base).grow(9);
  CHECK(boost::num_edges(grown) == 3 * 3 + 3 * 3);
  CHECK(edge_set(grown).size() == boost::num_edges(grown));
  Dag simple(3);
  boost::add_edge(0, 1, simple);
  boost::add_edge(1, 2, simple);
  CHECK(edge_set(grown) == edge_set(deepstruct::ScalableDAN(simple).grow(9)));
}

TEST_CASE("graph/models: analyze a model; dead neurons agree with compaction", "[graph][models][analysis]") {
  deepstruct::MaskedDeepFFN<double> model(8, 3, {10, 6});
  deepstruct::Generator gen(4);
  for (auto* l : model.maskable_layers()) {
    deepstruct::MaskedDeepFFN<double>::Mask m(l->mask().rows(), l->mask().cols());
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

TEST_CASE("graph/models: generate_structure's original_ids has one entry per vertex", "[graph][models]") {
  deepstruct::Generator gen(5);
  const Dag g = deepstruct::watts_strogatz(30, 4, 0.5, gen);
  const auto model = deepstruct::make_dan<float>(6, 2, g);
  const std::size_t hidden = boost::num_vertices(g);
  std::vector<std::size_t> plain, all;
  const Dag h = deepstruct::generate_structure(model, {}, &plain);
  deepstruct::StructureOptions io;
  io.include_input = io.include_output = true;
  const Dag full = deepstruct::generate_structure(model, io, &all);
  REQUIRE(plain.size() == boost::num_vertices(h));
  REQUIRE(all.size() == boost::num_vertices(full));
  REQUIRE(all.size() == 6 + hidden + 2);
  // Inputs first and outputs last have no DAG id; the hidden ones are the same ids as without them.
  for (std::size_t v = 0; v < 6; ++v) CHECK(all[v] == deepstruct::no_original_id);
  for (std::size_t v = 6 + hidden; v < all.size(); ++v) CHECK(all[v] == deepstruct::no_original_id);
  CHECK(std::vector<std::size_t>(all.begin() + 6, all.begin() + 6 + std::ptrdiff_t(hidden)) == plain);
  // Every hidden-to-hidden edge of the full graph maps onto an edge of the DAG, and all of them come back.
  EdgeSet mapped;
  for (const auto& e : edge_set(full))
    if (all[e.first] != deepstruct::no_original_id && all[e.second] != deepstruct::no_original_id)
      mapped.insert({all[e.first], all[e.second]});
  CHECK(mapped == edge_set(g));
  // Input edges go from an input to a layer-0 neuron, output edges from a last-layer neuron.
  const auto layers = deepstruct::layer_index(g);
  const std::size_t last = *std::max_element(layers.begin(), layers.end());
  for (const auto& e : edge_set(full)) {
    if (all[e.first] == deepstruct::no_original_id) CHECK(layers[all.at(e.second)] == 0);
    if (all[e.second] == deepstruct::no_original_id) CHECK(layers[all.at(e.first)] == last);
  }
  // Every vertex stores its network layer (write_graphml writes it): hidden layer t of the DAG,
  // shifted by one with the input neurons, which are layer 0; the outputs come after the last.
  for (std::size_t v = 0; v < plain.size(); ++v) CHECK(h[v].layer == layers[plain[v]]);
  for (std::size_t v = 0; v < all.size(); ++v) {
    const std::size_t expected = v < 6 ? 0 : all[v] == deepstruct::no_original_id ? last + 2 : layers[all[v]] + 1;
    CHECK(full[v].layer == expected);
  }
  // A description without vertex lists (ids consecutive layer by layer): the ids are the vertices.
  deepstruct::DanDescription d = model.structure();
  d.layer_vertices.clear();
  const deepstruct::MaskedDeepDAN<float> plain_model(6, 2, d);
  std::vector<std::size_t> identity;
  deepstruct::generate_structure(plain_model, {}, &identity);
  for (std::size_t v = 0; v < identity.size(); ++v) CHECK(identity[v] == v);
}

TEST_CASE("graph/models: prune_global and prune_each_layer on a DAN; the structure is the DAG minus the pruned edges",
          "[graph][models][prune]") {
  deepstruct::Generator gen(23);
  const Dag g = deepstruct::watts_strogatz(80, 4, 0.5, gen);
  for (const bool global : {true, false}) {
    INFO((global ? "prune_global" : "prune_each_layer"));
    auto model = deepstruct::make_dan<double>(16, 3, g);
    const Eigen::Index active = model.num_active_weights();
    CHECK(static_cast<std::size_t>(active) ==
          boost::num_edges(g) + std::size_t(model.layer_first().numel()) + std::size_t(model.layer_out().numel()));
    if (global)
      deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.7));
    else
      deepstruct::prune_each_layer(model, deepstruct::PruneAmount::fraction(0.7));
    // The density asked for, over every masked layer (first, main, skip, out).
    CHECK(model.num_active_weights() <= active - static_cast<Eigen::Index>(std::floor(0.7 * double(active))));
    CHECK(model.density() == Approx(0.3 * double(active) / double(model.num_weights())).margin(0.02));
    // The hidden structure: exactly the DAG's edges whose mask entries survived.
    std::vector<std::size_t> ids;
    const Dag back = deepstruct::generate_structure(model, {}, &ids);
    EdgeSet expected;
    const auto layers = deepstruct::layer_index(g);
    for (const auto& e : edge_set(g)) {
      const std::size_t s = layers[e.first], t = layers[e.second];
      const deepstruct::LayerMask* mask = nullptr;
      if (t == s + 1) {
        mask = &model.main_layer(t).mask();
      } else {
        for (std::size_t j = 0; j < model.skips().size(); ++j)
          if (model.skips()[j].source == s && model.skips()[j].target == t) mask = &model.skip_layer(j).mask();
      }
      REQUIRE(mask != nullptr);
      const auto& vs = model.layer_vertices(t);
      const auto& us = model.layer_vertices(s);
      const auto o = std::find(vs.begin(), vs.end(), e.second) - vs.begin();
      const auto i = std::find(us.begin(), us.end(), e.first) - us.begin();
      if ((*mask)(o, i)) expected.insert(e);
    }
    EdgeSet mapped;
    for (const auto& e : edge_set(back)) mapped.insert({ids[e.first], ids[e.second]});
    CHECK(mapped == expected);
    CHECK(expected.size() < boost::num_edges(g));  // some hidden edges were pruned
    CHECK(!expected.empty());
  }
}

TEST_CASE("graph/models: ScalableDAN rejects a cyclic base graph", "[graph][models][scalable]") {
  Dag cyclic(4);
  for (auto [u, v] : std::vector<std::pair<int, int>>{{0, 1}, {1, 2}, {2, 3}, {3, 1}}) boost::add_edge(u, v, cyclic);
  try {
    const deepstruct::ScalableDAN family(cyclic);
    FAIL("expected not_a_dag");
  } catch (const deepstruct::not_a_dag& e) {
    CHECK((e.vertex() >= 1 && e.vertex() <= 3));  // on the cycle 1 -> 2 -> 3 -> 1
    CHECK_THAT(e.what(), test::contains("ScalableDAN: expected an acyclic base graph, found a cycle through base vertex " +
                                        std::to_string(e.vertex())));
  }
  CHECK_THROWS_AS(deepstruct::ScalableDAN(cyclic, {0.25, 0.25, 0.25, 0.25}), deepstruct::not_a_dag);
  Dag loop(1);
  boost::add_edge(0, 0, loop);
  CHECK_THROWS_AS(deepstruct::ScalableDAN(loop), deepstruct::not_a_dag);
}

TEST_CASE("graph/models: the analysis of a pruned DAN reports the dead neurons it has", "[graph][models][analysis]") {
  // Layers: {0, 1, 2} -> {3, 4} -> {5, 6} -> {7, 8}; 2 -> 8 is a skip from layer 0 to layer 3.
  Dag g(9);
  for (auto [u, v] : std::vector<std::pair<int, int>>{{0, 3}, {1, 3}, {1, 4}, {2, 4}, {3, 5}, {4, 6}, {5, 7}, {6, 8}, {2, 8}})
    boost::add_edge(u, v, g);
  auto model = deepstruct::make_dan<double>(5, 2, g);
  REQUIRE(model.num_hidden_layers() == 4);
  REQUIRE(model.skips().size() == 1);
  std::vector<std::size_t> hidden_ids, full_ids;
  deepstruct::generate_structure(model, {}, &hidden_ids);
  deepstruct::StructureOptions io;
  io.include_input = io.include_output = true;
  deepstruct::generate_structure(model, io, &full_ids);
  using Ids = std::set<std::size_t>;
  auto hidden_dead = [&] { return dead_ids(deepstruct::analyze_hidden(model), hidden_ids); };
  auto full_dead = [&] { return dead_ids(deepstruct::analyze(model), full_ids); };

  auto set_off = [](deepstruct::MaskedLinear<double>& layer, Eigen::Index row, Eigen::Index col) {
    deepstruct::LayerMask m = layer.mask();
    if (row < 0) m.col(col).setConstant(false);
    else if (col < 0) m.row(row).setConstant(false);
    else m(row, col) = false;
    layer.set_mask(m);
  };

  // Unpruned every neuron lies on an input-output path: 0-3-5-7, 1-3-5-7, 1-4-6-8, 2-4-6-8, 2-8.
  CHECK(hidden_dead().empty());
  CHECK(full_dead().empty());
  auto r = deepstruct::analyze_hidden(model);
  CHECK(r.vertices == 9);
  CHECK(r.inputs == 3);
  CHECK(r.outputs == 2);
  CHECK(r.input_output_paths == 5);

  // Prune the edge 4 -> 6 and every input weight of neuron 1: 1 and 6 are no longer reached from
  // the inputs, and 4 no longer reaches an output.
  set_off(model.main_layer(2), position(model, 2, 6), position(model, 1, 4));
  set_off(model.layer_first(), position(model, 0, 1), -1);
  CHECK(hidden_dead() == Ids{1, 4, 6});
  CHECK(full_dead() == Ids{1, 4, 6});
  r = deepstruct::analyze_hidden(model);
  CHECK(r.inputs == 2);
  CHECK(r.unreachable_from_inputs == 2);
  CHECK(r.cannot_reach_outputs == 1);
  CHECK(r.input_output_paths == 2);  // 0-3-5-7 and 2-8
  CHECK(deepstruct::analyze(model).edges == static_cast<std::size_t>(model.num_active_weights()));
  // What the example used to print: every source of the pruned graph taken for an input (6 has
  // lost its in-edge) and every sink for an output (4 its out-edge), so nothing looks dead.
  std::vector<std::size_t> layers;
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
    layers.insert(layers.end(), static_cast<std::size_t>(model.hidden_layer_size(t)), t);
  CHECK(deepstruct::analyze(deepstruct::generate_structure(model), layers).dead_neurons.empty());

  // Neuron 7 no longer feeds a logit: 7, 5, 3 and 0 cannot reach an output; 2 -> 8 is what is left.
  set_off(model.layer_out(), -1, position(model, 3, 7));
  CHECK(hidden_dead() == Ids{0, 1, 3, 4, 5, 6, 7});
  CHECK(full_dead() == Ids{0, 1, 3, 4, 5, 6, 7});
  r = deepstruct::analyze_hidden(model);
  CHECK(r.outputs == 1);
  CHECK(r.input_output_paths == 1);

  // No layer-0 neuron fed by an input: everything is dead, and there is no path.
  set_off(model.layer_first(), position(model, 0, 0), -1);
  set_off(model.layer_first(), position(model, 0, 2), -1);
  CHECK(hidden_dead() == Ids{0, 1, 2, 3, 4, 5, 6, 7, 8});
  CHECK(full_dead() == Ids{0, 1, 2, 3, 4, 5, 6, 7, 8});
  r = deepstruct::analyze_hidden(model);
  CHECK(r.inputs == 0);
  CHECK(r.unreachable_from_inputs == 9);
  CHECK(r.input_output_paths == 0);
  CHECK(std::isinf(r.log10_input_output_paths));
}

TEST_CASE("graph/models: ScalableDAN refuses a scale whose graph cannot exist, before allocating", "[graph][models][scalable][robustness]") {
  deepstruct::Dag base(3);
  add_edge(0, 1, base);
  add_edge(1, 2, base);
  const deepstruct::ScalableDAN family(base);
  CHECK_THROWS_WITH(family.block_sizes(std::size_t{1} << 40), test::contains("expected at most 2^31 - 1 = 2147483647 vertices"));
  CHECK_THROWS_AS(family.grow(std::size_t{1} << 40), deepstruct::value_error);
  CHECK_THROWS_AS(family.grow(std::numeric_limits<std::size_t>::max()), deepstruct::value_error);
  // Few enough vertices, far too many edges (blocks of 10^8 fully connected).
  CHECK_THROWS_WITH(family.grow(300000000), test::contains("of physical memory of this machine"));
  CHECK(num_vertices(family.grow(30)) == 30);
}
