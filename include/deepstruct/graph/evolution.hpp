// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/evolution.hpp
/// The structure of a network as sparse training evolves it: StructureLog adds, to every update
/// record of SET or RigL (<deepstruct/sparse_training.hpp>), what the graph side measures on the
/// model's neuron graph - dead neurons, input-output paths, skip edges by span - and writes the
/// records as JSON lines; write_evolution_svg draws them over training; the final structure is
/// write_graphml(generate_structure(model)).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <locale>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/analysis.hpp"
#include "deepstruct/graph/io.hpp"
#include "deepstruct/graph/models.hpp"
#include "deepstruct/sparse_training.hpp"

namespace deepstruct {

/// Collects the update records of a mask updater with the structure of `model` after each
/// (analyze(model): FFN, DAN). Plug it in as `updater.on_update = std::ref(log)`; call
/// record_initial() before training for step 0. Adds to every record: dead_neurons,
/// unreachable_from_inputs, cannot_reach_outputs, log10_input_output_paths, edges, and
/// skip_span_<k> (edges spanning k >= 2 layers). O(neurons + edges) per update (shortest paths and
/// clustering are not computed).
template <typename Model>
class StructureLog {
 public:
  explicit StructureLog(const Model& model) : model_(&model) {}

  /// A record of the structure before training (step 0, nothing dropped or grown).
  void record_initial() {
    UpdateRecord r;
    for (const auto& [name, layer] : model_->named_maskable_layers())
      for (std::size_t k = 0; k < layer->num_masks(); ++k) {
        LayerUpdate u;
        u.name = name + "." + layer->weight_name(k);
        u.nnz = layer->nnz(k);
        u.numel = layer->numel(k);
        r.layers.push_back(u);
      }
    (*this)(r);
  }

  /// Adds the structure to `r` and keeps a copy.
  void operator()(UpdateRecord& r) {
    const auto start = std::chrono::steady_clock::now();
    AnalysisOptions o;
    o.shortest_paths = false;
    o.clustering = false;
    const StructureReport s = analyze(*model_, o);
    r.structure.emplace_back("edges", double(s.edges));
    r.structure.emplace_back("dead_neurons", double(s.dead_neurons.size()));
    r.structure.emplace_back("unreachable_from_inputs", double(s.unreachable_from_inputs));
    r.structure.emplace_back("cannot_reach_outputs", double(s.cannot_reach_outputs));
    r.structure.emplace_back("log10_input_output_paths", s.log10_input_output_paths);
    for (std::size_t k = 2; k < s.skip_lengths.size(); ++k) r.structure.emplace_back("skip_span_" + std::to_string(k), double(s.skip_lengths[k]));
    records_.push_back(r);
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  const std::vector<UpdateRecord>& records() const { return records_; }
  /// Time spent measuring the structure (inside the training loop when plugged into an updater:
  /// subtract it to time the training alone).
  double seconds() const { return seconds_; }

  /// Every record as one JSON line (to_json_line), in order.
  std::string jsonl() const {
    std::string out;
    for (const auto& r : records_) out += to_json_line(r) + "\n";
    return out;
  }
  /// jsonl() to `path`; io_error naming it when it cannot be written.
  void write_jsonl(const std::string& path) const { detail::write_file_text(path, jsonl()); }

 private:
  const Model* model_;
  std::vector<UpdateRecord> records_;
  double seconds_ = 0;
};

/// A value of a record by name: a structure field, "dropped" / "grown" (summed over the masked
/// weights), "density" (active / all over them), or NaN when the record has no such field.
inline double record_value(const UpdateRecord& r, const std::string& name) {
  if (name == "dropped" || name == "grown" || name == "density") {
    double a = 0, b = 0;
    for (const auto& l : r.layers) {
      a += double(name == "dropped" ? l.dropped : name == "grown" ? l.grown : l.nnz);
      b += double(l.numel);
    }
    return name == "density" ? (b > 0 ? a / b : std::numeric_limits<double>::quiet_NaN()) : a;
  }
  for (const auto& [n, v] : r.structure)
    if (n == name) return v;
  return std::numeric_limits<double>::quiet_NaN();
}

/// Draws how the structure changed over training: one panel per field (record_value names),
/// the training step on the x axis, each panel with its own value range. Throws value_error for
/// no records or no fields; io_error when the file cannot be written.
inline void write_evolution_svg(const std::string& path, const std::vector<UpdateRecord>& records,
                                const std::vector<std::string>& fields = {"dead_neurons", "cannot_reach_outputs", "log10_input_output_paths", "grown"},
                                const std::string& title = "structure during sparse training") {
  if (records.empty()) DEEPSTRUCT_THROW(value_error, "write_evolution_svg: expected at least one record, found none");
  if (fields.empty()) DEEPSTRUCT_THROW(value_error, "write_evolution_svg: expected at least one field, found none");
  const double w = 720, panel = 150, left = 70, right = 20, top = 40, gap = 30;
  const double h = top + double(fields.size()) * (panel + gap);
  // The steps' range, whatever the records' order (two updaters logged one after the other each
  // count from 0).
  double x0 = double(records.front().step), x1 = x0;
  for (const auto& r : records) {
    x0 = std::min(x0, double(r.step));
    x1 = std::max(x1, double(r.step));
  }
  if (x1 <= x0) x1 = x0 + 1;
  auto num = [](double v) {  // in the classic locale, whatever the program's
    std::ostringstream o;
    o.imbue(std::locale::classic());
    o.precision(6);
    o << v;
    return o.str();
  };
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\""
      << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w << ' ' << h << "\" font-family=\"sans-serif\">\n"
      << "<rect x=\"0\" y=\"0\" width=\"" << w << "\" height=\"" << h << "\" fill=\"white\"/>\n"
      << "<text x=\"" << w / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << detail::xml_escape(title) << "</text>\n";
  for (std::size_t f = 0; f < fields.size(); ++f) {
    const double y_top = top + double(f) * (panel + gap), y_bottom = y_top + panel;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& r : records) {
      const double v = record_value(r, fields[f]);
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
    if (!std::isfinite(lo)) lo = hi = 0;
    // A range of at least 1, and wide enough to tell hi from lo where 1 is below a value's
    // resolution (a constant 1e17: lo + 1 == lo, and 0 / 0 would make every point NaN).
    if (hi <= lo) hi = lo + std::max(1.0, std::abs(lo) * 1e-9);
    auto px = [&](double step) { return left + (step - x0) / (x1 - x0) * (w - left - right); };
    // In halves: hi - lo and v - lo overflow for values near the double range (inf / inf = NaN).
    auto py = [&](double v) { return y_bottom - (v / 2 - lo / 2) / (hi / 2 - lo / 2) * panel; };
    out << "<g class=\"panel\">\n<rect x=\"" << left << "\" y=\"" << y_top << "\" width=\"" << w - left - right << "\" height=\"" << panel
        << "\" fill=\"none\" stroke=\"#999\"/>\n"
        << "<text x=\"" << left << "\" y=\"" << y_top - 6 << "\" font-size=\"12\">" << detail::xml_escape(fields[f]) << "</text>\n"
        << "<text x=\"" << left - 6 << "\" y=\"" << y_top + 10 << "\" font-size=\"10\" text-anchor=\"end\">" << num(hi) << "</text>\n"
        << "<text x=\"" << left - 6 << "\" y=\"" << y_bottom << "\" font-size=\"10\" text-anchor=\"end\">" << num(lo) << "</text>\n"
        << "<text x=\"" << w - right << "\" y=\"" << y_bottom + 14 << "\" font-size=\"10\" text-anchor=\"end\">step " << num(x1)
        << "</text>\n<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
    for (const auto& r : records) {
      const double v = record_value(r, fields[f]);
      if (std::isfinite(v)) out << num(px(double(r.step))) << ',' << num(py(v)) << ' ';
    }
    out << "\"/>\n</g>\n";
  }
  out << "</svg>\n";
  detail::write_file_text(path, out.str());
}

}  // namespace deepstruct
