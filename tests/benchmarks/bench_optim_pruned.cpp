// Benchmark of the optimizers' active-only steps (sparse_steps) right after pruning: a dense
// MaskedLinear<float> 1000 x 1000 trained a few Adam steps (every entry carries Adam's state),
// then pruned to 10% at random, then Adam steps timed with sparse_steps (the default) and with
// every entry updated, on identical copies, alternating. The pruned entries keep Adam's v for tens
// of thousands of steps, so PyTorch's rule must stream every entry (optim.hpp, exact_skip_plan):
// gathering them one by one took 10x the full update. Prints the medians and their ratio.
//
//   bench_optim_pruned            200 steps each
//   bench_optim_pruned --quick    a few steps (the ctest smoke test)
#include <deepstruct/masked_linear.hpp>
#include <deepstruct/optim.hpp>

#include "bench_support.hpp"

#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int steps = quick ? 3 : 200;
  deepstruct::Generator gen(3);
  const Eigen::MatrixXf x = bench::random_matrix<float>(1000, 64, gen), g = bench::random_matrix<float>(1000, 64, gen);
  deepstruct::MaskedLinear<float>::Mask mask(1000, 1000);
  for (Eigen::Index i = 0; i < mask.size(); ++i) mask.data()[i] = deepstruct::random::uniform(gen, 0.0, 1.0) < 0.1;
  // [0] sparse_steps (the default), [1] every entry: the same layer, the same warm-up.
  std::vector<deepstruct::MaskedLinear<float>> layer(2, deepstruct::MaskedLinear<float>(1000, 1000, true, 1));
  std::vector<deepstruct::Adam<float>> adam;
  deepstruct::AdamOptions every;
  every.sparse_steps = false;
  adam.emplace_back(deepstruct::AdamOptions{});
  adam.emplace_back(every);
  Eigen::MatrixXf y;
  auto backward = [&](int k) {
    layer[k].zero_grad();
    layer[k].forward(x, y);
    layer[k].backward(x, g);
  };
  for (int k = 0; k < 2; ++k) {
    for (int i = 0; i < 5; ++i) {  // trained dense: every entry carries Adam's state
      backward(k);
      adam[k].step(layer[k]);
    }
    layer[k].set_mask(mask);
  }
  std::vector<double> t[2];
  for (int s = 0; s < steps; ++s)
    for (int k = 0; k < 2; ++k) {
      backward(k);
      const auto a = bench::Clock::now();
      adam[k].step(layer[k]);
      t[k].push_back(bench::ms_between(a, bench::Clock::now()));
    }
  const double sparse = bench::median(t[0]), full = bench::median(t[1]);
  std::printf("Adam step of a 1000 x 1000 weight pruned to 10%% after training (median of %d steps):\n"
              "  sparse_steps (default)  %.3f ms\n  every entry             %.3f ms\n  ratio                   %.2fx\n",
              steps, sparse, full, sparse / full);
  const bool same = layer[0].weight() == layer[1].weight();  // PyTorch's values either way, bit for bit
  if (!same) std::printf("ERROR: the two rules gave different weights\n");
  return same ? 0 : 1;
}
