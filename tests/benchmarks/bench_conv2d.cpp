// MaskedConv2d<float> against Eigen's GEMM on the same im2col shapes, and its sparse path against
// its dense path. The layer: 64 -> 64 channels, 3x3, padding 1, 28x28 images, batch 64 (the
// issue's shape). The baseline is the forward's product as one plain Eigen GEMM: (P * B) x K
// rows of receptive fields times the K x out weight (P = 784 positions, B = 64 images, K = 576),
// 3.7 GFLOP, timed right after each layer call. One thread.
//
// Usage: bench_conv2d [--quick] [--reps N]
#include <deepstruct/masked_conv2d.hpp>

#include "bench_support.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Mat = Eigen::MatrixXf;

struct Timing {
  double forward, backward, gemm;
};

Timing time_layer(deepstruct::MaskedConv2d<float>& conv, const Mat& x, const deepstruct::ImageShape& in, const Mat& g, const Mat& col,
                  const Mat& wt, int reps) {
  std::vector<double> f, b, base;
  Mat y, gx, z;
  for (int r = 0; r < reps; ++r) {
    auto t0 = bench::Clock::now();
    conv.forward(x, in, y);
    auto t1 = bench::Clock::now();
    conv.zero_grad();
    conv.backward(x, in, g, &gx);
    auto t2 = bench::Clock::now();
    z.noalias() = col * wt;
    auto t3 = bench::Clock::now();
    f.push_back(bench::ms_between(t0, t1));
    b.push_back(bench::ms_between(t1, t2));
    base.push_back(bench::ms_between(t2, t3));
  }
  return {bench::median(f), bench::median(b), bench::median(base)};
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int reps = 15;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_conv2d [--quick] [--reps N]\n");
      return 2;
    }
  }
  const Eigen::Index C = 64, H = quick ? 8 : 28, B = quick ? 4 : 64;
  if (quick) reps = 2;
  const deepstruct::ImageShape in{C, H, H};
  deepstruct::Generator gen(1);
  const Mat x = bench::random_matrix<float>(in.size(), B, gen);
  deepstruct::MaskedConv2d<float> dense(C, C, deepstruct::Conv2dOptions::square(3, 1, 1), 2);
  const Eigen::Index P = H * H, K = C * 9;
  const Mat g = bench::random_matrix<float>(C * P, B, gen);
  const Mat col = bench::random_matrix<float>(P * B, K, gen), wt = bench::random_matrix<float>(K, C, gen);
  const double flops = 2.0 * double(P * B) * double(K) * double(C);
  std::printf("MaskedConv2d<float> %ld -> %ld channels, 3x3, padding 1, %ldx%ld images, batch %ld: %.2f GFLOP forward, one thread\n",
              long(C), long(C), long(H), long(H), long(B), flops * 1e-9);
  std::printf("%-8s %-7s %10s %10s %10s %9s %9s %12s %12s\n", "density", "path", "fwd ms", "bwd ms", "GEMM ms", "fwd GF/s", "GEMM GF/s",
              "fwd/GEMM", "vs dense");
  const Timing d = time_layer(dense, x, in, g, col, wt, reps);
  std::printf("%-8.2f %-7s %10.3f %10.3f %10.3f %9.1f %9.1f %11.0f%% %12s\n", 1.0, "dense", d.forward, d.backward, d.gemm,
              flops / d.forward * 1e-6, flops / d.gemm * 1e-6, 100.0 * d.gemm / d.forward, "1.00 / 1.00");
  for (const double density : {0.5, 0.2, 0.1, 0.05, 0.01}) {
    deepstruct::MaskedConv2d<float> conv = dense;
    auto m = conv.mask();
    for (Eigen::Index i = 0; i < m.size(); ++i) m(i) = deepstruct::random::bernoulli(gen, density);
    conv.set_mask(m);
    conv.set_execution(deepstruct::Execution::sparse);
    const Timing s = time_layer(conv, x, in, g, col, wt, reps);
    char ratio[64];
    std::snprintf(ratio, sizeof ratio, "%.2f / %.2f", s.forward / d.forward, (s.forward + s.backward) / (d.forward + d.backward));
    std::printf("%-8.2f %-7s %10.3f %10.3f %10.3f %9.1f %9.1f %11.0f%% %12s\n", density, "sparse", s.forward, s.backward, s.gemm,
                density * flops / s.forward * 1e-6, flops / s.gemm * 1e-6, 100.0 * s.gemm / s.forward, ratio);
  }
  std::printf("\nfwd/GEMM: the dense forward's rate as a share of the GEMM's; vs dense: forward, forward+backward time over the dense "
              "layer's (fwd GF/s of the sparse rows counts the active weights' FLOPs only)\n");
  return 0;
}
