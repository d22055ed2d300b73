// Tests of DAN files both ways with deepstruct: GraphML (layer and position of every vertex) plus
// .npz (the state_dict). Fixtures made by deepstruct itself (tests/data/make_deepstruct_files.py
// with tools/deepstruct_files.py; reference/layer_order.json): deepstruct's neuron order inside a
// layer is not ascending id and not stable across its own save/load, so the order travels in the
// file. Also: LayerNorm DAN files with deepstruct's keys, labelled graphs (DagBuilder) through a
// network and back to GraphML.
#include <deepstruct/graph.hpp>
#include <deepstruct/model_io.hpp>
#include <deepstruct/prune.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "file_faults.hpp"
#include "test_support.hpp"

namespace {

std::string tmp(const std::string& name) { return std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/" + name; }

/// The vertex ids of every hidden layer of a DAN, as deepstruct's get_vertices(l) would list them.
template <typename Scalar>
std::map<std::string, std::vector<std::size_t>> layer_order(const deepstruct::MaskedDeepDAN<Scalar>& m) {
  std::map<std::string, std::vector<std::size_t>> out;
  for (std::size_t t = 0; t < m.num_hidden_layers(); ++t) out[std::to_string(t)] = m.layer_vertices(t);
  return out;
}

std::map<std::string, std::vector<std::size_t>> json_order(const nlohmann::json& order) {
  std::map<std::string, std::vector<std::size_t>> out;
  for (auto it = order.begin(); it != order.end(); ++it)
    for (const auto& v : it.value()) out[it.key()].push_back(v.get<std::size_t>());
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("deepstruct files: DANs exported by deepstruct load with deepstruct's neuron order and outputs",
                   "[graph][deepstruct][parity]", float, double) {
  for (const std::string name : {"deepstruct_dan", "deepstruct_dan_ln"}) {
    INFO(name);
    const nlohmann::json c = test::load_json(name + ".json");
    const deepstruct::Dag g = deepstruct::read_graphml(test::data_path(name + ".graphml"));
    deepstruct::DANOptions options;
    options.use_layer_norm = c["use_layer_norm"].get<bool>();
    auto model = deepstruct::make_dan<TestType>(c["size_input"].get<Eigen::Index>(), c["size_output"].get<Eigen::Index>(), g, options);
    // The order deepstruct had in memory, not ascending id.
    const auto expected_order = json_order(c["vertex_order"]);
    CHECK(layer_order(model) == expected_order);
    bool ascending = true;
    for (const auto& [t, vs] : expected_order) ascending = ascending && std::is_sorted(vs.begin(), vs.end());
    CHECK_FALSE(ascending);  // the fixture would not catch a wrong order otherwise
    // Exactly deepstruct's keys (LayerNorm: layer_normalizations.0 .. L-1), loaded strictly.
    deepstruct::load_npz(model, test::data_path(name + ".npz"));
    const auto sd = model.state_dict();
    std::set<std::string> ours;
    for (const auto& kv : sd.matrices) ours.insert(kv.first);
    for (const auto& kv : sd.vectors) ours.insert(kv.first);
    for (const auto& kv : sd.masks) ours.insert(kv.first);
    std::set<std::string> theirs;
    for (const auto& k : c["state_dict_keys"]) theirs.insert(k.get<std::string>());
    CHECK(ours == theirs);
    const Eigen::Matrix<TestType, -1, -1> x = test::matrix<TestType>(c["x"]).transpose();
    const auto& y = model.forward(x);
    const std::string reference = std::is_same<TestType, float>::value ? "output_float32" : "output_float64";
    CHECK(test::max_rel_diff(y.template cast<double>(), test::matrix<double>(c[reference]).transpose().eval()) <=
          (std::is_same<TestType, float>::value ? 1e-5 : 1e-9));
    // The masks the graph implies in this order are those of the file where nothing was pruned
    // afterwards: every active weight of the file is an edge of the graph, in the same place.
    const auto from_graph = deepstruct::make_dan<TestType>(c["size_input"].get<Eigen::Index>(), c["size_output"].get<Eigen::Index>(), g, options);
    const auto graph_masks = from_graph.state_dict().masks;
    for (const auto& [key, m] : sd.masks) {
      INFO(key);
      const auto& built = graph_masks.at(key);
      CHECK(((m.array() && !built.array()).count()) == 0);
    }
    // generate_structure names every hidden neuron by its vertex in the file.
    std::vector<std::size_t> original;
    const deepstruct::Dag s = deepstruct::generate_structure(model, {}, &original);
    std::size_t v = 0;
    for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
      for (std::size_t i = 0; i < model.layer_vertices(t).size(); ++i, ++v) {
        CHECK(original[v] == expected_order.at(std::to_string(t))[i]);
        CHECK(s[v].position == i);
      }
  }
}

TEST_CASE("deepstruct files: layer_order.json - the README recipe's order, given as positions, reproduces deepstruct's DAN",
          "[graph][deepstruct][parity]") {
  const nlohmann::json fixture = test::load_json("layer_order.json");
  for (const auto& c : fixture["cases"]) {
    // deepstruct's recipe: edges first, then nodes, in its insertion order.
    deepstruct::DagBuilder b;
    for (const auto& e : c["edges_insertion_order"]) b.add_edge(e[0].get<long>(), e[1].get<long>());
    for (const auto& v : c["node_insertion_order"]) b.add_node(v.get<long>());
    deepstruct::Dag g = b.build();
    const auto built = json_order(c["vertex_order_built"]);
    // Without positions a layer is in ascending id: the same neurons, another order.
    const auto plain = deepstruct::make_dan<float>(12, 3, g);
    for (const auto& [t, vs] : built) {
      std::vector<std::size_t> labelled;
      for (std::size_t v : plain.layer_vertices(std::stoul(t))) labelled.push_back(std::stoul(g[v].label));
      CHECK(std::set<std::size_t>(labelled.begin(), labelled.end()) == std::set<std::size_t>(vs.begin(), vs.end()));
    }
    // With deepstruct's order as positions, the masks the graph implies are deepstruct's masks and
    // the outputs are deepstruct's.
    for (const auto& [t, vs] : built)
      for (std::size_t i = 0; i < vs.size(); ++i) g[b.vertex(vs[i])].position = i;
    auto model = deepstruct::make_dan<float>(12, 3, g);
    const auto sd = test::state_dict<float>(c["state_dict"]);
    for (const auto& [key, m] : sd.masks) {
      INFO(key);
      CHECK(model.state_dict().masks.at(key) == m);
    }
    model.load_state_dict(sd);
    for (const auto& [t, vs] : built) {
      std::vector<std::size_t> labels;
      for (const auto& l : model.layer_labels(std::stoul(t))) labels.push_back(std::stoul(l));
      CHECK(labels == vs);  // every row named by deepstruct's vertex
    }
    const Eigen::MatrixXf x = test::matrix<float>(c["x"]).transpose();
    CHECK(test::max_rel_diff(model.forward(x).cast<double>(), test::matrix<double>(c["output_float32"]).transpose().eval()) <= 1e-5);
  }
}

namespace {

/// A DAN whose layers are not in ascending id: positions reverse every layer.
deepstruct::MaskedDeepDAN<double> reversed_dan(deepstruct::Dag& g) {
  deepstruct::Generator gen(7);
  g = deepstruct::watts_strogatz(30, 4, 0.6, gen);
  const deepstruct::LayeredView view(g);
  for (std::size_t l = 0; l < view.num_layers(); ++l) {
    const auto& vs = view.vertices(l);
    for (std::size_t i = 0; i < vs.size(); ++i) g[vs[i]].position = vs.size() - 1 - i;
  }
  deepstruct::DANOptions options;
  options.use_layer_norm = true;
  options.seed = 3;
  return deepstruct::make_dan<double>(6, 2, g, options);
}

}  // namespace

TEST_CASE("deepstruct files: our GraphML lists vertices layer-major in neuron order, with layers and positions",
          "[graph][deepstruct][io]") {
  deepstruct::Dag g;
  auto model = reversed_dan(g);
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
    CHECK(std::is_sorted(model.layer_vertices(t).rbegin(), model.layer_vertices(t).rend()));
  const std::string path = tmp("reversed_dan.graphml");
  deepstruct::write_graphml(path, g);
  // Read back: the same vertices, layers and positions, so the same network.
  const deepstruct::Dag back = deepstruct::read_graphml(path);
  REQUIRE(boost::num_vertices(back) == boost::num_vertices(g));
  for (std::size_t v = 0; v < boost::num_vertices(g); ++v) {
    CHECK(back[v].layer == g[v].layer);
    CHECK(back[v].position == g[v].position);
  }
  const auto again = deepstruct::make_dan<double>(6, 2, back, model.options());
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t) CHECK(again.layer_vertices(t) == model.layer_vertices(t));
  // The file order is layer-major, each layer in position order: what deepstruct's loader keeps.
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::size_t> file_order;
  for (std::size_t p = text.find("<node id=\""); p != std::string::npos; p = text.find("<node id=\"", p + 1))
    file_order.push_back(std::stoul(text.substr(p + 10)));
  std::vector<std::size_t> expected;
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
    expected.insert(expected.end(), model.layer_vertices(t).begin(), model.layer_vertices(t).end());
  CHECK(file_order == expected);
}

TEST_CASE("deepstruct files: deepstruct's own loader (emulated with networkx) reproduces our neuron order", "[graph][deepstruct][io]") {
  if (!test::python_with("networkx")) return;
  deepstruct::Dag g;
  auto model = reversed_dan(g);
  const std::string path = tmp("reversed_for_networkx.graphml");
  deepstruct::write_graphml(path, g);
  // deepstruct.graph.LayeredGraph.load and build_layer_index (MIT, deepstruct 0.11), verbatim
  // but for the class around them: vertices renumbered in file order, layers by recursion.
  const std::string script = tmp("deepstruct_order.py");
  std::ofstream(script) << R"(import json, sys
import networkx as nx
def build_layer_index(graph, layer_index=None):
    if layer_index is None:
        layer_index = {}
    def get_layer_index(vertex, graph):
        vertex = int(vertex)
        if vertex not in layer_index:
            layer_index[vertex] = max([get_layer_index(v, graph) for v in nx.algorithms.dag.ancestors(graph, vertex)] + [-1]) + 1
        return layer_index[vertex]
    for v in graph:
        get_layer_index(v, graph)
    vertices_by_layer = {}
    for v in layer_index:
        vertices_by_layer.setdefault(layer_index[v], []).append(v)
    return layer_index, vertices_by_layer
graph = nx.read_graphml(sys.argv[1])
names = list(graph.nodes)
map_old2new = {name: ix for ix, name in enumerate(graph.nodes)}
s = nx.DiGraph()
s.add_nodes_from([map_old2new[v] for v in graph.nodes])
s.add_edges_from([(map_old2new[a], map_old2new[b]) for (a, b) in graph.edges])
_, by_layer = build_layer_index(s)
json.dump({str(l): [int(names[v]) for v in vs] for l, vs in by_layer.items()}, open(sys.argv[2], 'w'))
)";
  const std::string out = tmp("deepstruct_order.json");
  REQUIRE(std::system((std::string(DEEPSTRUCT_PYTHON) + " " + script + " " + path + " " + out).c_str()) == 0);
  std::ifstream in(out);
  const auto order = json_order(nlohmann::json::parse(in));
  CHECK(order == layer_order(model));
}

TEST_CASE("deepstruct files: deepstruct itself loads our DAN files and gives our outputs (where deepstruct is at hand)",
          "[graph][deepstruct][parity]") {
  // Runs where the Python deepstruct source (../shared/deepstruct-py beside the repository) and
  // Debian's python3-torch are installed; the networkx emulation above covers the order elsewhere.
  const std::string deepstruct_py = std::string(DEEPSTRUCT_SOURCE_DIR) + "/../shared/deepstruct-py";
  if (!std::ifstream(deepstruct_py + "/deepstruct/sparse.py")) {
    WARN("skipped: no deepstruct source at " << deepstruct_py);
    return;
  }
  if (!test::python_with("torch, deprecated")) return;
  deepstruct::Dag g;
  auto model = reversed_dan(g);
  deepstruct::Generator gen(11);
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t) {
    Eigen::VectorXd w(model.hidden_layer_size(t)), b(w.size());
    for (Eigen::Index i = 0; i < w.size(); ++i) {
      w[i] = deepstruct::random::uniform(gen, 0.5, 1.5);
      b[i] = deepstruct::random::uniform(gen, -0.3, 0.3);
    }
    model.layer_norm(t).set_weight(w);
    model.layer_norm(t).set_bias(b);
  }
  deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.3));
  const std::string prefix = tmp("ours_for_deepstruct");
  deepstruct::write_graphml(prefix + ".graphml", g);
  deepstruct::save_npz(model, prefix + ".npz");
  Eigen::MatrixXd x(6, 5);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = deepstruct::random::normal(gen);
  const Eigen::MatrixXd y = model.forward(x);
  const std::string script = tmp("deepstruct_import.py");
  std::ofstream(script) << "import sys, json, numpy as np, torch\n"
                           "from deepstruct_files import import_dan\n"
                           "m = import_dan(sys.argv[1], 6, 2)\n"
                           "x = torch.tensor(json.loads(sys.argv[2]), dtype=torch.float32)\n"
                           "json.dump(m(x).detach().numpy().tolist(), open(sys.argv[3], 'w'))\n";
  nlohmann::json xs = nlohmann::json::array();
  for (Eigen::Index j = 0; j < x.cols(); ++j) {
    nlohmann::json row = nlohmann::json::array();
    for (Eigen::Index i = 0; i < x.rows(); ++i) row.push_back(x(i, j));
    xs.push_back(row);
  }
  const std::string out = tmp("deepstruct_import.json");
  const std::string cmd = "PYTHONPATH=" + deepstruct_py + ":" + std::string(DEEPSTRUCT_SOURCE_DIR) + "/tools " +
                          std::string(DEEPSTRUCT_PYTHON) + " " + script + " " + prefix + " '" + xs.dump() + "' " + out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in(out);
  const Eigen::MatrixXd theirs = test::matrix<double>(nlohmann::json::parse(in)).transpose();
  CHECK(test::max_rel_diff(theirs, y) <= 1e-5);  // deepstruct computes in float32
}

TEST_CASE("DagBuilder: labelled edges as a deepstruct user writes them; labels through a DAN, generate_structure and GraphML",
          "[graph][build]") {
  deepstruct::DagBuilder b;
  b.add_edge(1, 3);  // with Boost's add_edge this would create vertices 0 and 2 as well
  b.add_edge(3, 7);
  b.add_edge(1, 7);
  b.add_edge(1, 3);  // once, as in a networkx DiGraph
  b.add_node("input-free");
  CHECK(b.num_vertices() == 4);
  CHECK(b.num_edges() == 3);
  CHECK(b.vertex(7) == 2);
  CHECK(b.vertex("7") == 2);
  CHECK(b.contains(3));
  CHECK_FALSE(b.contains(2));
  CHECK_THROWS_AS(b.vertex(2), deepstruct::value_error);
  CHECK_THROWS_AS(b.add_edge(5, 5), deepstruct::value_error);
  const deepstruct::Dag g = b.build();
  CHECK(boost::num_vertices(g) == 4);
  CHECK(g[0].label == "1");
  CHECK(g[2].layer == 2);
  CHECK(g[3].label == "input-free");
  deepstruct::DagBuilder cyclic;
  cyclic.add_edges(std::vector<std::pair<std::string, std::string>>{{"a", "b"}, {"b", "c"}, {"c", "a"}});
  CHECK_THROWS_AS(cyclic.build(), deepstruct::not_a_dag);

  // Labels through a network: layers {1, input-free}, {3}, {7}.
  auto model = deepstruct::make_dan<float>(4, 2, g);
  CHECK(model.layer_labels(0) == std::vector<std::string>{"1", "input-free"});
  CHECK(model.layer_labels(2) == std::vector<std::string>{"7"});
  const deepstruct::Dag s = deepstruct::generate_structure(model);
  CHECK(s[0].label == "1");
  CHECK(s[3].label == "7");
  // GraphML keeps them (label data); read back, a network made from the file has them again.
  const std::string path = tmp("labelled.graphml");
  deepstruct::write_graphml(path, s);
  const deepstruct::Dag back = deepstruct::read_graphml(path);
  CHECK(back[1].label == "input-free");
  CHECK(deepstruct::make_dan<float>(4, 2, back).layer_labels(1) == std::vector<std::string>{"3"});
}

TEST_CASE("GraphML: node ids that are not 0..n-1 number the vertices in file order and become labels", "[graph][io]") {
  const std::string text = R"(<?xml version="1.0"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key id="p" for="node" attr.name="position" attr.type="long"/>
  <graph edgedefault="directed">
    <node id="conv"/><node id="relu"><data key="p">0</data></node><node id="7"/>
    <edge source="conv" target="relu"/><edge source="7" target="relu"/>
  </graph>
</graphml>)";
  std::vector<std::string> ids;
  const deepstruct::Dag g = deepstruct::parse_graphml(text, "<test>", {}, &ids);
  CHECK(ids == std::vector<std::string>{"conv", "relu", "7"});
  CHECK(g[0].label == "conv");
  CHECK(g[2].label == "7");
  CHECK(g[1].position == 0);
  CHECK(g[0].position == deepstruct::no_position);
  // Ids 0..n-1 in another order keep their numbers (write_graphml lists layers in neuron order).
  const std::string numbered = R"(<graphml><graph edgedefault="directed"><node id="2"/><node id="0"/><node id="1"/>
    <edge source="0" target="2"/></graph></graphml>)";
  const deepstruct::Dag h = deepstruct::parse_graphml(numbered);
  CHECK(h[0].label.empty());
  CHECK(boost::edge(0, 2, h).second);
  // A bad position names the line.
  CHECK_THROWS_WITH(deepstruct::parse_graphml(R"(<graphml><key id="p" for="node" attr.name="position"/><graph edgedefault="directed">
<node id="0"><data key="p">-1</data></node></graph></graphml>)"),
                    test::contains("expected a non-negative integer as position"));
}

TEST_CASE("LayeredView: stored positions order each layer; ties and vertices without one by id", "[graph][layered]") {
  deepstruct::Dag g(5);
  add_edge(0, 3, g);
  add_edge(1, 3, g);
  add_edge(2, 4, g);
  g[2].position = 0;
  g[0].position = 1;  // vertex 1 has none: after the positioned ones
  const deepstruct::LayeredView view(g);
  CHECK(view.vertices(0) == std::vector<std::size_t>{2, 0, 1});
  CHECK(view.position_in_layer(1) == 2);
  CHECK(view.mask(0, 1)(0, 1) == true);  // 0 -> 3: column of vertex 0 is 1
  const deepstruct::LayeredView explicit_keys(g, std::vector<std::size_t>{0, 0, 0, 1, 0});
  CHECK(explicit_keys.vertices(1) == std::vector<std::size_t>{4, 3});
  CHECK_THROWS_AS(deepstruct::LayeredView(g, std::vector<std::size_t>{1, 2}), deepstruct::value_error);
}

TEST_CASE("make_scalable_dan: LayerNorm on by default, as deepstruct's ScalableDAN.build", "[graph][scalable]") {
  deepstruct::Dag base(3);
  add_edge(0, 1, base);
  add_edge(1, 2, base);
  const deepstruct::ScalableDAN family(base);
  const auto model = deepstruct::make_scalable_dan<float>(family, 4, 2, 12);
  CHECK(model.uses_layer_norm());
  CHECK(model.state_dict().vectors.count("layer_normalizations.0.weight") == 1);
}

TEST_CASE("save_dan / load_dan: deepstruct's two files in one call each; a graph of another network is refused", "[graph][deepstruct][io]") {
  deepstruct::Dag g;
  auto model = reversed_dan(g);
  deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.4));
  const std::string prefix = tmp("save_dan");
  deepstruct::save_dan(prefix, model, g);
  const auto back = deepstruct::load_dan<double>(prefix);
  CHECK(back.uses_layer_norm());
  CHECK(back.inputs() == 6);
  CHECK(back.outputs() == 2);
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t) CHECK(back.layer_vertices(t) == model.layer_vertices(t));
  CHECK(back.state_dict().masks == model.state_dict().masks);
  Eigen::MatrixXd x = Eigen::MatrixXd::Random(6, 4);
  auto copy = back;
  CHECK(copy.forward(x) == model.forward(x));
  // Another graph (no positions: ascending order) is not this network's.
  deepstruct::Dag other = g;
  for (std::size_t v = 0; v < boost::num_vertices(other); ++v) other[v].position = deepstruct::no_position;
  const std::string bad = tmp("save_dan_bad");
  std::remove((bad + ".npz").c_str());
  CHECK_THROWS_AS(deepstruct::save_dan(bad, model, other), deepstruct::value_error);
  CHECK_FALSE(std::ifstream(bad + ".npz").good());
  // A file pair that does not fit (the npz of another graph's network) names the file.
  deepstruct::Generator gen(2);
  const deepstruct::Dag small = deepstruct::watts_strogatz(12, 2, 0.5, gen);
  deepstruct::save_npz(deepstruct::make_dan<double>(6, 2, small), bad + ".npz");
  deepstruct::write_graphml(bad + ".graphml", other);
  CHECK_THROWS_WITH(deepstruct::load_dan<double>(bad), test::contains(bad + ".npz"));
  CHECK_THROWS_AS(deepstruct::load_dan<double>(bad), deepstruct::io_error);
}

TEST_CASE("load_dan: a small GraphML that describes a huge network is refused before the network is built", "[graph][deepstruct][io][robustness]") {
  // Two layers of 30,000 neurons, each of the second fed by one of the first: a 9e8-weight network
  // (3.6 GB for its weights) from a file of a few megabytes, against an npz of a small network.
  deepstruct::Dag big(60000);
  for (std::size_t v = 0; v < 30000; ++v) add_edge(v, 30000 + v, big);
  const std::string prefix = tmp("load_dan_big");
  deepstruct::write_graphml(prefix + ".graphml", big);
  deepstruct::Generator gen(2);
  deepstruct::save_npz(deepstruct::make_dan<float>(6, 2, deepstruct::watts_strogatz(12, 2, 0.5, gen)), prefix + ".npz");
  CHECK_THROWS_AS(deepstruct::load_dan<float>(prefix), deepstruct::io_error);
  CHECK_THROWS_WITH(deepstruct::load_dan<float>(prefix), test::contains("expected 900") && test::contains("weights for its layers"));
}

TEST_CASE("save_dan: both files are written atomically; a failed save leaves the old ones", "[graph][deepstruct][io][robustness]") {
  deepstruct::Dag g;
  auto model = reversed_dan(g);
  const std::string dir = tmp("save_dan_atomic");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string prefix = dir + "/net";
  deepstruct::save_dan(prefix, model, g);
  const std::string graphml = test::file_text(prefix + ".graphml"), npz = test::file_text(prefix + ".npz");
  deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.5));
  std::string message;
  test::with_file_size_limit(512, [&] {
    try {
      deepstruct::save_dan(prefix, model, g);
    } catch (const deepstruct::io_error& e) {
      message = e.what();
    }
  });
  CHECK_THAT(message, test::contains("cannot write '" + prefix + ".graphml'") && test::contains("File too large"));
  CHECK(test::file_text(prefix + ".graphml") == graphml);
  CHECK(test::file_text(prefix + ".npz") == npz);
  CHECK(test::temporary_files(dir).empty());
  // The GraphML fits, the .npz does not: the new GraphML is in place, the old .npz untouched
  // (each file is atomic; the pair is not - see docs/robustness.md).
  test::with_file_size_limit(graphml.size() + 64, [&] { CHECK_THROWS_AS(deepstruct::save_dan(prefix, model, g), deepstruct::io_error); });
  CHECK(test::file_text(prefix + ".npz") == npz);
  CHECK(test::temporary_files(dir).empty());
}
