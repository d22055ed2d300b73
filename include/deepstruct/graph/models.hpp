// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/models.hpp
/// Models <-> graphs: make_dan() builds a MaskedDeepDAN from any DAG, generate_structure() turns a
/// MaskedDeepFFN or MaskedDeepDAN (trained, pruned) back into the DAG of its neurons, as deepstruct's
/// generate_structure, and make_scalable_dan() grows a ScalableDAN into a network.

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/dan_description.hpp"
#include "deepstruct/graph/analysis.hpp"
#include "deepstruct/graph/convert.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/scalable.hpp"
#include "deepstruct/graph/io.hpp"
#include "deepstruct/masked_deep_dan.hpp"
#include "deepstruct/masked_deep_ffn.hpp"
#include "deepstruct/model_io.hpp"

namespace deepstruct {

/// deepstruct's MaskedDeepDAN(input_size, num_classes, structure): layers from the layer index of
/// `dag`, a masked layer per connected pair of layers. Throws not_a_dag for a cyclic graph.
template <typename Scalar, typename Graph>
MaskedDeepDAN<Scalar> make_dan(Eigen::Index inputs, Eigen::Index outputs, const Graph& dag, const DANOptions& options = {}) {
  return MaskedDeepDAN<Scalar>(inputs, outputs, dan_description(dag), options);
}

/// The entry of generate_structure's `original_ids` for an input or output neuron: it has no
/// vertex in the DAG the network was made from.
inline constexpr std::size_t no_original_id = std::numeric_limits<std::size_t>::max();

/// The neuron DAG of a MaskedDeepDAN from its current masks (after pruning: the pruned structure).
/// Vertices: the inputs (with include_input), the hidden neurons layer by layer in the order of
/// layer_vertices(t), then the outputs (with include_output). Every neuron is a vertex, also an
/// isolated one, and every vertex stores its network layer (inputs 0, hidden layer t at t or, with
/// the inputs, t + 1, the outputs last), its position in that layer (its row in the masks) and,
/// for hidden neurons of a network made from a labelled graph, its label. `original_ids`, if given, receives one entry per vertex of the returned graph:
/// for a hidden neuron the id it had in the DAG the network was made from (layer_vertices), for an
/// input or output neuron no_original_id. Without inputs and outputs the hidden neurons are
/// vertices 0.. and `(*original_ids)[v]` maps every vertex back to the DAG.
template <typename Scalar>
Dag generate_structure(const MaskedDeepDAN<Scalar>& model, const StructureOptions& options = {},
                       std::vector<std::size_t>* original_ids = nullptr) {
  const std::size_t L = model.num_hidden_layers();
  const std::size_t in = options.include_input ? static_cast<std::size_t>(model.inputs()) : 0;
  std::vector<std::size_t> offset(L + 1, in);
  for (std::size_t t = 0; t < L; ++t) offset[t + 1] = offset[t] + static_cast<std::size_t>(model.hidden_layer_size(t));
  const std::size_t out = options.include_output ? static_cast<std::size_t>(model.outputs()) : 0;
  Dag g(offset[L] + out);
  // The network's layers (what write_graphml writes): inputs 0, hidden layer t is t (+1 with the
  // inputs), outputs after the last hidden layer. A pruned neuron keeps its layer.
  const std::size_t shift = options.include_input ? 1 : 0;
  for (std::size_t t = 0; t < L; ++t)
    for (std::size_t v = offset[t]; v < offset[t + 1]; ++v) g[v].layer = t + shift;
  for (std::size_t v = offset[L]; v < offset[L] + out; ++v) g[v].layer = L + shift;
  // Each vertex's place in its layer (the neuron order of the network), and the labels the
  // network kept from the graph it was made from.
  for (std::size_t v = 0; v < in; ++v) g[v].position = v;
  for (std::size_t t = 0; t < L; ++t) {
    const auto& labels = model.layer_labels(t);
    for (std::size_t v = offset[t]; v < offset[t + 1]; ++v) {
      g[v].position = v - offset[t];
      if (!labels.empty()) g[v].label = labels[v - offset[t]];
    }
  }
  for (std::size_t v = offset[L]; v < offset[L] + out; ++v) g[v].position = v - offset[L];
  // Two passes over the masks: the degrees (to size every edge list once), then the edges.
  std::vector<std::size_t> out_degree(num_vertices(g), 0), in_degree(num_vertices(g), 0);
  auto count = [&](const LayerMask& m, std::size_t source_offset, std::size_t target_offset) {
    for (Eigen::Index i = 0; i < m.cols(); ++i) {
      const auto c = static_cast<std::size_t>(m.col(i).count());
      out_degree[source_offset + static_cast<std::size_t>(i)] += c;
    }
    for (Eigen::Index o = 0; o < m.rows(); ++o) in_degree[target_offset + static_cast<std::size_t>(o)] += static_cast<std::size_t>(m.row(o).count());
  };
  auto connect = [&g](const LayerMask& m, std::size_t source_offset, std::size_t target_offset) {
    for (Eigen::Index i = 0; i < m.cols(); ++i)
      for (Eigen::Index o = 0; o < m.rows(); ++o)
        if (m(o, i)) boost::add_edge(source_offset + static_cast<std::size_t>(i), target_offset + static_cast<std::size_t>(o), g);
  };
  auto each_mask = [&](auto&& fn) {
    if (options.include_input) fn(model.layer_first().mask(), 0, offset[0]);
    for (const auto& c : model.structure().connections) fn(c.mask, offset[c.source_layer], offset[c.target_layer]);
    if (options.include_output) fn(model.layer_out().mask(), offset[L - 1], offset[L]);
  };
  each_mask(count);
  detail::reserve_edges(g, out_degree, in_degree);
  each_mask(connect);
  if (original_ids != nullptr) {
    original_ids->assign(in, no_original_id);
    for (std::size_t t = 0; t < L; ++t)
      for (std::size_t v : model.layer_vertices(t)) original_ids->push_back(v);
    original_ids->insert(original_ids->end(), out, no_original_id);
  }
  return g;
}

/// The neuron DAG of a MaskedDeepFFN from its current masks: generate_structure of its network
/// engine (a chain DAN), as deepstruct's MaskedDeepFFN.generate_structure. With include_input /
/// include_output the input and output neurons and their connections are added. Vertex ids are
/// consecutive layer by layer; every neuron is a vertex, also one without edges.
template <typename Scalar>
Dag generate_structure(const MaskedDeepFFN<Scalar>& model, const StructureOptions& options = {}) {
  return generate_structure(model.network(), options);
}

/// The structure report of a MaskedDeepDAN: the neuron DAG of its current masks with its inputs
/// and outputs, the model's layers as layers (inputs 0, hidden layer t at t + 1, outputs last), and
/// dead neurons judged by paths from its inputs to its outputs. Vertex ids as generate_structure
/// with include_input and include_output.
template <typename Scalar>
StructureReport analyze(const MaskedDeepDAN<Scalar>& model, AnalysisOptions options = {}) {
  StructureOptions io;
  io.include_input = io.include_output = true;
  const Dag g = generate_structure(model, io);
  std::vector<std::size_t> layers(static_cast<std::size_t>(model.inputs()), 0);
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
    layers.insert(layers.end(), static_cast<std::size_t>(model.hidden_layer_size(t)), t + 1);
  layers.insert(layers.end(), static_cast<std::size_t>(model.outputs()), model.num_hidden_layers() + 1);
  options.inputs.clear();
  options.outputs.clear();
  for (std::size_t v = 0; v < static_cast<std::size_t>(model.inputs()); ++v) options.inputs.push_back(v);
  for (std::size_t v = layers.size() - static_cast<std::size_t>(model.outputs()); v < layers.size(); ++v) options.outputs.push_back(v);
  return analyze(g, layers, options);
}

/// The structure report of a MaskedDeepFFN: that of its network engine (a chain DAN).
template <typename Scalar>
StructureReport analyze(const MaskedDeepFFN<Scalar>& model, AnalysisOptions options = {}) {
  return analyze(model.network(), std::move(options));
}

/// The structure report of a MaskedDeepDAN's hidden neurons only: the graph generate_structure(model)
/// (no input or output neurons; vertex ids as there), in the network's hidden layers, judged by the
/// paths the network really has. Its inputs are the layer-0 neurons the input layer feeds (an
/// active weight in their row of layer_first's mask), its outputs the last-layer neurons that feed
/// a logit (an active weight in their column of layer_out's mask); options.inputs and
/// options.outputs are replaced. A hidden neuron is dead when no input reaches it or it reaches no
/// output: the hidden neurons analyze(model) reports dead, here with ids smaller by inputs().
/// When no neuron is fed or none feeds a logit, every hidden neuron is dead and there is no path.
/// (analyze(generate_structure(model), layers) without inputs and outputs would take every
/// source and every sink of the pruned graph for one, and find no dead neuron.)
template <typename Scalar>
StructureReport analyze_hidden(const MaskedDeepDAN<Scalar>& model, AnalysisOptions options = {}) {
  const Dag g = generate_structure(model);
  const std::size_t L = model.num_hidden_layers();
  std::vector<std::size_t> layers;
  for (std::size_t t = 0; t < L; ++t) layers.insert(layers.end(), static_cast<std::size_t>(model.hidden_layer_size(t)), t);
  const std::size_t last_offset = layers.size() - static_cast<std::size_t>(model.hidden_layer_size(L - 1));
  const LayerMask& first = model.layer_first().mask();
  const LayerMask& out = model.layer_out().mask();
  options.inputs.clear();
  options.outputs.clear();
  for (Eigen::Index o = 0; o < first.rows(); ++o)
    if (first.row(o).any()) options.inputs.push_back(static_cast<std::size_t>(o));
  for (Eigen::Index i = 0; i < out.cols(); ++i)
    if (out.col(i).any()) options.outputs.push_back(last_offset + static_cast<std::size_t>(i));
  options.empty_sets_mean_sources_and_sinks = false;  // none fed (or none feeding): every neuron dead
  return analyze(g, layers, options);
}

/// deepstruct's ScalableDAN.build options: LayerNorm on (use_layer_norm=True is its default).
inline DANOptions scalable_dan_options() {
  DANOptions options;
  options.use_layer_norm = true;
  return options;
}

/// The network of a ScalableDAN at `scale` (deepstruct's ScalableDAN.build, whose LayerNorm is on
/// by default, as here).
template <typename Scalar>
MaskedDeepDAN<Scalar> make_scalable_dan(const ScalableDAN& family, Eigen::Index inputs, Eigen::Index outputs,
                                        std::size_t scale, const DANOptions& options = scalable_dan_options()) {
  return make_dan<Scalar>(inputs, outputs, family.grow(scale), options);
}

/// Writes a DAN as deepstruct's two files: `prefix.graphml`, the graph the network was made from
/// (layer-major, with layer and position data: deepstruct's loader and read_graphml both give the
/// network's neuron order), and `prefix.npz`, its state_dict (the masks there, pruned or not, are
/// the network's). deepstruct rebuilds it with LayeredGraph.load and MaskedDeepDAN, then
/// load_state_dict(strict=True) (docs/coming-from-deepstruct.md). Throws value_error, writing
/// nothing, when `dag` is not the graph of this network (other layers, neuron order or skip
/// connections); io_error when a file cannot be written.
template <typename Scalar>
void save_dan(const std::string& prefix, const MaskedDeepDAN<Scalar>& model, const Dag& dag) {
  const DanDescription d = dan_description(dag);
  bool same = d.layer_vertices.size() == model.num_hidden_layers();
  for (std::size_t t = 0; same && t < d.layer_vertices.size(); ++t) same = d.layer_vertices[t] == model.layer_vertices(t);
  std::size_t skips = 0;
  for (std::size_t k = 0; same && k < d.connections.size(); ++k) {
    const auto& c = d.connections[k];
    if (c.source_layer + 1 == c.target_layer) continue;
    same = skips < model.skips().size() && model.skips()[skips].source == c.source_layer && model.skips()[skips].target == c.target_layer;
    ++skips;
  }
  same = same && skips == model.skips().size();
  if (!same)
    DEEPSTRUCT_THROW(value_error, "save_dan: expected the graph the network was made from (the same layers, neuron order and skip "
                                  "connections), found a graph with " + std::to_string(d.layer_sizes.size()) + " layers and " +
                                  std::to_string(skips) + " skip connections for a network with " +
                                  std::to_string(model.num_hidden_layers()) + " and " + std::to_string(model.skips().size()));
  const std::string graphml = detail::classic_text([&](std::ostream& out) { detail::write_graphml_text(out, dag, {}); });
  const NpzArchive npz = to_npz(model.state_dict());
  detail::write_file_text(prefix + ".graphml", graphml);
  npz.save(prefix + ".npz");
}

/// Reads a DAN from deepstruct's two files (see save_dan; tools/deepstruct_files.py exports them
/// from a deepstruct model with its neuron order): the network of `prefix.graphml` with the sizes,
/// bias and LayerNorm the state_dict in `prefix.npz` has, loaded from it (strict, deepstruct's
/// keys). `options` supplies the activation (not stored in state_dicts). Throws io_error naming
/// the file for anything that does not fit.
template <typename Scalar>
MaskedDeepDAN<Scalar> load_dan(const std::string& prefix, DANOptions options = {}) {
  const std::string npz_path = prefix + ".npz";
  const Dag g = read_graphml(prefix + ".graphml");
  const StateDict<Scalar> sd = state_dict_from_npz<Scalar>(NpzArchive::load(npz_path));
  auto weight = [&](const std::string& key) -> const typename StateDict<Scalar>::Matrix& {
    const auto it = sd.matrices.find(key);
    if (it == sd.matrices.end())
      DEEPSTRUCT_THROW(io_error, "npz file '" + npz_path + "': expected a MaskedDeepDAN weight '" + key + "', found none (keys: " +
                                     sd.key_list() + ")");
    return it->second;
  };
  const auto& first = weight("layer_first.weight");
  const auto& out = weight("layer_out.weight");
  options.bias = sd.vectors.count("layer_first.bias") != 0;
  options.use_layer_norm = sd.vectors.count("layer_normalizations.0.weight") != 0 || sd.vectors.count("layers_norm_hidden.0.weight") != 0;
  // Every weight of the network must come from the file, so a graph whose network needs more
  // weights than the file holds cannot load: refuse it before anything is allocated (a small
  // GraphML of two large layers describes a large network). Counted from the layers alone.
  {
    const LayeredView view(g);
    const std::size_t L = view.num_layers();
    auto size = [&](std::size_t l) { return static_cast<double>(view.vertices(l).size()); };
    double needed = L == 0 ? 0.0 : static_cast<double>(first.cols()) * size(0) + size(L - 1) * static_cast<double>(out.rows());
    for (std::size_t t = 1; t < L; ++t) needed += size(t - 1) * size(t);  // main connections, always there
    std::vector<std::pair<std::size_t, std::size_t>> skips;
    for (auto [e, end] = edges(g); e != end; ++e) {
      const std::size_t s = view.layer_of(source(*e, g)), t = view.layer_of(target(*e, g));
      if (t >= s + 2) skips.emplace_back(s, t);
    }
    std::sort(skips.begin(), skips.end());
    skips.erase(std::unique(skips.begin(), skips.end()), skips.end());
    for (const auto& [s, t] : skips) needed += size(s) * size(t);
    double held = 0.0;
    for (const auto& kv : sd.matrices) held += static_cast<double>(kv.second.size());
    if (needed > held)
      DEEPSTRUCT_THROW(io_error, "npz file '" + npz_path + "' does not fit the network of " + prefix + ".graphml: expected " +
                                     std::to_string(static_cast<long long>(needed)) + " weights for its layers, found " +
                                     std::to_string(static_cast<long long>(held)) + " in the file");
  }
  return detail::with_npz_path(npz_path, "does not fit the network of " + prefix + ".graphml", [&] {
    MaskedDeepDAN<Scalar> model = make_dan<Scalar>(first.cols(), out.rows(), g, options);
    model.load_state_dict(sd);
    return model;
  });
}

}  // namespace deepstruct
