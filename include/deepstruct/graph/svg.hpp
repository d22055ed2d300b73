// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/svg.hpp
/// Pictures of layered networks as self-contained SVG 1.1 (no CSS, scripts, or fonts beyond the
/// generic "sans-serif"): layers are columns from left to right (by layer_index), the neurons of
/// a layer are dots spread vertically around the middle in id order, edges are straight lines and
/// skip edges (spanning more than one layer) are curves in their own colour. A column is as tall
/// as its neurons need at up to max_spacing apart, at most the drawing height; its dots are at
/// most 0.4 times their spacing in radius.
///
///     deepstruct::SvgOptions opt;
///     opt.title = "masked FFN 8-12-12-4";
///     deepstruct::write_svg("network.svg", g, opt);
///
/// The document is: a background <rect>, <g class="edges"> with one <line> per edge,
/// <g class="skip-edges"> with one <path> per skip edge, <g class="neurons"> with one <circle>
/// per vertex, then <g class="labels"> with the title and layer labels. Options:
/// docs/graph.md#pictures-svg.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "deepstruct/detail/atomic_file.hpp"
#include "deepstruct/detail/text_output.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/layer_index.hpp"

namespace deepstruct {

/// How write_svg() draws a network. Sizes are in SVG user units (pixels at 100%).
struct SvgOptions {
  double width = 960.0;
  double height = 540.0;
  double margin = 36.0;         ///< empty border around the drawing
  std::string title;            ///< drawn at the top (and as the document <title>) when not empty
  bool layer_labels = true;     ///< "L<l> (<size>)" under every column
  double max_radius = 6.0;      ///< neuron radius cap; the radius shrinks for big layers (min 0.75)
  double max_spacing = 32.0;    ///< largest vertical distance between neighbouring neurons of a column
  double edge_width = 0.8;
  double edge_opacity = 0.35;   ///< in [0, 1]; thin, translucent edges keep dense networks readable
  double skip_bend = 0.18;      ///< how far skip curves bow out, as a fraction of their length
  /// Colour edges by the sign of their weight (positive_colour / negative_colour) and scale their
  /// width with |weight| / max |weight| (from 0.25 to 3 times edge_width). Skip edges stay curves.
  bool weight_style = false;
  std::string neuron_colour = "#1f77b4";
  std::string edge_colour = "#555555";
  std::string skip_colour = "#e6550d";
  std::string positive_colour = "#2166ac";
  std::string negative_colour = "#b2182b";
  std::string background = "#ffffff";
  /// Column of every vertex; empty = layer_index(g). Every edge must go to a higher column.
  std::vector<std::size_t> layers;
  /// Write every vertex's label (g[v].label) beside it: for small graphs, e.g. a DeepCellDAN's
  /// cells with their parameter counts (cell_structure).
  bool vertex_labels = false;
};

namespace detail {
namespace svg {

inline std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    const std::size_t len = detail::xml_char_length(s, i);
    if (len == 0) {
      // What XML 1.0 cannot hold: a control character becomes a space, a byte that is not UTF-8
      // (or U+FFFE, U+FFFF, a surrogate) the replacement character U+FFFD - it is a picture.
      out += static_cast<unsigned char>(c) < 0x20 ? " " : "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.append(s, i, len);
    }
    i += len;
  }
  return out;
}

/// A coordinate with two decimals (enough at any zoom a browser offers, and compact).
inline std::string num(double x) { return detail::c_number("%.2f", x); }

inline void check_options(const SvgOptions& o) {
  auto positive = [](double x, const char* name) {
    if (!(x > 0.0) || !std::isfinite(x))
      DEEPSTRUCT_THROW(value_error, std::string("write_svg: expected ") + name + " > 0, found " + detail::number_str(x));
  };
  positive(o.width, "width");
  positive(o.height, "height");
  positive(o.max_radius, "max_radius");
  positive(o.max_spacing, "max_spacing");
  positive(o.edge_width, "edge_width");
  if (!(o.margin >= 0.0) || 2.0 * o.margin >= std::min(o.width, o.height))
    DEEPSTRUCT_THROW(value_error, "write_svg: expected 0 <= margin < min(width, height) / 2 = " +
                                      detail::number_str(std::min(o.width, o.height) / 2.0) + ", found " + detail::number_str(o.margin));
  if (!(o.edge_opacity >= 0.0 && o.edge_opacity <= 1.0))
    DEEPSTRUCT_THROW(value_error, "write_svg: expected edge_opacity in [0, 1], found " + detail::number_str(o.edge_opacity));
  if (!(o.skip_bend >= 0.0 && o.skip_bend <= 1.0))
    DEEPSTRUCT_THROW(value_error, "write_svg: expected skip_bend in [0, 1], found " + detail::number_str(o.skip_bend));
}

}  // namespace svg
}  // namespace detail

/// Writes g as an SVG document to out (in the classic locale whatever `out`'s or the global one;
/// nothing is written when it throws). Throws not_a_dag when g has a cycle (and no layers are
/// given), value_error on bad options or layers.
inline void write_svg(std::ostream& out, const Dag& g, const SvgOptions& options = {});

namespace detail {
namespace svg {

inline void write_svg_text(std::ostream& out, const Dag& g, const SvgOptions& options) {
  using detail::svg::escape;
  using detail::svg::num;
  detail::svg::check_options(options);
  const std::size_t n = num_vertices(g);
  const std::vector<std::size_t> layer = options.layers.empty() ? layer_index(g) : options.layers;
  if (layer.size() != n)
    DEEPSTRUCT_THROW(value_error, "write_svg: expected one layer per vertex (" + std::to_string(n) + "), found " +
                                      std::to_string(layer.size()));
  // Every layer below n before any "+ 1" (a layer of SIZE_MAX would wrap to 0) and any indexing.
  std::size_t depth = 0;
  for (std::size_t v = 0; v < n; ++v) {
    if (layer[v] >= n)
      DEEPSTRUCT_THROW(value_error, "write_svg: expected layers below the number of vertices (" + std::to_string(n) +
                                        "), found layer " + std::to_string(layer[v]) + " at vertex " + std::to_string(v));
    depth = std::max(depth, layer[v] + 1);
  }
  for (auto [e, e_end] = edges(g); e != e_end; ++e)
    if (layer[target(*e, g)] <= layer[source(*e, g)])
      DEEPSTRUCT_THROW(value_error, "write_svg: expected layer(target) > layer(source) on every edge, found edge " +
                                        std::to_string(source(*e, g)) + " -> " + std::to_string(target(*e, g)) +
                                        " from layer " + std::to_string(layer[source(*e, g)]) + " to layer " +
                                        std::to_string(layer[target(*e, g)]));

  // Layout: columns evenly spaced, each centred on the same height.
  std::vector<std::size_t> size(depth, 0), row(n, 0);
  for (std::size_t v = 0; v < n; ++v) row[v] = size[layer[v]]++;
  const double w = options.width, h = options.height, m = options.margin;
  const double top = m + (options.title.empty() ? 0.0 : 34.0);
  const double bottom = h - m - (options.layer_labels ? 22.0 : 0.0);
  const double mid_y = 0.5 * (top + bottom);
  const double avail = std::max(bottom - top, 1.0);
  // With vertex labels, room on the right for those of the last column (about 5.5 units a
  // character at font size 9).
  double label_room = 0.0;
  if (options.vertex_labels)
    for (std::size_t v = 0; v < n; ++v)
      if (layer[v] + 1 == depth) label_room = std::max(label_room, 5.5 * static_cast<double>(g[v].label.size()) + 4.0);
  label_room = std::min(label_room, 0.4 * (w - 2.0 * m));
  const double column = depth > 1 ? (w - 2.0 * m - label_room) / static_cast<double>(depth - 1) : 0.0;
  // Each column fills the height when it has to, up to max_spacing; its dots shrink with it.
  std::vector<double> spacing(depth), radius(depth);
  for (std::size_t l = 0; l < depth; ++l) {
    spacing[l] = size[l] > 1 ? std::min(options.max_spacing, avail / static_cast<double>(size[l] - 1)) : options.max_spacing;
    radius[l] = std::max(0.75, std::min({options.max_radius, 0.4 * spacing[l], depth > 1 ? 0.25 * column : options.max_radius}));
  }
  auto x_of = [&](std::size_t v) { return depth > 1 ? m + column * static_cast<double>(layer[v]) : 0.5 * w; };
  auto y_of = [&](std::size_t v) {
    const std::size_t l = layer[v];
    return mid_y + (static_cast<double>(row[v]) - 0.5 * static_cast<double>(size[l] - 1)) * spacing[l];
  };

  double max_abs_weight = 0.0;
  if (options.weight_style)
    for (auto [e, e_end] = edges(g); e != e_end; ++e)
      if (std::isfinite(g[*e].weight)) max_abs_weight = std::max(max_abs_weight, std::abs(g[*e].weight));
  auto weight_attributes = [&](const DagEdge& e) {
    const double wt = std::isfinite(g[e].weight) ? g[e].weight : 0.0;
    const double rel = max_abs_weight > 0.0 ? std::abs(wt) / max_abs_weight : 1.0;
    return std::string(" stroke=\"") + escape(wt < 0.0 ? options.negative_colour : options.positive_colour) +
           "\" stroke-width=\"" + num(options.edge_width * (0.25 + 2.75 * rel)) + "\"";
  };

  out << "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << num(w) << "\" height=\"" << num(h)
      << "\" viewBox=\"0 0 " << num(w) << ' ' << num(h) << "\">\n";
  if (!options.title.empty()) out << "<title>" << escape(options.title) << "</title>\n";
  out << "<desc>deepstruct: " << n << " neurons, " << num_edges(g) << " edges, " << depth << " layers</desc>\n";
  out << "<rect x=\"0\" y=\"0\" width=\"" << num(w) << "\" height=\"" << num(h) << "\" fill=\"" << escape(options.background)
      << "\"/>\n";

  out << "<g class=\"edges\" stroke=\"" << escape(options.edge_colour) << "\" stroke-width=\"" << num(options.edge_width)
      << "\" stroke-opacity=\"" << num(options.edge_opacity) << "\" stroke-linecap=\"round\">\n";
  for (auto [e, e_end] = edges(g); e != e_end; ++e) {
    const std::size_t u = source(*e, g), v = target(*e, g);
    if (layer[v] - layer[u] != 1) continue;
    out << "<line x1=\"" << num(x_of(u)) << "\" y1=\"" << num(y_of(u)) << "\" x2=\"" << num(x_of(v)) << "\" y2=\""
        << num(y_of(v)) << '"' << (options.weight_style ? weight_attributes(*e) : std::string()) << "/>\n";
  }
  out << "</g>\n";

  out << "<g class=\"skip-edges\" fill=\"none\" stroke=\"" << escape(options.skip_colour) << "\" stroke-width=\""
      << num(options.edge_width) << "\" stroke-opacity=\"" << num(std::min(1.0, 1.5 * options.edge_opacity)) << "\">\n";
  for (auto [e, e_end] = edges(g); e != e_end; ++e) {
    const std::size_t u = source(*e, g), v = target(*e, g);
    if (layer[v] - layer[u] == 1) continue;
    const double x1 = x_of(u), y1 = y_of(u), x2 = x_of(v), y2 = y_of(v);
    // A quadratic curve bowing away from the middle; the control point stays inside the drawing
    // area, so the whole curve does (it lies in the triangle of its three points).
    const double cx = 0.5 * (x1 + x2);
    const double bend = options.skip_bend * std::hypot(x2 - x1, y2 - y1);
    const double cy = std::clamp(0.5 * (y1 + y2) + (0.5 * (y1 + y2) <= mid_y ? -bend : bend), m, h - m);
    out << "<path d=\"M" << num(x1) << ' ' << num(y1) << " Q" << num(cx) << ' ' << num(cy) << ' ' << num(x2) << ' ' << num(y2)
        << '"' << (options.weight_style ? weight_attributes(*e) : std::string()) << "/>\n";
  }
  out << "</g>\n";

  out << "<g class=\"neurons\" fill=\"" << escape(options.neuron_colour) << "\">\n";
  for (std::size_t v = 0; v < n; ++v)
    out << "<circle cx=\"" << num(x_of(v)) << "\" cy=\"" << num(y_of(v)) << "\" r=\"" << num(radius[layer[v]]) << "\"/>\n";
  out << "</g>\n";
  if (options.vertex_labels) {
    out << "<g class=\"vertex-labels\" font-family=\"sans-serif\" font-size=\"9\" fill=\"#222222\">\n";
    for (std::size_t v = 0; v < n; ++v)
      if (!g[v].label.empty()) {
        out << "<text x=\"" << num(x_of(v) + radius[layer[v]] + 2.0) << "\" y=\"" << num(y_of(v) - radius[layer[v]] - 1.0) << "\">"
            << escape(g[v].label) << "</text>\n";
      }
    out << "</g>\n";
  }

  out << "<g class=\"labels\" font-family=\"sans-serif\" fill=\"#333333\" text-anchor=\"middle\">\n";
  if (!options.title.empty())
    out << "<text x=\"" << num(0.5 * w) << "\" y=\"" << num(m + 14.0) << "\" font-size=\"16\">" << escape(options.title)
        << "</text>\n";
  if (options.layer_labels) {
    // Every step-th column when they are too close for their labels.
    // (Capped at depth before the cast: on a drawing narrower than a pixel per layer the ratio
    // can exceed any std::size_t, and such a cast is undefined.)
    const double ratio = depth > 1 && column < 44.0 ? std::ceil(44.0 / column) : 1.0;
    const std::size_t step = ratio >= static_cast<double>(depth) ? depth : static_cast<std::size_t>(ratio);
    for (std::size_t l = 0; l < depth; l += step) {
      const double x = depth > 1 ? m + column * static_cast<double>(l) : 0.5 * w;
      out << "<text x=\"" << num(x) << "\" y=\"" << num(h - m - 4.0) << "\" font-size=\"11\">L" << l << " (" << size[l]
          << ")</text>\n";
    }
  }
  out << "</g>\n</svg>\n";
}

}  // namespace svg
}  // namespace detail

inline void write_svg(std::ostream& out, const Dag& g, const SvgOptions& options) {
  detail::write_in_classic_locale(out, [&](std::ostream& text) { detail::svg::write_svg_text(text, g, options); });
}

/// Writes g as an SVG file. The picture is drawn in memory first and written atomically (a
/// temporary file beside `path`, renamed over it): bad input or a failed write (io_error naming
/// the path and errno's reason) leaves an existing file as it was and no partial file behind.
inline void write_svg(const std::string& path, const Dag& g, const SvgOptions& options = {}) {
  const std::string svg = detail::classic_text([&](std::ostream& out) { detail::svg::write_svg_text(out, g, options); });
  detail::write_file_atomically_text(path, svg, "write_svg: cannot write '" + path + "'");
}

}  // namespace deepstruct
