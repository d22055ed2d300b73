// Our half of the side-by-side comparison with deepstruct (issue 15; the driver is
// tests/benchmarks/side_by_side.py, which runs deepstruct's half on Debian's PyTorch). Nine
// workloads, each printed as "<name> <median ms>":
//   ffn_sgd_dense, ffn_sgd_d0.1        MaskedDeepFFN 784-300-100-10, one SGD step (zero_grad,
//                                      forward, cross-entropy, backward, step) at batch 128; every
//                                      mask full, or a seeded random 10% of every layer
//   big_infer_dense, _d0.1, _d0.01     MaskedDeepFFN 784-1000-1000-1000-10, inference at batch 1024
//   dan_ws200_step                     MaskedDeepDAN from watts_strogatz(200, 3, 0.8): one Adam step
//                                      at batch 64
//   generate_structure                 MaskedDeepFFN 784-1000-1000-10 -> Dag, inputs and outputs too
//   layer_index_1k_5k, _4k_20k         layer_index of random DAGs (erdos_renyi_gnm, 1,000 vertices and
//                                      5,000 edges; 4,000 and 20,000)
// Every workload runs with the library's automatic execution path; threads as OpenMP is told
// (OMP_NUM_THREADS). --quick: few repetitions (the ctest smoke test); --reps N sets them.
#include <deepstruct/deepstruct.hpp>
#include <deepstruct/graph.hpp>

#include "bench_support.hpp"

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

using Matrix = Eigen::MatrixXf;
double sink = 0;

double median_ms(int reps, const std::function<void()>& fn) {
  fn();  // warm up: buffers, sparse structures
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto a = bench::Clock::now();
    fn();
    t.push_back(bench::ms_between(a, bench::Clock::now()));
  }
  return bench::median(t);
}

deepstruct::Labels labels(Eigen::Index n, deepstruct::Generator& gen) {
  deepstruct::Labels y(n);
  for (Eigen::Index j = 0; j < n; ++j) y[j] = static_cast<int>(deepstruct::random::uniform_index(gen, 10));
  return y;
}

void report(const char* name, double ms) {
  std::printf("%s %.4f\n", name, ms);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 15;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) reps = 1;
    else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_side_by_side [--quick] [--reps N]\n");
      return 2;
    }
  }
  const int big_reps = std::max(1, reps / 3);
  deepstruct::Generator data(7);
  std::printf("threads %d\nsimd %s\n", Eigen::nbThreads(), Eigen::SimdInstructionSetsInUse());

  {  // FFN 784-300-100-10, SGD step at batch 128
    const Matrix x = bench::random_matrix<float>(784, 128, data);
    const deepstruct::Labels y = labels(128, data);
    for (const double density : {1.0, 0.1}) {
      deepstruct::FFNOptions o;
      o.seed = 1;
      deepstruct::MaskedDeepFFN<float> model(784, 10, {300, 100}, o);
      if (density < 1) {
        deepstruct::AllocationOptions a;
        a.method = deepstruct::DensityAllocation::uniform;
        deepstruct::sparse_init(model, density, a, 2);
      }
      deepstruct::SGD<float> sgd({0.01});
      report(density < 1 ? "ffn_sgd_d0.1" : "ffn_sgd_dense",
             median_ms(reps, [&] { sink += deepstruct::train_step(model, sgd, x, y); }));
    }
  }
  {  // FFN 784-1000-1000-1000-10, inference at batch 1024
    const Matrix x = bench::random_matrix<float>(784, 1024, data);
    Matrix logits;
    for (const double density : {1.0, 0.1, 0.01}) {
      deepstruct::FFNOptions o;
      o.seed = 3;
      deepstruct::MaskedDeepFFN<float> model(784, 10, {1000, 1000, 1000}, o);
      if (density < 1) {
        deepstruct::AllocationOptions a;
        a.method = deepstruct::DensityAllocation::uniform;
        deepstruct::sparse_init(model, density, a, 4);
      }
      const char* name = density == 1.0 ? "big_infer_dense" : density == 0.1 ? "big_infer_d0.1" : "big_infer_d0.01";
      report(name, median_ms(big_reps, [&] {
               model.predict(x, logits);
               sink += logits(0, 0);
             }));
    }
  }
  {  // DAN from Watts-Strogatz(200, 3, 0.8), Adam step at batch 64
    deepstruct::Generator gen(42);
    const deepstruct::Dag dag = deepstruct::watts_strogatz(200, 3, 0.8, gen);
    auto model = deepstruct::make_dan<float>(784, 10, dag);
    const Matrix x = bench::random_matrix<float>(784, 64, data);
    const deepstruct::Labels y = labels(64, data);
    deepstruct::Adam<float> adam;
    report("dan_ws200_step", median_ms(reps, [&] { sink += deepstruct::train_step(model, adam, x, y); }));
  }
  {  // generate_structure of 784-1000-1000-10
    const deepstruct::MaskedDeepFFN<float> model(784, 10, {1000, 1000});
    deepstruct::StructureOptions all;
    all.include_input = all.include_output = true;
    report("generate_structure", median_ms(big_reps, [&] { sink += double(num_edges(deepstruct::generate_structure(model, all))); }));
  }
  for (const auto& [n, m, name] : {std::tuple<std::size_t, std::size_t, const char*>{1000, 5000, "layer_index_1k_5k"},
                                   std::tuple<std::size_t, std::size_t, const char*>{4000, 20000, "layer_index_4k_20k"}}) {
    deepstruct::Generator gen(5);
    const deepstruct::Dag dag = deepstruct::erdos_renyi_gnm(n, m, gen);
    report(name, median_ms(reps, [&] { sink += double(deepstruct::layer_index(dag).back()); }));
  }
  return sink == sink ? 0 : 1;
}
