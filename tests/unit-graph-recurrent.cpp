// Tests of <deepstruct/graph/recurrent.hpp>: a recurrent layer's (cyclic) neuron graph, a
// MaskedDeepRNN unrolled over time as a layered DAG, its analysis and its drawing.
#include <deepstruct/graph.hpp>
#include <deepstruct/graph/recurrent.hpp>

#include <sstream>

#include "test_support.hpp"

using deepstruct::MaskedDeepRNN;
using deepstruct::RecurrentKind;

TEST_CASE("recurrent_structure: one layer's neurons, gates folded into units, self loops and cycles", "[graph][recurrent]") {
  deepstruct::MaskedLSTMLayer<float> layer(3, 4);
  using Mask = Eigen::Matrix<bool, -1, -1>;
  Mask ih = Mask::Constant(16, 3, false), hh = Mask::Constant(16, 4, false);
  ih(0, 0) = true;       // input gate of unit 0 from input 0
  ih(4 + 0, 0) = true;   // forget gate of unit 0 from input 0: the same edge, weight 2
  ih(12 + 3, 2) = true;  // output gate of unit 3 from input 2
  hh(1, 1) = true;       // unit 1 -> unit 1: a self loop
  hh(8 + 2, 0) = true;   // cell gate of unit 2 from unit 0
  hh(0, 2) = true;       // unit 2 -> unit 0: a cycle 0 -> 2 -> 0
  layer.set_i2h_mask(ih);
  layer.set_h2h_mask(hh);
  const deepstruct::Dag g = deepstruct::recurrent_structure(layer);
  CHECK(boost::num_vertices(g) == 7);
  CHECK(boost::num_edges(g) == 5);
  const auto [e, found] = boost::edge(0, 3, g);
  REQUIRE(found);
  CHECK(g[e].weight == 2.0);
  CHECK(boost::edge(2, 6, g).second);
  CHECK(boost::edge(4, 4, g).second);  // self loop of unit 1
  CHECK(boost::edge(3, 5, g).second);
  CHECK(boost::edge(5, 3, g).second);
  CHECK(g[3].label == "h0");
  CHECK_THROWS_AS(deepstruct::layer_index(g), deepstruct::not_a_dag);
}

TEST_CASE("unrolled_structure: one layer per step and stack level; edges from both masks; analysis and SVG", "[graph][recurrent]") {
  deepstruct::RNNOptions options;
  options.kind = RecurrentKind::gru;
  MaskedDeepRNN<double> model(2, {3, 2}, options);
  const std::size_t T = 4;
  deepstruct::UnrolledLayout u;
  const deepstruct::Dag full = deepstruct::unrolled_structure(model, T, &u);
  CHECK(boost::num_vertices(full) == T * (2 + 3 + 2));
  // Full masks: x_t -> h0_t (2*3), h0_t -> h1_t (3*2) every step, h_{t-1} -> h_t (9 + 4) after the first.
  CHECK(boost::num_edges(full) == T * (6 + 6) + (T - 1) * (9 + 4));
  CHECK(full[u.unit(1, 2, 1)].layer == 2 + 1 + 1);
  CHECK(full[u.unit(1, 2, 1)].label == "h1.2.1");
  CHECK(full[u.input(3, 1)].layer == 0);
  // With every mask full the stored layers are the layer index (the longest path from an input).
  const std::vector<std::size_t> index = deepstruct::layer_index(full);
  for (std::size_t v = 0; v < index.size(); ++v) CHECK(index[v] == full[v].layer);
  const deepstruct::StructureReport dense = deepstruct::analyze(model, T);
  CHECK(dense.dead_neurons.empty());
  CHECK(dense.input_output_paths > 0);
  // Cut the second layer's input-to-hidden weights: nothing reaches its units, so every unit of it
  // is dead, and no input reaches the output.
  model.layer(1).set_i2h_mask(Eigen::Matrix<bool, -1, -1>::Constant(6, 3, false));
  const deepstruct::StructureReport cut = deepstruct::analyze(model, T);
  CHECK(cut.input_output_paths == 0);
  for (std::size_t t = 0; t < T; ++t)
    for (std::size_t j = 0; j < 2; ++j)
      CHECK(std::binary_search(cut.dead_neurons.begin(), cut.dead_neurons.end(), u.unit(1, t, j)));
  // Drawn as any layered DAG.
  std::ostringstream svg;
  deepstruct::write_svg(svg, deepstruct::unrolled_structure(model, T));
  CHECK(svg.str().find("<svg") != std::string::npos);
  CHECK_THROWS_AS(deepstruct::unrolled_structure(model, 0), deepstruct::value_error);
}

TEST_CASE("unrolled_structure: a GRU or LSTM unit carries itself to the next step whatever the masks hold", "[graph][recurrent]") {
  const std::size_t T = 3;
  for (const RecurrentKind kind : {RecurrentKind::rnn_tanh, RecurrentKind::gru, RecurrentKind::lstm}) {
    INFO(deepstruct::to_string(kind));
    deepstruct::RNNOptions options;
    options.kind = kind;
    MaskedDeepRNN<double> model(2, {3}, options);
    const bool carry = kind != RecurrentKind::rnn_tanh;
    const auto gates = static_cast<double>(deepstruct::gate_count(kind));
    deepstruct::UnrolledLayout u;
    // Full masks: the carry adds one to the weight of h_{t-1}[j] -> h_t[j].
    const deepstruct::Dag full = deepstruct::unrolled_structure(model, T, &u);
    CHECK(full[boost::edge(u.unit(0, 1, 2), u.unit(0, 2, 2), full).first].weight == gates + (carry ? 1 : 0));
    CHECK(full[boost::edge(u.unit(0, 1, 2), u.unit(0, 2, 1), full).first].weight == gates);
    // No hidden-to-hidden weight: a plain RNN forgets every step but the last (its earlier units
    // are dead, no path from an earlier step's input); a GRU's or LSTM's units still reach the output.
    model.layer(0).set_h2h_mask(Eigen::Matrix<bool, -1, -1>::Constant(static_cast<Eigen::Index>(gates) * 3, 3, false));
    const deepstruct::Dag cut = deepstruct::unrolled_structure(model, T, &u);
    CHECK(boost::num_edges(cut) == T * 2 * 3 + (carry ? (T - 1) * 3 : 0));
    if (carry) CHECK(cut[boost::edge(u.unit(0, 0, 1), u.unit(0, 1, 1), cut).first].weight == 1.0);
    const deepstruct::StructureReport r = deepstruct::analyze(model, T);
    CHECK(r.dead_neurons.empty() == carry);
    CHECK(r.input_output_paths == (carry ? double(T * 2 * 3) : 2.0 * 3));
  }
}

TEST_CASE("unrolled_structure: too many steps throw value_error before anything is allocated", "[graph][recurrent]") {
  MaskedDeepRNN<double> model(2, {2}, deepstruct::RNNOptions{});  // 4 vertices per step
  // 2^62 steps * 4 vertices wrapped around to 0 vertices (and 2^62 + 1 to 4): the old code wrote
  // the labels of vertices far outside the graph. -1 converted to SIZE_MAX gave a length_error.
  for (const std::size_t steps : {std::size_t{1} << 62, (std::size_t{1} << 62) + 1, static_cast<std::size_t>(-1),
                                  std::size_t{600000000}}) {
    INFO(steps);
    CHECK_THROWS_AS(deepstruct::unrolled_structure(model, steps), deepstruct::value_error);
    CHECK_THROWS_AS(deepstruct::analyze(model, steps), deepstruct::value_error);
  }
  CHECK_THROWS_WITH(deepstruct::unrolled_structure(model, std::size_t{1} << 62), test::contains("steps * (inputs + units) = 4611686018427387904 * 4"));
  CHECK(boost::num_vertices(deepstruct::unrolled_structure(model, 1000)) == 4000);
}
