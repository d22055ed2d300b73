// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/cells.hpp
/// The graph side of DeepCellDAN (<deepstruct/deep_cell_dan.hpp>): a Dag as the model's
/// CellGraph (cell_graph), the model's cells as a Dag labelled with their parameter counts and
/// densities (cell_structure), drawn as SVG or written as GraphML with those numbers as typed
/// attributes (write_cell_graphml: networkx reads them); and the neuron graph of a masked
/// convolution, where an edge exists only where an active weight connects two values
/// (conv2d_structure(conv, input)).

#include <Eigen/Core>
#include <cmath>
#include <locale>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/deep_cell_dan.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/graph/conv2d.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/io.hpp"
#include "deepstruct/masked_conv2d.hpp"

namespace deepstruct {

/// The CellGraph of a Dag: its vertices, and for every vertex its in-edges in the Dag's order
/// (for a Dag built from an edge list, the list's order: networkx's predecessor order for the
/// same list, so deepstruct's DeepCellDAN on that graph concatenates alike).
inline CellGraph cell_graph(const Dag& g) {
  CellGraph c;
  c.num_nodes = num_vertices(g);
  for (std::size_t v = 0; v < c.num_nodes; ++v)
    for (auto [e, end] = in_edges(v, g); e != end; ++e) c.edges.emplace_back(source(*e, g), v);
  return c;
}

/// One vertex per cell (the model's node ids), its edges, g[v].layer the cell's layer and
/// g[v].label "<v>: <parameters> p, <active>%" (parameters, and the share of active weights of
/// its masked layers in whole percents, ">99" and "<1" where rounding would say 100 or 0; short
/// enough to draw beside the vertex).
template <typename Scalar>
Dag cell_structure(DeepCellDAN<Scalar>& model) {
  Dag g(model.num_nodes());
  for (const auto& e : model.graph().edges) add_edge(e.first, e.second, g);
  for (std::size_t v = 0; v < model.num_nodes(); ++v) {
    g[v].layer = model.layer(v);
    const auto w = model.cell_weights(v);
    // Whole percents, but never "100%" for a cell that lost a weight or "0%" for one that kept
    // one (99.6% rounded to 100, 0.4% to 0): ">99%" and "<1%" there.
    std::string density = "100";
    if (w.second > 0 && w.first < w.second) {
      const double percent = 100.0 * static_cast<double>(w.first) / static_cast<double>(w.second);
      if (w.first == 0) density = "0";
      else if (percent < 1.0) density = "<1";
      else if (percent > 99.0) density = ">99";
      else density = std::to_string(static_cast<int>(std::lround(percent)));
    }
    g[v].label = std::to_string(v) + ": " + std::to_string(model.cell_parameters(v)) + " p, " + density + "%";
  }
  return g;
}

/// The cell graph as GraphML: node ids 0..n-1, and per node `layer` (int), `label` (string),
/// `parameters`, `active_weights`, `weights` (long), `density` (double: active / all weights of
/// its masked layers), `input` and `output` (boolean). Atomic; io_error naming the path.
template <typename Scalar>
void write_cell_graphml(const std::string& path, DeepCellDAN<Scalar>& model) {
  const Dag g = cell_structure(model);
  std::ostringstream out;
  out.imbue(std::locale::classic());  // whatever the program's locale: 1000, not "1.000"
  out.precision(17);
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\">\n"
         "  <key id=\"d0\" for=\"node\" attr.name=\"layer\" attr.type=\"int\"/>\n"
         "  <key id=\"d1\" for=\"node\" attr.name=\"label\" attr.type=\"string\"/>\n"
         "  <key id=\"d2\" for=\"node\" attr.name=\"parameters\" attr.type=\"long\"/>\n"
         "  <key id=\"d3\" for=\"node\" attr.name=\"active_weights\" attr.type=\"long\"/>\n"
         "  <key id=\"d4\" for=\"node\" attr.name=\"weights\" attr.type=\"long\"/>\n"
         "  <key id=\"d5\" for=\"node\" attr.name=\"density\" attr.type=\"double\"/>\n"
         "  <key id=\"d6\" for=\"node\" attr.name=\"input\" attr.type=\"boolean\"/>\n"
         "  <key id=\"d7\" for=\"node\" attr.name=\"output\" attr.type=\"boolean\"/>\n"
         "  <graph edgedefault=\"directed\">\n";
  for (std::size_t v = 0; v < model.num_nodes(); ++v) {
    const auto w = model.cell_weights(v);
    const CellInfo info = model.cell_info(v);
    out << "    <node id=\"" << v << "\"><data key=\"d0\">" << g[v].layer << "</data><data key=\"d1\">" << detail::xml_escape(g[v].label)
        << "</data><data key=\"d2\">" << model.cell_parameters(v) << "</data><data key=\"d3\">" << w.first << "</data><data key=\"d4\">"
        << w.second << "</data><data key=\"d5\">" << (w.second > 0 ? static_cast<double>(w.first) / static_cast<double>(w.second) : 1.0)
        << "</data><data key=\"d6\">" << (info.is_input ? "true" : "false") << "</data><data key=\"d7\">"
        << (info.is_output ? "true" : "false") << "</data></node>\n";
  }
  for (const auto& e : model.graph().edges) out << "    <edge source=\"" << e.first << "\" target=\"" << e.second << "\"/>\n";
  out << "  </graph>\n</graphml>\n";
  detail::write_file_text(path, out.str(), "write_cell_graphml");
}

/// The neuron graph of a masked convolution on inputs of height x width (conv2d_structure with
/// the layer's geometry), keeping an edge only where an active weight connects the two values.
template <typename Scalar>
Dag conv2d_structure(const MaskedConv2d<Scalar>& conv, Eigen::Index height, Eigen::Index width) {
  const Conv2dOptions& o = conv.options();
  Conv2dGeometry geometry;
  geometry.in_channels = conv.in_channels();
  geometry.out_channels = conv.out_channels();
  geometry.kernel = {o.kernel[0], o.kernel[1]};
  geometry.stride = {o.stride[0], o.stride[1]};
  geometry.padding = {o.padding[0], o.padding[1]};
  geometry.dilation = {o.dilation[0], o.dilation[1]};
  geometry.groups = o.groups;
  geometry.input = {height, width};
  return conv2d_structure(geometry, conv.mask());
}

}  // namespace deepstruct
