// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/sparse_kernels.hpp
/// Sparse kernels of MaskedLinear: the active weights in compressed sparse rows (CSR, for
/// y = W x) and compressed sparse columns (CSC, for the input gradient W^T g and the weight
/// gradients), both cut into blocks of features (SparseBlocks) and applied to a batch in tiles.
/// Each tile of the batch is transposed into a small buffer so that every feature's batch values
/// are contiguous: then each nonzero weight multiplies a contiguous run of batch values held in
/// SIMD accumulators, as in sparse inference engines (Elsen et al., "Fast Sparse ConvNets";
/// XNNPACK's SpMM), one L1-sized block of tile rows at a time. A single sample runs per-sample
/// kernels instead (gathers). With OpenMP the tiles of a batch are shared among threads
/// (for_each_piece, threads.hpp). The SIMD
/// code is written with Eigen's packet primitives, so it follows whatever instruction set the user
/// compiles for (SSE2, AVX, AVX-512, NEON, ...) and falls back to scalars under
/// EIGEN_DONT_VECTORIZE; the gathers use AVX2 intrinsics where available.

#include <Eigen/Core>
#include <algorithm>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/threads.hpp"

// Eigen's PacketBlock<Packet8f, 8> and friends make GCC warn that the vector attributes of the
// packet type are ignored in a template argument (Eigen silences this inside its own headers).
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif
// GCC 12 reports the intrinsics that Eigen's packet code inlines here (_mm512_undefined_ps in
// _mm512_unpacklo_ps, _mm512_broadcastss_ps, ...) as "__Y may be used uninitialized" under -Wall
// with AVX-512: 64 false warnings per user program that runs the sparse kernels (GCC bug 105593;
// silenced for GCC 12 and older). Eigen's own products warn the same way in any program.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Inlines every call in the function (GCC, Clang): the register transposes of the tile copies
// below. Left to itself GCC 12 calls Eigen's 16 x 16 ptranspose out of line at -O2 and spills the
// block through memory.
#if defined(__GNUC__)
#define DEEPSTRUCT_FLATTEN __attribute__((flatten))
#else
#define DEEPSTRUCT_FLATTEN
#endif

namespace deepstruct {
namespace detail {

/// The SIMD shape of the tiles: a tile row is `packets` SIMD packets of the batch. Four, not the
/// eight of the unblocked kernels: the kernels below keep one block of tile rows in L1 (see
/// SparseBlocks), which holds twice as many rows of four packets, and the weight gradient's
/// horizontal sum per active weight is still spread over four multiply-adds (1000 x 1000 float
/// layer, batch 1024, Zen 5 with AVX-512: with two packets the backward took 25% longer at
/// densities 0.05 and 0.2; with eight the forward 5-10% longer at 0.05).
template <typename Scalar>
struct TileShape {
  using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
  static constexpr int packet = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr int packets = 4;
  static constexpr Eigen::Index width = static_cast<Eigen::Index>(packet) * packets;
};

/// A std::allocator that aligns to a cache line (64 bytes). The tiles below are read one row at a
/// time with SIMD loads; tile rows are a multiple of 64 bytes long, so in a cache-aligned buffer no
/// load straddles two cache lines. malloc's large blocks start 16 bytes past a page boundary, where
/// every 64-byte AVX-512 load from an L2-resident tile touches two lines: measured on a 1000 x 1000
/// layer at batch 1024 and density 0.1 (AVX-512; bench_masked_linear), the sparse forward took
/// 6.0 ms from such a buffer and 3.7 ms from an aligned one.
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr std::size_t alignment = 64;
  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(alignment))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(alignment)); }
  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const CacheAlignedAllocator<U>&) const noexcept { return false; }
};

/// Scratch for the transposed tiles (cache-line aligned).
template <typename Scalar>
using TileBuffer = std::vector<Scalar, CacheAlignedAllocator<Scalar>>;

/// Batch columns per tile: 4 SIMD packets (64 floats / 32 doubles with AVX-512, 32 / 16 with AVX,
/// 16 / 8 with SSE).
template <typename Scalar>
constexpr Eigen::Index batch_tile = TileShape<Scalar>::width;

/// The active weights of an out x in matrix, row by row (CSR) and column by column (CSC).
/// Feature indices are int32: MaskedLinear keeps in and out below 2^31 (offsets are Eigen::Index).
template <typename Scalar>
struct CsrWeights {
  std::vector<Eigen::Index> row_start;   ///< out + 1 offsets into col / dense_pos
  std::vector<std::int32_t> col;         ///< input feature of each active weight
  std::vector<Eigen::Index> dense_pos;   ///< o + i * out: position in the column-major weight
  std::vector<Eigen::Index> col_start;   ///< in + 1 offsets into row (CSC)
  std::vector<std::int32_t> row;         ///< output feature of each active weight, column by column

  Eigen::Index nnz() const { return static_cast<Eigen::Index>(col.size()); }

  /// Rebuilds the pattern from a mask (out x in, column-major).
  template <typename MaskType>
  void build_pattern(const MaskType& mask) {
    const Eigen::Index out = mask.rows(), in = mask.cols();
    row_start.assign(static_cast<std::size_t>(out + 1), 0);
    col_start.assign(static_cast<std::size_t>(in + 1), 0);
    for (Eigen::Index i = 0; i < in; ++i) {
      Eigen::Index count = 0;
      for (Eigen::Index o = 0; o < out; ++o)
        if (mask(o, i)) {
          ++row_start[static_cast<std::size_t>(o + 1)];
          ++count;
        }
      col_start[static_cast<std::size_t>(i + 1)] = col_start[static_cast<std::size_t>(i)] + count;
    }
    for (Eigen::Index o = 0; o < out; ++o)
      row_start[static_cast<std::size_t>(o + 1)] += row_start[static_cast<std::size_t>(o)];
    const auto total = static_cast<std::size_t>(row_start.back());
    col.resize(total);
    dense_pos.resize(total);
    row.resize(total);
    std::vector<Eigen::Index> fill(row_start.begin(), row_start.end() - 1);
    // Column-major sweep: inputs arrive in ascending order inside every row, and the CSC is the
    // sweep order itself.
    std::size_t kc = 0;
    for (Eigen::Index i = 0; i < in; ++i)
      for (Eigen::Index o = 0; o < out; ++o)
        if (mask(o, i)) {
          const auto k = static_cast<std::size_t>(fill[static_cast<std::size_t>(o)]++);
          col[k] = static_cast<std::int32_t>(i);
          dense_pos[k] = o + i * out;
          row[kc++] = static_cast<std::int32_t>(o);
        }
  }

  /// Applies a change of the pattern in O(nnz + out + in + changes): the entries at `removed` go,
  /// those at `added` come (positions o + i * out, each list sorted ascending, the two disjoint);
  /// `mask` (out x in, column-major) is the new mask, so an old entry stays where it is still
  /// true. (The values live in the blocked kernels' copies, SparseBlocks, gathered afterwards.)
  void apply_changes(const std::vector<Eigen::Index>& removed, const std::vector<Eigen::Index>& added, const bool* mask,
                     Eigen::Index out, Eigen::Index in) {
    auto gone = [&](Eigen::Index pos) { return !mask[pos]; };
    const std::size_t total = col.size() - removed.size() + added.size();  // (removed: only its size is needed)
    // Rows: the added entries bucketed by row keep ascending columns (ascending positions).
    std::vector<Eigen::Index> add_start(static_cast<std::size_t>(out + 1), 0);
    for (const Eigen::Index p : added) ++add_start[static_cast<std::size_t>(p % out + 1)];
    for (Eigen::Index o = 0; o < out; ++o) add_start[static_cast<std::size_t>(o + 1)] += add_start[static_cast<std::size_t>(o)];
    std::vector<Eigen::Index> add_by_row(added.size());
    {
      std::vector<Eigen::Index> fill(add_start.begin(), add_start.end() - 1);
      for (const Eigen::Index p : added) add_by_row[static_cast<std::size_t>(fill[static_cast<std::size_t>(p % out)]++)] = p;
    }
    std::vector<Eigen::Index> new_row_start(static_cast<std::size_t>(out + 1), 0), new_pos;
    std::vector<std::int32_t> new_col;
    new_pos.reserve(total);
    new_col.reserve(total);
    for (Eigen::Index o = 0; o < out; ++o) {
      auto k = static_cast<std::size_t>(row_start[static_cast<std::size_t>(o)]);
      const auto k1 = static_cast<std::size_t>(row_start[static_cast<std::size_t>(o + 1)]);
      auto a = static_cast<std::size_t>(add_start[static_cast<std::size_t>(o)]);
      const auto a1 = static_cast<std::size_t>(add_start[static_cast<std::size_t>(o + 1)]);
      while (k < k1 || a < a1) {
        if (a == a1 || (k < k1 && dense_pos[k] < add_by_row[a])) {
          if (!gone(dense_pos[k])) {
            new_pos.push_back(dense_pos[k]);
            new_col.push_back(col[k]);
          }
          ++k;
        } else {
          const Eigen::Index p = add_by_row[a++];
          new_pos.push_back(p);
          new_col.push_back(static_cast<std::int32_t>(p / out));
        }
      }
      new_row_start[static_cast<std::size_t>(o + 1)] = static_cast<Eigen::Index>(new_pos.size());
    }
    // Columns: the added entries are already in column-major order.
    std::vector<Eigen::Index> new_col_start(static_cast<std::size_t>(in + 1), 0);
    std::vector<std::int32_t> new_row;
    new_row.reserve(total);
    std::size_t a = 0;
    for (Eigen::Index i = 0; i < in; ++i) {
      auto k = static_cast<std::size_t>(col_start[static_cast<std::size_t>(i)]);
      const auto k1 = static_cast<std::size_t>(col_start[static_cast<std::size_t>(i + 1)]);
      while (k < k1 || (a < added.size() && added[a] / out == i)) {
        const bool take_added = a < added.size() && added[a] / out == i && (k == k1 || added[a] % out < row[k]);
        if (take_added) {
          new_row.push_back(static_cast<std::int32_t>(added[a] % out));
          ++a;
        } else {
          if (!gone(static_cast<Eigen::Index>(row[k]) + i * out)) {
            new_row.push_back(row[k]);
          }
          ++k;
        }
      }
      new_col_start[static_cast<std::size_t>(i + 1)] = static_cast<Eigen::Index>(new_row.size());
    }
    row_start.swap(new_row_start);
    col.swap(new_col);
    dense_pos.swap(new_pos);
    col_start.swap(new_col_start);
    row.swap(new_row);
  }
};

/// Calls f(std::integral_constant<int, 0>), ..., f(std::integral_constant<int, N - 1>): a loop
/// unrolled whatever the optimisation flags, so that packet arrays indexed by it live in registers.
template <typename F, int... I>
EIGEN_STRONG_INLINE void unrolled(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
EIGEN_STRONG_INLINE void unrolled(F&& f) {
  unrolled(std::forward<F>(f), std::make_integer_sequence<int, N>{});
}

/// The active weights as sparse rows cut into blocks of features: block b holds, for every row
/// with entries among features [b * block, (b + 1) * block), one segment of those entries (its
/// feature indices ascending). A kernel that walks the blocks in order reads only one block's
/// rows of the transposed batch tile while it works through a block: block * tile width scalars,
/// sized to stay in the L1 cache (the whole tile of a 1000-feature input does not; from L2, the
/// loads of the tile rows, not the multiply-adds, limited the unblocked kernels). `pos` is each
/// entry's position in the column-major dense weight, `value` its weight (gathered from it).
/// Forward: rows are output features, indices input features (from the CSR). Backward: rows are
/// input features, indices output features (from the CSC), so that the weight gradients come out
/// in column-major order.
template <typename Scalar>
struct SparseBlocks {
  Eigen::Index block = 1;                ///< features per block
  std::vector<Eigen::Index> block_seg;   ///< blocks + 1 offsets into seg_row / seg_start
  std::vector<std::int32_t> seg_row;     ///< the row of each segment
  std::vector<Eigen::Index> seg_start;   ///< segments + 1 offsets into idx / pos / value
  std::vector<std::int32_t> idx;         ///< feature index of each entry
  std::vector<Eigen::Index> pos;         ///< position in the column-major dense weight
  std::vector<Scalar> value;             ///< the weight values, refreshed when W changes

  Eigen::Index nnz() const { return static_cast<Eigen::Index>(idx.size()); }
  Eigen::Index blocks() const { return static_cast<Eigen::Index>(block_seg.size()) - 1; }

  /// From compressed rows (start: rows + 1 offsets; index: ascending within each row) over
  /// `features` features; pos_of(row, feature) gives the dense position. The block width is the
  /// L1 budget over the tile row, but wide enough that a segment averages min_segment entries
  /// (narrow blocks of short segments cost more in accumulator loads and stores than they save).
  template <typename PosFn>
  void build(Eigen::Index rows, Eigen::Index features, const Eigen::Index* start, const std::int32_t* index,
             Eigen::Index tile_width, PosFn&& pos_of) {
    // 48 KiB: the L1 data cache of AMD Zen 5 and Intel since Ice Lake (on a 32 KiB L1 the block
    // spills into L2 in part, still far less than the whole tile).
    constexpr Eigen::Index l1_budget = 48 * 1024, min_segment = 12;
    const Eigen::Index total = start[rows];
    const Eigen::Index by_cache = std::max<Eigen::Index>(1, l1_budget / (tile_width * static_cast<Eigen::Index>(sizeof(Scalar))));
    Eigen::Index nb = (features + by_cache - 1) / by_cache;
    nb = std::max<Eigen::Index>(1, std::min(nb, total / std::max<Eigen::Index>(1, rows * min_segment)));
    block = (features + nb - 1) / nb;
    block_seg.assign(1, 0);
    seg_row.clear();
    seg_start.assign(1, 0);
    idx.resize(static_cast<std::size_t>(total));
    pos.resize(static_cast<std::size_t>(total));
    value.resize(static_cast<std::size_t>(total));
    std::vector<Eigen::Index> cursor(start, start + rows);
    std::size_t k = 0;
    for (Eigen::Index b = 0; b < nb; ++b) {
      const Eigen::Index limit = std::min(features, (b + 1) * block);
      for (Eigen::Index r = 0; r < rows; ++r) {
        Eigen::Index e = cursor[static_cast<std::size_t>(r)];
        const Eigen::Index e1 = start[r + 1];
        if (e == e1 || index[e] >= limit) continue;
        for (; e < e1 && index[e] < limit; ++e, ++k) {
          idx[k] = index[e];
          pos[k] = pos_of(r, static_cast<Eigen::Index>(index[e]));
        }
        cursor[static_cast<std::size_t>(r)] = e;
        seg_row.push_back(static_cast<std::int32_t>(r));
        seg_start.push_back(static_cast<Eigen::Index>(k));
      }
      block_seg.push_back(static_cast<Eigen::Index>(seg_row.size()));
    }
  }

  /// Copies the active weight values out of the dense column-major weight.
  void gather(const Scalar* weight) {
    const std::size_t n = idx.size();
    for (std::size_t k = 0; k < n; ++k) value[k] = weight[pos[k]];
  }
};

/// Prefetches the line at p for reading (Write = false) or for writing, without temporal
/// locality (prefetchnta on x86 for reads). The forward of a 1000 x 1000 layer at batch 1024
/// after a dense pass (AMD Zen 5, medians of 9 interleaved runs, the spread prefetches of
/// TilePrefetch): 0.75 ms at density 0.01 and 1.40 ms at 0.05 with these hints, 0.81 and 1.47 ms
/// with prefetcht1 for the reads.
template <bool Write>
EIGEN_STRONG_INLINE void prefetch_line(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, Write ? 1 : 0, 0);
#else
  Eigen::internal::prefetch(static_cast<const char*>(p));
#endif
}

/// Software prefetches over a contiguous range, a few cache lines at a time, so that a kernel can
/// spread them over its work: while the multiply-adds of one tile run, the next tile's inputs
/// come into cache and the lines of the tile's output are fetched for writing, instead of the
/// transposes waiting on memory before and after them.
///
/// The cursor is an address held as an integer, not a pointer: a range whose size is not a
/// multiple of 64 bytes leaves the cursor past its end, which a pointer may not be when the range
/// ends a buffer (the same instructions as a pointer cursor).
struct LineStream {
  std::uintptr_t next = 0;
  std::uintptr_t end = 0;
  bool write = false;

  LineStream() = default;
  LineStream(const void* begin, std::size_t bytes, bool for_write)
      : next(reinterpret_cast<std::uintptr_t>(begin)), end(reinterpret_cast<std::uintptr_t>(begin) + bytes), write(for_write) {}
  std::size_t lines() const { return next < end ? static_cast<std::size_t>(end - next + 63) / 64 : 0; }
  EIGEN_STRONG_INLINE void issue(Eigen::Index n) {
    for (; n > 0 && next < end; --n, next += 64) {
      if (write)
        prefetch_line<true>(reinterpret_cast<const void*>(next));
      else
        prefetch_line<false>(reinterpret_cast<const void*>(next));
    }
  }
};

/// The prefetches of one tile: its output lines (for writing) and the next tile's input lines
/// (x; in the backward also g), `per_step` lines of each at every step (a segment of the kernel).
struct TilePrefetch {
  LineStream out, in, in2;
  Eigen::Index per_step = 0;

  /// Spreads the streams over `steps` steps.
  void spread(Eigen::Index steps) {
    const auto most = static_cast<Eigen::Index>(std::max({out.lines(), in.lines(), in2.lines()}));
    per_step = steps > 0 ? (most + steps - 1) / steps : most;
  }
  EIGEN_STRONG_INLINE void step() {
    out.issue(per_step);
    in.issue(per_step);
    in2.issue(per_step);
  }
};

/// Whether a kernel over `s` should carry the prefetches of TilePrefetch (the next tile's inputs,
/// this tile's output lines): when its block of tile rows (s.block rows of `tile_width` scalars)
/// takes at most 64 KiB, 4/3 of the L1 budget of SparseBlocks. Otherwise the tile copies
/// prefetch along their columns themselves (prefetch_ahead). A prefetch holds one of the L1's few
/// miss buffers until its line comes from memory; a kernel whose block does not fit in L1 waits
/// on L2 through the same buffers and slows down by more than the prefetches save. 1000 x 1000
/// float layer, batch 1024, after a dense pass, AMD Zen 5 (1 MiB L2), medians of 21 rounds that
/// alternate the two ways in one process: forward at density 0.01 (one block of 256 KiB)
/// 0.81-0.97 ms with the kernel's prefetches against 0.66-0.73 with the copies', at 0.04 (85
/// KiB) 1.48-1.92 against 1.44-1.75; at 0.05 (64 KiB) 1.56-1.61 against 1.61-1.65, and the
/// backward 3.16-3.21 against 3.38-3.40.
template <typename Scalar>
bool spread_prefetch_pays(const SparseBlocks<Scalar>& s, Eigen::Index tile_width) {
  return s.block * tile_width * static_cast<Eigen::Index>(sizeof(Scalar)) <= 64 * 1024;
}

/// How far ahead (in scalars, 256 bytes) the tile copies prefetch along each column they read or
/// write: every column is a stream of its own, one 64-byte piece per packet x packet block, and
/// the hardware prefetchers follow 16 such streams late. 1000 x 1000 floats, batch 1024, Zen 5,
/// the copies alone: x into the 16 tiles 0.142-0.155 ms from L3 with these prefetches against
/// 0.151-0.163 without (from memory the same, 0.21-0.25 ms), the tiles out 0.128-0.147 against
/// 0.134-0.152 (0.180-0.216 against 0.189-0.232 from memory); 512 bytes ahead, or prefetcht0 for
/// the reads, measured the same within noise. In the whole forward at densities 0.001-0.03 the
/// copies' prefetches took 3-10% off the time without any prefetches.
template <typename Scalar>
constexpr Eigen::Index prefetch_ahead = static_cast<Eigen::Index>(256 / sizeof(Scalar));

/// Copies columns [0, width) of a features x width block of a column-major matrix (leading
/// dimension ld) into tile (features x T, row-major), zero-padding columns width..T-1.
/// Full packet x packet blocks are transposed in registers, one packet of columns at a time
/// down all features; with prefetch_columns each column is prefetched prefetch_ahead scalars
/// ahead of its reads (without, when a kernel's TilePrefetch brought the lines already).
template <typename Scalar>
DEEPSTRUCT_FLATTEN void load_transposed_tile(const Scalar* x, Eigen::Index ld, Eigen::Index features, Eigen::Index width,
                                             Scalar* tile, bool prefetch_columns) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  constexpr Eigen::Index ahead = prefetch_ahead<Scalar>;
  const Eigen::Index fp = features - features % P, wp = width - width % P;
  for (Eigen::Index j0 = 0; j0 < wp; j0 += P)
    for (Eigen::Index f0 = 0; f0 < fp; f0 += P) {
      if (prefetch_columns && f0 + ahead < fp)
        unrolled<Shape::packet>([&](auto q) { prefetch_line<false>(x + (j0 + q) * ld + f0 + ahead); });
      Eigen::internal::PacketBlock<Packet, Shape::packet> block;
      unrolled<Shape::packet>([&](auto q) { block.packet[q] = Eigen::internal::ploadu<Packet>(x + (j0 + q) * ld + f0); });
      Eigen::internal::ptranspose(block);
      unrolled<Shape::packet>([&](auto q) { Eigen::internal::pstoreu(tile + (f0 + q) * T + j0, block.packet[q]); });
    }
  // The last features % P features of full column blocks: each column's few values copied into
  // a zero-padded packet (a read past them could leave the matrix), then transposed in registers.
  const Eigen::Index fr = features - fp;
  if (fr > 0)
    for (Eigen::Index j0 = 0; j0 < wp; j0 += P) {
      // (A fixed-length loop: with the count fr, GCC emits rep movs, slow for a few values.)
      alignas(64) Scalar part[Shape::packet * Shape::packet];
      for (Eigen::Index q = 0; q < P; ++q) {
        const Scalar* column = x + (j0 + q) * ld + fp;
        for (Eigen::Index f = 0; f < P; ++f) part[q * P + f] = f < fr ? column[f] : Scalar(0);
      }
      Eigen::internal::PacketBlock<Packet, Shape::packet> block;
      unrolled<Shape::packet>([&](auto q) { block.packet[q] = Eigen::internal::pload<Packet>(part + q * P); });
      Eigen::internal::ptranspose(block);
      for (Eigen::Index f = 0; f < fr; ++f) Eigen::internal::pstoreu(tile + (fp + f) * T + j0, block.packet[f]);
    }
  for (Eigen::Index f = 0; f < features; ++f) {
    Scalar* tile_row = tile + f * T;
    for (Eigen::Index j = wp; j < width; ++j) tile_row[j] = x[j * ld + f];
    for (Eigen::Index j = width; j < T; ++j) tile_row[j] = Scalar(0);
  }
}

/// Writes rows [0, rows) x columns [0, width) of buf (row stride T) into a column-major matrix y
/// (leading dimension ld) at the same positions, transposing packet x packet blocks in registers.
/// One packet of columns at a time, down all rows: each of those columns of y is written in
/// order, one stream per column. Row blocks outside (every column of the tile getting one packet
/// of a row block in turn, a stream per column of the tile) took twice as long into a y that is
/// not in cache, which a copy through a staging buffer had worked around; column blocks outside
/// need no stage (1000 x 1000 layer, batch 1024, after a dense pass, Zen 5: the forward at
/// density 0.01 took 0.61-0.64 ms against 0.68-0.73 ms with the stage, 0.05 1.20-1.29 against
/// 1.30-1.34 ms, 0.001 0.45 against 0.56 ms). With prefetch_columns each column is prefetched
/// for writing prefetch_ahead scalars ahead of its stores.
template <typename Scalar>
DEEPSTRUCT_FLATTEN void store_transposed_tile(const Scalar* buf, Eigen::Index rows, Eigen::Index width, Scalar* y, Eigen::Index ld,
                                              bool prefetch_columns) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  constexpr Eigen::Index ahead = prefetch_ahead<Scalar>;
  const Eigen::Index rp = rows - rows % P, wp = width - width % P;
  for (Eigen::Index j0 = 0; j0 < wp; j0 += P)
    for (Eigen::Index r0 = 0; r0 < rp; r0 += P) {
      if (prefetch_columns && r0 + ahead < rp)
        unrolled<Shape::packet>([&](auto q) { prefetch_line<true>(y + (j0 + q) * ld + r0 + ahead); });
      Eigen::internal::PacketBlock<Packet, Shape::packet> block;
      unrolled<Shape::packet>([&](auto q) { block.packet[q] = Eigen::internal::ploadu<Packet>(buf + (r0 + q) * T + j0); });
      Eigen::internal::ptranspose(block);
      unrolled<Shape::packet>([&](auto q) { Eigen::internal::pstoreu(y + (j0 + q) * ld + r0, block.packet[q]); });
    }
  // The last rows % P rows of full column blocks: transposed in registers from a zero-padded
  // block, each column's few values copied out (a packet store could write past the matrix).
  const Eigen::Index rr = rows - rp;
  if (rr > 0)
    for (Eigen::Index j0 = 0; j0 < wp; j0 += P) {
      Eigen::internal::PacketBlock<Packet, Shape::packet> block;
      unrolled<Shape::packet>([&](auto q) {
        block.packet[q] = q < rr ? Eigen::internal::ploadu<Packet>(buf + (rp + q) * T + j0) : Eigen::internal::pset1<Packet>(Scalar(0));
      });
      Eigen::internal::ptranspose(block);
      alignas(64) Scalar part[Shape::packet];
      for (Eigen::Index q = 0; q < P; ++q) {
        Eigen::internal::pstore(part, block.packet[q]);
        Scalar* col = y + (j0 + q) * ld + rp;
        for (Eigen::Index r = 0; r < P; ++r)
          if (r < rr) col[r] = part[r];
      }
    }
  for (Eigen::Index j = wp; j < width; ++j) {
    Scalar* col = y + j * ld;
    for (Eigen::Index r = 0; r < rows; ++r) col[r] = buf[r * T + j];
  }
}

/// acc (rows x T, row-major) = bias + S src for one tile: S is the blocked sparse matrix, src a
/// tile (features x T), bias one value per row (zero when null). R = packets of the tile that
/// hold batch columns. Each segment keeps its row's R packets in registers, in two sets of
/// accumulators (two multiply-add chains each). The segments of the first block (ascending rows)
/// start from the bias, and the rows between them are set to it on the way, so the tile is not
/// initialised in a pass of its own.
template <typename Scalar, int R>
void blocked_times_tile(const SparseBlocks<Scalar>& s, const Scalar* src, Scalar* acc_tile, Eigen::Index rows,
                        const Scalar* bias, TilePrefetch* prefetch = nullptr) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  const Eigen::Index segments = static_cast<Eigen::Index>(s.seg_row.size());
  const Eigen::Index* seg_start = s.seg_start.data();
  const std::int32_t* seg_row = s.seg_row.data();
  const std::int32_t* idx = s.idx.data();
  const Scalar* value = s.value.data();
  const Eigen::Index first_block_end = s.block_seg.size() > 1 ? s.block_seg[1] : 0;
  auto start_value = [&](Eigen::Index o) { return Eigen::internal::pset1<Packet>(bias != nullptr ? bias[o] : Scalar(0)); };
  Eigen::Index started = 0;  // rows [0, started) hold the bias or a sum
  auto start_rows = [&](Eigen::Index end) {
    for (; started < end; ++started) {
      const Packet b = start_value(started);
      unrolled<R>([&](auto r) { Eigen::internal::pstoreu(acc_tile + started * T + r * P, b); });
    }
  };
  if (first_block_end == 0) start_rows(rows);
  if (prefetch != nullptr) prefetch->spread(segments);
  for (Eigen::Index sg = 0; sg < segments; ++sg) {
    if (prefetch != nullptr) prefetch->step();
    const Eigen::Index row = seg_row[sg];
    Scalar* a = acc_tile + row * T;
    Packet acc0[R], acc1[R];
    if (sg < first_block_end) {
      start_rows(row);
      started = row + 1;
      const Packet b = start_value(row);
      unrolled<R>([&](auto r) { acc0[r] = b; });
    } else {
      unrolled<R>([&](auto r) { acc0[r] = Eigen::internal::ploadu<Packet>(a + r * P); });
    }
    unrolled<R>([&](auto r) { acc1[r] = Eigen::internal::pset1<Packet>(Scalar(0)); });
    Eigen::Index k = seg_start[sg];
    const Eigen::Index k1 = seg_start[sg + 1];
    for (; k + 1 < k1; k += 2) {
      const Packet v0 = Eigen::internal::pset1<Packet>(value[k]), v1 = Eigen::internal::pset1<Packet>(value[k + 1]);
      const Scalar* s0 = src + static_cast<Eigen::Index>(idx[k]) * T;
      const Scalar* s1 = src + static_cast<Eigen::Index>(idx[k + 1]) * T;
      unrolled<R>([&](auto r) {
        acc0[r] = Eigen::internal::pmadd(v0, Eigen::internal::ploadu<Packet>(s0 + r * P), acc0[r]);
        acc1[r] = Eigen::internal::pmadd(v1, Eigen::internal::ploadu<Packet>(s1 + r * P), acc1[r]);
      });
    }
    if (k < k1) {
      const Packet v0 = Eigen::internal::pset1<Packet>(value[k]);
      const Scalar* s0 = src + static_cast<Eigen::Index>(idx[k]) * T;
      unrolled<R>([&](auto r) { acc0[r] = Eigen::internal::pmadd(v0, Eigen::internal::ploadu<Packet>(s0 + r * P), acc0[r]); });
    }
    unrolled<R>([&](auto r) { Eigen::internal::pstoreu(a + r * P, Eigen::internal::padd(acc0[r], acc1[r])); });
    if (sg + 1 == first_block_end) start_rows(rows);
  }
}

/// The backward of one tile over the blocked CSC (rows: input features i, indices: output
/// features o): for every entry k = (o, i), grad_value[k] += <x tile row i, g tile row o> (when
/// WeightGrad) and gx tile row i += value[k] * g tile row o (when InputGrad). The g tile rows of
/// one block stay in L1; x row i and gx row i in registers for the segment.
template <typename Scalar, int R, bool WeightGrad, bool InputGrad>
void blocked_backward_tile(const SparseBlocks<Scalar>& s, const Scalar* x_tile, const Scalar* g_tile, Scalar* grad_value,
                           Scalar* gx_tile, TilePrefetch* prefetch = nullptr) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  const Eigen::Index segments = static_cast<Eigen::Index>(s.seg_row.size());
  const Eigen::Index* seg_start = s.seg_start.data();
  const std::int32_t* seg_row = s.seg_row.data();
  const std::int32_t* idx = s.idx.data();
  const Scalar* value = s.value.data();
  if (prefetch != nullptr) prefetch->spread(segments);
  for (Eigen::Index sg = 0; sg < segments; ++sg) {
    if (prefetch != nullptr) prefetch->step();
    const Eigen::Index i = seg_row[sg];
    Packet xr[R], acc[R];
    if constexpr (WeightGrad) unrolled<R>([&](auto r) { xr[r] = Eigen::internal::ploadu<Packet>(x_tile + i * T + r * P); });
    if constexpr (InputGrad) unrolled<R>([&](auto r) { acc[r] = Eigen::internal::ploadu<Packet>(gx_tile + i * T + r * P); });
    const Eigen::Index k1 = seg_start[sg + 1];
    for (Eigen::Index k = seg_start[sg]; k < k1; ++k) {
      const Scalar* gr = g_tile + static_cast<Eigen::Index>(idx[k]) * T;
      Packet gp[R];
      unrolled<R>([&](auto r) { gp[r] = Eigen::internal::ploadu<Packet>(gr + r * P); });
      if constexpr (InputGrad) {
        const Packet v = Eigen::internal::pset1<Packet>(value[k]);
        unrolled<R>([&](auto r) { acc[r] = Eigen::internal::pmadd(v, gp[r], acc[r]); });
      }
      if constexpr (WeightGrad) {
        Packet d = Eigen::internal::pmul(xr[0], gp[0]);
        unrolled<R>([&](auto r) {
          if constexpr (decltype(r)::value >= 1) d = Eigen::internal::pmadd(xr[r], gp[r], d);
        });
        grad_value[k] += Eigen::internal::predux(d);
      }
    }
    if constexpr (InputGrad) unrolled<R>([&](auto r) { Eigen::internal::pstoreu(gx_tile + i * T + r * P, acc[r]); });
  }
}

/// Calls f(std::integral_constant<int, R>) for R = ceil(width / packet) in 1..packets: the last,
/// partial tile of a batch computes only the packets it needs.
template <int N, typename F>
EIGEN_STRONG_INLINE void dispatch_packets_impl(int r, F&& f) {
  if constexpr (N <= 1) {
    f(std::integral_constant<int, 1>{});
  } else {
    if (r >= N) f(std::integral_constant<int, N>{});
    else dispatch_packets_impl<N - 1>(r, std::forward<F>(f));
  }
}
template <typename Scalar, typename F>
void dispatch_packets(Eigen::Index width, F&& f) {
  constexpr Eigen::Index P = TileShape<Scalar>::packet;
  dispatch_packets_impl<TileShape<Scalar>::packets>(static_cast<int>((width + P - 1) / P), std::forward<F>(f));
}

/// Batches up to this size run the per-sample kernels below (no tiles): a tile computes at least
/// one SIMD packet of samples per weight. Measured on a 1000 x 1000 float layer (AMD Zen 5,
/// AVX-512): at batch 1 the per-sample forward took 0.042 ms at density 0.1 and 0.070 ms at 0.2,
/// the one-packet tile 0.045 and 0.097 ms; at batch 2 the tile was faster (0.046 against 0.084 ms).
#ifdef DEEPSTRUCT_PER_SAMPLE_BATCH
template <typename Scalar>
constexpr Eigen::Index per_sample_batch = DEEPSTRUCT_PER_SAMPLE_BATCH;
#else
template <typename Scalar>
constexpr Eigen::Index per_sample_batch = 1;
#endif

/// The density above which Execution::automatic runs the forward of a single sample densely,
/// whatever the layer's sparse threshold: one sample is a matrix-vector product, which streams
/// the dense weight at memory speed, while the sparse one reads a value, an index and a gathered
/// input per active weight. The crossover of bench_masked_linear at batch 1 (docs/benchmarks.md).
inline constexpr double single_sample_sparse_threshold = 0.08;

/// sum_k value[k] * x[idx[k]] over n entries; with grad != nullptr also grad[k] += xi * x[idx[k]]
/// (the per-sample backward reads g by index once for both). 8-lane AVX2 gathers where the
/// instruction set has them (also under AVX-512: on AMD Zen 5 a 1000 x 1000 layer at batch 1 and
/// density 0.1 took 0.037 ms with them, 0.059 ms with 16-lane AVX-512 gathers and 0.043 ms with
/// four scalar chains), four scalar chains otherwise.
template <typename Scalar>
EIGEN_STRONG_INLINE Scalar gather_dot(const Scalar* value, const std::int32_t* idx, const Scalar* x, Eigen::Index n,
                                      Scalar* grad, Scalar xi) {
  Eigen::Index k = 0;
  Scalar sum = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same<Scalar, float>::value) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256 xv = _mm256_set1_ps(xi);
    // The masked gathers with every lane on: the plain ones start from an undefined register,
    // which GCC 12 reports as maybe uninitialized.
    const __m256 all_ps = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (; k + 16 <= n; k += 16) {
      const __m256 g0 = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k)), all_ps, 4);
      const __m256 g1 = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k + 8)), all_ps, 4);
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(value + k), g0, acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(value + k + 8), g1, acc1);
      if (grad != nullptr) {
        _mm256_storeu_ps(grad + k, _mm256_fmadd_ps(xv, g0, _mm256_loadu_ps(grad + k)));
        _mm256_storeu_ps(grad + k + 8, _mm256_fmadd_ps(xv, g1, _mm256_loadu_ps(grad + k + 8)));
      }
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
    sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  } else {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    const __m256d xv = _mm256_set1_pd(xi);
    const __m256d all_pd = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
    for (; k + 8 <= n; k += 8) {
      const __m256d g0 = _mm256_mask_i32gather_pd(_mm256_setzero_pd(), x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + k)), all_pd, 8);
      const __m256d g1 = _mm256_mask_i32gather_pd(_mm256_setzero_pd(), x, _mm_loadu_si128(reinterpret_cast<const __m128i*>(idx + k + 4)), all_pd, 8);
      acc0 = _mm256_fmadd_pd(_mm256_loadu_pd(value + k), g0, acc0);
      acc1 = _mm256_fmadd_pd(_mm256_loadu_pd(value + k + 4), g1, acc1);
      if (grad != nullptr) {
        _mm256_storeu_pd(grad + k, _mm256_fmadd_pd(xv, g0, _mm256_loadu_pd(grad + k)));
        _mm256_storeu_pd(grad + k + 4, _mm256_fmadd_pd(xv, g1, _mm256_loadu_pd(grad + k + 4)));
      }
    }
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, _mm256_add_pd(acc0, acc1));
    sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  }
#endif
  Scalar s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (; k + 3 < n; k += 4) {
    const Scalar x0 = x[idx[k]], x1 = x[idx[k + 1]], x2 = x[idx[k + 2]], x3 = x[idx[k + 3]];
    s0 += value[k] * x0;
    s1 += value[k + 1] * x1;
    s2 += value[k + 2] * x2;
    s3 += value[k + 3] * x3;
    if (grad != nullptr) {
      grad[k] += xi * x0;
      grad[k + 1] += xi * x1;
      grad[k + 2] += xi * x2;
      grad[k + 3] += xi * x3;
    }
  }
  for (; k < n; ++k) {
    const Scalar x0 = x[idx[k]];
    s0 += value[k] * x0;
    if (grad != nullptr) grad[k] += xi * x0;
  }
  return sum + ((s0 + s1) + (s2 + s3));
}

/// y = W x + b, one sample at a time (batches of a few samples): per row, the active weights'
/// dot product with the sample, the sample read by index.
template <typename Scalar>
void sparse_forward_per_sample(const SparseBlocks<Scalar>& s, const Scalar* bias, const Scalar* x, Eigen::Index ld_x,
                               Eigen::Index out, Eigen::Index batch, Scalar* y, Eigen::Index ld_y) {
  const Eigen::Index segments = static_cast<Eigen::Index>(s.seg_row.size());
  const Eigen::Index* seg_start = s.seg_start.data();
  const std::int32_t* seg_row = s.seg_row.data();
  const std::int32_t* idx = s.idx.data();
  const Scalar* value = s.value.data();
  for (Eigen::Index b = 0; b < batch; ++b) {
    const Scalar* xb = x + b * ld_x;
    Scalar* yb = y + b * ld_y;
    for (Eigen::Index o = 0; o < out; ++o) yb[o] = bias != nullptr ? bias[o] : Scalar(0);
    for (Eigen::Index sg = 0; sg < segments; ++sg) {
      const Eigen::Index k = seg_start[sg];
      yb[seg_row[sg]] += gather_dot<Scalar>(value + k, idx + k, xb, seg_start[sg + 1] - k, nullptr, Scalar(0));
    }
  }
}

/// The backward of a few samples, one at a time, over the blocked CSC: grad_value[k] +=
/// x(i, b) g(o, b) and grad_x(i, b) = sum_k value[k] g(o, b).
template <typename Scalar>
void sparse_backward_per_sample(const SparseBlocks<Scalar>& s, const Scalar* x, Eigen::Index ld_x, const Scalar* g,
                                Eigen::Index ld_g, Eigen::Index in, Eigen::Index batch, Scalar* grad_value, Scalar* grad_x,
                                Eigen::Index ld_gx) {
  const Eigen::Index segments = static_cast<Eigen::Index>(s.seg_row.size());
  const Eigen::Index* seg_start = s.seg_start.data();
  const std::int32_t* seg_row = s.seg_row.data();
  const std::int32_t* idx = s.idx.data();
  const Scalar* value = s.value.data();
  for (Eigen::Index b = 0; b < batch; ++b) {
    const Scalar* gb = g + b * ld_g;
    const Scalar* xb = grad_value != nullptr ? x + b * ld_x : nullptr;
    Scalar* gxb = grad_x != nullptr ? grad_x + b * ld_gx : nullptr;
    if (gxb != nullptr)
      for (Eigen::Index i = 0; i < in; ++i) gxb[i] = Scalar(0);
    for (Eigen::Index sg = 0; sg < segments; ++sg) {
      const Eigen::Index k = seg_start[sg], i = seg_row[sg];
      const Scalar d = gather_dot<Scalar>(value + k, idx + k, gb, seg_start[sg + 1] - k,
                                          xb != nullptr ? grad_value + k : nullptr, xb != nullptr ? xb[i] : Scalar(0));
      if (gxb != nullptr) gxb[i] += d;
    }
  }
}

/// One layer of sparse_chain_forward: its blocked CSR, its bias (or null), its output features.
template <typename Scalar>
struct ChainLayer {
  const SparseBlocks<Scalar>* blocks = nullptr;
  const Scalar* bias = nullptr;
  Eigen::Index out = 0;
};

/// Scratch of the tile kernels, for up to `threads` threads: every thread transposes into its
/// own tiles; in the backward, each group of tiles after the first sums its weight gradients into
/// its own nnz values, added up at the end (cache-line aligned buffers, see TileBuffer).
template <typename Scalar>
struct SparseScratch {
  TileBuffer<Scalar> x_tile, g_tile, y_tile, gx_tile, bias_tile, grad_value;
  Eigen::Index in = 0, out = 0, nnz = 0;
  int threads = 1;

  void prepare(Eigen::Index in_features, Eigen::Index out_features, Eigen::Index entries, int thread_count, bool backward,
               int groups = 1) {
    constexpr Eigen::Index T = TileShape<Scalar>::width, P = TileShape<Scalar>::packet;
    in = in_features;
    out = out_features;
    nnz = entries;
    threads = std::max(1, thread_count);
    const auto n = static_cast<std::size_t>(threads);
    auto grow = [](TileBuffer<Scalar>& b, std::size_t size) {
      if (b.size() < size) b.resize(size);
    };
    grow(x_tile, n * static_cast<std::size_t>(in * T));
    if (backward) {
      const auto g = static_cast<std::size_t>(std::max(1, groups));
      grow(g_tile, n * static_cast<std::size_t>(out * T));
      grow(gx_tile, n * static_cast<std::size_t>(in * T));
      grow(bias_tile, g * static_cast<std::size_t>(out * P));
      grow(grad_value, (g - 1) * static_cast<std::size_t>(nnz));
    } else {
      grow(y_tile, n * static_cast<std::size_t>(out * T));
    }
  }

  /// For sparse_chain_forward over `layers` layers: x tiles of `in_features` and the hidden
  /// tiles of the widest layer's outputs (y_tile, and chain_tile for a second layer), per thread.
  void prepare_chain(Eigen::Index in_features, Eigen::Index widest, int thread_count, std::size_t layers) {
    prepare(in_features, widest, 0, thread_count, false);
    const auto size = static_cast<std::size_t>(threads) * static_cast<std::size_t>(widest * TileShape<Scalar>::width);
    if (layers > 1 && chain_tile.size() < size) chain_tile.resize(size);
  }
  TileBuffer<Scalar> chain_tile;
  std::vector<ChainLayer<Scalar>> chain;  // the layers of the last chain (reused: no allocation per call)
};

/// y = L_n(f(... f(L_1 x))) (and f of that too when activate_last) for n layers y = W x + b with
/// blocked CSRs, where f is `between(tile, rows, columns)`, an elementwise function applied in place
/// to rows x columns of a tile (row stride TileShape::width). Every tile of the batch goes through
/// all n layers while it is in cache: x is transposed into tiles once, y out of them once, and the
/// hidden values never leave the tile buffers. Each layer's tile is the one sparse_forward computes
/// (the same kernel on the same tile rows), so the results are those of the layers' sparse
/// forwards with f applied between them; only the padding columns of a last, partial tile, which
/// are never stored, differ. batch > per_sample_batch; `scratch` was prepared with prepare_chain
/// for in, the widest layer and at least `threads` threads.
template <typename Scalar, typename Between>
void sparse_chain_forward(const ChainLayer<Scalar>* layers, std::size_t n, bool activate_last, const Scalar* x,
                          Eigen::Index ld_x, Eigen::Index in, Eigen::Index batch, Scalar* y, Eigen::Index ld_y,
                          SparseScratch<Scalar>& scratch, int threads, Between&& between) {
  constexpr Eigen::Index T = TileShape<Scalar>::width, P = TileShape<Scalar>::packet;
  threads = std::min(threads, scratch.threads);
  const Eigen::Index widest = scratch.out, last_out = layers[n - 1].out;
  const Eigen::Index tiles = (batch + T - 1) / T;
  // The first layer prefetches the next tile's x while it runs, the last one this tile's lines
  // of y, where their kernels can afford it (spread_prefetch_pays); the copies prefetch the rest.
  // (The next tile is this thread's only on one thread: with more, the tiles are shared out.)
  const bool spread_next_x = spread_prefetch_pays(*layers[0].blocks, T) && threads == 1 && ld_x == in;
  const bool spread_last = spread_prefetch_pays(*layers[n - 1].blocks, T) && ld_y == last_out;
  for_each_piece(tiles, threads, [&](Eigen::Index t, int tid) {
    Scalar* x_tile = scratch.x_tile.data() + tid * in * T;
    Scalar* tile[2] = {scratch.y_tile.data() + tid * widest * T, n > 1 ? scratch.chain_tile.data() + tid * widest * T : nullptr};
    const Eigen::Index b0 = t * T;
    const Eigen::Index width = b0 + T <= batch ? T : batch - b0;
    const Eigen::Index next_width = std::min(T, batch - b0 - width);
    load_transposed_tile<Scalar>(x + b0 * ld_x, ld_x, in, width, x_tile, !(spread_next_x && t > 0));  // else by tile t - 1
    const Scalar* src = x_tile;
    dispatch_packets<Scalar>(width, [&](auto rc) {
      constexpr int R = decltype(rc)::value;
      for (std::size_t l = 0; l < n; ++l) {
        TilePrefetch prefetch;
        const bool first = l == 0 && spread_next_x, last = l + 1 == n && spread_last;
        if (first && next_width > 0)
          prefetch.in = LineStream(x + (b0 + T) * ld_x, static_cast<std::size_t>(in * next_width) * sizeof(Scalar), false);
        if (last) prefetch.out = LineStream(y + b0 * ld_y, static_cast<std::size_t>(last_out * width) * sizeof(Scalar), true);
        Scalar* dst = tile[l % 2];
        blocked_times_tile<Scalar, R>(*layers[l].blocks, src, dst, layers[l].out, layers[l].bias, first || last ? &prefetch : nullptr);
        if (l + 1 < n || activate_last) between(dst, layers[l].out, static_cast<Eigen::Index>(R) * P);
        src = dst;
      }
    });
    store_transposed_tile<Scalar>(src, last_out, width, y + b0 * ld_y, ld_y, !spread_last);
  });
}

/// y = W x + b for a features x batch x (column-major, leading dimension ld_x), with the blocked
/// CSR `s`. `bias` may be null. `scratch` was prepared for in, out and at least `threads` threads.
/// A chain of one layer without activation (sparse_chain_forward), or the per-sample kernel for a
/// few samples.
template <typename Scalar>
void sparse_forward(const SparseBlocks<Scalar>& s, const Scalar* bias, const Scalar* x, Eigen::Index ld_x, Eigen::Index in,
                    Eigen::Index out, Eigen::Index batch, Scalar* y, Eigen::Index ld_y, SparseScratch<Scalar>& scratch,
                    int threads = 1) {
  if (batch <= per_sample_batch<Scalar>) {
    sparse_forward_per_sample(s, bias, x, ld_x, out, batch, y, ld_y);
    return;
  }
  const ChainLayer<Scalar> layer{&s, bias, out};
  sparse_chain_forward<Scalar>(&layer, 1, false, x, ld_x, in, batch, y, ld_y, scratch, threads, [](Scalar*, Eigen::Index, Eigen::Index) {});
}

/// Backward through y = W x + b with the blocked CSC `s` (see SparseBlocks), for the batch in
/// tiles: grad_value[k] += sum_b g(o, b) x(i, b) for the entries k = (o, i) of s unless
/// grad_value is null, grad_bias[o] += sum_b g(o, b) unless grad_bias is null (from the g tiles:
/// no second pass over g), and grad_x = W^T g unless grad_x is null. The tiles are cut into
/// `groups` runs of consecutive tiles; each group sums its gradients on its own, and the groups'
/// sums are added in order at the end, so the result depends on the groups, not on the threads
/// that run them (up to `threads`). `scratch` was prepared for the backward with in, out,
/// s.nnz(), at least `threads` threads and, unless grad_value and grad_bias are null, at least
/// `groups` groups.
template <typename Scalar>
void sparse_backward(const SparseBlocks<Scalar>& s, const Scalar* x, Eigen::Index ld_x, const Scalar* g, Eigen::Index ld_g,
                     Eigen::Index in, Eigen::Index out, Eigen::Index batch, Scalar* grad_value, Scalar* grad_bias,
                     Scalar* grad_x, Eigen::Index ld_gx, SparseScratch<Scalar>& scratch, int threads = 1, int groups = 1) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  if (batch <= per_sample_batch<Scalar>) {
    if (grad_bias != nullptr)
      for (Eigen::Index b = 0; b < batch; ++b)
        for (Eigen::Index o = 0; o < out; ++o) grad_bias[o] += g[b * ld_g + o];
    sparse_backward_per_sample(s, x, ld_x, g, ld_g, in, batch, grad_value, grad_x, ld_gx);
    return;
  }
  const Eigen::Index tiles = (batch + T - 1) / T, nnz = s.nnz();
  const bool spread = spread_prefetch_pays(s, T);  // else the copies prefetch for themselves
  groups = static_cast<int>(std::max<Eigen::Index>(1, std::min<Eigen::Index>(groups, tiles)));
  threads = std::max(1, std::min({threads, scratch.threads, groups}));
  if (grad_bias != nullptr)
    for (Eigen::Index o = 0; o < groups * out * P; ++o) scratch.bias_tile[static_cast<std::size_t>(o)] = Scalar(0);
  if (grad_value != nullptr && groups > 1)
    std::fill(scratch.grad_value.begin(), scratch.grad_value.begin() + (groups - 1) * nnz, Scalar(0));
  auto tile_body = [&](Eigen::Index t, Eigen::Index t_begin, Eigen::Index t_end, Eigen::Index grp, int tid) {
    Scalar* x_tile = scratch.x_tile.data() + tid * in * T;
    Scalar* g_tile = scratch.g_tile.data() + tid * out * T;
    Scalar* gx_tile = scratch.gx_tile.data() + tid * in * T;
    Scalar* bias_tile = grad_bias == nullptr ? nullptr : scratch.bias_tile.data() + grp * out * P;
    Scalar* gv = grad_value == nullptr ? nullptr : grp == 0 ? grad_value : scratch.grad_value.data() + (grp - 1) * nnz;
    const Eigen::Index b0 = t * T;
    const Eigen::Index width = b0 + T <= batch ? T : batch - b0;
    const Eigen::Index next_width = t + 1 < t_end ? std::min(T, batch - b0 - width) : 0;
    // Prefetched while the kernel of the group's previous tile ran, when it could afford it
    // (spread_prefetch_pays); else the copies prefetch for themselves.
    const bool after_spread = spread && t > t_begin;
    if (gv != nullptr) load_transposed_tile<Scalar>(x + b0 * ld_x, ld_x, in, width, x_tile, !(after_spread && ld_x == in));
    load_transposed_tile<Scalar>(g + b0 * ld_g, ld_g, out, width, g_tile, !(after_spread && ld_g == out));
    // While the kernel runs: the lines of this tile's dL/dx, and the next tile's x and g of this
    // group.
    TilePrefetch prefetch;
    if (spread && grad_x != nullptr && ld_gx == in)
      prefetch.out = LineStream(grad_x + b0 * ld_gx, static_cast<std::size_t>(in * width) * sizeof(Scalar), true);
    if (spread && next_width > 0 && gv != nullptr && ld_x == in)
      prefetch.in = LineStream(x + (b0 + T) * ld_x, static_cast<std::size_t>(in * next_width) * sizeof(Scalar), false);
    if (spread && next_width > 0 && ld_g == out)
      prefetch.in2 = LineStream(g + (b0 + T) * ld_g, static_cast<std::size_t>(out * next_width) * sizeof(Scalar), false);
    dispatch_packets<Scalar>(width, [&](auto rc) {
      constexpr int R = decltype(rc)::value;
      if (grad_bias != nullptr)
        for (Eigen::Index o = 0; o < out; ++o) {
          Packet sum = Eigen::internal::ploadu<Packet>(bias_tile + o * P);
          unrolled<R>([&](auto r) { sum = Eigen::internal::padd(sum, Eigen::internal::ploadu<Packet>(g_tile + o * T + r * P)); });
          Eigen::internal::pstoreu(bias_tile + o * P, sum);
        }
      if (grad_x != nullptr) {
        const Packet zero = Eigen::internal::pset1<Packet>(Scalar(0));
        for (Eigen::Index i = 0; i < in; ++i) unrolled<R>([&](auto r) { Eigen::internal::pstoreu(gx_tile + i * T + r * P, zero); });
        if (gv != nullptr)
          blocked_backward_tile<Scalar, R, true, true>(s, x_tile, g_tile, gv, gx_tile, spread ? &prefetch : nullptr);
        else
          blocked_backward_tile<Scalar, R, false, true>(s, x_tile, g_tile, gv, gx_tile, spread ? &prefetch : nullptr);
      } else if (gv != nullptr) {
        blocked_backward_tile<Scalar, R, true, false>(s, x_tile, g_tile, gv, gx_tile, spread ? &prefetch : nullptr);
      }
    });
    if (grad_x != nullptr)
      store_transposed_tile<Scalar>(gx_tile, in, width, grad_x + b0 * ld_gx, ld_gx, !(spread && ld_gx == in));
  };
  for_each_piece(groups, threads, [&](Eigen::Index grp, int tid) {
    const Eigen::Index t0 = tiles * grp / groups, t1 = tiles * (grp + 1) / groups;
    for (Eigen::Index t = t0; t < t1; ++t) tile_body(t, t0, t1, grp, tid);
  });
  if (grad_value != nullptr)
    for (int grp = 1; grp < groups; ++grp) {
      const Scalar* extra = scratch.grad_value.data() + (grp - 1) * nnz;
      for (Eigen::Index k = 0; k < nnz; ++k) grad_value[k] += extra[k];
    }
  if (grad_bias != nullptr)
    for (Eigen::Index o = 0; o < out; ++o) {
      Packet sum = Eigen::internal::ploadu<Packet>(scratch.bias_tile.data() + o * P);
      for (int grp = 1; grp < groups; ++grp)
        sum = Eigen::internal::padd(sum, Eigen::internal::ploadu<Packet>(scratch.bias_tile.data() + (grp * out + o) * P));
      grad_bias[o] += Eigen::internal::predux(sum);
    }
}

}  // namespace detail
}  // namespace deepstruct

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
