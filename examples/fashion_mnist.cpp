// The README's demo: train MaskedDeepFFN 784-300-100-10 on Fashion-MNIST (Adam, lr 1e-3, batch 128,
// 5 epochs), prune it to 10% density by iterative global magnitude pruning with short fine-tuning,
// report accuracy and per-layer density, and save it as a numpy .npz archive with deepstruct's keys.
//
// Usage: fashion_mnist [--data DIR] [--out FILE.npz] [--epochs N] [--seed S] [--train-samples N] [--quiet]
//                      [--no-prune] [--static-density D]
// (--train-samples uses only the first N training images: a quick smoke run. --no-prune stops after
// the training; --static-density D trains with a fixed seeded random mask keeping D of every
// layer's weights from the start, and does not prune: the like-for-like run of
// tests/benchmarks/side_by_side.py against deepstruct.)
// The data set is Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
#include <deepstruct/deepstruct.hpp>
#include <deepstruct/model_io.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_data.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

namespace {

const char* const usage =
    "usage: fashion_mnist [--data DIR] [--out FILE.npz] [--epochs N] [--seed S] [--train-samples N] [--quiet]\n"
    "                     [--no-prune] [--static-density D]";

using examples::usage_error;
using examples::whole_number;

struct Args {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string out = "fashion_mnist_ffn.npz";
  int epochs = 5;
  std::uint64_t seed = 1;
  long train_samples = 0;  // 0: all
  bool quiet = false;
  bool prune = true;
  double static_density = 0;  // > 0 (--static-density D): a fixed random mask from the start, no pruning
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return examples::option_value(argc, argv, i); };
    if (arg == "--data") a.data = value();
    else if (arg == "--out") a.out = value();
    else if (arg == "--epochs") a.epochs = static_cast<int>(whole_number(arg, value(), std::numeric_limits<int>::max()));
    else if (arg == "--seed") a.seed = whole_number(arg, value(), std::numeric_limits<std::uint64_t>::max());
    else if (arg == "--train-samples")
      a.train_samples = static_cast<long>(whole_number(arg, value(), std::numeric_limits<long>::max()));
    else if (arg == "--quiet") a.quiet = true;
    else if (arg == "--no-prune") a.prune = false;
    else if (arg == "--static-density") a.static_density = examples::fraction(arg, value());
    else throw usage_error("expected one of the options below, found '" + arg + "'");
  }
  return a;
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  using Model = deepstruct::MaskedDeepFFN<float>;
  examples::FashionMnist data;
  if (const int rc = examples::load_fashion_mnist("fashion_mnist", args.data, args.train_samples, data)) return rc;
  const Model::Matrix& x_train = data.x_train;
  const Model::Matrix& x_test = data.x_test;
  const deepstruct::Labels& y_train = data.y_train;
  const deepstruct::Labels& y_test = data.y_test;

  deepstruct::FFNOptions options;
  options.seed = args.seed;
  Model model(std::vector<Eigen::Index>{1, 28, 28}, 10, {300, 100}, options);
  std::printf("MaskedDeepFFN 784-300-100-10: %ld parameters\n", static_cast<long>(model.num_parameters()));
  const bool static_mask = args.static_density > 0.0;  // also D = 1: a full mask, trained without pruning
  if (static_mask) {
    deepstruct::AllocationOptions allocation;
    allocation.method = deepstruct::DensityAllocation::uniform;
    deepstruct::sparse_init(model, args.static_density, allocation, args.seed + 1000);
    std::printf("static random mask: %.2f%% of every layer's weights (%ld active), kept fixed\n", 100.0 * model.density(),
                static_cast<long>(model.num_active_weights()));
  }

  deepstruct::AdamOptions adam_options;
  adam_options.lr = 1e-3;
  deepstruct::Adam<float> adam(adam_options);
  deepstruct::FitOptions fit_options;
  fit_options.epochs = args.epochs;
  fit_options.batch_size = 128;
  fit_options.seed = args.seed;
  fit_options.quiet = args.quiet;
  fit_options.log = &std::cout;
  const char* const kind = static_mask ? "static" : "dense";
  std::printf("\n== %s training: Adam lr 1e-3, batch 128, %d epochs\n", kind, args.epochs);
  std::fflush(stdout);
  const auto history = deepstruct::fit(model, adam, x_train, y_train, fit_options, &x_test, &y_test);
  double dense_seconds = 0;
  for (const auto& h : history) dense_seconds += h.train_seconds;
  const double dense_accuracy = history.empty() ? deepstruct::evaluate(model, x_test, y_test).accuracy
                                                : history.back().test_accuracy;
  std::printf("%s: test accuracy %.2f%%, training time %.2f s for %d epochs (%.2f s per epoch)\n", kind,
              100.0 * dense_accuracy, dense_seconds, args.epochs, dense_seconds / std::max(1, args.epochs));

  if (static_mask || !args.prune) {
    deepstruct::save_npz(model, args.out);  // io_error: reported by main
    std::printf("\nsaved %s\n", args.out.c_str());
    return 0;
  }

  // Iterative global magnitude pruning to 10% density: five rounds, each removing the same share
  // of the remaining weights (0.1^(1/5) survive a round), each followed by one epoch of fine-tuning.
  const int rounds = 5;
  const double target_density = 0.10;
  deepstruct::IterativePruningOptions prune_options;
  prune_options.rounds = rounds;
  prune_options.fraction_per_round = 1.0 - std::pow(target_density, 1.0 / rounds);
  prune_options.rewind = false;
  std::printf("\n== pruning to %.0f%% density: %d rounds of global magnitude pruning (%.1f%% of the active weights "
              "each), one epoch of fine-tuning after each\n",
              100 * target_density, rounds, 100 * prune_options.fraction_per_round);
  const auto prune_start = std::chrono::steady_clock::now();
  deepstruct::FitOptions tune = fit_options;
  tune.epochs = 1;
  tune.quiet = true;
  // Each callback first fine-tunes the previous round's pruning (round 1: the dense model is
  // already trained), and the last round's pruning is fine-tuned after the loop.
  const auto rounds_done = deepstruct::iterative_magnitude_pruning(model, prune_options, [&](Model& m, int round) {
    if (round > 1) {
      tune.seed = args.seed + static_cast<std::uint64_t>(round);
      deepstruct::fit(m, adam, x_train, y_train, tune);
    }
  });
  tune.seed = args.seed + 100;
  deepstruct::fit(model, adam, x_train, y_train, tune);
  const double prune_seconds = examples::seconds_since(prune_start);
  for (const auto& r : rounds_done)
    std::printf("round %d: pruned %ld weights, density %.2f%%\n", r.round, static_cast<long>(r.pruned), 100.0 * r.density);
  const deepstruct::Evaluation pruned = deepstruct::evaluate(model, x_test, y_test);
  std::printf("pruned: test accuracy %.2f%% at density %.2f%% (%ld of %ld weights), %.2f s of pruning and fine-tuning\n",
              100.0 * pruned.accuracy, 100.0 * model.density(), static_cast<long>(model.num_active_weights()),
              static_cast<long>(model.num_weights()), prune_seconds);
  for (std::size_t k = 0; k < model.num_layers(); ++k) {
    const auto& l = model.layer(k);
    std::printf("  %-18s %4ld -> %-4ld density %6.2f%%  (%s path)\n", model.layer_name(k).c_str(),
                static_cast<long>(l.in_features()), static_cast<long>(l.out_features()), 100.0 * l.density(),
                l.uses_sparse_path() ? "sparse" : "dense");
  }

  deepstruct::save_npz(model, args.out);  // io_error: reported by main
  std::printf("\nsaved %s (numpy.load reads it; keys as deepstruct's state_dict)\n"
              "  inputs it expects: 784 = the 28x28 pixels row by row, each (pixel / 255 - %.4f) / %.4f\n",
              args.out.c_str(), examples::pixel_mean, examples::pixel_stddev);
  return 0;
}

}  // namespace

// Exit status: 0 done, 1 an error while running (e.g. the model file cannot be written), 2 a bad
// command line or a missing or unreadable data set.
int main(int argc, char** argv) { return examples::guarded_main("fashion_mnist", usage, run, argc, argv); }
