// SPDX-License-Identifier: MIT
#pragma once

/// \file threads.hpp
/// The library's one thread setting: deepstruct::set_num_threads(n), or the environment variable
/// DEEPSTRUCT_NUM_THREADS read on first use; without either, OpenMP's omp_get_max_threads() (1
/// without OpenMP). It caps every parallel region deepstruct opens - the sparse kernels, the
/// dense products of MaskedLinear (split into chunks by deepstruct, detail/gemm.hpp), the chunks
/// of images of MaskedConv2d, the optimizers' chunks - and set_num_threads also sets Eigen's
/// (Eigen::setNbThreads) for the products outside deepstruct.
///
/// Below a measured amount of work (detail::parallel_work_threshold) deepstruct runs on the
/// calling thread alone. Above it, its regions run on deepstruct's own threads (detail::PiecePool,
/// with OpenMP compiled in; OpenMP supplies the default thread count and Eigen's threads): the
/// calling thread works too and never waits for a thread that has not begun a piece, so a thread
/// that lost its core to another process does not hold up the region (docs/benchmarks.md,
/// bench_threads).

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <exception>
#include <string>
#include <type_traits>

#if defined(_OPENMP)
#include <omp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <immintrin.h>
#endif
#endif

#include "deepstruct/errors.hpp"

namespace deepstruct {

namespace detail {

/// The setting: 0 until set_num_threads(). Atomic, so that a set_num_threads() while another
/// thread is inside deepstruct is not a data race (that thread sees the old or the new value).
inline std::atomic<int>& thread_setting() {
  static std::atomic<int> threads{0};
  return threads;
}

/// DEEPSTRUCT_NUM_THREADS if it is a whole number >= 1, otherwise 0.
inline int threads_from_environment() {
  const char* env = std::getenv("DEEPSTRUCT_NUM_THREADS");
  if (env == nullptr || *env == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(env, &end, 10);
  return (end != nullptr && *end == '\0' && n >= 1 && n <= 4096) ? static_cast<int>(n) : 0;
}

/// Work a parallel region must carry at least, per thread it adds, in floating-point operations
/// at 100 GF/s (what one core of the development machine does in the sparse kernels; memory-bound
/// work such as an optimizer step counts its time at that rate): about 30 us. It also sets the
/// pieces work is cut into (work_pieces). Measured with a Watts-Strogatz DAN step at batch 64
/// (products of 0.1-10 MFLOP; docs/benchmarks.md): on 2 threads of an idle machine 0.14 ms with
/// 3e6, 0.18 ms with 1e7 or 3e7 (one thread: 0.18 ms); beside 4 compile loops the median step
/// stays at 0.19 ms with 3e6. With OpenMP's regions, which wait for every thread, the same 3e6
/// took 3.4-4.8 ms per step on average beside the load (regions waiting for a thread that lost
/// its core), so the threshold was 3e7 until the regions moved to PiecePool.
inline constexpr double parallel_work_threshold = 3e6;

}  // namespace detail

/// Threads deepstruct may use (>= 1): the value of set_num_threads(), else DEEPSTRUCT_NUM_THREADS
/// (read on the first call), else omp_get_max_threads() at the time of the call (so that
/// omp_set_num_threads and OMP_NUM_THREADS apply) with OpenMP, else 1. Without OpenMP deepstruct
/// runs one thread whatever the setting.
inline int num_threads() {
  const int n = detail::thread_setting().load(std::memory_order_relaxed);
  if (n == 0) {
    static const int from_env = detail::threads_from_environment();
    if (from_env > 0) return from_env;
#if defined(_OPENMP)
    return std::max(1, omp_get_max_threads());
#else
    return 1;
#endif
  }
  return n;
}

/// Sets the threads deepstruct may use (1 <= n <= 4096, as DEEPSTRUCT_NUM_THREADS; value_error
/// otherwise), and Eigen's (Eigen::setNbThreads(n)) for the products outside deepstruct's kernels.
/// Calls from several threads at once take turns: Eigen's setting is a plain int (two calls at
/// once were a data race on it, and could leave Eigen's setting another than deepstruct's).
inline void set_num_threads(int n) {
  if (n < 1 || n > 4096)
    DEEPSTRUCT_THROW(value_error, "set_num_threads: expected a number of threads from 1 to 4096, found " + std::to_string(n));
  // A spin lock (the section is two stores): <mutex> costs every file that includes this header.
  static std::atomic_flag busy = ATOMIC_FLAG_INIT;
  while (busy.test_and_set(std::memory_order_acquire)) {
  }
  detail::thread_setting().store(n, std::memory_order_relaxed);
  Eigen::setNbThreads(n);
  busy.clear(std::memory_order_release);
}

/// One line for logs: the setting, where it came from, and whether OpenMP is compiled in.
inline std::string threads_summary() {
  const bool from_env = detail::thread_setting().load(std::memory_order_relaxed) == 0 && detail::threads_from_environment() != 0;  // as num_threads() reads it
  std::string s = "deepstruct::num_threads() " + std::to_string(num_threads());
  if (from_env) s += " (DEEPSTRUCT_NUM_THREADS)";
#if defined(_OPENMP)
  s += ", OpenMP on";
  if (const char* w = std::getenv("OMP_WAIT_POLICY")) s += std::string(", OMP_WAIT_POLICY=") + w;
#else
  s += ", no OpenMP (one thread)";
#endif
  return s;
}

namespace detail {

/// True on a thread while it runs a piece of a parallel region: a region opened inside a piece
/// runs on that thread alone.
inline bool& in_region() {
  thread_local bool inside = false;
  return inside;
}

#if defined(_OPENMP)
/// A spin-wait hint to the CPU (pause on x86).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
  _mm_pause();
#elif defined(__aarch64__) && defined(__GNUC__)
  asm volatile("yield");
#endif
}

/// The threads behind for_each_piece. A region is a counter of pieces: the calling thread takes
/// pieces as thread 0 and the pool's workers join in as threads 1.., each taking the next piece
/// until none is left. The caller then waits for the pieces a worker has begun - never for a
/// worker that has not taken one, where an OpenMP region ends at a barrier that waits for every
/// thread of its team. On a machine shared with other processes a worker that lost its core is
/// the common case: an OpenMP region waited for the scheduler to run it again (milliseconds, per
/// region), here the caller runs its pieces. So regions can be small: the work threshold fell
/// from 3e7 to 3e6 flops (docs/benchmarks.md, "Threads on a shared machine").
///
/// Workers start on first use (one fewer than the largest team asked for), spin for
/// worker_spin() after each region waiting for the next, then sleep until one comes. They are
/// detached and the pool is never destroyed (a static destructor cannot then find it gone). One
/// region at a time: a region asked for while another runs (from another std::thread) runs on its
/// caller alone, as does every region in a child process after fork().
class PiecePool {
 public:
  using Call = void (*)(void*, Eigen::Index, int);

  /// How long an idle worker spins waiting for the next region before it sleeps: 100 us, none
  /// under OMP_WAIT_POLICY=passive (any case; read once), as OpenMP's own threads would not spin.
  static std::chrono::microseconds worker_spin() {
    static const std::chrono::microseconds spin = spin_for_policy(std::getenv("OMP_WAIT_POLICY"));
    return spin;
  }
  static std::chrono::microseconds spin_for_policy(const char* policy) {
    std::string p = policy != nullptr ? policy : "";
    for (char& c : p) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return std::chrono::microseconds(p == "passive" ? 0 : 100);
  }

  static PiecePool& get() {
    static PiecePool* const pool = new PiecePool();
    return *pool;
  }

  /// Runs call(ctx, i, thread) for i in [0, n) on the calling thread (thread 0) and up to team - 1
  /// workers, and returns when every piece has returned. Returns false without running anything
  /// when the pool is busy with another region or cannot start its threads.
  bool run(Eigen::Index n, int team, Call call, void* ctx) {
    if (forked()) return false;
    const auto job = std::make_shared<Job>();  // (before the pool is taken: it may throw)
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    if (!start_workers(team - 1)) {
      busy_.store(false, std::memory_order_release);
      return false;
    }
    job->n = n;
    job->team = team;
    job->call = call;
    job->ctx = ctx;
    {
      std::lock_guard<std::mutex> lock(job_mutex_);
      job_ = job;
    }
    generation_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    take_pieces(*job, 0);
    // Only pieces a worker has begun are left: wait for them to return.
    for (int spins = 0; job->done.load(std::memory_order_acquire) < n;) {
      if (spins < 4096) {
        cpu_relax();
        ++spins;
      } else {
        std::this_thread::yield();  // the worker has lost its core: let it have this one
      }
    }
    {
      std::lock_guard<std::mutex> lock(job_mutex_);
      job_.reset();
    }
    busy_.store(false, std::memory_order_release);
    return true;
  }

 private:
  /// One region. A worker that comes late holds its own reference and finds no piece left; ctx
  /// (the caller's) is only used for a piece taken, which the caller waits for.
  struct Job {
    Eigen::Index n = 0;
    int team = 1;
    Call call = nullptr;
    void* ctx = nullptr;
    std::atomic<Eigen::Index> next{0}, done{0};
    std::atomic<int> slot{1};  // thread numbers handed to workers
  };

  PiecePool() {
#if defined(__unix__) || defined(__APPLE__)
    // The child of a fork has none of the workers: its regions run on the caller.
    pthread_atfork(nullptr, nullptr, [] { forked() = true; });
#endif
  }

  static bool& forked() {
    static bool in_child = false;
    return in_child;
  }

  static void take_pieces(Job& job, int thread) {
    const bool outer = in_region();
    in_region() = true;
    for (;;) {
      const Eigen::Index i = job.next.fetch_add(1, std::memory_order_relaxed);
      if (i >= job.n) break;
      job.call(job.ctx, i, thread);  // catches what the piece throws
      job.done.fetch_add(1, std::memory_order_release);
    }
    in_region() = outer;
  }

  bool start_workers(int count) {
    while (workers_ < count) {
      try {
        std::thread([this] { work(); }).detach();
      } catch (...) {  // no more threads: this region runs on the caller
        return false;
      }
      ++workers_;
    }
    return true;
  }

  void work() {
    const std::chrono::microseconds spin = worker_spin();
    std::uint64_t seen = 0;
    for (;;) {
      std::uint64_t g = generation_.load(std::memory_order_acquire);
      if (g == seen) {
        const auto start = std::chrono::steady_clock::now();
        for (unsigned spins = 1; (g = generation_.load(std::memory_order_acquire)) == seen; ++spins) {
          cpu_relax();
          if (spins % 256 == 0 && std::chrono::steady_clock::now() - start >= spin) {
            std::unique_lock<std::mutex> lock(sleep_mutex_);
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
            sleepers_.fetch_sub(1, std::memory_order_relaxed);
          }
        }
      }
      seen = g;
      std::shared_ptr<Job> job;
      {
        std::lock_guard<std::mutex> lock(job_mutex_);
        job = job_;
      }
      if (!job) continue;
      const int thread = job->slot.fetch_add(1, std::memory_order_relaxed);
      if (thread < job->team) take_pieces(*job, thread);
    }
  }

  std::atomic<bool> busy_{false};
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::mutex job_mutex_, sleep_mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;  // under job_mutex_
  int workers_ = 0;           // changed only by the caller holding busy_
};
#endif

/// Threads for a region of `flops` floating-point operations: one per parallel_work_threshold of
/// work, at most num_threads(), 1 without OpenMP and inside a region.
inline int threads_for(double flops) {
#if defined(_OPENMP)
  const int n = num_threads();
  if (n <= 1 || flops < 2.0 * parallel_work_threshold || in_region() || omp_in_parallel()) return 1;
  const double by_work = flops / parallel_work_threshold;
  return by_work >= double(n) ? n : static_cast<int>(by_work);
#else
  (void)flops;
  return 1;
#endif
}

/// Runs body(i, thread) for i = 0..n-1: on up to `threads` threads (thread = 0 for the calling
/// thread, below `threads` for the others; PiecePool), or in order on the calling thread. With
/// Dynamic (the default) the threads take the pieces one at a time, so a thread that lost its
/// core leaves its remaining pieces to the others; otherwise the pieces are cut into one run of
/// consecutive pieces per thread, taken the same way (the optimizers' elementwise chunks, where
/// handing out pieces one at a time took 10% longer for an AdamW step on 2 threads). The one
/// parallel loop of deepstruct: the chunks of a dense product, the batch tiles of the sparse
/// forward, the tile groups of the sparse backward, the chunks of images of a convolution, the
/// optimizers' chunks (parallel_chunks, optim.hpp).
/// An exception from body leaves on the calling thread, as without threads: a piece's exception
/// is caught on whatever thread ran it, the pieces not yet begun are skipped, and the first one
/// caught is rethrown after the region (a packing buffer that cannot grow: std::bad_alloc).
template <bool Dynamic = true, typename Body>
void for_each_piece(Eigen::Index n, int threads, Body&& body) {
#if defined(_OPENMP)
  if (threads > 1 && n > 1 && !in_region()) {
    const int team = static_cast<int>(std::min<Eigen::Index>(threads, n));
    struct Region {
      std::remove_reference_t<Body>* body = nullptr;
      Eigen::Index n = 0, runs = 0;
      std::exception_ptr error;
      std::atomic<bool> failed{false};
      std::mutex error_mutex;
    } region;
    region.body = &body;
    region.n = n;
    region.runs = Dynamic ? n : static_cast<Eigen::Index>(team);
    auto call = [](void* p, Eigen::Index i, int thread) {
      Region& r = *static_cast<Region*>(p);
      if (r.failed.load(std::memory_order_relaxed)) return;
      try {
        if (r.runs == r.n) {
          (*r.body)(i, thread);
        } else {
          for (Eigen::Index j = r.n * i / r.runs, end = r.n * (i + 1) / r.runs; j < end; ++j) (*r.body)(j, thread);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(r.error_mutex);
        if (!r.error) r.error = std::current_exception();
        r.failed.store(true, std::memory_order_relaxed);
      }
    };
    if (PiecePool::get().run(region.runs, team, call, &region)) {
      if (region.error) std::rethrow_exception(region.error);
      return;
    }
  }
#else
  (void)threads;
#endif
  for (Eigen::Index i = 0; i < n; ++i) body(i, 0);
}

/// Up to this many threads, work_pieces() does not depend on the thread count.
inline constexpr int fixed_pieces = 2;

/// Pieces to cut `flops` of work into when their results are summed or placed in a fixed order
/// (the chunks of a dense product, the groups of batch tiles of a sparse backward): one per
/// parallel_work_threshold, at most max(fixed_pieces, num_threads()) and at most `most` (>= 1).
/// On 1 or 2 threads the pieces depend on the work alone, so both compute the same pieces and get
/// the same bits; more threads cut large work finer. Not finer for every thread count: each
/// chunk of a product packs the operand it shares with the others again. Inference of a
/// 784-1000-1000-1000-10 FFN at batch 1024 took 1.00x / 1.04x the time of Eigen's own products
/// on 1 / 2 threads in pieces of at most 2, 1.04x / 1.08x in pieces of at most 4 (farm-bench,
/// whole process); the three products of a 1000 x 1000 layer at batch 512 took 1.12-1.24x on one
/// thread in 16 chunks each.
inline int work_pieces(double flops, Eigen::Index most) {
  const int cap = std::max(fixed_pieces, num_threads());
  const double by_work = flops / parallel_work_threshold;
  const int pieces = by_work >= double(cap) ? cap : std::max(1, static_cast<int>(by_work));
  return static_cast<int>(std::max<Eigen::Index>(1, std::min<Eigen::Index>(pieces, most)));
}

/// Groups to sum gradients in, each on its own before the groups' sums are added in order (the
/// batch tiles of MaskedLinear's sparse backward, the chunks of images of MaskedConv2d's): with
/// OpenMP work_pieces(flops, most), so that 1 and 2 threads give the same bits; without OpenMP,
/// where one thread runs everything, one group.
inline int gradient_groups(double flops, Eigen::Index most) {
#if defined(_OPENMP)
  return work_pieces(flops, most);
#else
  (void)flops;
  (void)most;
  return 1;
#endif
}

}  // namespace detail
}  // namespace deepstruct
