// Benchmark of MaskedDeepRNN<float>: one training step of an LSTM (28 steps of 28 features - a
// Fashion-MNIST image row by row -, 128 hidden units, a linear head to 10 classes, batch 128):
// zero_grad, forward, cross-entropy, backpropagation through time, SGD step. Dense, and with the
// recurrent masks at densities 0.5, 0.2, 0.1 and 0.05 (random, seeded). The baseline, measured in
// the same run right after each step, is the step's products as plain Eigen GEMMs of the same
// shapes (the input products of every step at once, the hidden products step by step, their
// input and weight gradients): the step's rate is its FLOPs over its time, the GEMMs' rate the
// same FLOPs over theirs. Targets (reported, never asserted): the dense step at least 50% of the
// GEMM rate; at density 0.1 at most 0.5x the dense step's time.
//
//   bench_rnn          full run
//   bench_rnn --quick  few repetitions: the ctest smoke test
#include <deepstruct/loss.hpp>
#include <deepstruct/masked_deep_rnn.hpp>
#include <deepstruct/optim.hpp>

#include "bench_support.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Scalar = float;
using Index = Eigen::Index;
using Model = deepstruct::MaskedDeepRNN<Scalar>;
using Matrix = Model::Matrix;
using Clock = bench::Clock;

using bench::median;
using bench::ms_between;
Matrix random_matrix(Index rows, Index cols, deepstruct::Generator& gen) { return bench::random_matrix<Scalar>(rows, cols, gen); }

double sink = 0;

constexpr Index F = 28, T = 28, H = 128, B = 128, C = 10;

/// The products of one training step as Eigen GEMMs of the step's shapes.
struct GemmBaseline {
  Matrix w_ih = Matrix::Random(4 * H, F), w_hh = Matrix::Random(4 * H, H), x = Matrix::Random(F, T * B),
         g = Matrix::Random(4 * H, T * B), h = Matrix::Random(H, T * B);
  Matrix gi, gh, dh, gw_ih = Matrix::Zero(4 * H, F), gw_hh = Matrix::Zero(4 * H, H);
  void run() {
    gi.noalias() = w_ih * x;  // every step's input product
    for (Index t = 0; t < T; ++t) gh.noalias() = w_hh * h.middleCols(t * B, B);
    for (Index t = 0; t < T; ++t) dh.noalias() = w_hh.transpose() * g.middleCols(t * B, B);
    gw_hh.noalias() += g * h.transpose();
    gw_ih.noalias() += g * x.transpose();
    sink += double(gi(0, 0)) + double(gh(0, 0)) + double(dh(0, 0));
  }
  /// The FLOPs of the products above (what the step must compute).
  static double flops() {
    const double g4 = 4.0 * H;
    return 2.0 * g4 * F * T * B            // input products
           + 2.0 * g4 * H * T * B          // hidden products
           + 2.0 * g4 * H * T * B          // dL/dh through W_hh, step by step
           + 2.0 * g4 * H * T * B          // dL/dW_hh
           + 2.0 * g4 * F * T * B;         // dL/dW_ih (no dL/dx: the first layer)
  }
};

struct Result {
  double step_ms, gemm_ms, ratio;
};

Result run(double density, int reps, bool print) {
  deepstruct::RNNOptions options;
  options.kind = deepstruct::RecurrentKind::lstm;
  options.head = C;
  options.seed = 1;
  Model model(F, {H}, options);
  deepstruct::Generator gen(7);
  if (density < 1.0)
    for (std::size_t k = 0; k < 2; ++k)
      model.layer(0).update_mask(k, [&](auto& m) {
        for (Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, density);
      });
  const Matrix x = random_matrix(T * F, B, gen);
  deepstruct::Labels y(B);
  for (Index j = 0; j < B; ++j) y[j] = static_cast<int>(deepstruct::random::uniform_index(gen, C));
  deepstruct::SGD<Scalar> sgd(deepstruct::SGDOptions{0.01});
  GemmBaseline base;
  Matrix grad;
  std::vector<double> t_step, t_gemm, ratio, t_fwd, t_bwd;
  const int warmup = std::max(2, reps / 10);
  for (int r = 0; r < warmup + reps; ++r) {
    const auto t0 = Clock::now();
    model.zero_grad();
    const Matrix& out = model.forward(x);
    const auto t1 = Clock::now();
    sink += deepstruct::cross_entropy(out, y, &grad);
    model.backward(x, grad);
    const auto t2 = Clock::now();
    sgd.step(model);
    const auto t3 = Clock::now();
    base.run();
    const auto t4 = Clock::now();
    if (r < warmup) continue;
    t_step.push_back(ms_between(t0, t3));
    t_fwd.push_back(ms_between(t0, t1));
    t_bwd.push_back(ms_between(t1, t2));
    t_gemm.push_back(ms_between(t3, t4));
    ratio.push_back(t_step.back() / t_gemm.back());
  }
  const Result r{median(t_step), median(t_gemm), median(ratio)};
  if (print) {
    const auto& l = model.layer(0);
    std::printf("%7.2f  %-6s %-6s %9.3f %9.3f %9.3f %9.3f %10.1f %9.2f\n", density, l.uses_sparse_path(0) ? "sparse" : "dense",
                l.uses_sparse_path(1) ? "sparse" : "dense", r.step_ms, median(t_fwd), median(t_bwd), r.gemm_ms,
                GemmBaseline::flops() / (r.step_ms * 1e6), r.ratio);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int reps = quick ? 3 : 40;
  std::printf("MaskedDeepRNN<float> LSTM training-step benchmark%s: %ld steps x %ld features, %ld hidden, batch %ld, head to %ld\n",
              quick ? " (--quick: few repetitions, timings rough)" : "", long(T), long(F), long(H), long(B), long(C));
  std::printf("Eigen %d.%d.%d, SIMD: %s; %.2f GFLOP of products per step; median of %d steps\n", EIGEN_WORLD_VERSION,
              EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse(), GemmBaseline::flops() / 1e9, reps);
  std::printf("GF/s: the products' FLOPs over the step's time (the same FLOPs in both columns); step/GEMM: median of the per-step ratios\n\n");
  std::printf("density  W_ih   W_hh    step ms    fwd ms    bwd ms   GEMM ms  step GF/s step/GEMM\n");
  const Result dense = run(1.0, reps, true);
  std::vector<std::pair<double, Result>> sparse;
  for (const double d : {0.5, 0.2, 0.1, 0.05}) sparse.emplace_back(d, run(d, reps, true));
  double at_01 = 0;
  for (const auto& [d, r] : sparse)
    if (d == 0.1) at_01 = r.step_ms / dense.step_ms;
  std::printf("\nsparse / dense step time:");
  for (const auto& [d, r] : sparse) std::printf("  %.2f: %.3f", d, r.step_ms / dense.step_ms);
  std::printf("\n\nTargets:\n");
  std::printf("  dense step at %.0f%% of the GEMM rate for the same FLOPs (target >= 50%%)  %s\n", 100.0 / dense.ratio,
              1.0 / dense.ratio >= 0.5 ? "PASS" : "MISS");
  std::printf("  density 0.1: %.3fx the dense step's time (target <= 0.5x)  %s\n", at_01, at_01 <= 0.5 ? "PASS" : "MISS");
  std::printf("\n(checksum %g)\n", sink);
  return 0;
}
