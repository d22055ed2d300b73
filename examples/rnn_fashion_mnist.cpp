// Sequential Fashion-MNIST with a masked recurrent network: every image is a sequence of its 28
// rows, 28 pixels a step. A MaskedDeepRNN of one LSTM (or GRU) layer of 128 units with a linear
// head to the 10 classes is trained dense (Adam, lr 1e-3, batch 128), then its recurrent weights
// (input-to-hidden and hidden-to-hidden; the head is left dense) are pruned to 10% by global
// magnitude in rounds, each followed by an epoch of fine-tuning, and one more after the last. Prints accuracy dense and pruned,
// time per epoch, the structure of the pruned hidden-to-hidden graph and of the network unrolled
// over the 28 steps, and saves the model as .npz with deepstruct's keys.
//
// Usage: rnn_fashion_mnist [--data DIR] [--kind lstm|gru] [--epochs N] [--rounds N] [--seed S]
//                          [--train-samples N] [--svg FILE] [--out FILE.npz] [--quiet]
#include <deepstruct/deepstruct.hpp>
#include <deepstruct/graph.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_data.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

namespace {

const char* const usage =
    "usage: rnn_fashion_mnist [--data DIR] [--kind lstm|gru] [--epochs N] [--rounds N] [--seed S] [--train-samples N] "
    "[--svg FILE] [--out FILE.npz] [--quiet]";

using examples::usage_error;
using examples::whole_number;

struct Args {
  std::string data = "/usr/share/datasets/fashion-mnist";
  deepstruct::RecurrentKind kind = deepstruct::RecurrentKind::lstm;
  int epochs = 8;
  int rounds = 4;
  std::uint64_t seed = 1;
  long train_samples = 0;
  std::string svg = "rnn_unrolled.svg";
  std::string out = "rnn_fashion_mnist.npz";
  bool quiet = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return examples::option_value(argc, argv, i); };
    if (arg == "--data") a.data = value();
    else if (arg == "--kind") {
      const std::string k = value();
      if (k == "lstm") a.kind = deepstruct::RecurrentKind::lstm;
      else if (k == "gru") a.kind = deepstruct::RecurrentKind::gru;
      else throw usage_error("expected --kind lstm or gru, found '" + k + "'");
    } else if (arg == "--epochs") a.epochs = static_cast<int>(whole_number(arg, value(), 1000));
    else if (arg == "--rounds") a.rounds = static_cast<int>(whole_number(arg, value(), 100));
    else if (arg == "--seed") a.seed = whole_number(arg, value(), std::numeric_limits<std::uint64_t>::max());
    else if (arg == "--train-samples") a.train_samples = static_cast<long>(whole_number(arg, value(), std::numeric_limits<long>::max()));
    else if (arg == "--svg") a.svg = value();
    else if (arg == "--out") a.out = value();
    else if (arg == "--quiet") a.quiet = true;
    else throw usage_error("expected one of the options below, found '" + arg + "'");
  }
  // No rounds would prune nothing and then report the dense model as the pruned one.
  if (a.rounds < 1) throw usage_error("expected --rounds >= 1, found 0");
  return a;
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  using Model = deepstruct::MaskedDeepRNN<float>;
  examples::FashionMnist data;
  if (const int rc = examples::load_fashion_mnist("rnn_fashion_mnist", args.data, args.train_samples, data)) return rc;
  // An image's 784 standardised pixels, row by row, are 28 steps of 28 features: already one
  // sequence per column, as MaskedDeepRNN takes it.
  const Eigen::Index steps = 28, features = 28, hidden = 128;

  deepstruct::RNNOptions options;
  options.kind = args.kind;
  options.head = 10;
  options.seed = args.seed;
  Model model(features, {hidden}, options);
  const char* name = args.kind == deepstruct::RecurrentKind::lstm ? "LSTM" : "GRU";
  std::printf("MaskedDeepRNN: %ld steps of %ld pixels -> %s(%ld) -> linear head to 10 classes; %ld parameters\n", long(steps),
              long(features), name, long(hidden), long(model.num_parameters()));

  deepstruct::Adam<float> adam(deepstruct::AdamOptions{1e-3});
  deepstruct::FitOptions fit;
  fit.epochs = args.epochs;
  fit.batch_size = 128;
  fit.seed = args.seed;
  fit.quiet = args.quiet;
  fit.log = &std::cout;
  std::printf("\n== dense training: Adam lr 1e-3, batch 128, %d epochs\n", args.epochs);
  std::fflush(stdout);
  const auto history = deepstruct::fit(model, adam, data.x_train, data.y_train, fit, &data.x_test, &data.y_test);
  double dense_seconds = 0;
  for (const auto& h : history) dense_seconds += h.train_seconds;
  const double dense_accuracy = deepstruct::evaluate(model, data.x_test, data.y_test).accuracy;
  std::printf("dense: test accuracy %.2f%%, %.2f s of training per epoch\n", 100.0 * dense_accuracy,
              dense_seconds / std::max(1, args.epochs));

  // Global magnitude pruning of the recurrent weights to 10%, in rounds with fine-tuning.
  const auto recurrent = deepstruct::weights_named({"_weight_ih", "_weight_hh"});
  const double target = 0.10, per_round = 1.0 - std::pow(target, 1.0 / std::max(1, args.rounds));
  std::printf("\n== pruning the recurrent weights to %.0f%%: %d rounds of global magnitude pruning (%.1f%% of the active ones "
              "each), one epoch of fine-tuning after each\n",
              100 * target, args.rounds, 100 * per_round);
  deepstruct::FitOptions tune = fit;
  tune.epochs = 1;
  tune.quiet = true;
  double tune_seconds = 0;
  for (int r = 1; r <= args.rounds; ++r) {
    const Eigen::Index pruned = deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(per_round), recurrent);
    tune.seed = args.seed + static_cast<std::uint64_t>(r);
    const auto h = deepstruct::fit(model, adam, data.x_train, data.y_train, tune, &data.x_test, &data.y_test);
    tune_seconds += h.back().train_seconds;
    const auto& l = model.layer(0);
    std::printf("round %d: pruned %ld weights; W_ih %.1f%%, W_hh %.1f%% active (%s, %s kernels); test accuracy %.2f%%  (%.2f s)\n", r,
                long(pruned), 100 * l.density(0), 100 * l.density(1), l.uses_sparse_path(0) ? "sparse" : "dense",
                l.uses_sparse_path(1) ? "sparse" : "dense", 100 * h.back().test_accuracy, h.back().train_seconds);
  }
  // One more epoch for the last round's pruning, the largest step in relative terms.
  tune.seed = args.seed + 100;
  const auto last = deepstruct::fit(model, adam, data.x_train, data.y_train, tune);
  tune_seconds += last.back().train_seconds;
  const double pruned_accuracy = deepstruct::evaluate(model, data.x_test, data.y_test).accuracy;
  const auto& l = model.layer(0);
  std::printf("pruned: test accuracy %.2f%% with %.1f%% of the recurrent weights (%ld of %ld) after one more epoch; %.2f s of "
              "training per epoch while pruning\n",
              100.0 * pruned_accuracy, 100.0 * double(l.nnz()) / double(l.numel()), long(l.nnz()), long(l.numel()),
              tune_seconds / std::max(1, args.rounds + 1));

  // Structure: the hidden-to-hidden graph (cyclic) and the network unrolled over the 28 steps.
  const deepstruct::Dag hh = deepstruct::recurrent_structure(model.layer(0));
  std::size_t recurrent_edges = 0, self_loops = 0, silent = 0, deaf = 0;
  const std::size_t in = static_cast<std::size_t>(features);
  for (auto [e, end] = boost::edges(hh); e != end; ++e) recurrent_edges += boost::source(*e, hh) >= in ? 1 : 0;
  for (std::size_t j = 0; j < static_cast<std::size_t>(hidden); ++j) {
    std::size_t from_hidden = 0;
    for (auto [e, end] = boost::in_edges(in + j, hh); e != end; ++e) from_hidden += boost::source(*e, hh) >= in ? 1 : 0;
    self_loops += boost::edge(in + j, in + j, hh).second ? 1 : 0;
    deaf += from_hidden == 0 ? 1 : 0;
    silent += boost::out_degree(in + j, hh) == 0 ? 1 : 0;
  }
  std::printf("\n== the pruned hidden-to-hidden graph (%ld units; an edge where any gate keeps a weight)\n", long(hidden));
  std::printf("edges %zu of %ld possible, self loops %zu, units without recurrent input %zu, without recurrent output %zu\n",
              recurrent_edges, long(hidden * hidden), self_loops, deaf, silent);
  deepstruct::AnalysisOptions analysis;
  analysis.shortest_paths = false;
  analysis.clustering = false;
  const deepstruct::StructureReport report = deepstruct::analyze(model, static_cast<std::size_t>(steps), analysis);
  std::printf("\n== the network unrolled over %ld steps (analyze(model, 28): inputs every pixel, outputs the units at the last step)\n",
              long(steps));
  std::printf("neurons %zu, edges %zu, depth %zu layers (one per step)\n", report.vertices, report.edges, report.depth);
  std::printf("dead neurons %zu (%zu unreachable from the pixels, %zu cannot reach the output)\n", report.dead_neurons.size(),
              report.unreachable_from_inputs, report.cannot_reach_outputs);
  std::printf("pixel-to-output paths 10^%.1f\n", report.log10_input_output_paths);
  if (!args.svg.empty()) {
    // The first 6 steps, drawn: one layer per step.
    deepstruct::SvgOptions picture;
    picture.title = std::string(name) + " unrolled over 6 steps, recurrent weights pruned to 10%";
    deepstruct::write_svg(args.svg, deepstruct::unrolled_structure(model, 6), picture);
    std::printf("wrote %s\n", args.svg.c_str());
  }
  deepstruct::save_npz(model, args.out);
  std::printf("saved %s (deepstruct's keys _recurrent_layers.0.*, and head.*)\n"
              "  inputs it expects: 784 = 28 steps of 28 pixels (the image row by row), each (pixel / 255 - %.4f) / %.4f\n",
              args.out.c_str(), examples::pixel_mean, examples::pixel_stddev);
  return 0;
}

}  // namespace

// Exit status: 0 done, 1 an error while running, 2 a bad command line or a missing data set.
int main(int argc, char** argv) { return examples::guarded_main("rnn_fashion_mnist", usage, run, argc, argv); }
