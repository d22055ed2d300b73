// Tests of <deepstruct/graph/svg.hpp>: the document parses as XML, holds one circle per vertex
// and one line or path per edge, marks skip edges, and stays inside its viewBox.
#include <deepstruct/graph/svg.hpp>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "deepstruct/random.hpp"
#include "file_faults.hpp"
#include "test_support.hpp"

using deepstruct::Dag;
using deepstruct::SvgOptions;
using boost::property_tree::ptree;

namespace {

/// A layered DAG: dense-ish random masks between consecutive layers, plus skip edges that jump
/// `skip` layers ahead with probability p_skip.
Dag layered_dag(const std::vector<std::size_t>& sizes, double p, double p_skip, std::uint64_t seed) {
  deepstruct::Generator gen(seed);
  std::vector<std::size_t> first{0};
  for (std::size_t s : sizes) first.push_back(first.back() + s);
  Dag g(first.back());
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l)
    for (std::size_t i = first[l]; i < first[l + 1]; ++i) {
      for (std::size_t j = first[l + 1]; j < first[l + 2]; ++j)
        if (deepstruct::random::bernoulli(gen, p)) add_edge(i, j, g);
      if (l + 2 < sizes.size())
        for (std::size_t j = first[l + 2]; j < first[l + 3]; ++j)
          if (deepstruct::random::bernoulli(gen, p_skip)) add_edge(i, j, g);
    }
  // Every neuron of a later layer gets at least one input, so layer_index() keeps the columns.
  for (std::size_t l = 1; l < sizes.size(); ++l)
    for (std::size_t j = first[l]; j < first[l + 1]; ++j)
      if (in_degree(j, g) == 0) add_edge(first[l - 1], j, g);
  return g;
}

ptree parse(const std::string& svg) {
  std::istringstream in(svg);
  ptree pt;
  boost::property_tree::read_xml(in, pt);
  return pt;
}

std::string attr(const ptree& node, const std::string& name) { return node.get<std::string>("<xmlattr>." + name); }
double num_attr(const ptree& node, const std::string& name) { return std::stod(attr(node, name)); }

/// The <g> with the given class.
const ptree& group(const ptree& svg, const std::string& cls) {
  for (const auto& child : svg)
    if (child.first == "g" && attr(child.second, "class") == cls) return child.second;
  throw std::runtime_error("no <g class=\"" + cls + "\">");
}

std::size_t count(const ptree& g, const std::string& tag) {
  std::size_t k = 0;
  for (const auto& child : g) k += child.first == tag;
  return k;
}

/// The numbers of a path's d attribute "Mx y Qcx cy x y".
std::vector<double> path_numbers(const std::string& d) {
  std::string s = d;
  for (char& c : s)
    if (c == 'M' || c == 'Q') c = ' ';
  std::istringstream in(s);
  std::vector<double> v;
  for (double x; in >> x;) v.push_back(x);
  return v;
}

}  // namespace

TEST_CASE("write_svg: one circle per vertex, one line or curve per edge, all inside the viewBox", "[graph][svg]") {
  const Dag g = layered_dag({6, 10, 10, 3}, 0.4, 0.15, 7);
  SvgOptions opt;
  opt.title = "test <network> & \"friends\"";
  std::ostringstream out;
  deepstruct::write_svg(out, g, opt);
  const ptree doc = parse(out.str());
  const ptree& svg = doc.get_child("svg");
  CHECK(attr(svg, "xmlns") == "http://www.w3.org/2000/svg");
  CHECK(attr(svg, "version") == "1.1");
  CHECK(attr(svg, "viewBox") == "0 0 960.00 540.00");
  CHECK(svg.get<std::string>("title") == opt.title);

  const std::vector<std::size_t> layer = deepstruct::layer_index(g);
  std::size_t skips = 0;
  for (auto [e, e_end] = edges(g); e != e_end; ++e) skips += layer[target(*e, g)] - layer[source(*e, g)] > 1;
  REQUIRE(skips > 0);
  const ptree& neurons = group(svg, "neurons");
  const ptree& lines = group(svg, "edges");
  const ptree& curves = group(svg, "skip-edges");
  CHECK(count(neurons, "circle") == num_vertices(g));
  CHECK(count(lines, "line") == num_edges(g) - skips);
  CHECK(count(curves, "path") == skips);
  CHECK(attr(curves, "stroke") == opt.skip_colour);
  CHECK(attr(lines, "stroke") == opt.edge_colour);
  CHECK(attr(curves, "stroke") != attr(lines, "stroke"));

  auto inside = [&](double x, double y) { return x >= 0 && x <= opt.width && y >= 0 && y <= opt.height; };
  // Circles in vertex order: columns left to right by layer, rows top to bottom by id.
  std::vector<std::pair<double, double>> pos;
  for (const auto& c : neurons) {
    if (c.first != "circle") continue;
    const double x = num_attr(c.second, "cx"), y = num_attr(c.second, "cy"), r = num_attr(c.second, "r");
    CHECK(inside(x - r, y - r));
    CHECK(inside(x + r, y + r));
    pos.emplace_back(x, y);
  }
  for (std::size_t v = 1; v < pos.size(); ++v) {
    if (layer[v] == layer[v - 1]) {
      CHECK(pos[v].first == pos[v - 1].first);
      CHECK(pos[v].second > pos[v - 1].second);
    } else {
      CHECK(pos[v].first > pos[v - 1].first);
    }
  }
  // Every column is centred on the same height.
  std::map<double, std::pair<double, double>> column_extent;
  for (const auto& [x, y] : pos) {
    auto it = column_extent.emplace(x, std::make_pair(y, y)).first;
    it->second.first = std::min(it->second.first, y);
    it->second.second = std::max(it->second.second, y);
  }
  REQUIRE(column_extent.size() == 4);
  const double centre = 0.5 * (column_extent.begin()->second.first + column_extent.begin()->second.second);
  for (const auto& c : column_extent) CHECK(0.5 * (c.second.first + c.second.second) == Approx(centre).margin(0.02));

  for (const auto& l : lines) {
    if (l.first != "line") continue;
    CHECK(inside(num_attr(l.second, "x1"), num_attr(l.second, "y1")));
    CHECK(inside(num_attr(l.second, "x2"), num_attr(l.second, "y2")));
  }
  for (const auto& p : curves) {
    if (p.first != "path") continue;
    const std::vector<double> v = path_numbers(attr(p.second, "d"));
    REQUIRE(v.size() == 6);
    for (std::size_t i = 0; i < 6; i += 2) CHECK(inside(v[i], v[i + 1]));
    CHECK(v[4] - v[0] > 1.5 * (pos[6].first - pos[0].first));  // spans at least two columns
  }
}

TEST_CASE("write_svg: weights set colour and width, big layers get small dots", "[graph][svg]") {
  Dag g(4);
  add_edge(0, 2, deepstruct::EdgeProperties{0.5}, g);
  add_edge(1, 2, deepstruct::EdgeProperties{-2.0}, g);
  add_edge(2, 3, deepstruct::EdgeProperties{1.0}, g);
  add_edge(0, 3, deepstruct::EdgeProperties{-1.0}, g);
  SvgOptions opt;
  opt.weight_style = true;
  std::ostringstream out;
  deepstruct::write_svg(out, g, opt);
  const ptree doc = parse(out.str());
  const ptree& lines = group(doc.get_child("svg"), "edges");
  std::vector<std::pair<std::string, double>> styles;
  for (const auto& l : lines)
    if (l.first == "line") styles.emplace_back(attr(l.second, "stroke"), num_attr(l.second, "stroke-width"));
  REQUIRE(styles.size() == 3);  // in edge order: 0->2, 1->2, 2->3
  CHECK(styles[0].first == opt.positive_colour);
  CHECK(styles[1].first == opt.negative_colour);
  CHECK(styles[2].first == opt.positive_colour);
  CHECK(styles[1].second == Approx(3.0 * opt.edge_width).margin(0.01));  // the largest |weight|
  CHECK(styles[0].second == Approx(opt.edge_width * (0.25 + 2.75 * 0.25)).margin(0.01));
  const ptree& curves = group(doc.get_child("svg"), "skip-edges");
  REQUIRE(count(curves, "path") == 1);
  CHECK(attr(curves.get_child("path"), "stroke") == opt.negative_colour);

  auto radius = [](const Dag& d) {
    std::ostringstream s;
    deepstruct::write_svg(s, d);
    return num_attr(group(parse(s.str()).get_child("svg"), "neurons").get_child("circle"), "r");
  };
  const double small = radius(layered_dag({5, 5}, 1.0, 0.0, 1)), big = radius(layered_dag({400, 10}, 0.05, 0.0, 1));
  CHECK(small == SvgOptions{}.max_radius);
  CHECK(big < 1.0);
  CHECK(big >= 0.75);
}

TEST_CASE("write_svg: given layers, single vertex, and no labels", "[graph][svg]") {
  Dag g(3);
  add_edge(0, 1, g);
  SvgOptions opt;
  opt.layers = {0, 1, 1};  // vertex 2 has no input but belongs to the second column
  opt.layer_labels = false;
  std::ostringstream out;
  deepstruct::write_svg(out, g, opt);
  const ptree doc = parse(out.str());
  const ptree& svg = doc.get_child("svg");
  std::vector<double> xs;
  for (const auto& c : group(svg, "neurons"))
    if (c.first == "circle") xs.push_back(num_attr(c.second, "cx"));
  REQUIRE(xs.size() == 3);
  CHECK(xs[1] == xs[2]);
  CHECK(xs[0] < xs[1]);
  CHECK(count(group(svg, "labels"), "text") == 0);

  std::ostringstream one;
  deepstruct::write_svg(one, Dag(1));
  const ptree d1 = parse(one.str());
  CHECK(count(group(d1.get_child("svg"), "neurons"), "circle") == 1);
  CHECK(count(group(d1.get_child("svg"), "labels"), "text") == 1);
  std::ostringstream none;
  deepstruct::write_svg(none, Dag(0));
  CHECK_NOTHROW(parse(none.str()));
}

TEST_CASE("write_svg: files and errors", "[graph][svg]") {
  Dag g(3);
  add_edge(0, 1, g);
  add_edge(1, 2, g);
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/svg_chain.svg";
  std::remove(path.c_str());
  deepstruct::write_svg(path, g);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(count(group(parse(text.str()).get_child("svg"), "neurons"), "circle") == 3);

  CHECK_THROWS_AS(deepstruct::write_svg(std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/no/such/dir/x.svg", g), deepstruct::io_error);
  Dag cyclic(2);
  add_edge(0, 1, cyclic);
  add_edge(1, 0, cyclic);
  std::ostringstream sink;
  CHECK_THROWS_AS(deepstruct::write_svg(sink, cyclic), deepstruct::not_a_dag);
  SvgOptions bad;
  bad.layers = {0, 1};
  CHECK_THROWS_AS(deepstruct::write_svg(sink, g, bad), deepstruct::value_error);
  bad.layers = {0, 1, 1};
  CHECK_THROWS_WITH(deepstruct::write_svg(sink, g, bad), test::contains("found edge 1 -> 2 from layer 1 to layer 1"));
  bad = {};
  bad.edge_opacity = 1.5;
  CHECK_THROWS_AS(deepstruct::write_svg(sink, g, bad), deepstruct::value_error);
  bad = {};
  bad.margin = 400;
  CHECK_THROWS_AS(deepstruct::write_svg(sink, g, bad), deepstruct::value_error);
  bad = {};
  bad.width = 0;
  CHECK_THROWS_AS(deepstruct::write_svg(sink, g, bad), deepstruct::value_error);
  // A failed call leaves no file behind.
  const std::string bad_path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/svg_bad.svg";
  std::remove(bad_path.c_str());
  CHECK_THROWS(deepstruct::write_svg(bad_path, g, bad));
  CHECK_FALSE(std::ifstream(bad_path).good());
  // ... and an existing file keeps its contents.
  deepstruct::write_svg(bad_path, g);
  auto text_of = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string before = text_of(bad_path);
  REQUIRE(before.find("<svg") != std::string::npos);
  CHECK_THROWS(deepstruct::write_svg(bad_path, g, bad));
  CHECK(text_of(bad_path) == before);
}

TEST_CASE("write_svg: a drawing narrower than a pixel per layer labels its first layer only", "[graph][svg][robustness]") {
  // The step between labelled columns, ceil(44 / column width), was cast to std::size_t whatever its
  // size: 8.8e301 became 0 and the label loop never ended (the stream grew until memory ran out).
  Dag g(3);
  add_edge(0, 1, g);
  add_edge(1, 2, g);
  SvgOptions o;
  o.width = 1e-300;
  o.height = 1e-300;
  o.margin = 0;
  std::ostringstream out;
  deepstruct::write_svg(out, g, o);
  const ptree doc = parse(out.str());
  CHECK(count(group(doc.get_child("svg"), "labels"), "text") == 1);
  CHECK(out.str().find(">L0 (1)<") != std::string::npos);
  // Width given as the smallest subnormal: the column width underflows to 0.
  o.width = o.height = std::numeric_limits<double>::denorm_min() * 4;
  std::ostringstream tiny;
  deepstruct::write_svg(tiny, g, o);
  CHECK(count(group(parse(tiny.str()).get_child("svg"), "labels"), "text") == 1);
}

TEST_CASE("write_svg: a layer of SIZE_MAX is refused before anything is indexed", "[graph][svg][robustness]") {
  // Issue 14: depth = max + 1 wrapped to 0, the check passed and size[layer[v]]++ wrote out of bounds.
  Dag g(3);
  add_edge(0, 1, g);
  add_edge(1, 2, g);
  SvgOptions o;
  const std::size_t huge = std::numeric_limits<std::size_t>::max();
  o.layers = {0, 1, huge};
  std::ostringstream sink;
  CHECK_THROWS_WITH(deepstruct::write_svg(sink, g, o),
                    test::contains("expected layers below the number of vertices (3), found layer " + std::to_string(huge) + " at vertex 2"));
  o.layers = {huge, huge, huge};
  CHECK_THROWS_AS(deepstruct::write_svg(sink, g, o), deepstruct::value_error);
  o.layers = {0, 1, 3};
  CHECK_THROWS_AS(deepstruct::write_svg(sink, g, o), deepstruct::value_error);
  CHECK(sink.str().empty());
}

TEST_CASE("write_svg: written atomically, a failed write leaves the old file", "[graph][svg][robustness]") {
  const Dag small = layered_dag({2, 3, 2}, 0.8, 0.0, 1);
  const Dag big = layered_dag({20, 30, 20}, 0.8, 0.1, 2);
  const std::string dir = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/svg-atomic";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/net.svg";
  deepstruct::write_svg(path, small);
  const std::string before = test::file_text(path);
  std::string message;
  test::with_file_size_limit(1024, [&] {
    try {
      deepstruct::write_svg(path, big);
    } catch (const deepstruct::io_error& e) {
      message = e.what();
    }
  });
  CHECK_THAT(message, test::contains("write_svg: cannot write '" + path + "'"));
  CHECK_THAT(message, test::contains("File too large"));
  CHECK(test::file_text(path) == before);
  CHECK(test::temporary_files(dir).empty());

  test::SmallTmpfs fs(dir + "/mnt", 64 * 1024);
  if (!fs.ok()) {
    WARN("cannot mount a tmpfs here (not root?): the full-disk variant is skipped");
    return;
  }
  const std::string full = fs.path("net.svg");
  deepstruct::write_svg(full, small);
  const std::string old = test::file_text(full);
  fs.fill();
  CHECK_THROWS_WITH(deepstruct::write_svg(full, big), test::contains("No space left on device"));
  CHECK(test::file_text(full) == old);
  std::filesystem::remove(fs.path("filler"));
  CHECK(test::temporary_files(fs.path("")).empty());
}
