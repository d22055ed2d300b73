// Makes the pictures of docs/graph.md and examples/README.md with write_svg, and prints the
// structure report docs/graph.md shows for the masked FFN. Deterministic: the same files on every
// run (ctest compares them with docs/images).
//
// Usage: make_doc_images [OUTDIR]      (default: the current directory)
//   writes masked_ffn.svg, masked_ffn_weights.svg, watts_strogatz_dag.svg, watts_strogatz_prior.svg
#include <deepstruct/graph.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

namespace {

/// A masked FFN 6-12-12-12-3 (mask density 0.35) with skip connections: the neuron DAG of its
/// masks plus, from each neuron of layers 0..2, an edge two layers up with probability 0.03.
/// Every edge gets a weight drawn from N(0, 1).
deepstruct::Dag masked_ffn_with_skips(std::vector<std::size_t>& layers) {
  deepstruct::Generator gen(2024);
  const std::vector<Eigen::Index> sizes{6, 12, 12, 12, 3};
  std::vector<deepstruct::LayerMask> masks;
  for (std::size_t k = 0; k + 1 < sizes.size(); ++k) {
    deepstruct::LayerMask m(sizes[k + 1], sizes[k]);
    for (Eigen::Index i = 0; i < m.cols(); ++i)
      for (Eigen::Index o = 0; o < m.rows(); ++o) m(o, i) = deepstruct::random::bernoulli(gen, 0.35);
    masks.push_back(m);
  }
  deepstruct::Dag g = deepstruct::ffn_structure(masks, {true, true});  // stores the FFN layers
  std::vector<std::size_t> first{0};
  for (Eigen::Index s : sizes) first.push_back(first.back() + static_cast<std::size_t>(s));
  for (std::size_t l = 0; l + 2 < sizes.size(); ++l)
    for (std::size_t u = first[l]; u < first[l + 1]; ++u)
      for (std::size_t v = first[l + 2]; v < first[l + 3]; ++v)
        if (deepstruct::random::bernoulli(gen, 0.03)) add_edge(u, v, g);
  for (auto [e, e_end] = edges(g); e != e_end; ++e) g[*e].weight = deepstruct::random::normal(gen);
  layers.assign(num_vertices(g), 0);
  for (std::size_t v = 0; v < layers.size(); ++v) layers[v] = g[v].layer;
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? std::string(argv[1]) + "/" : std::string();
  try {
    // 1 and 2: the masked FFN, drawn in its own layers (a hidden neuron without inputs stays in its column).
    std::vector<std::size_t> layers;
    const deepstruct::Dag ffn = masked_ffn_with_skips(layers);
    deepstruct::SvgOptions opt;
    opt.width = 720;
    opt.height = 420;
    opt.layers = layers;
    opt.title = "masked FFN 6-12-12-12-3, density 0.35, skip connections";
    deepstruct::write_svg(dir + "masked_ffn.svg", ffn, opt);
    opt.title = "the same network, edges coloured by weight sign, width by |weight|";
    opt.weight_style = true;
    opt.edge_opacity = 0.6;
    deepstruct::write_svg(dir + "masked_ffn_weights.svg", ffn, opt);

    deepstruct::AnalysisOptions analysis;
    for (std::size_t v = 0; v < 6; ++v) analysis.inputs.push_back(v);
    for (std::size_t v = num_vertices(ffn) - 3; v < num_vertices(ffn); ++v) analysis.outputs.push_back(v);
    std::cout << "masked FFN 6-12-12-12-3 (docs/graph.md, Analysis):\n"
              << deepstruct::to_text(deepstruct::analyze(ffn, layers, analysis)) << '\n';

    // 3: a Watts-Strogatz prior layered by layer_index (the generator stores it).
    deepstruct::Generator gen(3);
    const deepstruct::Dag ws = deepstruct::watts_strogatz(80, 4, 0.2, gen);
    deepstruct::SvgOptions ws_opt;
    ws_opt.width = 900;
    ws_opt.height = 420;
    ws_opt.title = "watts_strogatz(80, 4, 0.2), seed 3, layered by layer_index";
    deepstruct::write_svg(dir + "watts_strogatz_dag.svg", ws, ws_opt);

    // 4: the picture of examples/watts_strogatz_prior with its defaults (n 60, k 4, p 0.3, seed 1).
    deepstruct::Generator prior_gen(1);
    const deepstruct::Dag prior = deepstruct::watts_strogatz(60, 4, 0.3, prior_gen);
    deepstruct::SvgOptions prior_opt;
    prior_opt.title = "Watts-Strogatz(60, 4, 0.30) as a layered DAG";
    deepstruct::write_svg(dir + "watts_strogatz_prior.svg", prior, prior_opt);
    std::printf("wrote 4 pictures to %s\n", dir.empty() ? "." : dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_doc_images: %s\n", e.what());
    return 1;
  }
  return 0;
}
