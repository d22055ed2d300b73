// Tests of <deepstruct/graph/analysis.hpp>: hand-made graphs with known answers, the error
// paths, and a cross-check against networkx (DEEPSTRUCT_PYTHON) on random graphs.
#include <deepstruct/graph/analysis.hpp>

#include <boost/graph/compressed_sparse_row_graph.hpp>
#include <cstdlib>
#include <fstream>
#include <utility>
#include <vector>

#include "test_support.hpp"

#include <limits>

using deepstruct::AnalysisOptions;
using deepstruct::Dag;
using deepstruct::StructureReport;
using Edges = std::vector<std::pair<std::size_t, std::size_t>>;

namespace {

Dag make_dag(std::size_t n, const Edges& edges) {
  Dag g(n);
  for (const auto& [u, v] : edges) add_edge(u, v, g);
  return g;
}

/// A seeded random DAG: m edges between uniform ids, oriented low -> high (no self loops,
/// parallel edges possible); with `backbone`, also the edges i -> i+1, which connect it.
Edges random_edges(std::size_t n, std::size_t m, std::uint64_t seed, bool backbone) {
  deepstruct::Generator gen(seed);
  Edges edges;
  if (backbone)
    for (std::size_t i = 0; i + 1 < n; ++i) edges.emplace_back(i, i + 1);
  while (edges.size() < m + (backbone ? n - 1 : 0)) {
    const std::size_t a = deepstruct::random::uniform_index(gen, n), b = deepstruct::random::uniform_index(gen, n);
    if (a != b) edges.emplace_back(std::min(a, b), std::max(a, b));
  }
  return edges;
}

}  // namespace

TEST_CASE("analyze: a chain", "[graph][analysis]") {
  const StructureReport r = deepstruct::analyze(make_dag(4, {{0, 1}, {1, 2}, {2, 3}}));
  CHECK(r.vertices == 4);
  CHECK(r.edges == 3);
  CHECK(r.density == Approx(0.5));  // 3 of the 6 edges a DAG on 4 vertices can have
  CHECK(r.depth == 4);
  CHECK(r.layer_sizes == std::vector<std::size_t>{1, 1, 1, 1});
  CHECK(r.skip_lengths == std::vector<std::size_t>{0, 3, 0, 0});
  REQUIRE(r.layer_pair_densities.size() == 3);
  CHECK(r.layer_pair_densities[2].source_layer == 2);
  CHECK(r.layer_pair_densities[2].target_layer == 3);
  CHECK(r.layer_pair_densities[2].density == 1.0);
  CHECK(r.in_degree.min == 0);
  CHECK(r.in_degree.max == 1);
  CHECK(r.in_degree.mean == Approx(0.75));
  CHECK(r.in_degree.stddev == Approx(std::sqrt(0.1875)));
  CHECK(r.in_degree.histogram == std::vector<std::size_t>{1, 3});
  CHECK(r.sources == 1);
  CHECK(r.sinks == 1);
  CHECK(r.isolated == 0);
  CHECK(r.dead_neurons.empty());
  CHECK(r.input_output_paths == 1.0);
  CHECK(r.log10_input_output_paths == 0.0);
  CHECK(r.components == 1);
  CHECK(r.component_sizes == std::vector<std::size_t>{4});
  CHECK(r.average_clustering == 0.0);
  // Ordered pairs: 2 * (1 + 2 + 3 + 1 + 2 + 1) / 12.
  CHECK(r.average_shortest_path_length == Approx(20.0 / 12.0));
  CHECK(r.shortest_paths_exact);
  CHECK(r.shortest_path_pairs == 12);
}

TEST_CASE("analyze: a diamond has two paths and no triangles", "[graph][analysis]") {
  const StructureReport r = deepstruct::analyze(make_dag(4, {{0, 1}, {0, 2}, {1, 3}, {2, 3}}));
  CHECK(r.depth == 3);
  CHECK(r.layer_sizes == std::vector<std::size_t>{1, 2, 1});
  REQUIRE(r.layer_pair_densities.size() == 2);
  CHECK(r.layer_pair_densities[0].edges == 2);
  CHECK(r.layer_pair_densities[0].density == 1.0);
  CHECK(r.input_output_paths == 2.0);
  CHECK(r.average_clustering == 0.0);
  CHECK(r.average_shortest_path_length == Approx(16.0 / 12.0));
  CHECK(r.out_degree.histogram == std::vector<std::size_t>{1, 2, 1});
}

TEST_CASE("analyze: a skip edge closes a triangle", "[graph][analysis]") {
  const StructureReport r = deepstruct::analyze(make_dag(3, {{0, 1}, {1, 2}, {0, 2}}));
  CHECK(r.skip_lengths == std::vector<std::size_t>{0, 2, 1});
  REQUIRE(r.layer_pair_densities.size() == 3);
  CHECK(r.layer_pair_densities[1].source_layer == 0);
  CHECK(r.layer_pair_densities[1].target_layer == 2);
  CHECK(r.input_output_paths == 2.0);  // 0-2 and 0-1-2
  CHECK(r.average_clustering == 1.0);
  CHECK(r.average_shortest_path_length == 1.0);
  CHECK(r.density == 1.0);
}

TEST_CASE("analyze: isolated vertex and dead neurons", "[graph][analysis]") {
  // inputs 0 1, hidden 2 3 6, output 4, isolated 5; 3 has no way out, 6 gets no input.
  const Dag g = make_dag(7, {{0, 2}, {1, 2}, {2, 4}, {1, 3}, {6, 4}});
  SECTION("caller-given inputs and outputs") {
    AnalysisOptions opt;
    opt.inputs = {0, 1};
    opt.outputs = {4};
    const StructureReport r = deepstruct::analyze(g, opt);
    CHECK(r.inputs == 2);
    CHECK(r.outputs == 1);
    CHECK(r.isolated == 1);
    CHECK(r.sources == 4);  // 0 1 5 6
    CHECK(r.sinks == 3);    // 3 4 5
    CHECK(r.unreachable_from_inputs == 2);  // 5 6
    CHECK(r.cannot_reach_outputs == 2);     // 3 5
    CHECK(r.dead_neurons == std::vector<std::size_t>{3, 5, 6});
    CHECK(r.input_output_paths == 2.0);  // 0-2-4, 1-2-4
    CHECK(r.components == 2);
    CHECK(r.component_sizes == std::vector<std::size_t>{6, 1});
  }
  SECTION("defaults: sources and sinks") {
    const StructureReport r = deepstruct::analyze(g);
    CHECK(r.inputs == 4);
    CHECK(r.outputs == 3);
    CHECK(r.dead_neurons.empty());  // every vertex lies on a source-to-sink path (maybe of length 0)
    CHECK(r.input_output_paths == 4.0);  // 0-2-4, 1-2-4, 1-3, 6-4; the isolated 5 is no path
  }
  SECTION("a caller-given layering") {
    AnalysisOptions opt;
    opt.inputs = {0, 1};
    opt.outputs = {4};
    const StructureReport r = deepstruct::analyze(g, {0, 0, 1, 1, 2, 1, 1}, opt);
    CHECK(r.layer_sizes == std::vector<std::size_t>{2, 4, 1});
    REQUIRE(r.layer_pair_densities.size() == 2);
    CHECK(r.layer_pair_densities[0].edges == 3);
    CHECK(r.layer_pair_densities[0].density == Approx(3.0 / 8.0));
    CHECK(r.layer_pair_densities[1].edges == 2);
    CHECK(r.layer_pair_densities[1].density == Approx(2.0 / 4.0));
    CHECK(r.skip_lengths == std::vector<std::size_t>{0, 5, 0});
  }
}

TEST_CASE("analyze: parallel edges count as edges and paths, not as neighbours", "[graph][analysis]") {
  const StructureReport r = deepstruct::analyze(make_dag(3, {{0, 1}, {0, 1}, {1, 2}}));
  CHECK(r.edges == 3);
  CHECK(r.out_degree.max == 2);
  CHECK(r.input_output_paths == 2.0);
  CHECK(r.average_shortest_path_length == Approx(8.0 / 6.0));
}

TEST_CASE("analyze: empty and single-vertex graphs", "[graph][analysis]") {
  const StructureReport e = deepstruct::analyze(Dag(0));
  CHECK(e.vertices == 0);
  CHECK(e.depth == 0);
  CHECK(e.components == 0);
  CHECK(e.average_clustering == 0.0);
  CHECK(e.average_shortest_path_length == 0.0);
  const StructureReport one = deepstruct::analyze(Dag(1));
  CHECK(one.depth == 1);
  CHECK(one.isolated == 1);
  CHECK(one.density == 0.0);
  CHECK(one.input_output_paths == 0.0);
  CHECK(one.components == 1);
  CHECK_NOTHROW(nlohmann::json::parse(deepstruct::to_json(e)));
  CHECK_FALSE(deepstruct::to_text(e).empty());
}

TEST_CASE("analyze: path counts beyond the double range stay finite in log10", "[graph][analysis]") {
  // 600 fully connected layers of width 4: 4^600 = 10^361.2 input-output paths.
  const std::size_t width = 4, depth = 600;
  Dag g(width * depth);
  for (std::size_t l = 0; l + 1 < depth; ++l)
    for (std::size_t i = 0; i < width; ++i)
      for (std::size_t j = 0; j < width; ++j) add_edge(l * width + i, (l + 1) * width + j, g);
  AnalysisOptions opt;
  opt.shortest_paths = false;
  const StructureReport r = deepstruct::analyze(g, opt);
  CHECK(std::isinf(r.input_output_paths));
  CHECK(r.log10_input_output_paths == Approx(600 * std::log10(4.0)).epsilon(1e-12));
  CHECK(r.depth == depth);
  // A smaller one is exact: 4^20 = 2^40.
  Dag small(width * 20);
  for (std::size_t l = 0; l + 1 < 20; ++l)
    for (std::size_t i = 0; i < width; ++i)
      for (std::size_t j = 0; j < width; ++j) add_edge(l * width + i, (l + 1) * width + j, small);
  const StructureReport s = deepstruct::analyze(small, opt);
  CHECK(s.input_output_paths == std::ldexp(1.0, 40));
  CHECK(s.log10_input_output_paths == Approx(40 * std::log10(2.0)));
}

TEST_CASE("analyze: empty input or output sets, as the sources and sinks or as no vertex", "[graph][analysis]") {
  const Dag g = make_dag(4, {{0, 1}, {1, 2}, {0, 3}});  // sources {0}, sinks {2, 3}
  AnalysisOptions opt;
  opt.clustering = opt.shortest_paths = false;
  const auto ends = deepstruct::analyze(g, opt);  // the default: the sources and the sinks
  CHECK(ends.inputs == 1);
  CHECK(ends.outputs == 2);
  CHECK(ends.dead_neurons.empty());
  CHECK(ends.input_output_paths == 2.0);
  opt.empty_sets_mean_sources_and_sinks = false;
  opt.outputs = {2};  // no inputs: nothing is reached, no paths
  const auto none = deepstruct::analyze(g, opt);
  CHECK(none.inputs == 0);
  CHECK(none.outputs == 1);
  CHECK(none.unreachable_from_inputs == 4);
  CHECK(none.cannot_reach_outputs == 1);  // 3 does not reach 2
  CHECK(none.dead_neurons == std::vector<std::size_t>{0, 1, 2, 3});
  CHECK(none.input_output_paths == 0.0);
  CHECK(none.log10_input_output_paths == -std::numeric_limits<double>::infinity());
  opt.inputs = {0};
  opt.outputs.clear();  // no outputs: nothing reaches one
  const auto no_out = deepstruct::analyze(g, opt);
  CHECK(no_out.outputs == 0);
  CHECK(no_out.cannot_reach_outputs == 4);
  CHECK(no_out.unreachable_from_inputs == 0);
  CHECK(no_out.dead_neurons.size() == 4);
  CHECK(no_out.input_output_paths == 0.0);
}

TEST_CASE("analyze: bad input throws", "[graph][analysis]") {
  const Dag g = make_dag(3, {{0, 1}, {1, 2}});
  Dag cyclic = make_dag(3, {{0, 1}, {1, 2}, {2, 1}});
  CHECK_THROWS_AS(deepstruct::analyze(cyclic), deepstruct::not_a_dag);
  CHECK_THROWS_AS(deepstruct::analyze(g, std::vector<std::size_t>{0, 1}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::analyze(g, std::vector<std::size_t>{0, 1, 1}), deepstruct::value_error);  // 1 -> 2 stays
  CHECK_THROWS_AS(deepstruct::analyze(g, std::vector<std::size_t>{0, 7, 8}), deepstruct::value_error);  // layer >= n
  AnalysisOptions opt;
  opt.outputs = {3};
  CHECK_THROWS_WITH(deepstruct::analyze(g, opt), test::contains("output vertex ids below 3, found 3"));
  opt = {};
  opt.exact_path_length_limit = 1;
  opt.path_length_samples = 0;
  CHECK_THROWS_AS(deepstruct::analyze(g, opt), deepstruct::value_error);
}

TEST_CASE("analyze: a layer of SIZE_MAX is refused before anything is indexed", "[graph][analysis][robustness]") {
  // Issue 14: max + 1 wrapped to 0, the range check passed, and the layer sizes were written out
  // of bounds (a GraphML file could store such a layer; graphml_layers(g, stored) passed it on).
  const Dag g = make_dag(3, {{0, 1}, {1, 2}});
  const std::size_t huge = std::numeric_limits<std::size_t>::max();
  CHECK_THROWS_WITH(deepstruct::analyze(g, std::vector<std::size_t>{0, 1, huge}),
                    test::contains("expected layers below the number of vertices (3), found layer " + std::to_string(huge) + " at vertex 2"));
  CHECK_THROWS_AS(deepstruct::analyze(g, std::vector<std::size_t>{huge, huge, huge}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::analyze(g, std::vector<std::size_t>{0, 1, 3}), deepstruct::value_error);
  CHECK(deepstruct::analyze(g, std::vector<std::size_t>{0, 1, 2}).depth == 3);
}

TEST_CASE("analyze: any Boost graph with the concepts gives the same report", "[graph][analysis]") {
  const std::size_t n = 200;
  Edges edges = random_edges(n, 800, 3, false);
  std::sort(edges.begin(), edges.end());
  using Csr = boost::compressed_sparse_row_graph<boost::directedS>;
  const Csr csr(boost::edges_are_sorted, edges.begin(), edges.end(), n);
  const std::string a = deepstruct::to_json(deepstruct::analyze(make_dag(n, edges)));
  const std::string b = deepstruct::to_json(deepstruct::analyze(csr));
  CHECK(a == b);
}

TEST_CASE("analyze: sampled shortest paths are seeded and close to the exact value", "[graph][analysis]") {
  const std::size_t n = 400;
  const Dag g = make_dag(n, random_edges(n, 1200, 11, false));
  const StructureReport exact = deepstruct::analyze(g);
  REQUIRE(exact.shortest_paths_exact);
  CHECK(exact.shortest_path_sources == n);
  AnalysisOptions opt;
  opt.exact_path_length_limit = 100;
  opt.path_length_samples = 60;
  opt.seed = 5;
  const StructureReport a = deepstruct::analyze(g, opt), b = deepstruct::analyze(g, opt);
  CHECK_FALSE(a.shortest_paths_exact);
  CHECK(a.shortest_path_sources == 60);
  CHECK(a.average_shortest_path_length == b.average_shortest_path_length);
  CHECK(a.average_shortest_path_length == Approx(exact.average_shortest_path_length).epsilon(0.05));
  opt.seed = 6;
  const StructureReport c = deepstruct::analyze(g, opt);
  CHECK(c.average_shortest_path_length != a.average_shortest_path_length);
  CHECK(c.average_shortest_path_length == Approx(exact.average_shortest_path_length).epsilon(0.05));
  opt.path_length_samples = n;  // asking for every vertex is the exact computation
  CHECK(deepstruct::analyze(g, opt).average_shortest_path_length == exact.average_shortest_path_length);
  opt.shortest_paths = false;
  opt.clustering = false;
  const StructureReport off = deepstruct::analyze(g, opt);
  CHECK(std::isnan(off.average_shortest_path_length));
  CHECK(std::isnan(off.average_clustering));
  const nlohmann::json j = nlohmann::json::parse(deepstruct::to_json(off));
  CHECK(j["average_clustering"].is_null());
  CHECK(deepstruct::to_text(off).find("not computed") != std::string::npos);
}

TEST_CASE("analyze: to_json is valid JSON holding the report, to_text aligns it", "[graph][analysis]") {
  AnalysisOptions opt;
  opt.inputs = {0, 1};
  opt.outputs = {4};
  const StructureReport r = deepstruct::analyze(make_dag(7, {{0, 2}, {1, 2}, {2, 4}, {1, 3}, {6, 4}, {0, 4}}), opt);
  const nlohmann::json j = nlohmann::json::parse(deepstruct::to_json(r));
  CHECK(j["vertices"] == 7);
  CHECK(j["edges"] == 6);
  CHECK(j["density"].get<double>() == r.density);
  CHECK(j["layer_sizes"].get<std::vector<std::size_t>>() == r.layer_sizes);
  CHECK(j["skip_lengths"].get<std::vector<std::size_t>>() == std::vector<std::size_t>{0, 4, 2});
  CHECK(j["dead_neurons"].get<std::vector<std::size_t>>() == std::vector<std::size_t>{3, 5, 6});
  CHECK(j["in_degree"]["histogram"].get<std::vector<std::size_t>>() == r.in_degree.histogram);
  CHECK(j["out_degree"]["stddev"].get<double>() == r.out_degree.stddev);
  CHECK(j["layer_pair_densities"].size() == r.layer_pair_densities.size());
  CHECK(j["layer_pair_densities"][1]["density"].get<double>() == r.layer_pair_densities[1].density);
  CHECK(j["input_output_paths"] == 3.0);
  CHECK(j["average_shortest_path_length"].get<double>() == r.average_shortest_path_length);
  CHECK(j["shortest_paths_exact"] == true);
  CHECK(j["component_sizes"].get<std::vector<std::size_t>>() == std::vector<std::size_t>{6, 1});

  const std::string text = deepstruct::to_text(r);
  CHECK(text.find("dead neurons                  3 (2 unreachable from inputs, 2 cannot reach outputs)") != std::string::npos);
  CHECK(text.find("layer sizes                   4 2 1") != std::string::npos);
  // Every "label value" line has its value in column 30.
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("layer pair", 0) == 0 || line.rfind("  ", 0) == 0) continue;
    INFO(line);
    REQUIRE(line.size() > 30);
    CHECK(line[29] == ' ');
    CHECK(line[30] != ' ');
  }
}

TEST_CASE("analyze agrees with networkx on random graphs", "[graph][analysis][networkx]") {
  const std::string python = DEEPSTRUCT_PYTHON;
  if (python.empty() || std::system((python + " -c \"import networkx\" >/dev/null 2>&1").c_str()) != 0) {
    WARN("networkx not available to " << (python.empty() ? std::string("(no python)") : python) << ": cross-check skipped");
    return;
  }
  struct Case {
    std::string name;
    std::size_t n, m;
    bool backbone;
  };
  const std::vector<Case> cases{{"connected", 300, 900, true}, {"sparse", 300, 200, false}, {"paths", 40, 90, false}};
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      const Edges edges = random_edges(c.n, c.m, 42 + c.n + c.m, c.backbone);
      // Given inputs and outputs for the dead neurons: the lowest and the highest tenth of the ids.
      AnalysisOptions given;
      for (std::size_t v = 0; v < c.n / 10; ++v) given.inputs.push_back(v);
      for (std::size_t v = c.n - c.n / 10; v < c.n; ++v) given.outputs.push_back(v);
      const std::string stem = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/analysis_" + c.name;
      {
        std::ofstream out(stem + ".edges");
        out << c.n << '\n';
        for (const std::size_t v : given.inputs) out << v << ' ';
        out << '\n';
        for (const std::size_t v : given.outputs) out << v << ' ';
        out << '\n';
        for (const auto& [u, v] : edges) out << u << ' ' << v << '\n';
      }
      {
        std::ofstream py(stem + ".py");
        py << R"(import json, statistics, sys
from collections import Counter
import networkx as nx
lines = open(sys.argv[1]).read().split('\n')
n = int(lines[0])
inputs = [int(v) for v in lines[1].split()]
outputs = [int(v) for v in lines[2].split()]
G = nx.MultiDiGraph()
G.add_nodes_from(range(n))
G.add_edges_from(tuple(map(int, l.split())) for l in lines[3:] if l.strip())
U = nx.Graph()
U.add_nodes_from(range(n))
U.add_edges_from(G.edges())
out = {}
out['clustering'] = nx.average_clustering(U)
out['components'] = sorted((len(c) for c in nx.weakly_connected_components(G)), reverse=True)
out['depth'] = nx.dag_longest_path_length(G) + 1
out['density'] = nx.density(nx.DiGraph(G)) if G.number_of_edges() == nx.DiGraph(G).number_of_edges() else None
if nx.is_connected(U):
    out['aspl'] = nx.average_shortest_path_length(U)
total = 0
pairs = 0
for s, d in nx.all_pairs_shortest_path_length(U):
    total += sum(d.values())
    pairs += len(d) - 1
out['aspl_reachable'] = total / pairs
out['pairs'] = pairs
if n <= 60:
    sources = [v for v in G if G.in_degree(v) == 0]
    sinks = [v for v in G if G.out_degree(v) == 0]
    out['paths'] = sum(len(list(nx.all_simple_edge_paths(G, s, t))) for s in sources for t in sinks if s != t)
def degree_stats(degree):
    d = [degree(v) for v in range(n)]
    count = Counter(d)
    return {'min': min(d), 'max': max(d), 'mean': statistics.fmean(d), 'stddev': statistics.pstdev(d),
            'histogram': [count.get(k, 0) for k in range(max(d) + 1)]}
out['in_degree'] = degree_stats(G.in_degree)
out['out_degree'] = degree_stats(G.out_degree)
out['sources'] = sum(1 for v in G if G.in_degree(v) == 0)
out['sinks'] = sum(1 for v in G if G.out_degree(v) == 0)
out['isolated'] = len(list(nx.isolates(G)))
reached = set(inputs).union(*(nx.descendants(G, s) for s in inputs))
reaching = set(outputs).union(*(nx.ancestors(G, t) for t in outputs))
out['unreachable_from_inputs'] = n - len(reached)
out['cannot_reach_outputs'] = n - len(reaching)
out['dead'] = [v for v in range(n) if v not in reached or v not in reaching]
if n <= 60:  # the same by has_path, pair by pair
    alive = lambda v: ((v in inputs or any(nx.has_path(G, s, v) for s in inputs)) and
                       (v in outputs or any(nx.has_path(G, v, t) for t in outputs)))
    assert out['dead'] == [v for v in range(n) if not alive(v)]
# Longest-path layers, then edges (parallel ones included) per layer pair and per span.
layer = {}
for v in nx.topological_sort(G):
    layer[v] = max((layer[u] + 1 for u in G.predecessors(v)), default=0)
sizes = Counter(layer.values())
pairs = Counter((layer[u], layer[v]) for u, v in G.edges())
out['layer_sizes'] = [sizes[l] for l in range(max(layer.values()) + 1)]
out['layer_pairs'] = [[s, t, k, k / (sizes[s] * sizes[t])] for (s, t), k in sorted(pairs.items())]
spans = Counter(layer[v] - layer[u] for u, v in G.edges())
out['skip_lengths'] = [spans.get(k, 0) for k in range(max(layer.values()) + 1)]
json.dump(out, open(sys.argv[2], 'w'))
)";
      }
      const std::string cmd = python + " " + stem + ".py " + stem + ".edges " + stem + ".json";
      REQUIRE(std::system(cmd.c_str()) == 0);
      std::ifstream in(stem + ".json");
      const nlohmann::json nx = nlohmann::json::parse(in);

      const StructureReport r = deepstruct::analyze(make_dag(c.n, edges));
      CHECK(r.average_clustering == Approx(nx["clustering"].get<double>()).epsilon(1e-12));
      CHECK(r.component_sizes == nx["components"].get<std::vector<std::size_t>>());
      CHECK(r.depth == nx["depth"].get<std::size_t>());
      if (!nx["density"].is_null()) CHECK(r.density == Approx(2.0 * nx["density"].get<double>()).epsilon(1e-12));
      if (nx.contains("aspl")) CHECK(r.average_shortest_path_length == Approx(nx["aspl"].get<double>()).epsilon(1e-12));
      CHECK(r.average_shortest_path_length == Approx(nx["aspl_reachable"].get<double>()).epsilon(1e-12));
      CHECK(r.shortest_path_pairs == nx["pairs"].get<std::uint64_t>());
      if (nx.contains("paths")) CHECK(r.input_output_paths == nx["paths"].get<double>());
      if (c.backbone) CHECK(nx.contains("aspl"));
      if (c.name == "paths") CHECK(nx.contains("paths"));

      // Degrees, sources, sinks, isolated vertices.
      for (const auto& [name, stats] : {std::pair<std::string, const deepstruct::DegreeStats*>{"in_degree", &r.in_degree},
                                        std::pair<std::string, const deepstruct::DegreeStats*>{"out_degree", &r.out_degree}}) {
        INFO(name);
        const nlohmann::json& d = nx[name];
        CHECK(stats->min == d["min"].get<std::size_t>());
        CHECK(stats->max == d["max"].get<std::size_t>());
        CHECK(stats->mean == Approx(d["mean"].get<double>()).epsilon(1e-12));
        CHECK(stats->stddev == Approx(d["stddev"].get<double>()).epsilon(1e-12));
        CHECK(stats->histogram == d["histogram"].get<std::vector<std::size_t>>());
      }
      CHECK(r.sources == nx["sources"].get<std::size_t>());
      CHECK(r.sinks == nx["sinks"].get<std::size_t>());
      CHECK(r.isolated == nx["isolated"].get<std::size_t>());
      // Layers from networkx's topological order: sizes, per-pair densities, spans.
      CHECK(r.layer_sizes == nx["layer_sizes"].get<std::vector<std::size_t>>());
      CHECK(r.skip_lengths == nx["skip_lengths"].get<std::vector<std::size_t>>());
      REQUIRE(r.layer_pair_densities.size() == nx["layer_pairs"].size());
      for (std::size_t i = 0; i < r.layer_pair_densities.size(); ++i) {
        const auto& p = r.layer_pair_densities[i];
        const nlohmann::json& q = nx["layer_pairs"][i];
        CHECK(p.source_layer == q[0].get<std::size_t>());
        CHECK(p.target_layer == q[1].get<std::size_t>());
        CHECK(p.edges == q[2].get<std::size_t>());
        CHECK(p.density == Approx(q[3].get<double>()).epsilon(1e-12));
      }
      // Dead neurons for the given inputs and outputs (networkx descendants / ancestors).
      const StructureReport d = deepstruct::analyze(make_dag(c.n, edges), given);
      CHECK(d.unreachable_from_inputs == nx["unreachable_from_inputs"].get<std::size_t>());
      CHECK(d.cannot_reach_outputs == nx["cannot_reach_outputs"].get<std::size_t>());
      CHECK(d.dead_neurons == nx["dead"].get<std::vector<std::size_t>>());
      if (c.name == "sparse") CHECK(d.dead_neurons.size() > 10);  // the comparison is not vacuous
      CHECK(r.skip_lengths.size() > 2);
    }
  }
}
