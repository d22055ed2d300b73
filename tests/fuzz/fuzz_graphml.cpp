// Fuzz harness: parse_graphml, then what a reader's user does with the graph: graphml_layers
// (stored and automatic), analyze and write_svg with the stored layers, LayeredView, and a write
// and read round trip. parse_graphml may throw io_error only; the graph side may refuse a
// cyclic graph (not_a_dag) or stored layers that are no layering (value_error), nothing else.
#include <deepstruct/graph/analysis.hpp>
#include <deepstruct/graph/io.hpp>
#include <deepstruct/graph/layered.hpp>
#include <deepstruct/graph/svg.hpp>

#include <sstream>
#include <string>

#include "fuzz_common.hpp"

DEEPSTRUCT_FUZZ_TARGET(fuzz_graphml) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  deepstruct::Dag g;
  try {
    deepstruct::GraphmlReadOptions options;
    options.undirected = size % 2 == 0 ? deepstruct::UndirectedEdges::reject : deepstruct::UndirectedEdges::orient_by_id;
    g = deepstruct::parse_graphml(text, "fuzz.graphml", options);
  } catch (const deepstruct::io_error&) {
    return 0;
  }
  const std::size_t n = num_vertices(g);
  // Whatever a file stores, its layers are below n (read_graphml refuses others).
  const std::vector<std::size_t> stored = deepstruct::graphml_layers(g, deepstruct::GraphmlLayers::stored);
  for (const std::size_t l : stored) FUZZ_CHECK(l < n, "a stored layer not below the number of vertices");
  try {
    (void)deepstruct::analyze(g, stored);
  } catch (const deepstruct::value_error&) {  // not a layering (an edge that does not go up)
  }
  try {
    deepstruct::SvgOptions o;
    o.layers = stored;
    std::ostringstream svg;
    deepstruct::write_svg(svg, g, o);
  } catch (const deepstruct::value_error&) {
  }
  try {
    const deepstruct::LayeredView view(g);
    FUZZ_CHECK(view.num_vertices() == n, "LayeredView lost vertices");
    std::ostringstream out;
    deepstruct::write_graphml(out, g);
    const deepstruct::Dag back = deepstruct::parse_graphml(out.str(), "round trip");
    FUZZ_CHECK(num_vertices(back) == n && num_edges(back) == num_edges(g), "round trip changed the graph");
    (void)deepstruct::analyze(g);
  } catch (const deepstruct::not_a_dag&) {
  }
  return 0;
}
