// A structural prior end to end: a Watts-Strogatz small world (200 vertices, k = 2, p = 0.8,
// seeded) becomes a MaskedDeepDAN (make_dan), which is trained on Fashion-MNIST (Adam, lr 1e-3,
// batch 128, test accuracy after every epoch), pruned by global magnitude to 30% of its hidden and
// skip weights (the dense input and output layers are left alone) with one epoch of fine-tuning,
// and turned back into the DAG of its neurons (generate_structure). The program prints the
// analysis of that pruned structure (analyze_hidden: inputs are the layer-0 neurons, outputs the
// last-layer neurons, so dead neurons are the ones off every input-output path of the network),
// which neurons are dead, and draws the structure as an SVG.
//
// Usage: dan_fashion_mnist [--data DIR] [--svg FILE] [--n N] [--k K] [--p P] [--epochs N] [--seed S] [--train-samples N] [--quiet]
// (--train-samples uses only the first N training images: a quick smoke run.)
// The data set is Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
#include <deepstruct/deepstruct.hpp>
#include <deepstruct/graph.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_data.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

namespace {

const char* const usage =
    "usage: dan_fashion_mnist [--data DIR] [--svg FILE] [--n N] [--k K] [--p P] [--epochs N] [--seed S] [--train-samples N] "
    "[--quiet]";

using examples::usage_error;
using examples::whole_number;

struct Args {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string svg = "dan_structure.svg";
  // The Watts-Strogatz prior of the DAN benchmark (k = 3 there acts as k = 2, as in networkx). A
  // ring with more neighbours orients into a deep, narrow DAG whose last layer, the only one that
  // feeds the outputs, has 1 or 2 neurons (k = 4, p = 0.5: 62 layers, test accuracy about 20%).
  std::size_t n = 200, k = 2;
  double p = 0.8;
  int epochs = 5;
  std::uint64_t seed = 1;
  long train_samples = 0;  // 0: all
  bool quiet = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return examples::option_value(argc, argv, i); };
    if (arg == "--data") a.data = value();
    else if (arg == "--svg") a.svg = value();
    else if (arg == "--n") a.n = static_cast<std::size_t>(whole_number(arg, value(), std::numeric_limits<std::size_t>::max()));
    else if (arg == "--k") a.k = static_cast<std::size_t>(whole_number(arg, value(), std::numeric_limits<std::size_t>::max()));
    else if (arg == "--p") a.p = examples::probability(arg, value());
    else if (arg == "--epochs") a.epochs = static_cast<int>(whole_number(arg, value(), std::numeric_limits<int>::max()));
    else if (arg == "--seed") a.seed = whole_number(arg, value(), std::numeric_limits<std::uint64_t>::max());
    else if (arg == "--train-samples")
      a.train_samples = static_cast<long>(whole_number(arg, value(), std::numeric_limits<long>::max()));
    else if (arg == "--quiet") a.quiet = true;
    else throw usage_error("expected one of the options below, found '" + arg + "'");
  }
  return a;
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  const auto program_start = std::chrono::steady_clock::now();
  using Model = deepstruct::MaskedDeepDAN<float>;
  // The structural prior first: a prior that watts_strogatz refuses (k >= n, n beyond 2^31 - 1)
  // is reported before the data set is read.
  const std::size_t n = args.n, k = args.k;
  const double p = args.p;
  deepstruct::Generator prior_gen(args.seed);
  const deepstruct::Dag prior = deepstruct::watts_strogatz(n, k, p, prior_gen);
  examples::FashionMnist data;
  if (const int rc = examples::load_fashion_mnist("dan_fashion_mnist", args.data, args.train_samples, data)) return rc;
  const Model::Matrix& x_train = data.x_train;
  const Model::Matrix& x_test = data.x_test;
  const deepstruct::Labels& y_train = data.y_train;
  const deepstruct::Labels& y_test = data.y_test;

  // The network the prior makes.
  deepstruct::DANOptions options;
  options.seed = args.seed;
  Model model = deepstruct::make_dan<float>(x_train.rows(), 10, prior, options);
  std::printf("prior: watts_strogatz(%zu, %zu, %g), seed %llu: %zu edges\n", n, k, p,
              static_cast<unsigned long long>(args.seed), static_cast<std::size_t>(boost::num_edges(prior)));
  std::printf("MaskedDeepDAN 784 -> [%zu hidden layers:", model.num_hidden_layers());
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
    std::printf(" %ld", static_cast<long>(model.hidden_layer_size(t)));
  std::printf("] -> 10, %zu skip layers, %ld active weights, %ld parameters\n", model.skips().size(),
              static_cast<long>(model.num_active_weights()), static_cast<long>(model.num_parameters()));

  deepstruct::AdamOptions adam_options;
  adam_options.lr = 1e-3;
  deepstruct::Adam<float> adam(adam_options);
  deepstruct::FitOptions fit_options;
  fit_options.epochs = args.epochs;
  fit_options.batch_size = 128;
  fit_options.seed = args.seed;
  fit_options.quiet = args.quiet;
  fit_options.log = &std::cout;
  std::printf("\n== training: Adam lr 1e-3, batch 128, %d epochs\n", args.epochs);
  std::fflush(stdout);
  const auto history = deepstruct::fit(model, adam, x_train, y_train, fit_options, &x_test, &y_test);
  double train_seconds = 0;
  for (const auto& h : history) train_seconds += h.train_seconds;
  const double trained_accuracy =
      history.empty() ? deepstruct::evaluate(model, x_test, y_test).accuracy : history.back().test_accuracy;
  std::printf("trained: test accuracy %.2f%%, training time %.2f s for %d epochs\n", 100.0 * trained_accuracy,
              train_seconds, args.epochs);

  // Global magnitude pruning of the structure's own weights: main and skip layers, not the dense
  // input and output layers (the prior says nothing about those).
  std::vector<deepstruct::MaskedLinear<float>*> hidden;
  for (std::size_t t = 1; t < model.num_hidden_layers(); ++t) hidden.push_back(&model.main_layer(t));
  for (std::size_t j = 0; j < model.skips().size(); ++j) hidden.push_back(&model.skip_layer(j));
  auto active = [&] {
    long a = 0;
    for (const auto* l : hidden) a += static_cast<long>(l->nnz());
    return a;
  };
  const long before = active();
  const double keep = 0.30;
  const auto prune_start = std::chrono::steady_clock::now();
  const Eigen::Index pruned = deepstruct::prune_global(hidden, deepstruct::PruneAmount::fraction(1.0 - keep));
  deepstruct::FitOptions tune = fit_options;
  tune.epochs = 1;
  tune.quiet = true;
  tune.seed = args.seed + 100;
  deepstruct::fit(model, adam, x_train, y_train, tune);
  const deepstruct::Evaluation tuned = deepstruct::evaluate(model, x_test, y_test);
  std::printf("\n== pruning: global magnitude over the main and skip layers, keep %.0f%%, one epoch of fine-tuning\n",
              100 * keep);
  std::printf("pruned %ld of %ld hidden and skip weights (%ld left); test accuracy %.2f%% after fine-tuning (%.2f s)\n",
              static_cast<long>(pruned), before, active(), 100.0 * tuned.accuracy, examples::seconds_since(prune_start));
  std::printf("whole network: %ld of %ld weights active (density %.2f%%)\n", static_cast<long>(model.num_active_weights()),
              static_cast<long>(model.num_weights()), 100.0 * model.density());

  // The pruned structure as a DAG of the hidden neurons, drawn in the network's own layers.
  // analyze_hidden judges it by the network's real inputs and outputs: the layer-0 neurons the
  // input layer feeds and the last-layer neurons that feed a logit. (analyze(structure, layers)
  // alone would take every source and sink of the pruned graph for an input or an output, and a
  // neuron cut off by pruning would then count as alive.)
  std::vector<std::size_t> original_ids;
  const deepstruct::Dag structure = deepstruct::generate_structure(model, {}, &original_ids);
  std::vector<std::size_t> layers;
  for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
    layers.insert(layers.end(), static_cast<std::size_t>(model.hidden_layer_size(t)), t);
  {
    const deepstruct::StructureReport report = deepstruct::analyze_hidden(model);
    std::printf("\n== the pruned structure (generate_structure: hidden neurons, %zu vertices, %zu edges;\n"
                "   inputs: the layer-0 neurons, fed by the 784 pixels; outputs: the last-layer neurons, read by the 10 logits)\n",
                static_cast<std::size_t>(boost::num_vertices(structure)), static_cast<std::size_t>(boost::num_edges(structure)));
    std::cout << deepstruct::to_text(report) << "\n";
    // Which neurons are dead: per hidden layer, and their ids in the prior.
    std::vector<std::size_t> dead_per_layer(model.num_hidden_layers(), 0);
    for (std::size_t v : report.dead_neurons) ++dead_per_layer[layers[v]];
    std::printf("dead neurons per hidden layer (dead/size):");
    for (std::size_t t = 0; t < model.num_hidden_layers(); ++t)
      std::printf(" %zu/%ld", dead_per_layer[t], static_cast<long>(model.hidden_layer_size(t)));
    // The live ones, by their vertex ids in the prior (usually the shorter list after pruning).
    std::vector<char> dead(layers.size(), 0);
    for (std::size_t v : report.dead_neurons) dead[v] = 1;
    std::vector<std::size_t> alive;
    for (std::size_t v = 0; v < layers.size(); ++v)
      if (!dead[v]) alive.push_back(original_ids[v]);
    std::printf("\nalive: %zu of %zu hidden neurons lie on a path from the input layer to the output layer; prior vertices",
                alive.size(), layers.size());
    const std::size_t shown = 24;
    if (alive.empty()) std::printf(" (none: no input reaches a logit through the hidden layers)");
    for (std::size_t i = 0; i < alive.size() && i < shown; ++i) std::printf(" %zu", alive[i]);
    if (alive.size() > shown) std::printf(" ... (%zu more)", alive.size() - shown);
    std::printf("\n");
    deepstruct::SvgOptions svg_options;
    char title[160];
    std::snprintf(title, sizeof title, "MaskedDeepDAN from watts_strogatz(%zu, %zu, %g), pruned to %.0f%% of its hidden weights",
                  n, k, p, 100 * keep);
    svg_options.title = title;
    svg_options.layers = layers;
    deepstruct::write_svg(args.svg, structure, svg_options);  // io_error: reported by main
  }
  std::printf("wrote %s\n", args.svg.c_str());
  std::printf("total run time %.1f s\n", examples::seconds_since(program_start));
  return 0;
}

}  // namespace

// Exit status: 0 done, 1 an error while running (e.g. the SVG cannot be written), 2 a bad command
// line or a missing or unreadable data set.
int main(int argc, char** argv) { return examples::guarded_main("dan_fashion_mnist", usage, run, argc, argv); }
