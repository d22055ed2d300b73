// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/gemm.hpp
/// The dense matrix products of MaskedLinear: Eigen's own GEMM kernel, called with packing buffers
/// that each thread keeps, split into chunks that threads share (split_product).
///
/// Why not the plain Eigen product expression: for every product whose packed blocks exceed
/// EIGEN_STACK_ALLOCATION_LIMIT (128 KiB), Eigen allocates them with malloc and frees them at the
/// end. Blocks of a few hundred KiB to a few MiB are at or above glibc's mmap threshold, or are
/// trimmed from the top of the heap when freed, so that the next product touches fresh pages: a
/// page fault per 4 KiB of every block, every call. Whether that happens depends on the history
/// of the allocator: the same 300 x 784 x 128 float product took 0.36 ms in one program and 0.64
/// to 0.84 ms in another, most of the difference in the kernel's page-fault handler (perf). Kept
/// buffers take it to 0.36 ms in both. A product in one chunk gives the bits of Eigen's
/// single-threaded product (tested): the same blocking (computeProductBlockingSizes), packing and
/// kernel. The buffers are sized by Eigen's blocking to the caches, and each thread that ran a
/// product keeps them until it ends.

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <new>

#include "deepstruct/threads.hpp"

namespace deepstruct {
namespace detail {

/// A matrix operand of a product as Eigen's GEMM reads it: data, outer stride, shape, and the
/// storage order `Order` (RowMajor for the transpose of a column-major matrix).
template <typename Scalar, int Order>
struct GemmView {
  const Scalar* data;
  Eigen::Index stride, rows, cols;
  /// The rows x cols block starting at (r, c).
  GemmView block(Eigen::Index r, Eigen::Index c, Eigen::Index nrows, Eigen::Index ncols) const {
    return {data + (Order == Eigen::ColMajor ? r + c * stride : r * stride + c), stride, nrows, ncols};
  }
  /// The operand as an Eigen expression (for the products Eigen does not send to its GEMM).
  Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Order>, 0, Eigen::OuterStride<>> map() const {
    return {data, rows, cols, Eigen::OuterStride<>(stride)};
  }
};

/// A column-major matrix (or Ref/Block with unit inner stride) as a product operand.
template <typename M>
GemmView<typename M::Scalar, Eigen::ColMajor> gemm_operand(const M& m) {
  return {m.data(), m.outerStride(), m.rows(), m.cols()};
}
/// The transpose of a column-major matrix as a product operand (row-major, no copy).
template <typename M>
GemmView<typename M::Scalar, Eigen::RowMajor> gemm_transposed(const M& m) {
  return {m.data(), m.outerStride(), m.cols(), m.rows()};
}

#if EIGEN_VERSION_AT_LEAST(3, 3, 90)
/// Eigen's GEMM blocking with buffers that outlive the product: one set per thread
/// (gemm_buffers), grown to the largest product the thread has run, 64-byte aligned.
template <typename Scalar>
class GemmBuffers : public Eigen::internal::level3_blocking<Scalar, Scalar> {
 public:
  GemmBuffers() = default;
  GemmBuffers(const GemmBuffers&) = delete;
  GemmBuffers& operator=(const GemmBuffers&) = delete;
  ~GemmBuffers() {
    release(a_);
    release(b_);
  }

  /// Blocking of Eigen's sequential product of a rows x depth by a depth x cols matrix.
  void prepare(Eigen::Index rows, Eigen::Index cols, Eigen::Index depth) {
    this->m_mc = rows;
    this->m_nc = cols;
    this->m_kc = depth;
    Eigen::internal::computeProductBlockingSizes<Scalar, Scalar, 1, Eigen::Index>(this->m_kc, this->m_mc, this->m_nc, 1);
    this->m_blockA = grow(a_, static_cast<std::size_t>(this->m_mc * this->m_kc));
    this->m_blockB = grow(b_, static_cast<std::size_t>(this->m_kc * this->m_nc));
  }

 private:
  struct Buffer {
    Scalar* data = nullptr;
    std::size_t size = 0;
  };
  static constexpr std::size_t alignment = 64;
  static Scalar* grow(Buffer& b, std::size_t size) {
    if (size > b.size) {
      release(b);
      b.data = static_cast<Scalar*>(::operator new(size * sizeof(Scalar), std::align_val_t(alignment)));
      b.size = size;
    }
    return b.data;
  }
  static void release(Buffer& b) {
    if (b.data != nullptr) ::operator delete(b.data, std::align_val_t(alignment));
    b = Buffer{};
  }
  Buffer a_, b_;
};

/// The calling thread's GEMM buffers (per scalar type), kept until the thread ends.
template <typename Scalar>
GemmBuffers<Scalar>& gemm_buffers() {
  thread_local GemmBuffers<Scalar> buffers;
  return buffers;
}
#endif

/// res (rows x cols, column-major, outer stride res_stride) = lhs rhs, or += with `accumulate`,
/// on the calling thread.
template <typename Scalar, int LhsOrder, int RhsOrder>
void gemm(const GemmView<Scalar, LhsOrder>& lhs, const GemmView<Scalar, RhsOrder>& rhs, Scalar* res, Eigen::Index res_stride,
          bool accumulate) {
  const Eigen::Index rows = lhs.rows, cols = rhs.cols, depth = lhs.cols;
  if (rows == 0 || cols == 0) return;
  Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>, 0, Eigen::OuterStride<>> out(res, rows, cols,
                                                                                                    Eigen::OuterStride<>(res_stride));
  // What Eigen computes otherwise than with its GEMM: matrix-vector and tiny products.
  if (rows == 1 || cols == 1 || depth == 0 || rows + cols + depth < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) {
    if (accumulate) out.noalias() += lhs.map() * rhs.map();
    else out.noalias() = lhs.map() * rhs.map();
    return;
  }
  if (!accumulate) out.setZero();
#if EIGEN_VERSION_AT_LEAST(3, 3, 90)
  GemmBuffers<Scalar>& buffers = gemm_buffers<Scalar>();
  buffers.prepare(rows, cols, depth);
  Eigen::internal::general_matrix_matrix_product<Eigen::Index, Scalar, LhsOrder, false, Scalar, RhsOrder, false, Eigen::ColMajor,
                                                 1>::run(rows, cols, depth, lhs.data, lhs.stride, rhs.data, rhs.stride, res, 1,
                                                         res_stride, Scalar(1), buffers, nullptr);
#else
  out.noalias() += lhs.map() * rhs.map();  // Eigen 3.3: its own buffers
#endif
}

/// Chunks of a product C = A B of `flops` operations split along `dim` (C's rows or columns):
/// work_pieces() (threads.hpp), at most one per 64 rows or columns.
inline int product_chunks(double flops, Eigen::Index dim) { return work_pieces(flops, std::max<Eigen::Index>(1, dim / 64)); }

/// Start of chunk c of `chunks` over [0, dim) (dim for c == chunks): dim * c / chunks rounded to
/// the nearest multiple of `align`, the GEMM kernel's register block (mr rows or nr columns), so
/// that every chunk but the last is whole micro-panels and only the last runs the kernel's slower
/// remainder paths; nearest rather than down, for balance. (A 784-300-100-10 SGD step at batch
/// 128, whose first layer is split into 144 + 156 rows instead of 150 + 150: 0.99x the time on
/// one thread, 1.00x on two; farm-bench, whole process.)
inline Eigen::Index product_chunk_start(Eigen::Index dim, int chunks, int c, Eigen::Index align) {
  if (c >= chunks) return dim;
  const Eigen::Index exact = dim * c / chunks;
  return std::min(dim, (exact + align / 2) / align * align);
}

/// dst = lhs rhs (or dst += lhs rhs with `accumulate`; dst column-major with unit inner stride: a
/// matrix, a Map, a block of columns or rows), split by deepstruct rather than by Eigen: into
/// product_chunks() chunks of dst's rows (each chunk packs all of rhs and its rows of lhs)
/// unless dst has more than twice as many columns as rows, then of its columns (each packs all
/// of lhs); every chunk is a single-threaded gemm(). (Rows, as Eigen splits; columns where the
/// rows would pack a much larger rhs again and again: 64 x 2000 x 2000 took 2.8 ms split by rows
/// on 2 threads, 1.8 ms by columns.) The chunks go to up to threads_for(flops) threads, which
/// take them one at a time (dynamic schedule), with one barrier at the end. Eigen's own parallel
/// product shares its packed blocks among the threads with spin waits, so a thread that has lost
/// its core holds up the other many times per product (bench_threads, dense step on 2 threads:
/// 4.0-12.7x its time alone beside 4 compile loops in 8 runs, 90th percentile 109-156 ms,
/// against 4.3-6.1x and 67-80 ms split here; docs/benchmarks.md), and its blocking depends on the thread
/// count, which changed the rounding. Here the chunks depend on
/// the shape alone on 1 or 2 threads (product_chunks, work_pieces): the same bits on both
/// (tested). Without OpenMP, where there is one thread, the product is one chunk.
template <typename Dst, typename Scalar, int LhsOrder, int RhsOrder>
void split_product(Dst&& dst, const GemmView<Scalar, LhsOrder>& lhs, const GemmView<Scalar, RhsOrder>& rhs, bool accumulate) {
  const Eigen::Index m = lhs.rows, n = rhs.cols, k = lhs.cols;
  eigen_assert(dst.rows() == m && dst.cols() == n && rhs.rows == k && dst.innerStride() == 1);
#if defined(_OPENMP)
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const bool by_rows = n <= 2 * m;
  const Eigen::Index dim = by_rows ? m : n;
  const int chunks = product_chunks(flops, dim);
  Scalar* res = dst.data();
  const Eigen::Index res_stride = dst.outerStride();
  // (Chunks hold at least 64 rows or columns: rounding to a multiple below 64 leaves none empty.)
  const Eigen::Index align = std::min<Eigen::Index>(
      48, by_rows ? Eigen::internal::gebp_traits<Scalar, Scalar>::mr : Eigen::internal::gebp_traits<Scalar, Scalar>::nr);
  for_each_piece(chunks, threads_for(flops), [&](Eigen::Index c, int) {
    const int ci = static_cast<int>(c);
    const Eigen::Index a = product_chunk_start(dim, chunks, ci, align), len = product_chunk_start(dim, chunks, ci + 1, align) - a;
    if (by_rows)
      gemm(lhs.block(a, 0, len, k), rhs, res + a, res_stride, accumulate);
    else
      gemm(lhs, rhs.block(0, a, k, len), res + a * res_stride, res_stride, accumulate);
  });
#else
  // One thread: chunks would only pack the shared operand again.
  (void)m, (void)n, (void)k;  // (only the assertion reads them)
  gemm(lhs, rhs, dst.data(), dst.outerStride(), accumulate);
#endif
}

}  // namespace detail
}  // namespace deepstruct
