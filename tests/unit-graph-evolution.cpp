// Tests of <deepstruct/graph/evolution.hpp>: the structure of a network logged at every sparse
// training update (JSON lines), drawn over training, and the final structure as GraphML.
#include <deepstruct/graph.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/sparse_training.hpp>
#include <deepstruct/train.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <locale>
#include <sstream>

#include "test_support.hpp"

TEST_CASE("StructureLog: RigL's updates with dead neurons, paths and skip spans; JSON lines; SVG; GraphML", "[graph][evolution]") {
  const deepstruct::DanDescription d = test::dan_description(test::load_json("masked_dan.json")["cases"][0]);
  deepstruct::MaskedDeepDAN<float> model(10, 3, d);
  deepstruct::sparse_init(model, 0.3, {}, 4);
  deepstruct::Adam<float> adam;
  deepstruct::MaskUpdateOptions o;
  o.update_every = 4;
  o.end = 30;
  deepstruct::RigL<deepstruct::Adam<float>, deepstruct::MaskedDeepDAN<float>> rigl(model, adam, o);
  deepstruct::StructureLog<deepstruct::MaskedDeepDAN<float>> log(model);
  log.record_initial();
  rigl.on_update = std::ref(log);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(10, 40);
  deepstruct::Labels y(40);
  for (int i = 0; i < 40; ++i) y[i] = i % 3;
  deepstruct::FitOptions fit;
  fit.epochs = 4;
  fit.batch_size = 5;
  fit.quiet = true;
  deepstruct::fit(model, rigl, x, y, fit);
  REQUIRE(log.records().size() == 1 + rigl.history().size());
  CHECK(rigl.history().size() == 7);  // steps 4, 8, ..., 28
  // The logged structure is the model's at that time: the last one is the model's now.
  deepstruct::AnalysisOptions a;
  a.shortest_paths = a.clustering = false;
  const deepstruct::StructureReport now = deepstruct::analyze(model, a);
  const auto& last = log.records().back();
  CHECK(deepstruct::record_value(last, "dead_neurons") == double(now.dead_neurons.size()));
  CHECK(deepstruct::record_value(last, "edges") == double(now.edges));
  CHECK(deepstruct::record_value(last, "log10_input_output_paths") == Approx(now.log10_input_output_paths));
  CHECK(deepstruct::record_value(last, "skip_span_2") == double(now.skip_lengths.at(2)));
  CHECK(deepstruct::record_value(log.records().front(), "grown") == 0);
  double grown = 0;  // the cosine schedule ends near 0: the early updates grow the most
  for (const auto& r : log.records()) grown = std::max(grown, deepstruct::record_value(r, "grown"));
  CHECK(grown > 0);
  CHECK(deepstruct::record_value(last, "density") == Approx(model.density()));
  // JSON lines: one per record, each parseable.
  const std::string dir = DEEPSTRUCT_TEST_TMP_DIR;
  log.write_jsonl(dir + "/evolution.jsonl");
  std::ifstream in(dir + "/evolution.jsonl");
  std::string line;
  std::size_t lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    CHECK(j.contains("dead_neurons"));
    CHECK(j["layers"].size() == model.maskable_layers().size());
    ++lines;
  }
  CHECK(lines == log.records().size());
  // The chart and the final structure.
  deepstruct::write_evolution_svg(dir + "/evolution.svg", log.records());
  std::ifstream svg(dir + "/evolution.svg");
  const std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  CHECK(std::count(text.begin(), text.end(), '\n') > 10);
  // One panel per default field, each a line through every record.
  std::size_t panels = 0;
  for (std::size_t at = text.find("<polyline"); at != std::string::npos; at = text.find("<polyline", at + 1)) {
    ++panels;
    const std::size_t begin = text.find("points=\"", at) + 8, end = text.find('"', begin);
    const std::string points = text.substr(begin, end - begin);
    CHECK(static_cast<std::size_t>(std::count(points.begin(), points.end(), ',')) == log.records().size());
  }
  CHECK(panels == 4);
  for (const char* field : {"dead_neurons", "cannot_reach_outputs", "log10_input_output_paths", "grown"})
    CHECK(text.find(std::string(">") + field + "<") != std::string::npos);
  CHECK_THROWS_AS(deepstruct::write_evolution_svg(dir + "/fields.svg", log.records(), {}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::write_evolution_svg(dir + "/none.svg", {}), deepstruct::value_error);
  deepstruct::write_graphml(dir + "/final.graphml", deepstruct::generate_structure(model));
  CHECK(boost::num_edges(deepstruct::read_graphml(dir + "/final.graphml")) == boost::num_edges(deepstruct::generate_structure(model)));
}

namespace {
// The points of every panel's polyline, as numbers.
std::vector<std::vector<std::pair<double, double>>> polylines(const std::string& path) {
  std::ifstream svg(path);
  const std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  std::vector<std::vector<std::pair<double, double>>> out;
  for (std::size_t at = text.find("<polyline"); at != std::string::npos; at = text.find("<polyline", at + 1)) {
    const std::size_t begin = text.find("points=\"", at) + 8, end = text.find('"', begin);
    std::istringstream points(text.substr(begin, end - begin));
    points.imbue(std::locale::classic());
    out.emplace_back();
    std::string point;
    while (points >> point) {
      const std::size_t comma = point.find(',');
      out.back().emplace_back(std::strtod(point.substr(0, comma).c_str(), nullptr), std::strtod(point.substr(comma + 1).c_str(), nullptr));
    }
  }
  return out;
}
}  // namespace

TEST_CASE("write_evolution_svg: every point inside its panel for constant large values and values near the double range", "[graph][evolution]") {
  // A constant 1e17 (lo + 1 == lo: the range was 0 and every point NaN), and +-1e308 (hi - lo is
  // inf: the largest value's point was inf / inf = NaN).
  std::vector<deepstruct::UpdateRecord> records(3);
  for (std::size_t i = 0; i < records.size(); ++i) {
    records[i].step = static_cast<long>(10 * i);
    records[i].structure = {{"constant", 1e17}, {"wide", i == 0 ? -1e308 : i == 1 ? 0.0 : 1e308}, {"small", double(i)}};
  }
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/evolution_range.svg";
  deepstruct::write_evolution_svg(path, records, {"constant", "wide", "small"});
  const auto lines = polylines(path);
  REQUIRE(lines.size() == 3);
  const double top = 40, panel = 150, gap = 30;
  for (std::size_t f = 0; f < lines.size(); ++f) {
    INFO("panel " << f);
    REQUIRE(lines[f].size() == 3);
    for (const auto& [x, y] : lines[f]) {
      CHECK(std::isfinite(x));
      CHECK(std::isfinite(y));
      CHECK(x >= 70);
      CHECK(x <= 700);
      CHECK(y >= top + double(f) * (panel + gap));
      CHECK(y <= top + double(f) * (panel + gap) + panel);
    }
  }
  // -1e308, 0, 1e308: bottom, middle, top of the second panel.
  CHECK(lines[1][0].second == Approx(top + panel + gap + panel));
  CHECK(lines[1][1].second == Approx(top + panel + gap + panel / 2));
  CHECK(lines[1][2].second == Approx(top + panel + gap));
  // A constant sits at the bottom, as a constant of ordinary size does.
  CHECK(lines[0][0].second == Approx(top + panel));
}

TEST_CASE("write_evolution_svg: the x axis spans the records' steps whatever their order", "[graph][evolution]") {
  // Two updaters logged one after the other: steps 0, 10, 20, then 5, 15 of the second. The x
  // range was the first to the last record's step (0..15): step 20 was drawn right of the panel.
  std::vector<deepstruct::UpdateRecord> records(5);
  const long steps[] = {0, 10, 20, 5, 15};
  for (std::size_t i = 0; i < records.size(); ++i) {
    records[i].step = steps[i];
    records[i].structure = {{"v", double(i)}};
  }
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/evolution_order.svg";
  deepstruct::write_evolution_svg(path, records, {"v"});
  const auto lines = polylines(path);
  REQUIRE(lines.size() == 1);
  REQUIRE(lines[0].size() == 5);
  for (std::size_t i = 0; i < 5; ++i) CHECK(lines[0][i].first == Approx(70 + double(steps[i]) / 20.0 * 630));
  std::ifstream svg(path);
  const std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, test::contains(">step 20<"));
  // Descending steps: every point was left of the panel.
  std::reverse(records.begin(), records.end());
  deepstruct::write_evolution_svg(path, records, {"v"});
  const auto reversed = polylines(path);
  REQUIRE(reversed.size() == 1);
  for (const auto& [x, y] : reversed[0]) {
    CHECK(x >= 70);
    CHECK(x <= 700);
  }
}
