// A DeepCellDAN<float> training step (zero_grad, forward, cross-entropy, backward, Adam) on a
// Watts-Strogatz(32, 4, 0.75) cell graph (RandWire's setting) for 1x28x28 images at batch 64:
// reduction cells (Conv 5x5 stride 2 -> ReLU -> BatchNorm2d) at the input nodes, keep-size cells
// (ReLU -> Conv 3x3 -> BatchNorm2d) elsewhere, width 8. Dense, then with the convolutions pruned
// to 30% and 10% (global magnitude; the sparse kernels below the 0.2 threshold). Prints the step's
// time, its share in the convolutions' products, and the convolutions' GFLOP/s. One thread.
//
// Usage: bench_cell_dan [--quick] [--reps N] [--width W]
#include <deepstruct/deep_cell_dan.hpp>
#include <deepstruct/graph/cells.hpp>
#include <deepstruct/graph/generators.hpp>
#include <deepstruct/loss.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/prune.hpp>

#include "bench_support.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

auto stem_and_keep_size(Eigen::Index) {
  return [](const deepstruct::CellInfo& info, deepstruct::Generator& gen) -> deepstruct::AnyCell<float> {
    if (info.is_input) return deepstruct::ReductionCell<float>(info.in_channels, info.width, gen);
    return deepstruct::KeepSizeCell<float>(info.in_channels, info.width, gen);
  };
}

/// Forward FLOPs of the convolutions for one image.
double conv_flops(deepstruct::DeepCellDAN<float>& model) {
  const auto shapes = model.node_output_shapes();
  double flops = 0;
  for (std::size_t v = 0; v < model.num_nodes(); ++v) {
    const auto [active, all] = model.cell_weights(v);
    (void)all;
    flops += 2.0 * double(active) * double(shapes[v].plane());
  }
  return flops;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int reps = 10;
  Eigen::Index width = 8;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--width") == 0 && i + 1 < argc) width = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_cell_dan [--quick] [--reps N] [--width W]\n");
      return 2;
    }
  }
  const Eigen::Index batch = quick ? 4 : 64;
  if (quick) reps = 2;
  deepstruct::Generator gen(1);
  const deepstruct::Dag ws = deepstruct::watts_strogatz(quick ? 8 : 32, 4, 0.75, gen);
  deepstruct::DeepCellDANOptions options;
  options.width = width;
  options.seed = 1;
  deepstruct::DeepCellDAN<float> model(10, {1, 28, 28}, deepstruct::cell_graph(ws), stem_and_keep_size(width), options);
  const Eigen::MatrixXf x = bench::random_matrix<float>(784, batch, gen);
  deepstruct::Labels y(batch);
  for (Eigen::Index i = 0; i < batch; ++i) y[i] = static_cast<int>(i % 10);
  std::printf("DeepCellDAN<float> on watts_strogatz(%zu, 4, 0.75): %zu cells (%zu input, %zu output), width %ld, %ld parameters; "
              "1x28x28 images, batch %ld, one thread\n",
              model.num_nodes(), model.num_nodes(), model.input_nodes().size(), model.output_nodes().size(), long(width),
              long(model.num_parameters()), long(batch));
  std::printf("%-22s %10s %10s %10s %12s\n", "convolutions", "step ms", "fwd ms", "bwd ms", "conv GF/s");
  deepstruct::Adam<float> adam;
  for (const double density : {1.0, 0.3, 0.1}) {
    if (density < 1.0) {
      const double keep = density / model.density();  // of the convolutions' active weights
      (void)keep;
      Eigen::Index conv_all = 0, conv_active = 0;
      for (auto* l : model.maskable_layers())
        if (std::string(l->type_name()) == "MaskedConv2d") {
          conv_all += l->numel();
          conv_active += l->nnz();
        }
      const auto target = static_cast<Eigen::Index>(density * double(conv_all));
      deepstruct::prune_global(model, deepstruct::PruneAmount::count(conv_active - target), deepstruct::layers_of_type({"MaskedConv2d"}));
    }
    std::vector<double> step, fwd, bwd;
    Eigen::MatrixXf grad;
    for (int r = 0; r < reps + 1; ++r) {
      const auto t0 = bench::Clock::now();
      model.zero_grad();
      const auto& logits = model.forward(x);
      const auto t1 = bench::Clock::now();
      (void)deepstruct::cross_entropy(logits, y, &grad);
      model.backward(x, grad);
      const auto t2 = bench::Clock::now();
      adam.step(model);
      const auto t3 = bench::Clock::now();
      if (r == 0) continue;  // warm-up
      step.push_back(bench::ms_between(t0, t3));
      fwd.push_back(bench::ms_between(t0, t1));
      bwd.push_back(bench::ms_between(t1, t2));
    }
    const double flops = 3.0 * conv_flops(model) * double(batch);  // forward + two backward products
    char label[64];
    std::snprintf(label, sizeof label, "%.0f%% of weights", 100.0 * density);
    std::printf("%-22s %10.2f %10.2f %10.2f %12.1f\n", density == 1.0 ? "dense" : label, bench::median(step), bench::median(fwd),
                bench::median(bwd), flops / bench::median(step) * 1e-6);
  }
  std::printf("\nconv GF/s: the convolutions' forward and backward FLOPs (active weights only) over the whole step's time\n");
  return 0;
}
