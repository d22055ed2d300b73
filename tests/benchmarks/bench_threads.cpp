// Threads on a shared machine: training steps timed alone and then beside a load this program
// starts itself - compiler processes in a loop, as on a node where others build - in the same
// run, on 1 and on 2 threads. The steps (zero_grad, forward, loss, backward, Adam): a
// MaskedDeepDAN<float> (Watts-Strogatz(200, 3, 0.8), batch 64), one dense 1000 x 1000
// MaskedLinear<float> (batch 512), and a DeepCellDAN<float> (bench_cell_dan's: RandWire's
// Watts-Strogatz(32, 4, 0.75) cells, width 8, 1x28x28 images, batch 32). Prints the median and
// the 90th percentile of the step and the ratio loaded / alone, with the load in two places: in a
// session of its own, as the build of another terminal or user (the kernel's autogroup then
// shares the cores between the load and this program first), and in this program's session
// (shared per thread). The target (the issue's): beside 4 compile loops a step takes at most 3x
// its time alone. Reported as PASS/MISS, never asserted, beside the ratio that a fair share of the
// cores gives the step.
//
//   bench_threads                 4 compile loops (c++ -O2 -c of a generated test file), ~55 s
//   bench_threads --load N        N loops instead
//   bench_threads --spin N        N busy loops (pure CPU load, no short-lived processes) instead
//   bench_threads --quick         1 loop, short timings: the ctest smoke test
//
// The loops run in their own process groups and are stopped (SIGTERM to each group) before the
// program ends, also when it fails.
#include <deepstruct/deep_cell_dan.hpp>
#include <deepstruct/deepstruct.hpp>
#include <deepstruct/graph.hpp>
#include <deepstruct/graph/cells.hpp>
#include <deepstruct/loss.hpp>
#include <deepstruct/threads.hpp>

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.hpp"

namespace {

using Scalar = float;
using Index = Eigen::Index;
using Model = deepstruct::MaskedDeepDAN<Scalar>;
using Matrix = Model::Matrix;
using Clock = bench::Clock;

double sink = 0;

std::vector<pid_t> load_pids;

void stop_load() {
  for (const pid_t pid : load_pids) kill(-pid, SIGTERM);
  for (const pid_t pid : load_pids) waitpid(pid, nullptr, 0);
  load_pids.clear();
}

void on_signal(int sig) {
  stop_load();
  std::_Exit(128 + sig);
}

/// A C++ file that takes a compiler about a second at -O2 (containers, algorithms, iostreams).
std::string write_test_source() {
  const std::string path = "/tmp/deepstruct_bench_threads_" + std::to_string(getpid()) + ".cpp";
  std::ofstream f(path);
  f << "#include <algorithm>\n#include <iostream>\n#include <map>\n#include <regex>\n#include <sstream>\n"
       "#include <string>\n#include <unordered_map>\n#include <vector>\n"
       "template <int N> struct S { std::map<std::string, std::vector<int>> m; int f(const std::string& s) {\n"
       "  std::regex r(\"[a-z]+\" + std::to_string(N)); std::smatch mm; std::regex_search(s, mm, r);\n"
       "  auto& v = m[s]; v.push_back(N); std::sort(v.begin(), v.end()); return int(v.size() + mm.size()) + S<N - 1>().f(s); } };\n"
       "template <> struct S<0> { int f(const std::string&) { return 0; } };\n"
       "int main(int argc, char** argv) { std::unordered_map<std::string, int> u; std::ostringstream o;\n"
       "  for (int i = 0; i < argc; ++i) { u[argv[i]] = S<24>().f(argv[i]); o << u[argv[i]]; }\n"
       "  std::cout << o.str() << std::endl; }\n";
  return path;
}

/// Starts n processes running `command` in a loop. In this program's session (own_session false)
/// each loop is a process group of its own, and the kernel shares the cores among all runnable
/// threads of the session alike. In a session of their own (true: one leader calls setsid() and
/// starts the loops, all in its process group), the loops are a separate scheduling group for
/// the kernel's autogroup (/proc/sys/kernel/sched_autogroup_enabled), as the build of another
/// terminal or another user is: the cores are shared between the groups first.
void start_load(int n, const std::string& command, bool own_session) {
  const std::string loop = "while :; do " + command + "; done";  // (no allocation after fork)
  const char* const text = loop.c_str();
  auto exec_loop = [text] {
    execl("/bin/sh", "sh", "-c", text, static_cast<char*>(nullptr));
    std::_Exit(127);
  };
  if (own_session) {
    const pid_t leader = fork();
    if (leader == 0) {
      setsid();
      for (int i = 0; i < n; ++i)
        if (fork() == 0) exec_loop();
      while (wait(nullptr) > 0) {
      }
      std::_Exit(0);
    }
    if (leader > 0) load_pids.push_back(leader);  // the leader's process group is its pid
    return;
  }
  for (int i = 0; i < n; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      exec_loop();
    }
    if (pid > 0) {
      setpgid(pid, pid);
      load_pids.push_back(pid);
    }
  }
}

/// The first line of a small /proc file, or "" ("1": autogroup on).
std::string read_line(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

struct Timing {
  double median = 0, p90 = 0, mean = 0;
  int steps = 0;
};

/// Calls of step() for `seconds` (at least min_steps), after a warm-up.
template <typename Step>
Timing time_steps(Step&& step, double seconds, int min_steps) {
  for (int r = 0; r < 3; ++r) step();
  std::vector<double> t;
  const auto start = Clock::now();
  while (static_cast<int>(t.size()) < min_steps || bench::ms_between(start, Clock::now()) < 1e3 * seconds) {
    const auto a = Clock::now();
    step();
    t.push_back(bench::ms_between(a, Clock::now()));
  }
  Timing out;
  out.steps = static_cast<int>(t.size());
  for (const double v : t) out.mean += v / double(t.size());
  out.median = bench::median(t);
  std::sort(t.begin(), t.end());
  out.p90 = t[static_cast<std::size_t>(0.9 * double(t.size() - 1))];
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int loops = 4;
  bool spin = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
      loops = 1;
    } else if ((std::strcmp(argv[i], "--load") == 0 || std::strcmp(argv[i], "--spin") == 0) && i + 1 < argc) {
      spin = std::strcmp(argv[i], "--spin") == 0;
      loops = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_threads [--quick] [--load N | --spin N]\n");
      return 2;
    }
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  const double seconds = quick ? 0.3 : 4.0;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::vector<int> thread_counts{1};
  if (cores > 1) thread_counts.push_back(static_cast<int>(std::min(cores, 2u)));

  deepstruct::Generator gen(1);
  const deepstruct::Dag dag = deepstruct::watts_strogatz(200, 3, 0.8, gen);
  const Model base = deepstruct::make_dan<Scalar>(784, 10, dag);
  const Index batch = 64;
  deepstruct::Generator data_gen(2);
  const Matrix x = bench::random_matrix<Scalar>(784, batch, data_gen);
  deepstruct::Labels y(batch);
  for (Index j = 0; j < batch; ++j) y[j] = static_cast<int>(deepstruct::random::uniform_index(data_gen, 10));

  std::printf("Training steps beside a load%s. DAN: MaskedDeepDAN<float> from watts_strogatz(200, 3, 0.8) -> make_dan(784, 10),\n"
              "batch 64 (zero_grad, forward, cross-entropy, backward, Adam). Dense: one dense MaskedLinear<float> 1000 x 1000\n"
              "at batch 512 (forward, backward, Adam): products of 1 GFLOP, which do use the threads. Cells: DeepCellDAN<float>\n"
              "on watts_strogatz(32, 4, 0.75), width 8, 1x28x28 images, batch 32 (zero_grad, forward, cross-entropy, backward, Adam).\n",
              quick ? " (--quick: short timings)" : "");
  const std::string autogroup = read_line("/proc/sys/kernel/sched_autogroup_enabled");
  std::printf("%u cores; load: %d %s, in another session and then in this one (kernel autogroup: %s); %s\n", cores, loops,
              spin ? "busy loops (sh: while :; do :; done)" : "compile loops (c++ -O2 -c of a generated test file)",
              autogroup == "1" ? "on" : autogroup == "0" ? "off" : "unknown", deepstruct::threads_summary().c_str());

  const std::string source = write_test_source();
  // (|| sleep 1: without a compiler the loop waits instead of spinning on a failing command.)
  const std::string command = spin ? std::string(":") : "c++ -O2 -c " + source + " -o /dev/null || sleep 1";
  // The dense workload.
  deepstruct::MaskedLinear<Scalar> dense_base(1000, 1000, true, 3);
  const Matrix dx = bench::random_matrix<Scalar>(1000, 512, data_gen), dg = bench::random_matrix<Scalar>(1000, 512, data_gen);

  // The cells workload: bench_cell_dan's DeepCellDAN (RandWire's graph, width 8) at batch 32.
  deepstruct::Generator cell_gen(4);
  deepstruct::DeepCellDANOptions cell_options;
  cell_options.width = 8;
  cell_options.seed = 1;
  const deepstruct::DeepCellDAN<Scalar> cells_base(
      10, {1, 28, 28}, deepstruct::cell_graph(deepstruct::watts_strogatz(quick ? 8 : 32, 4, 0.75, cell_gen)),
      [](const deepstruct::CellInfo& info, deepstruct::Generator& g) -> deepstruct::AnyCell<Scalar> {
        if (info.is_input) return deepstruct::ReductionCell<Scalar>(info.in_channels, info.width, g);
        return deepstruct::KeepSizeCell<Scalar>(info.in_channels, info.width, g);
      },
      cell_options);
  const Index cell_batch = quick ? 4 : 32;
  const Matrix cx = bench::random_matrix<Scalar>(784, cell_batch, cell_gen);
  deepstruct::Labels cy(cell_batch);
  for (Index j = 0; j < cell_batch; ++j) cy[j] = static_cast<int>(j % 10);

  struct Run {
    const char* workload;
    int threads;
    Timing alone, other, same;  // alone; beside the load in another session; in this one
  };
  std::vector<Run> runs;
  for (const char* workload : {"DAN", "dense", "cells"})
    for (const int threads : thread_counts) runs.push_back(Run{workload, threads, {}, {}, {}});
  // Training steps of a classifier on a copy of base_model: zero_grad, forward, cross-entropy, backward, Adam.
  auto classifier_steps = [&](const auto& base_model, const Matrix& inputs, const deepstruct::Labels& labels, double s, int min_steps) {
    auto model = base_model;
    deepstruct::Adam<Scalar> adam;
    Matrix grad;
    return time_steps(
        [&] {
          model.zero_grad();
          sink += deepstruct::cross_entropy(model.forward(inputs), labels, &grad);
          model.backward(inputs, grad);
          adam.step(model);
        },
        s, min_steps);
  };
  auto measure = [&](Run& run, Timing Run::*into) {
    deepstruct::set_num_threads(run.threads);
    const bool dan = std::strcmp(run.workload, "DAN") == 0, cells = std::strcmp(run.workload, "cells") == 0;
    const double s = dan ? seconds : seconds / 2;
    Timing t;
    if (cells) {
      t = classifier_steps(cells_base, cx, cy, s, 5);
    } else if (dan) {
      t = classifier_steps(base, x, y, s, 20);
    } else {
      deepstruct::MaskedLinear<Scalar> layer = dense_base;
      deepstruct::Adam<Scalar> adam;
      Matrix out, gx;
      t = time_steps(
          [&] {
            layer.zero_grad();
            layer.forward(dx, out);
            layer.backward(dx, dg, &gx);
            adam.step(layer);
            sink += static_cast<double>(gx(0, 0));
          },
          s, 5);
    }
    run.*into = t;
  };
  for (Run& run : runs) measure(run, &Run::alone);
  for (const bool own_session : {true, false}) {
    start_load(loops, command, own_session);
    std::this_thread::sleep_for(std::chrono::milliseconds(quick ? 200 : 1500));
    for (Run& run : runs) measure(run, own_session ? &Run::other : &Run::same);
    stop_load();
  }
  std::remove(source.c_str());

  // What a step takes beside the load when the kernel shares the cores fairly: the
  // 1-thread step's time alone (its work) over the cores the step's threads get - half the cores
  // when the load is another scheduling group, threads / (threads + loops) of them when all are
  // threads of one group - and at most one core per thread.
  auto one_thread_alone = [&](const char* workload) {
    for (const Run& r : runs)
      if (r.threads == 1 && std::strcmp(r.workload, workload) == 0) return r.alone.median;
    return 0.0;
  };
  auto fair_bound = [&](const Run& r, bool own_session) {
    const double c = static_cast<double>(cores), t = static_cast<double>(r.threads);
    const double share = std::min(t, own_session ? c / 2 : c * t / (t + static_cast<double>(loops)));
    return one_thread_alone(r.workload) / share / r.alone.median;
  };
  std::printf("\n%-16s %-19s | %-41s | %-41s\n", "", "alone", "beside the load in another session", "beside the load in this session");
  std::printf("%-8s %7s %9s %9s | %9s %9s %9s %5s %5s | %9s %9s %9s %5s %5s\n", "workload", "threads", "ms", "p90", "ms", "p90", "mean",
              "ratio", "fair", "ms", "p90", "mean", "ratio", "fair");
  std::vector<std::string> targets;
  char line[320];
  for (const Run& r : runs) {
    const Timing& a = r.alone;
    std::printf("%-8s %7d %9.4f %9.4f | %9.4f %9.4f %9.4f %5.2f %5.2f | %9.4f %9.4f %9.4f %5.2f %5.2f\n", r.workload, r.threads, a.median,
                a.p90, r.other.median, r.other.p90, r.other.mean, r.other.median / a.median, fair_bound(r, true), r.same.median,
                r.same.p90, r.same.mean, r.same.median / a.median, fair_bound(r, false));
    for (const bool own_session : {true, false}) {
      const Timing& l = own_session ? r.other : r.same;
      const double ratio = l.median / a.median;
      std::snprintf(line, sizeof line,
                    "%s, %d thread%s: step beside %d %s loops %s / alone %.2f (median; mean %.2f; fair share %.2f) (target <= 3)  %s",
                    r.workload, r.threads, r.threads == 1 ? "" : "s", loops, spin ? "busy" : "compile",
                    own_session ? "in another session" : "in this session", ratio, l.mean / a.mean, fair_bound(r, own_session),
                    ratio <= 3.0 ? "PASS" : "MISS");
      targets.emplace_back(line);
    }
  }
  std::printf("(ratio: loaded / alone, medians; fair: the ratio that a fair share of the cores gives the step's work - a step\n"
              " shorter than a scheduling slice often runs whole and can beat it in the median)\n");
  if (thread_counts.size() > 1)
    for (const char* workload : {"DAN", "dense", "cells"}) {
      const Run* one = nullptr;
      const Run* two = nullptr;
      for (const Run& r : runs)
        if (std::strcmp(r.workload, workload) == 0) (r.threads == 1 ? one : two) = &r;
      std::printf("%s: %d threads / 1 thread alone %.2f, beside the load in another session %.2f, in this session %.2f\n", workload,
                  two->threads, two->alone.median / one->alone.median, two->other.median / one->other.median,
                  two->same.median / one->same.median);
    }
  std::printf("\nTargets:\n");
  for (const auto& t : targets) std::printf("  %s\n", t.c_str());
  std::printf("\n(checksum %g)\n", sink);
  return 0;
}
