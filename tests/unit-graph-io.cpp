// Tests of <deepstruct/graph/io.hpp>.
#include <deepstruct/graph/conv2d.hpp>
#include <deepstruct/graph/convert.hpp>
#include <deepstruct/graph/generators.hpp>
#include <deepstruct/graph/io.hpp>
#include <deepstruct/graph/layer_index.hpp>
#include <deepstruct/graph/svg.hpp>
#include <deepstruct/sparse_training.hpp>
#include <deepstruct/random.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <locale>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <utility>

#include "file_faults.hpp"
#include "graph_test_support.hpp"
#include "test_support.hpp"

using test::EdgeSet;
using test::edge_set;

namespace {

std::string tmp_path(const std::string& name) { return std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/graph-io-" + name; }

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The `layer` data of every node of a GraphML document we wrote, in node order.
std::vector<std::size_t> written_layers(const std::string& text) {
  const deepstruct::Dag back = deepstruct::parse_graphml(text);
  std::vector<std::size_t> layers(num_vertices(back));
  for (std::size_t v = 0; v < layers.size(); ++v) layers[v] = back[v].layer;
  return layers;
}

std::string graphml_text(const deepstruct::Dag& g, const deepstruct::GraphmlWriteOptions& options = {}) {
  std::ostringstream out;
  deepstruct::write_graphml(out, g, options);
  return out.str();
}

// An FFN 3-4-2 with a hidden neuron (vertex 3 + 2 = 5) that has no inputs, and a hidden neuron
// (vertex 6) with no edges at all: its layers are not the longest-path layers.
std::vector<deepstruct::LayerMask> ffn_masks() {
  deepstruct::LayerMask a = deepstruct::LayerMask::Constant(4, 3, true), b = deepstruct::LayerMask::Constant(2, 4, true);
  a.row(2).setConstant(false);  // hidden neuron 2: no inputs
  a.row(3).setConstant(false);  // hidden neuron 3: no inputs ...
  b.col(3).setConstant(false);  // ... and no outputs
  return {a, b};
}
// A random DAG with random weights (some awkward to print) and stored layers.
deepstruct::Dag weighted_dag(std::uint64_t seed) {
  deepstruct::Generator gen(seed);
  deepstruct::Dag g = deepstruct::erdos_renyi_gnp(25, 0.2, gen);
  for (auto [e, e_end] = edges(g); e != e_end; ++e) g[*e].weight = deepstruct::random::normal(gen) / 3.0;
  deepstruct::assign_layers(g);
  return g;
}

std::string graphml(const std::string& graph_body, const std::string& keys = "", const std::string& graph_attrs = "edgedefault=\"directed\"") {
  return "<?xml version=\"1.0\"?>\n<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n" + keys + "<graph " + graph_attrs + ">\n" +
         graph_body + "</graph>\n</graphml>\n";
}

// The io_error message of parsing text, or "" when it parses.
std::string parse_error(const std::string& text, const deepstruct::GraphmlReadOptions& options = {}) {
  try {
    deepstruct::parse_graphml(text, "bad.graphml", options);
  } catch (const deepstruct::io_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("GraphML: reads what deepstruct (networkx) saved", "[graph][io]") {
  const auto expected = test::load_json("structure_networkx.graphml.json");
  std::vector<std::string> ids;
  const deepstruct::Dag g = deepstruct::read_graphml(test::data_path("structure_networkx.graphml"), {}, &ids);
  REQUIRE(num_vertices(g) == expected["num_nodes"].get<std::size_t>());
  EdgeSet want;
  for (const auto& e : expected["edges"]) want.emplace(e[0].get<std::size_t>(), e[1].get<std::size_t>());
  CHECK(edge_set(g) == want);
  CHECK(num_edges(g) == expected["edges"].size());
  REQUIRE(ids.size() == num_vertices(g));
  for (std::size_t v = 0; v < ids.size(); ++v) CHECK(ids[v] == std::to_string(v));
  for (auto [e, e_end] = edges(g); e != e_end; ++e) CHECK(g[*e].weight == 1.0);  // no weight data: the default
}

TEST_CASE("GraphML: string ids map to 0..n-1 in file order; keys, defaults and XML details", "[graph][io]") {
  const std::string text =
      "\xEF\xBB\xBF<?xml version='1.0' encoding='utf-8'?>\n"
      "<!DOCTYPE graphml [ <!ELEMENT graphml ANY> ]>\n"
      "<!-- written by hand -->\n"
      "<g:graphml xmlns:g='http://graphml.graphdrawing.org/xmlns'>\n"
      "  <g:key id='w' for='edge' attr.name='weight' attr.type='double'><g:default>0.5</g:default></g:key>\n"
      "  <g:key id='L' for='node' attr.name='layer' attr.type='long'/>\n"
      "  <g:key id='c' for='node' attr.name='color' attr.type='string'/>\n"
      "  <g:graph id='G' edgedefault='directed'>\n"
      "    <g:edge source='out' target='a&amp;b'/>\n"  // an edge before its nodes is fine in GraphML
      "    <g:node id='in'><g:data key='L'>0</g:data><g:data key='c'>red</g:data></g:node>\n"
      "    <g:node id='a&amp;b'><g:data key='L'> 2 </g:data></g:node>\n"
      "    <g:node id='out'/>\n"
      "    <g:edge source='in' target='out'><g:data key='w'><![CDATA[-1.25e-3]]></g:data></g:edge>\n"
      "    <?some-instruction?>\n"
      "    <g:edge source='in' target='a&amp;b' directed='true'><g:data key='w'>&#49;&#x32;</g:data></g:edge>\n"
      "  </g:graph>\n"
      "</g:graphml>\n<!-- trailing comment -->\n";
  std::vector<std::string> ids;
  const deepstruct::Dag g = deepstruct::parse_graphml(text, "hand.graphml", {}, &ids);
  CHECK(ids == std::vector<std::string>{"in", "a&b", "out"});
  CHECK(g[0].layer == 0);
  CHECK(g[1].layer == 2);
  CHECK(g[2].layer == 0);
  REQUIRE(num_edges(g) == 3);
  CHECK(g[edge(2, 1, g).first].weight == 0.5);  // the key's default
  CHECK(g[edge(0, 2, g).first].weight == -1.25e-3);
  CHECK(g[edge(0, 1, g).first].weight == 12.0);
}

TEST_CASE("GraphML: write, read back exactly", "[graph][io]") {
  const deepstruct::Dag g = weighted_dag(8);
  REQUIRE(num_edges(g) > 20);
  std::ostringstream out;
  deepstruct::write_graphml(out, g);
  const deepstruct::Dag back = deepstruct::parse_graphml(out.str());
  REQUIRE(num_vertices(back) == num_vertices(g));
  CHECK(edge_set(back) == edge_set(g));
  for (std::size_t v = 0; v < num_vertices(g); ++v) CHECK(back[v].layer == g[v].layer);
  for (auto [e, e_end] = edges(g); e != e_end; ++e)
    CHECK(back[edge(source(*e, g), target(*e, g), back).first].weight == g[*e].weight);  // bit-exact

  // Without attributes: no keys, no data; read back with the defaults.
  std::ostringstream bare;
  deepstruct::write_graphml(bare, g, {false, false});
  CHECK(bare.str().find("<key") == std::string::npos);
  const deepstruct::Dag plain = deepstruct::parse_graphml(bare.str());
  CHECK(edge_set(plain) == edge_set(g));
  for (auto [e, e_end] = edges(plain); e != e_end; ++e) CHECK(plain[*e].weight == 1.0);

  // Through a file.
  const std::string path = tmp_path("roundtrip.graphml");
  deepstruct::write_graphml(path, g);
  CHECK(edge_set(deepstruct::read_graphml(path)) == edge_set(g));
  CHECK_THROWS_WITH(deepstruct::write_graphml(tmp_path("no/such/dir/x.graphml"), g), test::contains("no/such/dir/x.graphml"));
  CHECK_THROWS_WITH(deepstruct::read_graphml(tmp_path("missing.graphml")), test::contains("missing.graphml"));
}

TEST_CASE("GraphML: networkx reads what we write", "[graph][io]") {
  const std::string python = DEEPSTRUCT_PYTHON;
  if (python.empty() || std::system((python + " -c \"import networkx\" > /dev/null 2>&1").c_str()) != 0) {
    WARN("skipped: no Python with networkx (DEEPSTRUCT_PYTHON = '" << python << "')");
    return;
  }
  const deepstruct::Dag g = weighted_dag(9);
  const std::string path = tmp_path("for-networkx.graphml"), result = tmp_path("from-networkx.json"), script = tmp_path("read.py");
  deepstruct::write_graphml(path, g);
  {
    std::ofstream py(script);
    py << "import json, sys, networkx as nx\n"
          "g = nx.read_graphml(sys.argv[1], node_type=int)\n"
          "assert g.is_directed()\n"
          "json.dump({'nodes': sorted(g.nodes), 'layer': {str(v): d['layer'] for v, d in g.nodes(data=True)},\n"
          "           'layer_types': sorted({type(d['layer']).__name__ for v, d in g.nodes(data=True)}),\n"
          "           'edges': sorted([u, v, d['weight']] for u, v, d in g.edges(data=True))}, open(sys.argv[2], 'w'))\n"
          "h = nx.DiGraph()\n"  // and the other way: networkx writes typed attributes, we read them
          "h.add_node('x', layer=0); h.add_node('y', layer=1); h.add_node('z', layer=2)\n"
          "h.add_edge('x', 'y', weight=0.1); h.add_edge('y', 'z', weight=-2.5); h.add_edge('x', 'z', weight=1e-300)\n"
          "nx.write_graphml(h, sys.argv[3])\n";
  }
  const std::string written = tmp_path("by-networkx.graphml");
  REQUIRE(std::system((python + " " + script + " " + path + " " + result + " " + written).c_str()) == 0);
  std::vector<std::string> ids;
  const deepstruct::Dag h = deepstruct::read_graphml(written, {}, &ids);
  CHECK(ids == std::vector<std::string>{"x", "y", "z"});
  CHECK(h[0].layer == 0);
  CHECK(h[1].layer == 1);
  CHECK(h[2].layer == 2);
  CHECK(h[edge(0, 1, h).first].weight == 0.1);
  CHECK(h[edge(1, 2, h).first].weight == -2.5);
  CHECK(h[edge(0, 2, h).first].weight == 1e-300);
  std::ifstream in(result);
  const auto j = nlohmann::json::parse(in);
  std::vector<std::size_t> nodes(num_vertices(g));
  for (std::size_t v = 0; v < nodes.size(); ++v) nodes[v] = v;
  CHECK(j["nodes"].get<std::vector<std::size_t>>() == nodes);
  CHECK(j["layer_types"] == nlohmann::json::array({"int"}));
  for (std::size_t v = 0; v < nodes.size(); ++v) CHECK(j["layer"][std::to_string(v)].get<std::size_t>() == g[v].layer);
  REQUIRE(j["edges"].size() == num_edges(g));
  for (const auto& e : j["edges"]) {
    const auto [ed, found] = edge(e[0].get<std::size_t>(), e[1].get<std::size_t>(), g);
    REQUIRE(found);
    CHECK(e[2].get<double>() == g[ed].weight);  // exact: Python's float() of our decimal
  }
}

TEST_CASE("GraphML: the layers written are the builders' layers, or layer_index when none are stored", "[graph][io]") {
  using deepstruct::GraphmlLayers;
  // ffn_structure stores the FFN layers, counted from the first layer kept.
  deepstruct::StructureOptions all;
  all.include_input = all.include_output = true;
  const deepstruct::Dag ffn = deepstruct::ffn_structure(ffn_masks(), all);
  const std::vector<std::size_t> ffn_layers{0, 0, 0, 1, 1, 1, 1, 2, 2};
  CHECK(written_layers(graphml_text(ffn)) == ffn_layers);
  CHECK(written_layers(graphml_text(ffn, {true, true, GraphmlLayers::stored})) == ffn_layers);
  // layer_index puts the neurons without inputs (5, 6) into layer 0.
  CHECK(written_layers(graphml_text(ffn, {true, true, GraphmlLayers::layer_index})) ==
        std::vector<std::size_t>{0, 0, 0, 1, 1, 0, 0, 2, 2});
  const deepstruct::Dag hidden_only = deepstruct::ffn_structure(ffn_masks(), {false, true});
  CHECK(written_layers(graphml_text(hidden_only)) == std::vector<std::size_t>{0, 0, 0, 0, 1, 1});

  // bipartite_from_mask and conv2d_structure: inputs 0, outputs 1, also when unconnected.
  CHECK(written_layers(graphml_text(deepstruct::bipartite_from_mask(deepstruct::LayerMask::Constant(2, 3, false)))) ==
        std::vector<std::size_t>{0, 0, 0, 1, 1});
  deepstruct::Conv2dGeometry conv;
  conv.kernel = {2, 2};
  conv.input = {3, 3};
  CHECK(written_layers(graphml_text(deepstruct::conv2d_structure(conv))) ==
        std::vector<std::size_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1});

  // A graph built by add_edge: its stored layers (all 0) are no layering, so layer_index is written.
  deepstruct::Dag plain(4);
  add_edge(0, 1, plain);
  add_edge(1, 2, plain);
  add_edge(0, 2, plain);
  CHECK(written_layers(graphml_text(plain)) == std::vector<std::size_t>{0, 1, 2, 0});
  CHECK(written_layers(graphml_text(plain, {true, true, GraphmlLayers::stored})) == std::vector<std::size_t>{0, 0, 0, 0});
  CHECK(deepstruct::graphml_layers(plain) == std::vector<std::size_t>{0, 1, 2, 0});
  // A cyclic graph has no layer index: automatic throws before writing; stored or no layers write it.
  add_edge(2, 0, plain);
  std::ostringstream out;
  CHECK_THROWS_AS(deepstruct::write_graphml(out, plain), deepstruct::not_a_dag);
  CHECK(out.str().empty());
  CHECK(written_layers(graphml_text(plain, {true, true, GraphmlLayers::stored})) == std::vector<std::size_t>{0, 0, 0, 0});
  CHECK(written_layers(graphml_text(plain, {false, true})) == std::vector<std::size_t>{0, 0, 0, 0});
  const std::string path = tmp_path("cyclic.graphml");
  std::remove(path.c_str());
  CHECK_THROWS_AS(deepstruct::write_graphml(path, plain), deepstruct::not_a_dag);
  CHECK_FALSE(file_exists(path));
  // An existing file keeps its contents when the write fails.
  deepstruct::write_graphml(path, deepstruct::Dag(2));
  const std::string before = file_text(path);
  REQUIRE(before.find("<graphml") != std::string::npos);
  CHECK_THROWS_AS(deepstruct::write_graphml(path, plain), deepstruct::not_a_dag);
  CHECK(file_text(path) == before);
}

TEST_CASE("GraphML: read back, LayeredView keeps every layer's neuron order, also where a stored layer is not layer_index's",
          "[graph][io]") {
  // 2 inputs -> 3 hidden -> 2 outputs; hidden neuron 2 has no inputs: stored layer 1, layer_index 0.
  deepstruct::LayerMask first(3, 2), second = deepstruct::LayerMask::Constant(2, 3, true);
  first << false, false, true, true, true, false;
  deepstruct::StructureOptions all;
  all.include_input = all.include_output = true;
  deepstruct::Dag g = deepstruct::ffn_structure({first, second}, all);
  REQUIRE(g[2].layer == 1);
  for (const bool positions : {false, true}) {
    INFO("stored positions: " << positions);
    if (positions) {  // as generate_structure stores them: the row in the stored layer
      std::vector<std::size_t> next(3, 0);
      for (std::size_t v = 0; v < num_vertices(g); ++v) g[v].position = next[g[v].layer]++;
    }
    const deepstruct::LayeredView before(g);
    const deepstruct::LayeredView after(deepstruct::parse_graphml(graphml_text(g)));
    REQUIRE(after.num_layers() == before.num_layers());
    for (std::size_t l = 0; l < before.num_layers(); ++l) CHECK(after.vertices(l) == before.vertices(l));
    CHECK(before.vertices(0) == (positions ? std::vector<std::size_t>{0, 2, 1} : std::vector<std::size_t>{0, 1, 2}));
  }
}

TEST_CASE("GraphML: labels read back as written; a control character XML cannot hold is refused before writing", "[graph][io]") {
  deepstruct::Dag g(3);
  add_edge(0, 1, g);
  g[0].label = "a\rb\tc\nd <&> \"'";
  g[2].label = "plain";
  const deepstruct::Dag back = deepstruct::parse_graphml(graphml_text(g));
  for (std::size_t v = 0; v < 3; ++v) CHECK(back[v].label == g[v].label);
  g[2].label = std::string("x\x01y");
  std::ostringstream out;
  CHECK_THROWS_WITH(deepstruct::write_graphml(out, g), test::contains("found the control character U+0001 at byte 1 of the label of vertex 2"));
  CHECK(out.str().empty());
}

namespace {
// Numbers as a German locale prints them: 1.000,5.
struct GroupingNumbers : std::numpunct<char> {
  char do_decimal_point() const override { return ','; }
  char do_thousands_sep() const override { return '.'; }
  std::string do_grouping() const override { return "\3"; }
};
struct GlobalLocale {
  std::locale before;
  explicit GlobalLocale(const std::locale& l) : before(std::locale::global(l)) {}
  ~GlobalLocale() { std::locale::global(before); }
};
}  // namespace

TEST_CASE("GraphML, DOT, SVG and the JSON lines are written in the classic locale whatever the program's", "[graph][io]") {
  // A star of 1201 vertices: ids, layers and positions of 1000 and more, weights with decimals.
  deepstruct::Dag g(1201);
  for (std::size_t v = 1; v < 1201; ++v) add_edge(0, v, deepstruct::EdgeProperties{0.5}, g);
  const std::string classic = graphml_text(g);
  const std::locale german(std::locale::classic(), new GroupingNumbers);
  {
    GlobalLocale guard(german);
    std::ostringstream numbers;
    numbers << 1000.5;
    REQUIRE(numbers.str() == "1.000,5");  // the locale is in force
    std::ostringstream own;
    own.imbue(german);  // and the caller's stream has it too
    deepstruct::write_graphml(own, g);
    CHECK(own.str() == classic);
    CHECK(own.str().find("<node id=\"1000\">") != std::string::npos);
    const deepstruct::Dag back = deepstruct::parse_graphml(own.str());
    CHECK(num_edges(back) == 1200);
    std::ostringstream dot, svg;
    dot.imbue(german);
    deepstruct::write_dot(dot, g);
    CHECK(dot.str().find(" 1000;") != std::string::npos);
    CHECK(dot.str().find("1.000") == std::string::npos);
    svg.imbue(german);
    deepstruct::write_svg(svg, g);
    CHECK(svg.str().find("1.200") == std::string::npos);
    CHECK(svg.str().find("1200") != std::string::npos);  // the layer's size in its label
    deepstruct::UpdateRecord r;
    r.step = 2500;
    r.drop_fraction = 0.25;
    const std::string json = deepstruct::to_json_line(r);
    CHECK(json.find("\"step\":2500,\"drop_fraction\":0.25") != std::string::npos);
  }
}

TEST_CASE("GraphML: labels must be UTF-8 XML can hold (value_error naming the byte); SVG replaces what it cannot hold", "[graph][io]") {
  deepstruct::Dag g(2);
  add_edge(0, 1, g);
  g[1].label = "caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x99\x82";  // UTF-8: cafe with an accent, an arrow, an emoji
  CHECK(deepstruct::parse_graphml(graphml_text(g))[1].label == g[1].label);
  for (const std::string& bad : {std::string("caf\xe9"), std::string("x\xef\xbf\xbe"), std::string("\xed\xa0\x80"), std::string("\xc0\xaf"),
                                std::string("ab\xe2\x86")}) {
    INFO(bad);
    g[1].label = bad;
    std::ostringstream out;
    CHECK_THROWS_WITH(deepstruct::write_graphml(out, g), test::contains("(not UTF-8, or a code point XML 1.0 cannot hold)") &&
                                                            test::contains("of the label of vertex 1"));
    CHECK(out.str().empty());
    deepstruct::SvgOptions options;
    options.vertex_labels = true;
    std::ostringstream svg;
    deepstruct::write_svg(svg, g, options);
    CHECK(deepstruct::detail::xml_forbidden(svg.str()) == std::string::npos);
    CHECK(svg.str().find("\xEF\xBF\xBD") != std::string::npos);
  }
}

TEST_CASE("GraphML: networkx reads the layers of ffn_structure written without assign_layers", "[graph][io]") {
  const std::string python = DEEPSTRUCT_PYTHON;
  if (python.empty() || std::system((python + " -c \"import networkx\" > /dev/null 2>&1").c_str()) != 0) {
    WARN("skipped: no Python with networkx (DEEPSTRUCT_PYTHON = '" << python << "')");
    return;
  }
  deepstruct::StructureOptions all;
  all.include_input = all.include_output = true;
  const std::string path = tmp_path("ffn-for-networkx.graphml"), result = tmp_path("ffn-from-networkx.json"),
                    script = tmp_path("read-ffn.py");
  deepstruct::write_graphml(path, deepstruct::ffn_structure(ffn_masks(), all));  // no assign_layers
  {
    std::ofstream py(script);
    py << "import json, sys, networkx as nx\n"
          "g = nx.read_graphml(sys.argv[1], node_type=int)\n"
          "json.dump({'layer': [g.nodes[v]['layer'] for v in sorted(g.nodes)],\n"
          "           'edges': sorted([u, v] for u, v in g.edges())}, open(sys.argv[2], 'w'))\n";
  }
  REQUIRE(std::system((python + " " + script + " " + path + " " + result).c_str()) == 0);
  std::ifstream in(result);
  const auto j = nlohmann::json::parse(in);
  CHECK(j["layer"].get<std::vector<std::size_t>>() == std::vector<std::size_t>{0, 0, 0, 1, 1, 1, 1, 2, 2});
  // inputs 0..2 -> hidden 3, 4 (rows 0, 1 of the first mask); hidden 3..5 -> outputs 7, 8.
  std::vector<std::vector<std::size_t>> edges;
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t h : {3, 4}) edges.push_back({i, h});
  for (std::size_t h : {3, 4, 5})
    for (std::size_t o : {7, 8}) edges.push_back({h, o});
  std::sort(edges.begin(), edges.end());
  CHECK(j["edges"].get<std::vector<std::vector<std::size_t>>>() == edges);
}

TEST_CASE("GraphML: undirected graphs are rejected unless asked to orient them", "[graph][io]") {
  const std::string body = "<node id=\"a\"/><node id=\"b\"/><node id=\"c\"/>\n<edge source=\"c\" target=\"a\"/>\n<edge source=\"a\" target=\"b\"/>\n";
  for (const std::string attrs : {"edgedefault=\"undirected\"", ""}) {
    const std::string text = graphml(body, "", attrs);
    const std::string error = parse_error(text);
    CHECK_THAT(error, test::contains("bad.graphml:5:") && test::contains("undirected edge c -- a"));
    const deepstruct::Dag g = deepstruct::parse_graphml(text, "x", {deepstruct::UndirectedEdges::orient_by_id});
    CHECK(edge_set(g) == EdgeSet{{0, 1}, {0, 2}});
  }
  // Numbered nodes keep their numbers as vertices; the orientation still follows the file's order.
  const std::string numbered = graphml("<node id=\"2\"/><node id=\"0\"/><node id=\"1\"/>\n<edge source=\"2\" target=\"0\"/>\n"
                                       "<edge source=\"1\" target=\"0\"/>\n",
                                       "", "edgedefault=\"undirected\"");
  CHECK(edge_set(deepstruct::parse_graphml(numbered, "x", {deepstruct::UndirectedEdges::orient_by_id})) == EdgeSet{{2, 0}, {0, 1}});
  // A directed graph with one undirected edge.
  CHECK_THAT(parse_error(graphml("<node id=\"a\"/><node id=\"b\"/>\n<edge source=\"a\" target=\"b\" directed=\"false\"/>\n")),
             test::contains("bad.graphml:5:") && test::contains("(directed=\"false\")"));
}

TEST_CASE("GraphML: malformed files name the file, the line and what is wrong", "[graph][io]") {
  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> cases = {
      {"", "bad.graphml:1: expected an XML root element, found an empty file"},
      {"this is not xml", "bad.graphml:1: expected an XML root element"},
      {"<graphml>\n<graph edgedefault=\"directed\">\n<node id=\"a\">\n</graph>\n</graphml>", "bad.graphml:4: expected </node> (opened at line 3), found </graph>"},
      {"<graphml>\n<graph>\n", "bad.graphml:2: element <graph> is never closed"},
      {"<graphml><graph edgedefault=\"directed\"/></graphml>\n<graphml/>", "bad.graphml:2: expected nothing after the root element"},
      {"<graphml>\n<graph edgedefault=\"directed\"><node id=a/></graph></graphml>", "bad.graphml:2: expected a quoted value for attribute id"},
      {"<graphml><graph edgedefault=\"directed\"><node id=\"a\" id=\"b\"/></graph></graphml>", "attribute id given twice"},
      {"<graphml><graph edgedefault=\"directed\">&bogus;</graph></graphml>", "unknown entity '&bogus;'"},
      {"<graphml><!-- never ends </graphml>", "unterminated comment"},
      {"<svg>\n</svg>", "bad.graphml:1: expected the root element <graphml>, found <svg>"},
      {"<graphml>\n  <key id=\"d0\"/>\n</graphml>", "bad.graphml:1: expected a <graph> element inside <graphml>, found none"},
      {graphml("<node id=\"a\"/>\n<node id=\"b\"/>\n<node id=\"a\"/>\n"), "bad.graphml:6: duplicate node id 'a' (first declared at line 4)"},
      {graphml("<node id=\"a\"/>\n<edge source=\"a\" target=\"z\"/>\n"), "bad.graphml:5: edge target 'z' is not a node of the graph"},
      {graphml("<node/>\n"), "bad.graphml:4: expected an id attribute in <node>"},
      {graphml("<node id=\"a\"><data key=\"nope\">1</data></node>\n"), "bad.graphml:4: <data> refers to key 'nope', which no <key> declares"},
      {graphml("<node id=\"a\"><data key=\"l\">-1</data></node>\n", "<key id=\"l\" for=\"node\" attr.name=\"layer\"/>\n"),
       "bad.graphml:5: expected a non-negative integer as layer, found '-1'"},
      {graphml("<node id=\"a\"/>\n<edge source=\"a\" target=\"a\">\n<data key=\"w\">heavy</data></edge>\n",
               "<key id=\"w\" for=\"edge\" attr.name=\"weight\"/>\n"),
       "bad.graphml:7: expected a number as weight, found 'heavy'"},
      {graphml("<node id=\"a\"/>", "", "edgedefault=\"sideways\""), "bad.graphml:3: expected edgedefault=\"directed\" or \"undirected\""},
      {graphml("<node id=\"a\"><graph edgedefault=\"directed\"/></node>\n"), "nested graphs are not supported"},
      {graphml("<hyperedge/>\n"), "bad.graphml:4: hyperedges are not supported"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    CHECK_THAT(parse_error(c.text), test::contains(c.expected));
  }
  // Deep nesting is an error, not a stack overflow.
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "<a>";
  CHECK_THAT(parse_error(deep), test::contains("nested deeper than"));
}

TEST_CASE("DOT: one rank=same group per layer, every edge, optional weights", "[graph][io]") {
  const deepstruct::Dag g = weighted_dag(10);
  const deepstruct::LayeredView view(g);
  std::ostringstream out;
  deepstruct::write_dot(out, g, {true, true, "TB", "my \"net\""});
  const std::string dot = out.str();
  CHECK(dot.rfind("digraph \"my \\\"net\\\"\" {\n", 0) == 0);
  CHECK(dot.find("rankdir=TB;") != std::string::npos);
  CHECK(dot.substr(dot.size() - 2) == "}\n");

  const std::regex group(R"(\{ rank=same;((?: \d+;)+) \})"), edge_line(R"re((\d+) -> (\d+) \[label="([^"]+)"\];)re");
  std::vector<std::vector<std::size_t>> groups;
  for (std::sregex_iterator it(dot.begin(), dot.end(), group), end; it != end; ++it) {
    std::istringstream ids((*it)[1].str());
    std::vector<std::size_t> members;
    std::string id;
    while (ids >> id) members.push_back(std::stoul(id));
    groups.push_back(members);
  }
  REQUIRE(groups.size() == view.num_layers());
  for (std::size_t l = 0; l < groups.size(); ++l) CHECK(groups[l] == view.vertices(l));

  EdgeSet seen;
  for (std::sregex_iterator it(dot.begin(), dot.end(), edge_line), end; it != end; ++it) {
    const std::size_t u = std::stoul((*it)[1].str()), v = std::stoul((*it)[2].str());
    seen.emplace(u, v);
    CHECK(std::stod((*it)[3].str()) == g[edge(u, v, g).first].weight);
  }
  CHECK(seen == edge_set(g));

  // Plain: no labels, no groups; a cyclic graph can be drawn only without layers.
  deepstruct::Dag cyclic(3);
  add_edge(0, 1, cyclic);
  add_edge(1, 2, cyclic);
  add_edge(2, 0, cyclic);
  std::ostringstream partial;
  CHECK_THROWS_AS(deepstruct::write_dot(partial, cyclic), deepstruct::not_a_dag);
  CHECK(partial.str().empty());  // nothing written before the layers are known
  // To a file: no file is created, and an existing one keeps its contents.
  const std::string path = tmp_path("cyclic.dot");
  std::remove(path.c_str());
  CHECK_THROWS_AS(deepstruct::write_dot(path, cyclic), deepstruct::not_a_dag);
  CHECK_FALSE(file_exists(path));
  deepstruct::write_dot(path, g);
  const std::string before = file_text(path);
  REQUIRE(before.rfind("digraph", 0) == 0);
  CHECK_THROWS_AS(deepstruct::write_dot(path, cyclic), deepstruct::not_a_dag);
  CHECK_THROWS_AS(deepstruct::write_dot(path, g, {true, false, "sideways"}), deepstruct::value_error);
  CHECK(file_text(path) == before);
  std::ostringstream plain;
  deepstruct::write_dot(plain, cyclic, {false, false});
  CHECK(plain.str() == "digraph \"deepstruct\" {\n  rankdir=LR;\n  node [shape=circle];\n  0;\n  1;\n  2;\n  0 -> 1;\n  1 -> 2;\n  2 -> 0;\n}\n");
  CHECK_THROWS_AS(deepstruct::write_dot(out, g, {true, false, "sideways"}), deepstruct::value_error);
  CHECK_THROWS_WITH(deepstruct::write_dot(tmp_path("no/such/dir/g.dot"), g), test::contains("no/such/dir/g.dot"));
}

TEST_CASE("GraphML: a layer or position that no layering of the file's nodes has is refused at read", "[graph][io][robustness]") {
  const std::string keys = "<key id=\"l\" for=\"node\" attr.name=\"layer\"/>\n<key id=\"p\" for=\"node\" attr.name=\"position\"/>\n";
  auto node = [](const std::string& id, const std::string& layer, const std::string& position = "") {
    return "<node id=\"" + id + "\"><data key=\"l\">" + layer + "</data>" +
           (position.empty() ? std::string() : "<data key=\"p\">" + position + "</data>") + "</node>\n";
  };
  // Issue 14: layer SIZE_MAX was accepted; graphml_layers(g, stored) then made write_svg and
  // analyze compute max + 1 = 0 and write out of bounds.
  const std::string size_max = std::to_string(std::numeric_limits<std::size_t>::max());
  CHECK_THAT(parse_error(graphml(node("a", "0") + node("b", size_max), keys)),
             test::contains("bad.graphml:7: expected a layer below the number of nodes (2) for node 'b', found " + size_max));
  CHECK_THAT(parse_error(graphml(node("a", "0") + node("b", "2"), keys)), test::contains("bad.graphml:7: expected a layer below"));
  CHECK(parse_error(graphml(node("a", "0") + node("b", "1"), keys)).empty());
  CHECK_THAT(parse_error(graphml(node("a", "0", "0") + node("b", "1", "2"), keys)),
             test::contains("bad.graphml:7: expected a position below the number of nodes (2) for node 'b', found 2"));
  CHECK_THAT(parse_error(graphml(node("a", "0", "0") + node("b", "1", size_max), keys)), test::contains("expected a position below"));
  CHECK(parse_error(graphml(node("a", "0", "1") + node("b", "1", "0"), keys)).empty());
  // A <default> out of range names the <key>'s line.
  const std::string default_keys = "<key id=\"l\" for=\"node\" attr.name=\"layer\"><default>5</default></key>\n";
  CHECK_THAT(parse_error(graphml("<node id=\"a\"/>\n<node id=\"b\"/>\n", default_keys)),
             test::contains("bad.graphml:3: expected a layer below the number of nodes (2) for node 'a', found 5"));
}

TEST_CASE("GraphML: graphml_layers keeps every layer below the number of vertices", "[graph][io][robustness]") {
  deepstruct::Dag g(3);
  add_edge(0, 1, g);
  add_edge(1, 2, g);
  g[0].layer = 0;
  g[1].layer = 1;
  g[2].layer = std::numeric_limits<std::size_t>::max();  // a layering (0 < 1 < max), but no layer of 3 vertices
  CHECK_THROWS_WITH(deepstruct::graphml_layers(g, deepstruct::GraphmlLayers::stored),
                    test::contains("expected stored layers below the number of vertices (3), found layer " +
                                   std::to_string(std::numeric_limits<std::size_t>::max()) + " at vertex 2"));
  CHECK_THROWS_AS(deepstruct::graphml_layers(g, deepstruct::GraphmlLayers::stored), deepstruct::value_error);
  // automatic falls back to layer_index, so what it writes reads back.
  CHECK(deepstruct::graphml_layers(g) == std::vector<std::size_t>{0, 1, 2});
  CHECK(written_layers(graphml_text(g)) == std::vector<std::size_t>{0, 1, 2});
  g[2].layer = 3;  // = n: also not a layer of 3 vertices
  CHECK(deepstruct::graphml_layers(g) == std::vector<std::size_t>{0, 1, 2});
  g[2].layer = 2;
  CHECK(deepstruct::graphml_layers(g, deepstruct::GraphmlLayers::stored) == std::vector<std::size_t>{0, 1, 2});
}

TEST_CASE("GraphML: an element with very many attributes parses in linear time", "[graph][io][robustness]") {
  // Issue 14: every attribute was compared with all earlier ones (80,000 attributes: 86 s). The
  // same number of attributes spread over elements of 10 is the baseline; the single element
  // must cost about the same, whatever the machine.
  const int count = 50000;
  std::string one, spread;
  for (int i = 0; i < count; ++i) {
    const std::string attribute = " a" + std::to_string(i) + "=\"" + std::to_string(i % 7) + "\"";
    one += attribute;
    if (i % 10 == 0) spread += i == 0 ? "<x" : "/>\n<x";
    spread += attribute;
  }
  spread += "/>\n";
  const std::string many = graphml("<node id=\"0\"" + one + "/>\n");
  const std::string baseline = graphml("<node id=\"0\"/>\n" + spread);
  auto seconds = [](const std::string& text) {
    double best = 1e9;
    for (int run = 0; run < 3; ++run) {
      const auto start = std::chrono::steady_clock::now();
      const deepstruct::Dag g = deepstruct::parse_graphml(text);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      CHECK(num_vertices(g) == 1);
    }
    return best;
  };
  const double t_baseline = seconds(baseline), t_many = seconds(many);
  INFO("one element with " << count << " attributes: " << t_many << " s; spread over " << count / 10 << " elements: " << t_baseline << " s");
  CHECK(t_many < 5.0 * t_baseline + 0.01);  // quadratic: about 2000 times the baseline here
  // A duplicate among many attributes is still found, on its line.
  CHECK_THAT(parse_error(graphml("<node id=\"0\"" + one + "\n a17=\"x\"/>\n")), test::contains("bad.graphml:5: attribute a17 given twice in <node>"));
  CHECK_THAT(parse_error(graphml("<node id=\"0\"" + one + " id=\"x\"/>\n")), test::contains("attribute id given twice in <node>"));
}

TEST_CASE("GraphML and DOT files are written atomically: a failed write leaves the old file", "[graph][io][robustness]") {
  const deepstruct::Dag small = weighted_dag(3);
  const deepstruct::Dag big = weighted_dag(4);
  for (const bool dot : {false, true}) {
    INFO((dot ? "write_dot" : "write_graphml"));
    const std::string dir = tmp_path(dot ? "atomic-dot" : "atomic-graphml");
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::string path = dir + (dot ? "/g.dot" : "/g.graphml");
    auto write = [&](const deepstruct::Dag& g) {
      if (dot)
        deepstruct::write_dot(path, g, {true, true});
      else
        deepstruct::write_graphml(path, g);
    };
    write(small);
    const std::string before = file_text(path);
    std::string message;
    test::with_file_size_limit(256, [&] {
      try {
        write(big);
      } catch (const deepstruct::io_error& e) {
        message = e.what();
      }
    });
    CHECK_THAT(message, test::contains(std::string(dot ? "write_dot" : "write_graphml") + ": cannot write '" + path + "'"));
    CHECK_THAT(message, test::contains("File too large"));
    CHECK(file_text(path) == before);
    CHECK(test::temporary_files(dir).empty());

    test::SmallTmpfs fs(dir + "/mnt", 64 * 1024);
    if (!fs.ok()) {
      WARN("cannot mount a tmpfs here (not root?): the full-disk variant is skipped");
      continue;
    }
    const std::string full = fs.path(dot ? "g.dot" : "g.graphml");
    if (dot)
      deepstruct::write_dot(full, small);
    else
      deepstruct::write_graphml(full, small);
    const std::string old = file_text(full);
    fs.fill();
    CHECK_THROWS_WITH(dot ? deepstruct::write_dot(full, big, {true, true}) : deepstruct::write_graphml(full, big),
                      test::contains("No space left on device"));
    CHECK(file_text(full) == old);
    std::filesystem::remove(fs.path("filler"));
    CHECK(test::temporary_files(fs.path("")).empty());
  }
}
