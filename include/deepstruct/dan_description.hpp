// SPDX-License-Identifier: MIT
#pragma once

/// \file dan_description.hpp
/// What a MaskedDeepDAN needs to know about its structure, as plain data (Eigen only, no Boost):
/// the size and vertices of every layer and a mask for every connected pair of layers. The graph
/// side fills it from a DAG (dan_description() in <deepstruct/graph/convert.hpp>); the model side
/// reads it. Written by hand, layer sizes and connections are enough: without vertex lists the
/// vertices are numbered consecutively layer by layer (default_layer_vertices).

#include <Eigen/Core>
#include <cstddef>
#include <string>
#include <vector>

#include "deepstruct/detail/memory.hpp"
#include "deepstruct/errors.hpp"

namespace deepstruct {

struct DanDescription {
  /// Number of vertices of every layer; layer 0 takes the network input.
  std::vector<std::size_t> layer_sizes;
  /// The graph's vertex ids of every layer, in the order of mask rows and columns. Empty: ids
  /// 0..n-1 consecutively layer by layer (default_layer_vertices(layer_sizes)).
  std::vector<std::vector<std::size_t>> layer_vertices;
  /// Optional names of the vertices of every layer, in the same order (a graph built from labelled
  /// edges keeps them through the network and back to generate_structure and GraphML). Empty:
  /// no labels.
  std::vector<std::vector<std::string>> layer_labels;

  /// The edges from layer source_layer to layer target_layer as a mask
  /// (rows = target layer vertices, cols = source layer vertices).
  struct Connection {
    std::size_t source_layer = 0;
    std::size_t target_layer = 0;
    Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> mask;
  };
  /// By target layer ascending, then source layer ascending. For every target t >= 1 the main
  /// connection (t-1, t) is present, even when its mask is empty (deepstruct always creates main
  /// layers); a skip connection (s, t) with s <= t-2 is present only when it has an edge.
  std::vector<Connection> connections;
};

/// The most neurons (vertices) a layer may have: 2^31 - 1, the int32 index MaskedLinear keeps
/// for its rows and columns. A larger layer is rejected before anything is allocated.
inline constexpr std::size_t max_layer_vertices = 2147483647;

namespace detail {

/// Throws shape_error naming the layer and its size when a layer has more than
/// max_layer_vertices vertices, or when the vertex ids of all layers (8 bytes each) cannot fit in
/// the physical memory of this machine. `who` starts the message.
inline void check_layer_sizes(const std::vector<std::size_t>& layer_sizes, const char* who) {
  double total = 0.0;
  for (std::size_t l = 0; l < layer_sizes.size(); ++l) {
    if (layer_sizes[l] > max_layer_vertices)
      DEEPSTRUCT_THROW(shape_error, std::string(who) + ": expected at most 2^31 - 1 = " + std::to_string(max_layer_vertices) +
                                        " vertices per layer (MaskedLinear's int32 index), found layer " + std::to_string(l) +
                                        " of " + std::to_string(layer_sizes[l]));
    total += static_cast<double>(layer_sizes[l]);
  }
  check_fits_memory<shape_error>(who, "the ids of " + std::to_string(static_cast<unsigned long long>(total)) + " vertices",
                                 total * static_cast<double>(sizeof(std::size_t)));
}

}  // namespace detail

/// Consecutive vertex ids layer by layer: layer 0 gets 0..sizes[0]-1, layer 1 the next sizes[1]
/// ids, and so on (the ids generate_structure gives the hidden neurons). Throws shape_error, before
/// allocating, for a layer of more than max_layer_vertices or ids that cannot fit in memory.
inline std::vector<std::vector<std::size_t>> default_layer_vertices(const std::vector<std::size_t>& layer_sizes) {
  detail::check_layer_sizes(layer_sizes, "default_layer_vertices");
  std::vector<std::vector<std::size_t>> vertices(layer_sizes.size());
  std::size_t next = 0;
  for (std::size_t l = 0; l < layer_sizes.size(); ++l) {
    vertices[l].resize(layer_sizes[l]);
    for (std::size_t& v : vertices[l]) v = next++;
  }
  return vertices;
}

/// d.layer_vertices, or default_layer_vertices(d.layer_sizes) when it is empty.
inline std::vector<std::vector<std::size_t>> layer_vertices_or_default(const DanDescription& d) {
  return d.layer_vertices.empty() ? default_layer_vertices(d.layer_sizes) : d.layer_vertices;
}

/// Checks that d is consistent: no vertex lists (consecutive ids) or as many as layer sizes and of
/// those sizes, at least one layer, connections in the documented order with source < target < number of layers, every main
/// connection present, no skip connection twice, and every mask of shape target size x source size.
/// Throws shape_error (wrong sizes or mask shapes, a layer of more than max_layer_vertices
/// vertices, sizes whose vertex ids cannot fit in memory) or value_error (order, missing or bad
/// layers). Runs before a MaskedDeepDAN allocates anything for d.
inline void check_dan_description(const DanDescription& d) {
  const std::size_t layers = d.layer_sizes.size();
  if (layers == 0) DEEPSTRUCT_THROW(value_error, "DanDescription: expected at least one layer, found none");
  detail::check_layer_sizes(d.layer_sizes, "DanDescription");
  if (!d.layer_vertices.empty() && d.layer_vertices.size() != layers)
    DEEPSTRUCT_THROW(shape_error, "DanDescription: expected no vertex lists (consecutive ids) or " + std::to_string(layers) +
                                      " (one per layer size), found " +
                                      std::to_string(d.layer_vertices.size()));
  for (std::size_t l = 0; l < d.layer_vertices.size(); ++l)
    if (d.layer_vertices[l].size() != d.layer_sizes[l])
      DEEPSTRUCT_THROW(shape_error, "DanDescription: layer " + std::to_string(l) + " has size " + std::to_string(d.layer_sizes[l]) +
                                        " but lists " + std::to_string(d.layer_vertices[l].size()) + " vertices");
  if (!d.layer_labels.empty() && d.layer_labels.size() != layers)
    DEEPSTRUCT_THROW(shape_error, "DanDescription: expected no label lists or " + std::to_string(layers) +
                                      " (one per layer size), found " + std::to_string(d.layer_labels.size()));
  for (std::size_t l = 0; l < d.layer_labels.size(); ++l)
    if (d.layer_labels[l].size() != d.layer_sizes[l])
      DEEPSTRUCT_THROW(shape_error, "DanDescription: layer " + std::to_string(l) + " has size " + std::to_string(d.layer_sizes[l]) +
                                        " but lists " + std::to_string(d.layer_labels[l].size()) + " labels");
  std::size_t k = 0;
  for (std::size_t t = 1; t < layers; ++t) {
    bool has_main = false;
    std::size_t next_source = 0;  // sources must be ascending and distinct
    for (; k < d.connections.size() && d.connections[k].target_layer == t; ++k) {
      const auto& c = d.connections[k];
      if (c.source_layer < next_source || c.source_layer >= t)
        DEEPSTRUCT_THROW(value_error, "DanDescription: connection " + std::to_string(k) + " (" + std::to_string(c.source_layer) + " -> " +
                                          std::to_string(t) + ") expected a source layer in [" + std::to_string(next_source) + ", " +
                                          std::to_string(t) + "), ascending and not repeated");
      next_source = c.source_layer + 1;
      has_main = has_main || c.source_layer + 1 == t;
      const auto rows = static_cast<Eigen::Index>(d.layer_sizes[t]), cols = static_cast<Eigen::Index>(d.layer_sizes[c.source_layer]);
      if (c.mask.rows() != rows || c.mask.cols() != cols)
        DEEPSTRUCT_THROW(shape_error, "DanDescription: connection " + std::to_string(c.source_layer) + " -> " + std::to_string(t) +
                                          " expected a mask of " + detail::shape_str(rows, cols) + ", found " +
                                          detail::shape_str(c.mask.rows(), c.mask.cols()));
    }
    if (!has_main)
      DEEPSTRUCT_THROW(value_error, "DanDescription: expected the main connection " + std::to_string(t - 1) + " -> " + std::to_string(t) +
                                        " (connections by target ascending), found none");
  }
  if (k != d.connections.size())
    DEEPSTRUCT_THROW(value_error, "DanDescription: connection " + std::to_string(k) + " (" + std::to_string(d.connections[k].source_layer) +
                                      " -> " + std::to_string(d.connections[k].target_layer) + ") is out of order or targets a layer outside [1, " +
                                      std::to_string(layers) + ")");
}

}  // namespace deepstruct
