// A network of cells on a random graph (RandWire's setting) for Fashion-MNIST: a DeepCellDAN on
// a Watts-Strogatz(32, 4, 0.75) DAG whose input cells reduce the image once (Conv 5x5 stride 2 ->
// ReLU -> BatchNorm2d: 28x28 -> 14x14) and whose other cells keep the size (ReLU -> Conv 3x3 ->
// BatchNorm2d), each emitting `width` channels (default 12). Trains with Adam (cosine learning-rate
// decay), then prunes the convolutions to
// 30% of their weights by global magnitude in rounds, fine-tuning after each; prints time per
// epoch, parameter counts, test accuracies, and draws the cell graph with each cell's parameters
// and density (SVG) and writes it as GraphML.
//
// Usage: cell_dan_fashion_mnist [--data DIR] [--epochs N] [--width W] [--rounds N] [--seed S]
//                               [--train-samples N] [--out-prefix P] [--quiet]
// One thread (no OpenMP): the cells' products are small.
#include <deepstruct/deepstruct.hpp>
#include <deepstruct/graph.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_data.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <string>

namespace {

const char* const usage =
    "usage: cell_dan_fashion_mnist [--data DIR] [--epochs N] [--width W] [--rounds N] [--seed S] [--train-samples N] "
    "[--out-prefix P] [--quiet]";

using examples::usage_error;
using examples::whole_number;

struct Args {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 5;
  long width = 12;
  int rounds = 2;
  std::uint64_t seed = 1;
  long train_samples = 0;
  std::string out_prefix = "cell_dan";
  bool quiet = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return examples::option_value(argc, argv, i); };
    if (arg == "--data") a.data = value();
    else if (arg == "--epochs") a.epochs = static_cast<int>(whole_number(arg, value(), 1000));
    else if (arg == "--width") a.width = static_cast<long>(whole_number(arg, value(), 1024));
    else if (arg == "--rounds") a.rounds = static_cast<int>(whole_number(arg, value(), 100));
    else if (arg == "--seed") a.seed = whole_number(arg, value(), std::numeric_limits<std::uint64_t>::max());
    else if (arg == "--train-samples") a.train_samples = static_cast<long>(whole_number(arg, value(), std::numeric_limits<long>::max()));
    else if (arg == "--out-prefix") a.out_prefix = value();
    else if (arg == "--quiet") a.quiet = true;
    else throw usage_error("expected one of the options below, found '" + arg + "'");
  }
  if (a.width < 1) throw usage_error("expected --width >= 1, found 0");
  if (a.epochs < 1) throw usage_error("expected --epochs >= 1, found 0");
  // No rounds would prune nothing and then report the dense accuracy as the pruned one.
  if (a.rounds < 1) throw usage_error("expected --rounds >= 1, found 0");
  return a;
}

/// The convolutions' active and all weights.
template <typename Model>
std::pair<Eigen::Index, Eigen::Index> conv_weights(Model& model) {
  Eigen::Index active = 0, all = 0;
  for (auto* l : model.maskable_layers())
    if (std::string(l->type_name()) == "MaskedConv2d") {
      active += l->nnz();
      all += l->numel();
    }
  return {active, all};
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  examples::FashionMnist data;
  if (const int rc = examples::load_fashion_mnist("cell_dan_fashion_mnist", args.data, args.train_samples, data)) return rc;

  deepstruct::Generator gen(args.seed);
  const deepstruct::Dag prior = deepstruct::watts_strogatz(32, 4, 0.75, gen);
  deepstruct::DeepCellDANOptions options;
  options.width = args.width;
  options.seed = args.seed;
  auto make_cell = [](const deepstruct::CellInfo& info, deepstruct::Generator& g) -> deepstruct::AnyCell<float> {
    if (info.is_input) return deepstruct::ReductionCell<float>(info.in_channels, info.width, g);  // the stem: 28x28 -> 14x14
    return deepstruct::KeepSizeCell<float>(info.in_channels, info.width, g);
  };
  deepstruct::DeepCellDAN<float> model(10, {1, 28, 28}, deepstruct::cell_graph(prior), make_cell, options);
  const auto [conv_active0, conv_all] = conv_weights(model);
  (void)conv_active0;
  std::printf("DeepCellDAN on watts_strogatz(32, 4, 0.75): %zu cells (%zu input cells reduce 28x28 to 14x14, %zu output cells), "
              "width %ld\n  %ld parameters, %ld of them convolution weights\n",
              model.num_nodes(), model.input_nodes().size(), model.output_nodes().size(), args.width, long(model.num_parameters()),
              long(conv_all));

  deepstruct::AdamOptions adam_options;
  adam_options.lr = 2e-3;
  deepstruct::Adam<float> adam(adam_options);
  deepstruct::FitOptions fit;
  fit.epochs = args.epochs;
  fit.batch_size = 64;
  // Cosine decay of the learning rate over the whole training, step by step.
  const long steps_per_epoch = (data.x_train.cols() + fit.batch_size - 1) / fit.batch_size;
  const double total_steps = double(steps_per_epoch) * args.epochs;
  fit.on_step = [&](const deepstruct::StepInfo& s) {
    adam.set_lr(adam_options.lr * 0.5 * (1.0 + std::cos(3.14159265358979323846 * double(s.step) / total_steps)));
  };
  fit.seed = args.seed;
  fit.quiet = args.quiet;
  fit.log = &std::cout;
  std::printf("\n== training: Adam lr %.0e with cosine decay, batch %ld, %d epochs (test accuracy in evaluation mode)\n", adam_options.lr,
              long(fit.batch_size), args.epochs);
  std::fflush(stdout);
  const auto history = deepstruct::fit(model, adam, data.x_train, data.y_train, fit, &data.x_test, &data.y_test);
  double seconds = 0;
  for (const auto& e : history) seconds += e.train_seconds;
  const double dense_accuracy = deepstruct::evaluate(model, data.x_test, data.y_test).accuracy;
  std::printf("dense: test accuracy %.2f%%, %.1f s of training per epoch\n", 100 * dense_accuracy, seconds / history.size());

  // Global magnitude pruning of the convolutions (not the last linear layer) to 30% in rounds,
  // each followed by an epoch of fine-tuning at a lower learning rate.
  std::printf("\n== pruning the convolutions to 30%% of their weights: %d rounds of global magnitude pruning, an epoch of fine-tuning after "
              "each\n",
              args.rounds);
  deepstruct::AdamOptions tune_options;
  tune_options.lr = 3e-4;
  deepstruct::Adam<float> tune(tune_options);
  deepstruct::FitOptions one = fit;
  one.epochs = 1;
  one.quiet = true;
  one.on_step = nullptr;
  double pruned_accuracy = dense_accuracy;
  for (int r = 1; r <= args.rounds; ++r) {
    const auto [active, all] = conv_weights(model);
    const double keep = std::pow(0.3, double(r) / args.rounds);
    const auto goal = static_cast<Eigen::Index>(std::llround(keep * double(all)));
    const Eigen::Index pruned = active > goal ? active - goal : 0;
    deepstruct::prune_global(model, deepstruct::PruneAmount::count(pruned), deepstruct::layers_of_type({"MaskedConv2d"}));
    one.seed = args.seed + static_cast<std::uint64_t>(r);
    const auto h = deepstruct::fit(model, tune, data.x_train, data.y_train, one);
    pruned_accuracy = deepstruct::evaluate(model, data.x_test, data.y_test).accuracy;
    std::printf("round %d: pruned %ld weights, convolutions at %.1f%%; after fine-tuning test accuracy %.2f%% (%.1f s)\n", r, long(pruned),
                100.0 * double(conv_weights(model).first) / double(all), 100 * pruned_accuracy, h.back().train_seconds);
    std::fflush(stdout);
  }

  const std::string svg = args.out_prefix + "_cells.svg", graphml = args.out_prefix + "_cells.graphml";
  deepstruct::SvgOptions svg_options;
  svg_options.vertex_labels = true;
  svg_options.width = 1100;
  svg_options.height = 700;
  svg_options.title = "DeepCellDAN cells after pruning: parameters (p) and share of active convolution weights";
  deepstruct::write_svg(svg, deepstruct::cell_structure(model), svg_options);
  deepstruct::write_cell_graphml(graphml, model);
  std::printf("\nwrote %s (the cell graph, each cell's parameters and density) and %s\n", svg.c_str(), graphml.c_str());
  std::printf("\nTargets: dense %.2f%% (>= 90%%) %s; pruned to 30%% %.2f%% (>= 89%%) %s\n", 100 * dense_accuracy,
              dense_accuracy >= 0.90 ? "PASS" : "MISS", 100 * pruned_accuracy, pruned_accuracy >= 0.89 ? "PASS" : "MISS");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return examples::guarded_main("cell_dan_fashion_mnist", usage, run, argc, argv); }
