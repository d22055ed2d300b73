// Benchmark of MaskedLinear<float>: the dense path (Eigen GEMM on W o M) against the sparse path
// (blocked CSR/CSC kernels of detail/sparse_kernels.hpp), with Eigen's own GEMM at the same sizes as the
// ceiling. Prints one table per run; targets are reported as PASS/MISS, never asserted.
//
//   bench_masked_linear            full run: 1000x1000 layer (about 80 s): sparse time over the
//                                  FLOP limit at batch 1024, automatic against dense at batch 1
//                                  and 16, the crossover at batch 1, 4, 16, 128 and 1024
//   bench_masked_linear --quick    45x37 layer, one round, every path: the ctest smoke test
//
// The exit code is 0 unless the two paths disagree on a result (y, dL/dx, dL/dW or dL/db: a
// correctness failure).
#include <deepstruct/masked_linear.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

using Scalar = float;
using Index = Eigen::Index;
using Layer = deepstruct::MaskedLinear<Scalar>;
using Matrix = Layer::Matrix;
using deepstruct::Execution;

struct Config {
  Index in = 1000, out = 1000;
  Index target_batch = 1024;  // the FLOP-limit table
  std::vector<double> densities{1.0, 0.2, 0.1, 0.05, 0.01, 0.001};
  std::vector<Index> small_batches{1, 16};  // automatic against dense
  std::vector<double> small_densities{0.5, 0.3, 0.2, 0.1, 0.05, 0.01};
  // The crossover sweep. Batch 4: the forward of a few samples crosses lowest (about 0.3 on the
  // AVX-512 machine of docs/benchmarks.md), which is what holds default_sparse_threshold at 0.2.
  std::vector<Index> batches{1, 4, 16, 128, 1024};
  std::vector<double> sweep{0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
  int reps = 9;        // rounds of the main tables (medians reported)
  int sweep_reps = 5;  // rounds of the crossover sweep
};

Config quick_config() {
  Config c;
  c.in = 45;  // not a multiple of any SIMD width
  c.out = 37;
  c.target_batch = 70;  // full tiles plus a remainder
  c.densities = {1.0, 0.1, 0.01};
  c.small_batches = {5, 16};  // one partial tile
  c.small_densities = {0.5, 0.1};
  c.batches = {1, 70};
  c.sweep = {0.1, 0.5};
  c.reps = 1;
  c.sweep_reps = 1;
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? std::nan("") : n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Wall time of one call of fn in milliseconds.
template <typename Fn>
double time_ms(Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  const auto stop = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(stop - start).count();
}

double gflops(double flop, double ms) { return flop / (ms * 1e6); }

Matrix random_matrix(Index rows, Index cols, deepstruct::Generator& gen) {
  Matrix m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(deepstruct::random::uniform(gen, -1.0, 1.0));
  return m;
}

Layer make_layer(const Config& c, double density, std::uint64_t seed) {
  Layer layer(c.in, c.out, true, seed);
  if (density < 1.0) {
    deepstruct::Generator gen(seed + 1);
    Layer::Mask mask(c.out, c.in);
    for (Index i = 0; i < mask.size(); ++i) mask.data()[i] = deepstruct::random::bernoulli(gen, density);
    layer.set_mask(mask);
  }
  return layer;
}

double sink = 0;  // keeps results observable

/// Median times of both paths on one layer. The measurements run in rounds (GEMM, dense forward,
/// sparse forward, dense forward+backward, sparse forward+backward), and every ratio is the median
/// of the ratios within a round: load from other processes then slows both sides of a ratio.
/// The memory floor: the least traffic any forward makes - read x, write y - timed as a copy of x
/// into y, and for forward+backward that plus reading x and g and writing dL/dx, each timed after
/// a dense pass as the sparse pass is (same cache state). At low density it is above the FLOP limit.
struct Measurement {
  double gemm_ms = 0, dense_fwd_ms = 0, sparse_fwd_ms = 0, dense_fb_ms = 0, sparse_fb_ms = 0;
  double floor_fwd_ms = 0, floor_fb_ms = 0;  // the memory floor
  double fwd_ratio = 0, fb_ratio = 0, dense_over_gemm = 0;  // time ratios
  double floor_fwd_ratio = 0, floor_fb_ratio = 0;  // floor / dense time, per round
  Matrix y_dense, y_sparse, gx_dense, gx_sparse;
  Matrix gw_dense, gw_sparse;            // weight gradients of one backward on each path
  Layer::Vector gb_dense, gb_sparse;     // bias gradients of the same
};

Measurement measure(Layer& layer, const Matrix& w, const Matrix& x, const Matrix& g, int reps, bool with_gemm) {
  Measurement m;
  Matrix y_gemm(w.rows(), x.cols());
  auto gemm = [&] { y_gemm.noalias() = w * x; };
  auto fwd = [&](Execution path, Matrix& y) {
    layer.set_execution(path);
    layer.forward(x, y);
  };
  auto fb = [&](Execution path, Matrix& y, Matrix& gx) {
    layer.set_execution(path);
    layer.forward(x, y);
    layer.backward(x, g, &gx);
  };
  // Warm-up: fills the caches of both paths and the output buffers.
  if (with_gemm) gemm();
  fb(Execution::dense, m.y_dense, m.gx_dense);
  fb(Execution::sparse, m.y_sparse, m.gx_sparse);
  Matrix y_floor(x.rows(), x.cols()), gx_floor(x.rows(), x.cols());
  Eigen::RowVectorXf g_sums(g.cols());
  auto floor_fwd = [&] { y_floor.noalias() = x; };
  auto floor_fb = [&] {  // read x, write y; read x and g, write dL/dx
    y_floor.noalias() = x;
    gx_floor.noalias() = x;
    g_sums.noalias() = g.colwise().sum();
  };
  std::vector<double> tg, tdf, tsf, tdb, tsb, tff, tfb, rf, rb, rg, rff, rfb;
  for (int r = 0; r < reps; ++r) {
    if (with_gemm) tg.push_back(time_ms(gemm));
    tdf.push_back(time_ms([&] { fwd(Execution::dense, m.y_dense); }));
    tsf.push_back(time_ms([&] { fwd(Execution::sparse, m.y_sparse); }));
    fwd(Execution::dense, m.y_dense);
    tff.push_back(time_ms(floor_fwd));
    tdb.push_back(time_ms([&] { fb(Execution::dense, m.y_dense, m.gx_dense); }));
    tsb.push_back(time_ms([&] { fb(Execution::sparse, m.y_sparse, m.gx_sparse); }));
    fb(Execution::dense, m.y_dense, m.gx_dense);
    tfb.push_back(time_ms(floor_fb));
    rfb.push_back(tfb.back() / tdb.back());
    rf.push_back(tsf.back() / tdf.back());
    rb.push_back(tsb.back() / tdb.back());
    rff.push_back(tff.back() / tdf.back());
    if (with_gemm) rg.push_back(tdf.back() / tg.back());
  }
  sink += static_cast<double>(y_floor(0, 0)) + static_cast<double>(gx_floor(0, 0)) + static_cast<double>(g_sums(0));
  // Parameter gradients of a single backward on each path, for the parity check (the timed
  // rounds accumulated many).
  auto grads = [&](Execution path, Matrix& gx, Matrix& gw, Layer::Vector& gb) {
    layer.set_execution(path);
    layer.zero_grad();
    layer.backward(x, g, &gx);
    gw = layer.weight_grad();
    gb = layer.bias_grad();
  };
  grads(Execution::dense, m.gx_dense, m.gw_dense, m.gb_dense);
  grads(Execution::sparse, m.gx_sparse, m.gw_sparse, m.gb_sparse);
  layer.zero_grad();
  m.gemm_ms = median(tg);
  m.dense_fwd_ms = median(tdf);
  m.sparse_fwd_ms = median(tsf);
  m.dense_fb_ms = median(tdb);
  m.sparse_fb_ms = median(tsb);
  m.fwd_ratio = median(rf);
  m.fb_ratio = median(rb);
  m.dense_over_gemm = median(rg);
  m.floor_fwd_ms = median(tff);
  m.floor_fb_ms = median(tfb);
  m.floor_fwd_ratio = median(rff);
  m.floor_fb_ratio = median(rfb);
  if (with_gemm) sink += static_cast<double>(y_gemm(0, 0));
  sink += static_cast<double>(m.y_sparse(0, 0)) + static_cast<double>(m.gx_sparse(0, 0));
  return m;
}

/// The layer as a network runs it: a chain of `layers.size()` such layers (the same density, the
/// later ones out x out; ReLU between them; each output the next one's input) through
/// MaskedLinear::forward_chain, where every batch tile goes through all of them while it is in
/// cache. Timed in rounds after a dense forward of the first layer, as the single layer's sparse
/// forward is (same cache state for x); the ratio is chain time per layer over that round's dense
/// forward. Also checks the chain against the layers' own forwards with ReLU between them.
struct ChainMeasurement {
  double per_layer_ms = 0, per_layer_ratio = 0;  // ratio: per-layer time / dense forward time
  double diff = 0;                               // largest relative difference to layer by layer
};

ChainMeasurement measure_chain(std::vector<Layer>& layers, const Matrix& x, int reps) {
  std::vector<Layer*> chain;
  for (Layer& l : layers) {
    l.set_execution(Execution::sparse);
    chain.push_back(&l);
  }
  const double n = static_cast<double>(layers.size());
  Matrix y, y_dense, h, expected;
  auto run = [&] { Layer::forward_chain(chain.data(), chain.size(), deepstruct::Activation::relu, false, x, y); };
  auto dense_first = [&] {
    layers[0].set_execution(Execution::dense);
    layers[0].forward(x, y_dense);
    layers[0].set_execution(Execution::sparse);
  };
  run();
  dense_first();
  std::vector<double> t, r;
  for (int k = 0; k < reps; ++k) {
    const double dense_ms = time_ms(dense_first);
    t.push_back(time_ms(run) / n);
    r.push_back(t.back() / dense_ms);
  }
  // Layer by layer, the definition of the chain.
  h = x;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    layers[l].forward(h, expected);
    if (l + 1 < layers.size()) expected = expected.cwiseMax(Scalar(0));
    h = expected;
  }
  ChainMeasurement m;
  m.per_layer_ms = median(t);
  m.per_layer_ratio = median(r);
  double worst = 0;
  for (Index i = 0; i < y.size(); ++i)
    worst = std::max(worst, std::abs(double(y.data()[i]) - double(expected.data()[i])) / std::max(1.0, std::abs(double(expected.data()[i]))));
  m.diff = y.size() == expected.size() ? worst : HUGE_VAL;
  sink += static_cast<double>(y(0, 0)) + static_cast<double>(y_dense(0, 0));
  return m;
}

/// Largest |a - b| / max(1, |b|); infinite when the shapes differ.
template <typename A, typename B>
double max_rel_diff(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return HUGE_VAL;
  double worst = 0;
  for (Index i = 0; i < a.size(); ++i) {
    const double x = a.derived().data()[i], y = b.derived().data()[i];
    const double e = std::abs(x - y) / std::max(1.0, std::abs(y));
    if (std::isnan(e)) return e;  // a NaN on one path only is a disagreement too
    worst = std::max(worst, e);
  }
  return worst;
}

const char* verdict(bool ok) { return ok ? "PASS" : "MISS"; }

/// The density at which sparse/dense time reaches 1. Sparse time grows with the density and
/// dense time does not, so the ratio is close to a line a + b d: fitted by least squares over the
/// sweep (robust to a noisy point), crossover (1 - a) / b. NaN without a rising fit.
double crossover(const std::vector<double>& d, const std::vector<double>& ratio) {
  const double n = static_cast<double>(d.size());
  double sd = 0, sr = 0, sdd = 0, sdr = 0;
  for (std::size_t k = 0; k < d.size(); ++k) {
    sd += d[k];
    sr += ratio[k];
    sdd += d[k] * d[k];
    sdr += d[k] * ratio[k];
  }
  const double denom = n * sdd - sd * sd;
  if (d.size() < 2 || denom <= 0) return std::nan("");
  const double b = (n * sdr - sd * sr) / denom, a = (sr - b * sd) / n;
  return b > 0 ? (1.0 - a) / b : std::nan("");
}

/// Time of one call of fn in milliseconds, from a loop of n calls.
template <typename Fn>
double time_per_call(int n, Fn&& fn) {
  return time_ms([&] {
           for (int i = 0; i < n; ++i) fn();
         }) /
         n;
}

/// Calls per timing so that one timing of the dense forward takes about 1 ms (small batches).
int calls_for(const Config& c, Index batch) {
  const double flop = 2.0 * double(c.in) * double(c.out) * double(batch);
  return static_cast<int>(std::max(1.0, std::min(200.0, 1.5e8 / flop)));
}

/// Per-round ratios of two paths (a over b) for forward and forward+backward on one layer.
struct PathRatio {
  double fwd = 0, fb = 0, a_fwd_ms = 0, b_fwd_ms = 0, a_fb_ms = 0, b_fb_ms = 0;
};
PathRatio compare_paths(Layer& layer, Execution a, Execution b, const Matrix& x, const Matrix& g, int reps, int calls) {
  Matrix y, gx;
  auto fwd = [&](Execution path) {
    layer.set_execution(path);
    return time_per_call(calls, [&] { layer.forward(x, y); });
  };
  auto fb = [&](Execution path) {
    layer.set_execution(path);
    return time_per_call(calls, [&] {
      layer.forward(x, y);
      layer.backward(x, g, &gx);
    });
  };
  fwd(a), fwd(b), fb(a), fb(b);  // warm-up
  std::vector<double> ra, rb, ta, tb, tfa, tfb;
  for (int r = 0; r < reps; ++r) {
    // Odd rounds time b first: whichever runs first after the other path pays for its caches.
    if (r % 2 == 0) {
      ta.push_back(fwd(a));
      tb.push_back(fwd(b));
      tfa.push_back(fb(a));
      tfb.push_back(fb(b));
    } else {
      tb.push_back(fwd(b));
      ta.push_back(fwd(a));
      tfb.push_back(fb(b));
      tfa.push_back(fb(a));
    }
    ra.push_back(ta.back() / tb.back());
    rb.push_back(tfa.back() / tfb.back());
  }
  layer.zero_grad();
  layer.set_execution(Execution::automatic);
  sink += static_cast<double>(y(0, 0)) + static_cast<double>(gx(0, 0));
  return {median(ra), median(rb), median(ta), median(tb), median(tfa), median(tfb)};
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const Config c = quick ? quick_config() : Config{};
  const double tol = 1e-4;  // float results summed in different orders
  const std::size_t chain_layers = 3;  // the "in chain" rows
  bool parity_ok = true;

  std::printf("MaskedLinear<float> benchmark%s: %lldx%lld layer (out x in), median of %d rounds\n",
              quick ? " (--quick: sizes too small to judge the targets)" : "", static_cast<long long>(c.out),
              static_cast<long long>(c.in), c.reps);
  std::printf("Eigen %d.%d.%d, SIMD: %s, sparse batch tile %lld floats, one thread\n", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION,
              EIGEN_MINOR_VERSION, Eigen::SimdInstructionSetsInUse(),
              static_cast<long long>(deepstruct::detail::batch_tile<Scalar>));
  std::printf("GF/s: 2*in*out*B flop per pass for GEMM and dense, 2*nnz*B for sparse; fwd+bwd counts three passes.\n"
              "limit: the FLOP limit, dense time x density (dense measured in the same round);\n"
              "s/lim: sparse time / limit (median of the per-round ratios);\n"
              "floor: the memory floor, a copy of x into y (fwd; + x into dL/dx and a pass over g for fwd+bwd) after a dense pass,\n"
              "       over the limit: the least any kernel can reach once x and y, not the multiply-adds, take the time;\n"
              "in chain: the forward per layer of %zu such layers in a chain (MaskedLinear::forward_chain, ReLU between),\n"
              "       as a network's predict runs them: x transposed into tiles once, y out of them once.\n\n",
              chain_layers);

  deepstruct::Generator gen(12345);
  const Matrix w = random_matrix(c.out, c.in, gen);

  std::printf("%7s %6s %-10s %10s %10s %12s %12s %8s %8s\n", "density", "batch", "path", "fwd ms", "fwd GF/s",
              "fwd+bwd ms", "fwd+bwd GF/s", "fwd s/lim", "f+b s/lim");
  std::vector<std::string> targets;
  char line[256];
  {
    const Index batch = c.target_batch;
    const Matrix x = random_matrix(c.in, batch, gen), g = random_matrix(c.out, batch, gen);
    const double dense_flop = 2.0 * double(c.in) * double(c.out) * double(batch);
    for (const double density : c.densities) {
      Layer layer = make_layer(c, density, 7);
      const bool with_gemm = density == c.densities.front();
      const Measurement m = measure(layer, w, x, g, c.reps, with_gemm);
      const double diff = std::max({max_rel_diff(m.y_sparse, m.y_dense), max_rel_diff(m.gx_sparse, m.gx_dense),
                                    max_rel_diff(m.gw_sparse, m.gw_dense), max_rel_diff(m.gb_sparse, m.gb_dense)});
      if (!(diff <= tol)) {
        parity_ok = false;
        std::printf("ERROR: sparse and dense results (y, dL/dx, dL/dW, dL/db) differ by %g at density %g, batch %lld\n", diff, density,
                    static_cast<long long>(batch));
      }
      const double d = double(layer.nnz()) / double(layer.numel());  // the layer's actual density
      const double sparse_flop = 2.0 * double(layer.nnz()) * double(batch);
      const double fwd_lim = m.fwd_ratio / d, fb_lim = m.fb_ratio / d;  // medians of per-round s/d over density
      if (with_gemm)
        std::printf("%7s %6lld %-10s %10.3f %10.2f\n", "-", static_cast<long long>(batch), "Eigen GEMM", m.gemm_ms,
                    gflops(dense_flop, m.gemm_ms));
      std::printf("%7g %6lld %-10s %10.3f %10.2f %12.3f %12.2f\n", density, static_cast<long long>(batch), "dense",
                  m.dense_fwd_ms, gflops(dense_flop, m.dense_fwd_ms), m.dense_fb_ms, gflops(3 * dense_flop, m.dense_fb_ms));
      std::printf("%7s %6s %-10s %10.3f %10.2f %12.3f %12.2f %9.2f %9.2f\n", "", "", "sparse", m.sparse_fwd_ms,
                  gflops(sparse_flop, m.sparse_fwd_ms), m.sparse_fb_ms, gflops(3 * sparse_flop, m.sparse_fb_ms), fwd_lim,
                  fb_lim);
      const double floor_fwd = m.floor_fwd_ratio / d, floor_fb = m.floor_fb_ratio / d;  // floor / limit
      if (density < 1.0)
        std::printf("%7s %6s %-10s %10.3f %10s %12.3f %12s %9.2f %9.2f\n", "", "", "floor", m.floor_fwd_ms, "", m.floor_fb_ms,
                    "", floor_fwd, floor_fb);
      double chain_lim = 0;
      if (density < 1.0) {
        std::vector<Layer> layers;
        layers.push_back(std::move(layer));
        Config square = c;  // the layers after the first take its outputs
        square.in = c.out;
        for (std::size_t k = 1; k < chain_layers; ++k) layers.push_back(make_layer(square, density, 7 + k));
        const ChainMeasurement cm = measure_chain(layers, x, c.reps);
        if (!(cm.diff <= tol)) {
          parity_ok = false;
          std::printf("ERROR: forward_chain and the layers' forwards differ by %g at density %g\n", cm.diff, density);
        }
        chain_lim = cm.per_layer_ratio / d;
        double chain_flop = 0;  // GF/s of the whole chain (the --quick layers differ in size)
        for (const Layer& l : layers) chain_flop += 2.0 * double(l.nnz()) * double(batch);
        std::printf("%7s %6s %-10s %10.3f %10.2f %12s %12s %9.2f\n", "", "", "in chain", cm.per_layer_ms,
                    gflops(chain_flop, cm.per_layer_ms * double(layers.size())), "", "", chain_lim);
      }
      if (with_gemm && density == 1.0) {
        const double r = 1.0 / m.dense_over_gemm;  // GF/s ratio = inverse time ratio
        std::snprintf(line, sizeof line, "dense forward GF/s / Eigen GEMM GF/s, batch %5lld: %6.3f (target >= 0.8)  %s",
                      static_cast<long long>(batch), r, verdict(r >= 0.8));
        targets.emplace_back(line);
      }
      if (density < 1.0) {
        const double lf = density >= 0.05 ? 2.0 : density >= 0.01 ? 4.0 : 10.0;
        const double lb = density >= 0.05 ? 2.5 : density >= 0.01 ? 4.0 : 10.0;
        std::snprintf(line, sizeof line, "sparse / FLOP limit, density %5g, batch %lld: fwd %6.2f (target <= %g) %s, fwd+bwd %6.2f (target <= %g) %s",
                      density, static_cast<long long>(batch), fwd_lim, lf, verdict(fwd_lim <= lf), fb_lim, lb,
                      verdict(fb_lim <= lb));
        targets.emplace_back(line);
        std::snprintf(line, sizeof line, "    in a chain of %zu such layers (forward_chain, per layer): fwd %6.2f %s", chain_layers,
                      chain_lim, verdict(chain_lim <= lf));
        targets.emplace_back(line);
        // A target under the memory floor cannot be met by any kernel that reads x and writes y.
        const double floor_fwd = m.floor_fwd_ratio / d, floor_fb = m.floor_fb_ratio / d;
        if (floor_fwd > lf || floor_fb > lb) {
          std::snprintf(line, sizeof line, "    (the memory floor alone is %.2f / %.2f x the limit: %s below it)", floor_fwd, floor_fb,
                        floor_fwd > lf && floor_fb > lb ? "both targets" : floor_fwd > lf ? "the fwd target" : "the fwd+bwd target");
          targets.emplace_back(line);
        }
      }
    }
  }

  // Small batches: the automatic path (default threshold) against the dense path. Where the
  // automatic path runs the dense kernels for forward and backward, its time is the dense time by
  // construction ("=dense"); only the other cases are timed and judged.
  std::printf("\nSmall batches: time / dense time at the same density, median of %d rounds (auto: Execution::automatic,\n"
              "threshold %g, at batch 1 the forward sparse only up to %g; =dense: auto runs the dense kernels)\n",
              c.reps, deepstruct::default_sparse_threshold, deepstruct::detail::single_sample_sparse_threshold);
  std::printf("%7s %6s %10s %12s %12s %12s %12s\n", "density", "batch", "dense us", "sparse fwd", "sparse f+b", "auto fwd",
              "auto f+b");
  double worst_auto = 0;
  for (const Index batch : c.small_batches) {
    const Matrix x = random_matrix(c.in, batch, gen), g = random_matrix(c.out, batch, gen);
    const int calls = calls_for(c, batch);
    for (const double density : c.small_densities) {
      Layer layer = make_layer(c, density, 13);
      const PathRatio s = compare_paths(layer, Execution::sparse, Execution::dense, x, g, c.reps, calls);
      const bool sparse_bwd = layer.uses_sparse_path();
      const bool sparse_fwd = sparse_bwd && (batch > deepstruct::detail::per_sample_batch<Scalar> ||
                                             layer.density() <= deepstruct::detail::single_sample_sparse_threshold);
      char fwd_col[32] = "=dense", fb_col[32] = "=dense";
      if (sparse_bwd) {
        const PathRatio a = compare_paths(layer, Execution::automatic, Execution::dense, x, g, c.reps, calls);
        if (sparse_fwd) {
          std::snprintf(fwd_col, sizeof fwd_col, "%.3f", a.fwd);
          worst_auto = std::max(worst_auto, a.fwd);
        }
        std::snprintf(fb_col, sizeof fb_col, "%.3f", a.fb);
        worst_auto = std::max(worst_auto, a.fb);
      }
      std::printf("%7g %6lld %10.2f %12.3f %12.3f %12s %12s\n", density, static_cast<long long>(batch), 1e3 * s.b_fwd_ms,
                  s.fwd, s.fb, fwd_col, fb_col);
    }
  }
  std::snprintf(line, sizeof line, "automatic / dense time, batches %s, worst timed case: %6.3f (target <= 1, +5%% for noise)  %s",
                quick ? "5, 16" : "1, 16", worst_auto, verdict(worst_auto <= 1.05));
  targets.emplace_back(line);

  std::printf("\nTargets:\n");
  for (const auto& t : targets) std::printf("  %s\n", t.c_str());

  // Crossover sweep: where does the sparse path stop being faster?
  std::printf("\nCrossover sweep (sparse time / dense time, median of %d rounds):\n%7s", c.sweep_reps, "density");
  for (const Index batch : c.batches)
    std::printf("  %11s  %11s", ("fwd B=" + std::to_string(batch)).c_str(), ("f+b B=" + std::to_string(batch)).c_str());
  std::printf("\n");
  std::vector<std::vector<double>> ratios(2 * c.batches.size());
  for (std::size_t bi = 0; bi < c.batches.size(); ++bi) {
    const Index batch = c.batches[bi];
    const Matrix x = random_matrix(c.in, batch, gen), g = random_matrix(c.out, batch, gen);
    const int calls = calls_for(c, batch);
    for (const double density : c.sweep) {
      Layer layer = make_layer(c, density, 11);
      const PathRatio m = compare_paths(layer, Execution::sparse, Execution::dense, x, g, c.sweep_reps, calls);
      ratios[2 * bi].push_back(m.fwd);
      ratios[2 * bi + 1].push_back(m.fb);
    }
  }
  for (std::size_t di = 0; di < c.sweep.size(); ++di) {
    std::printf("%7g", c.sweep[di]);
    for (const auto& r : ratios) std::printf("  %11.3f", r[di]);
    std::printf("\n");
  }
  double suggested = 1.0, single = 1.0;
  std::printf("%7s", "cross");
  for (std::size_t k = 0; k < ratios.size(); ++k) {
    const double d = crossover(c.sweep, ratios[k]);
    std::printf("  %11.3f", d);
    if (std::isnan(d)) continue;
    // The forward of a single sample has its own threshold (detail::single_sample_sparse_threshold).
    if (c.batches[k / 2] == 1 && k % 2 == 0)
      single = std::min(single, d);
    else
      suggested = std::min(suggested, d);
  }
  std::printf("   (where the least-squares line through each column reaches 1)\n"
              "Crossover density estimate: %.3f (smallest of the columns but the single-sample forward; "
              "default_sparse_threshold is %g)\n",
              suggested, deepstruct::default_sparse_threshold);
  if (single < 1.0)
    std::printf("Single-sample forward: %.3f (detail::single_sample_sparse_threshold is %g)\n", single,
                deepstruct::detail::single_sample_sparse_threshold);

  std::printf("\n(checksum %g)\n", sink);
  if (!parity_ok) {
    std::printf("FAILED: the sparse and dense paths disagree (see ERROR lines)\n");
    return 1;
  }
  return 0;
}
