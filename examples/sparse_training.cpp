// Sparse training from scratch on Fashion-MNIST, side by side: dense training, a static random
// sparse mask, SET, RigL, and iterative magnitude pruning to the same density, for
// MaskedDeepFFN 784-300-100-10 and for a MaskedDeepDAN from a Watts-Strogatz(200, 3, 0.8) prior.
// Sparse masks at 90% sparsity (10% of the weights active), allocated per layer by ERK with the
// output layer dense; 5 epochs of Adam (lr 1e-3, batch 128) each. Prints test accuracy, training
// time and time relative to the dense run; logs RigL's structure as JSON lines and SVG, and writes
// its final structure as GraphML.
//
// Usage: sparse_training [--data DIR] [--epochs N] [--seed S] [--train-samples N] [--out-prefix P] [--only ffn|dan]
// One thread (no OpenMP): the sparse kernels are single-threaded, so every run gets the same core.
#include <deepstruct/deepstruct.hpp>
#include <deepstruct/graph.hpp>

#include "example_cli.hpp"
#include "fashion_mnist_data.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace {

const char* const usage = "usage: sparse_training [--data DIR] [--epochs N] [--seed S] [--train-samples N] [--out-prefix P] [--only ffn|dan]";

using examples::usage_error;
using examples::whole_number;

struct Args {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 5;
  std::uint64_t seed = 1;
  long train_samples = 0;
  std::string out_prefix = "sparse_training";
  std::string only;  // "", "ffn" or "dan"
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return examples::option_value(argc, argv, i); };
    if (arg == "--data") a.data = value();
    else if (arg == "--epochs") a.epochs = static_cast<int>(whole_number(arg, value(), 1000));
    else if (arg == "--seed") a.seed = whole_number(arg, value(), std::numeric_limits<std::uint64_t>::max());
    else if (arg == "--train-samples") a.train_samples = static_cast<long>(whole_number(arg, value(), std::numeric_limits<long>::max()));
    else if (arg == "--out-prefix") a.out_prefix = value();
    else if (arg == "--only") {
      a.only = value();
      if (a.only != "ffn" && a.only != "dan") throw usage_error("expected --only ffn or dan, found '" + a.only + "'");
    } else throw usage_error("expected one of the options below, found '" + arg + "'");
  }
  if (a.epochs < 1) throw usage_error("expected --epochs >= 1, found 0");
  return a;
}

struct Row {
  std::string method;
  double accuracy, seconds, density;
};

constexpr double target_density = 0.1;

/// Runs the five methods on copies of `fresh` (a dense, just-initialised model); the last masked
/// layer stays dense.
template <typename Model>
std::vector<Row> compare(const char* name, const Model& fresh, const examples::FashionMnist& data, const Args& args) {
  using Scalar = typename Model::Scalar;
  const std::size_t last = fresh.maskable_layers().size() - 1;
  deepstruct::FitOptions fit;
  fit.epochs = args.epochs;
  fit.batch_size = 128;
  fit.seed = args.seed;
  fit.quiet = true;
  const long steps_per_epoch = (data.x_train.cols() + fit.batch_size - 1) / fit.batch_size;
  const long total = steps_per_epoch * args.epochs;
  deepstruct::AllocationOptions erk;
  erk.dense = {last};
  erk.rescale_weights = true;  // each neuron's input variance as with dense initial weights
  std::vector<Row> rows;
  auto seconds_of = [](const std::vector<deepstruct::EpochStats>& h) {
    double s = 0;
    for (const auto& e : h) s += e.train_seconds;
    return s;
  };
  auto accuracy = [&](Model& m) { return deepstruct::evaluate(m, data.x_test, data.y_test).accuracy; };
  deepstruct::AdamOptions adam_options;
  adam_options.lr = 1e-3;
  deepstruct::AdamOptions sparse_options = adam_options;
  sparse_options.skip_inactive = true;  // masked weights stay where they are: the step costs O(active)

  std::printf("\n== %s: %d epochs each; sparse runs at %.0f%% density (ERK, output layer dense), Adam skipping inactive weights\n", name,
              args.epochs, 100 * target_density);
  std::fflush(stdout);
  {
    Model m = fresh;
    deepstruct::Adam<Scalar> adam(adam_options);
    const auto h = deepstruct::fit(m, adam, data.x_train, data.y_train, fit);
    rows.push_back({"dense", accuracy(m), seconds_of(h), m.density()});
  }
  {
    Model m = fresh;
    deepstruct::sparse_init(m, target_density, erk, args.seed);
    deepstruct::Adam<Scalar> adam(sparse_options);
    const auto h = deepstruct::fit(m, adam, data.x_train, data.y_train, fit);
    rows.push_back({"static random mask", accuracy(m), seconds_of(h), m.density()});
  }
  {
    Model m = fresh;
    deepstruct::sparse_init(m, target_density, erk, args.seed);
    deepstruct::Adam<Scalar> adam(sparse_options);
    deepstruct::MaskUpdateOptions o;
    o.drop_fraction = 0.3;
    o.update_every = steps_per_epoch;  // SET: after every epoch
    o.seed = args.seed;
    o.end = total;  // the last epoch's end is training's end: no update there
    o.schedule = deepstruct::DropSchedule::constant;
    deepstruct::SET<deepstruct::Adam<Scalar>, Model> set(m, adam, o);
    const auto h = deepstruct::fit(m, set, data.x_train, data.y_train, fit);
    rows.push_back({"SET (zeta 0.3, every epoch)", accuracy(m), seconds_of(h), m.density()});
  }
  {
    Model m = fresh;
    deepstruct::sparse_init(m, target_density, erk, args.seed);
    deepstruct::Adam<Scalar> adam(sparse_options);
    deepstruct::MaskUpdateOptions o;
    o.drop_fraction = 0.5;
    o.update_every = 50;
    // RigL's T_end, at least step 1 (RigL refuses 0): a run of fewer than 2 steps (--train-samples
    // 128 --epochs 1) has no update step then, as every step after T_end.
    o.end = std::max(1L, static_cast<long>(0.75 * double(total)));
    o.schedule = deepstruct::DropSchedule::cosine;
    deepstruct::RigL<deepstruct::Adam<Scalar>, Model> rigl(m, adam, o);
    deepstruct::StructureLog<Model> log(m);
    log.record_initial();
    rigl.on_update = std::ref(log);
    const auto h = deepstruct::fit(m, rigl, data.x_train, data.y_train, fit);
    // The structure log runs inside the training loop: its time is not training time.
    rows.push_back({"RigL (alpha 0.5, cosine, every 50 steps)", accuracy(m), seconds_of(h) - log.seconds(), m.density()});
    const std::string prefix = args.out_prefix + "_" + name;
    log.write_jsonl(prefix + "_rigl.jsonl");
    // The default panels: what moves (RigL keeps every layer pair's count, so edges and skip spans stay).
    deepstruct::write_evolution_svg(prefix + "_rigl.svg", log.records(), {"dead_neurons", "cannot_reach_outputs", "log10_input_output_paths", "grown"},
                                    std::string(name) + ": RigL's structure during training");
    deepstruct::write_graphml(prefix + "_rigl.graphml", deepstruct::generate_structure(m));
    std::printf("RigL: %zu updates logged to %s_rigl.jsonl (%.2f s of structure analysis, not counted below), drawn in %s_rigl.svg; "
                "final structure %s_rigl.graphml\n",
                rigl.history().size(), prefix.c_str(), log.seconds(), prefix.c_str(), prefix.c_str());
  }
  {
    // Iterative magnitude pruning with the same budget: dense at the start, after each of the first
    // epochs - 1 epochs prune (globally, the output layer kept) so that the last epoch runs at the
    // target density.
    Model m = fresh;
    deepstruct::Adam<Scalar> adam(sparse_options);
    const int rounds = std::max(1, args.epochs - 1);
    std::vector<deepstruct::MaskedLayer<Scalar>*> prunable = m.maskable_layers();
    prunable.pop_back();
    Eigen::Index all = 0;
    for (auto* l : prunable) all += l->numel();
    const Eigen::Index target_active = static_cast<Eigen::Index>(std::floor(target_density * double(m.num_weights()))) -
                                       m.maskable_layers().back()->numel();
    double seconds = 0;
    deepstruct::FitOptions one = fit;
    one.epochs = 1;
    for (int e = 1; e <= args.epochs; ++e) {
      one.seed = args.seed + static_cast<std::uint64_t>(e);
      seconds += seconds_of(deepstruct::fit(m, adam, data.x_train, data.y_train, one));
      if (e <= rounds) {
        Eigen::Index active = 0;
        for (auto* l : prunable) active += l->nnz();
        const double keep = std::pow(double(target_active) / double(all), double(e) / rounds);
        const auto goal = static_cast<Eigen::Index>(std::llround(keep * double(all)));
        if (active > goal) deepstruct::prune_global(prunable, deepstruct::PruneAmount::count(active - goal));
      }
    }
    rows.push_back({"iterative magnitude pruning", accuracy(m), seconds, m.density()});
  }
  std::printf("%-44s %9s %9s %10s %9s\n", "method", "density", "test acc", "train s", "vs dense");
  for (const auto& r : rows)
    std::printf("%-44s %8.2f%% %8.2f%% %10.2f %8.2fx\n", r.method.c_str(), 100 * r.density, 100 * r.accuracy, r.seconds,
                r.seconds / rows.front().seconds);
  std::fflush(stdout);
  return rows;
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  examples::FashionMnist data;
  if (const int rc = examples::load_fashion_mnist("sparse_training", args.data, args.train_samples, data)) return rc;
  std::vector<Row> ffn, dan;
  if (args.only != "dan") {
    deepstruct::FFNOptions options;
    options.seed = args.seed;
    ffn = compare("ffn", deepstruct::MaskedDeepFFN<float>(784, 10, {300, 100}, options), data, args);
  }
  if (args.only != "ffn") {
    deepstruct::Generator gen(args.seed);
    const deepstruct::Dag prior = deepstruct::watts_strogatz(200, 3, 0.8, gen);
    deepstruct::DANOptions options;
    options.seed = args.seed;
    auto model = deepstruct::make_dan<float>(784, 10, prior, options);
    // The prior fixes which layer pairs are connected (second order); inside them every weight is
    // available to the sparse methods: the dense run trains them all.
    for (auto* l : model.maskable_layers()) l->set_mask(0, deepstruct::MaskedLayer<float>::Mask::Constant(l->mask(0).rows(), l->mask(0).cols(), true));
    std::printf("\nMaskedDeepDAN from watts_strogatz(200, 3, 0.8): %zu hidden layers, %zu skip layers, %ld weights\n",
                model.num_hidden_layers(), model.skips().size(), long(model.num_weights()));
    dan = compare("dan", model, data, args);
  }
  // The targets on the FFN: RigL at least 87% and 1.5 points above the static mask; every sparse
  // run from scratch in at most 0.6x the dense run's time.
  if (!ffn.empty()) {
    const Row &dense = ffn[0], &stat = ffn[1], &set = ffn[2], &rigl = ffn[3];
    std::printf("\nTargets (FFN):\n  RigL %.2f%% (>= 87%%)  %s\n  RigL - static %.2f points (>= 1.5)  %s\n", 100 * rigl.accuracy,
                rigl.accuracy >= 0.87 ? "PASS" : "MISS", 100 * (rigl.accuracy - stat.accuracy),
                rigl.accuracy - stat.accuracy >= 0.015 ? "PASS" : "MISS");
    for (const Row* r : {&stat, &set, &rigl})
      std::printf("  %s: %.2fx the dense time (<= 0.6x)  %s\n", r->method.c_str(), r->seconds / dense.seconds,
                  r->seconds <= 0.6 * dense.seconds ? "PASS" : "MISS");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return examples::guarded_main("sparse_training", usage, run, argc, argv); }
