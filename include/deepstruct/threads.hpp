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
/// calling thread alone: a parallel region has to wait for its slowest thread, and on a machine
/// shared with other processes a thread that lost its core waits for the scheduler - a
/// millisecond or more, against microseconds of work in a small product (docs/benchmarks.md,
/// bench_threads). (Eigen's own heuristic opens a region from 50,000 multiply-adds per thread.)

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <string>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "deepstruct/errors.hpp"

namespace deepstruct {

namespace detail {

/// The setting: 0 until set_num_threads().
inline int& thread_setting() {
  static int threads = 0;
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
/// work such as an optimizer step counts its time at that rate): about 0.3 ms. Measured with bench_threads (docs/benchmarks.md): a
/// Watts-Strogatz DAN step at batch 64, whose products are 0.1-10 MFLOP, took 0.46 ms alone and
/// tens of milliseconds on 2 threads beside 4 compile loops while Eigen parallelised them; below
/// this threshold it runs as on one thread.
inline constexpr double parallel_work_threshold = 3e7;

}  // namespace detail

/// Threads deepstruct may use (>= 1): the value of set_num_threads(), else DEEPSTRUCT_NUM_THREADS
/// (read on the first call), else omp_get_max_threads() at the time of the call (so that
/// omp_set_num_threads and OMP_NUM_THREADS apply) with OpenMP, else 1. Without OpenMP deepstruct
/// runs one thread whatever the setting.
inline int num_threads() {
  int& n = detail::thread_setting();
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
inline void set_num_threads(int n) {
  if (n < 1 || n > 4096)
    DEEPSTRUCT_THROW(value_error, "set_num_threads: expected a number of threads from 1 to 4096, found " + std::to_string(n));
  detail::thread_setting() = n;
  Eigen::setNbThreads(n);
}

/// One line for logs: the setting, where it came from, and whether OpenMP is compiled in.
inline std::string threads_summary() {
  const bool from_env = detail::thread_setting() == 0 && detail::threads_from_environment() != 0;  // as num_threads() reads it
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

/// Threads for a region of `flops` floating-point operations: one per parallel_work_threshold of
/// work, at most num_threads(), 1 without OpenMP.
inline int threads_for(double flops) {
#if defined(_OPENMP)
  const int n = num_threads();
  if (n <= 1 || flops < 2.0 * parallel_work_threshold || omp_in_parallel()) return 1;
  const double by_work = flops / parallel_work_threshold;
  return by_work >= double(n) ? n : static_cast<int>(by_work);
#else
  (void)flops;
  return 1;
#endif
}

/// Runs body(i, thread) for i = 0..n-1: on up to `threads` OpenMP threads (thread = the OpenMP
/// thread number, below `threads`), or in order on the calling thread (thread 0). With Dynamic
/// (the default) the threads take the pieces one at a time, so a thread that lost its core leaves
/// its remaining pieces to the others; otherwise each thread takes one run of consecutive pieces
/// (OpenMP's static schedule: the optimizers' elementwise chunks, where handing out pieces one at
/// a time took 10% longer for an AdamW step on 2 threads). The one parallel loop of deepstruct:
/// the chunks of a dense product, the batch tiles of the sparse forward, the tile groups of the
/// sparse backward, the chunks of images of a convolution, the optimizers' chunks
/// (parallel_chunks, optim.hpp).
/// An exception from body leaves on the calling thread, as without threads: an exception that
/// reached the end of an OpenMP region would end the program (std::terminate), so a piece's
/// exception is caught, the pieces not yet begun are skipped, and the first one caught is
/// rethrown after the region (a packing buffer that cannot grow: std::bad_alloc, not an abort).
template <bool Dynamic = true, typename Body>
void for_each_piece(Eigen::Index n, int threads, Body&& body) {
#if defined(_OPENMP)
  if (threads > 1 && n > 1) {
    const int team = static_cast<int>(std::min<Eigen::Index>(threads, n));
    std::exception_ptr error;
    std::atomic<bool> failed{false};
    auto piece = [&](Eigen::Index i) {
      if (failed.load(std::memory_order_relaxed)) return;
      try {
        body(i, omp_get_thread_num());
      } catch (...) {
#pragma omp critical(deepstruct_for_each_piece)
        {
          if (!error) error = std::current_exception();
        }
        failed.store(true, std::memory_order_relaxed);
      }
    };
    if constexpr (Dynamic) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(team)
      for (Eigen::Index i = 0; i < n; ++i) piece(i);
    } else {
#pragma omp parallel for schedule(static) num_threads(team)
      for (Eigen::Index i = 0; i < n; ++i) piece(i);
    }
    if (error) std::rethrow_exception(error);
    return;
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
