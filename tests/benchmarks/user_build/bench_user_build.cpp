// The dense workloads of issue 15 as a user's program runs them: a MaskedDeepFFN<float>
// 784-1000-1000-1000-10 (every mask full), inference (predict) at batch 1024 and one training
// step (zero_grad, forward, cross-entropy, backward, SGD step) at batch 1024. Prints one line per
// workload, "<name> <median ms>", plus the SIMD instruction sets and threads it was built with;
// tests/benchmarks/user_build.sh compares builds. Usage: bench_user_build [repetitions]
#include <deepstruct/deepstruct.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  using Clock = std::chrono::steady_clock;
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  deepstruct::FFNOptions options;
  options.seed = 1;
  deepstruct::MaskedDeepFFN<float> model(784, 10, {1000, 1000, 1000}, options);
  model.set_execution(deepstruct::Execution::dense);
  deepstruct::Generator gen(2);
  Eigen::MatrixXf x(784, 1024);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(deepstruct::random::uniform(gen, 0.0, 1.0));
  deepstruct::Labels y(1024);
  for (Eigen::Index i = 0; i < y.size(); ++i) y[i] = static_cast<int>(i % 10);
  deepstruct::SGD<float> sgd({0.01});

  auto median_ms = [&](auto&& fn) {
    fn();  // warm up
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      const auto a = Clock::now();
      fn();
      t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  Eigen::MatrixXf logits;
  double sink = 0;
  const double infer = median_ms([&] {
    model.predict(x, logits);
    sink += logits(0, 0);
  });
  const double train = median_ms([&] { sink += deepstruct::train_step(model, sgd, x, y); });
  std::printf("simd %s\nthreads %d\n", Eigen::SimdInstructionSetsInUse(), Eigen::nbThreads());
  std::printf("inference_ms %.3f\ntrain_step_ms %.3f\n", infer, train);
  return sink == sink ? 0 : 1;  // NaN would mean a broken build
}
