// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/sparse_kernels.hpp
/// Sparse kernels of MaskedLinear: the active weights in compressed sparse rows (CSR, for y = W x
/// and the weight gradients) and compressed sparse columns (CSC, for the input gradient W^T g),
/// applied to a batch in tiles. Each tile of the batch is transposed into a small buffer so that
/// every feature's batch values are contiguous: then each nonzero weight multiplies a contiguous
/// run of batch values held in SIMD accumulators, as in sparse inference engines (Elsen et al.,
/// "Fast Sparse ConvNets"; XNNPACK's SpMM). The SIMD code is written with Eigen's packet
/// primitives, so it follows whatever instruction set the user compiles for (SSE2, AVX, AVX-512,
/// NEON, ...) and falls back to scalars under EIGEN_DONT_VECTORIZE.

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

// Eigen's PacketBlock<Packet8f, 8> and friends make GCC warn that the vector attributes of the
// packet type are ignored in a template argument (Eigen silences this inside its own headers).
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace deepstruct {
namespace detail {

/// The SIMD shape of the tiles: a tile row is `packets` SIMD packets of the batch, so that one
/// row's accumulators use 8 of the (at least 16) vector registers.
template <typename Scalar>
struct TileShape {
  using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
  static constexpr int packet = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr int packets = 8;
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

/// Batch columns per tile: 8 SIMD packets (64 floats / 32 doubles with AVX, 32 / 16 with SSE).
template <typename Scalar>
constexpr Eigen::Index batch_tile = TileShape<Scalar>::width;

/// The active weights of an out x in matrix, row by row (CSR) and column by column (CSC).
/// Feature indices are int32: MaskedLinear keeps in and out below 2^31 (offsets are Eigen::Index).
template <typename Scalar>
struct CsrWeights {
  std::vector<Eigen::Index> row_start;   ///< out + 1 offsets into col/value
  std::vector<std::int32_t> col;         ///< input feature of each active weight
  std::vector<Eigen::Index> dense_pos;   ///< o + i * out: position in the column-major weight
  std::vector<Scalar> value;             ///< the weight values, refreshed when W changes
  std::vector<Eigen::Index> col_start;   ///< in + 1 offsets into row/col_value (CSC)
  std::vector<std::int32_t> row;         ///< output feature of each active weight, column by column
  std::vector<Scalar> col_value;         ///< the weight values column by column

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
    value.resize(total);
    row.resize(total);
    col_value.resize(total);
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
  /// true; kept entries keep their values, added ones take theirs from `weight`.
  void apply_changes(const std::vector<Eigen::Index>& removed, const std::vector<Eigen::Index>& added, const Scalar* weight,
                     const bool* mask, Eigen::Index out, Eigen::Index in) {
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
    std::vector<Scalar> new_value;
    new_pos.reserve(total);
    new_col.reserve(total);
    new_value.reserve(total);
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
            new_value.push_back(value[k]);
          }
          ++k;
        } else {
          const Eigen::Index p = add_by_row[a++];
          new_pos.push_back(p);
          new_col.push_back(static_cast<std::int32_t>(p / out));
          new_value.push_back(weight[p]);
        }
      }
      new_row_start[static_cast<std::size_t>(o + 1)] = static_cast<Eigen::Index>(new_pos.size());
    }
    // Columns: the added entries are already in column-major order.
    std::vector<Eigen::Index> new_col_start(static_cast<std::size_t>(in + 1), 0);
    std::vector<std::int32_t> new_row;
    std::vector<Scalar> new_col_value;
    new_row.reserve(total);
    new_col_value.reserve(total);
    std::size_t a = 0;
    for (Eigen::Index i = 0; i < in; ++i) {
      auto k = static_cast<std::size_t>(col_start[static_cast<std::size_t>(i)]);
      const auto k1 = static_cast<std::size_t>(col_start[static_cast<std::size_t>(i + 1)]);
      while (k < k1 || (a < added.size() && added[a] / out == i)) {
        const bool take_added = a < added.size() && added[a] / out == i && (k == k1 || added[a] % out < row[k]);
        if (take_added) {
          new_row.push_back(static_cast<std::int32_t>(added[a] % out));
          new_col_value.push_back(weight[added[a]]);
          ++a;
        } else {
          if (!gone(static_cast<Eigen::Index>(row[k]) + i * out)) {
            new_row.push_back(row[k]);
            new_col_value.push_back(col_value[k]);
          }
          ++k;
        }
      }
      new_col_start[static_cast<std::size_t>(i + 1)] = static_cast<Eigen::Index>(new_row.size());
    }
    row_start.swap(new_row_start);
    col.swap(new_col);
    dense_pos.swap(new_pos);
    value.swap(new_value);
    col_start.swap(new_col_start);
    row.swap(new_row);
    col_value.swap(new_col_value);
  }

  /// Copies the active weight values out of the dense column-major weight (out x in).
  void gather_values(const Scalar* weight, Eigen::Index out) {
    const std::size_t n = col.size();
    for (std::size_t k = 0; k < n; ++k) value[k] = weight[dense_pos[k]];
    const Eigen::Index in = static_cast<Eigen::Index>(col_start.size()) - 1;
    for (Eigen::Index i = 0; i < in; ++i) {
      const Scalar* column = weight + i * out;
      const auto k1 = static_cast<std::size_t>(col_start[static_cast<std::size_t>(i + 1)]);
      for (auto k = static_cast<std::size_t>(col_start[static_cast<std::size_t>(i)]); k < k1; ++k)
        col_value[k] = column[row[k]];
    }
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

/// Copies columns [0, width) of a features x width block of a column-major matrix (leading
/// dimension ld) into tile (features x T, row-major), zero-padding columns width..T-1.
/// Full packet x packet blocks are transposed in registers.
template <typename Scalar>
void load_transposed_tile(const Scalar* x, Eigen::Index ld, Eigen::Index features, Eigen::Index width,
                          Scalar* tile) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  const Eigen::Index fp = features - features % P, wp = width - width % P;
  // Column blocks outside: P columns are read front to back, P streams the prefetcher follows.
  for (Eigen::Index j0 = 0; j0 < wp; j0 += P)
    for (Eigen::Index f0 = 0; f0 < fp; f0 += P) {
      Eigen::internal::PacketBlock<Packet, Shape::packet> block;
      unrolled<Shape::packet>([&](auto q) { block.packet[q] = Eigen::internal::ploadu<Packet>(x + (j0 + q) * ld + f0); });
      Eigen::internal::ptranspose(block);
      unrolled<Shape::packet>([&](auto q) { Eigen::internal::pstoreu(tile + (f0 + q) * T + j0, block.packet[q]); });
    }
  for (Eigen::Index f = 0; f < features; ++f) {
    Scalar* tile_row = tile + f * T;
    for (Eigen::Index j = f < fp ? wp : 0; j < width; ++j) tile_row[j] = x[j * ld + f];
    for (Eigen::Index j = width; j < T; ++j) tile_row[j] = Scalar(0);
  }
}

/// Writes rows [0, rows) x columns [0, width) of buf (rows <= packet, row stride T) into a
/// column-major matrix y (leading dimension ld) at the same positions, transposing.
template <typename Scalar>
EIGEN_STRONG_INLINE void store_transposed_rows(const Scalar* buf, Eigen::Index rows, Eigen::Index width, Scalar* y,
                                               Eigen::Index ld) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  Eigen::Index j0 = 0;
  if (rows == P) {
    for (; j0 + P <= width; j0 += P) {
      Eigen::internal::PacketBlock<Packet, Shape::packet> block;
      unrolled<Shape::packet>([&](auto q) { block.packet[q] = Eigen::internal::ploadu<Packet>(buf + q * T + j0); });
      Eigen::internal::ptranspose(block);
      unrolled<Shape::packet>([&](auto q) { Eigen::internal::pstoreu(y + (j0 + q) * ld, block.packet[q]); });
    }
  }
  for (Eigen::Index j = j0; j < width; ++j)
    for (Eigen::Index r = 0; r < rows; ++r) y[j * ld + r] = buf[r * T + j];
}

/// One sparse row times a tile: out_row[0, R packets) = init + sum_k value[k] * tile row idx[k].
/// The R accumulators stay in registers.
template <typename Scalar, int R>
EIGEN_STRONG_INLINE void sparse_row_times_tile(const std::int32_t* idx, const Scalar* value, Eigen::Index n,
                                               Scalar init, const Scalar* tile, Scalar* out_row) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  Packet acc[R];
  unrolled<R>([&](auto r) { acc[r] = Eigen::internal::pset1<Packet>(init); });
  for (Eigen::Index k = 0; k < n; ++k) {
    const Packet v = Eigen::internal::pset1<Packet>(value[k]);
    const Scalar* src = tile + static_cast<Eigen::Index>(idx[k]) * T;
    unrolled<R>([&](auto r) { acc[r] = Eigen::internal::pmadd(v, Eigen::internal::ploadu<Packet>(src + r * P), acc[r]); });
  }
  unrolled<R>([&](auto r) { Eigen::internal::pstoreu(out_row + r * P, acc[r]); });
}

/// dst = S src (+ init per row) for one tile: S has `rows` sparse rows (start/idx/value), src is a
/// tile (features x T, row-major), dst is column-major with leading dimension ld, and only its
/// first `width` columns are written. R = packets of the tile that hold batch columns.
template <typename Scalar, int R>
void sparse_times_tile(const Eigen::Index* start, const std::int32_t* idx, const Scalar* value, const Scalar* init,
                       Eigen::Index rows, const Scalar* src, Eigen::Index width, Scalar* dst, Eigen::Index ld) {
  using Shape = TileShape<Scalar>;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  alignas(64) Scalar buf[P * T];
  for (Eigen::Index o0 = 0; o0 < rows; o0 += P) {
    const Eigen::Index block_rows = o0 + P <= rows ? P : rows - o0;
    for (Eigen::Index r = 0; r < block_rows; ++r) {
      const Eigen::Index o = o0 + r;
      sparse_row_times_tile<Scalar, R>(idx + start[o], value + start[o], start[o + 1] - start[o],
                                       init != nullptr ? init[o] : Scalar(0), src, buf + r * T);
    }
    store_transposed_rows<Scalar>(buf, block_rows, width, dst + o0, ld);
  }
}

/// Calls f(std::integral_constant<int, R>) for R = ceil(width / packet) in 1..packets: the last,
/// partial tile of a batch computes only the packets it needs.
template <typename Scalar, typename F>
void dispatch_packets(Eigen::Index width, F&& f) {
  constexpr Eigen::Index P = TileShape<Scalar>::packet;
  static_assert(TileShape<Scalar>::packets == 8, "dispatch_packets covers 1..8 packets");
  switch ((width + P - 1) / P) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

/// y = W x + b for a features x batch x (column-major, leading dimension ld_x), CSR weights.
/// `bias` may be null. `x_tile` is scratch of at least in * batch_tile<Scalar> scalars, best
/// cache-line aligned (TileBuffer).
template <typename Scalar>
void csr_forward(const CsrWeights<Scalar>& w, const Scalar* bias, const Scalar* x, Eigen::Index ld_x,
                 Eigen::Index in, Eigen::Index out, Eigen::Index batch, Scalar* y, Eigen::Index ld_y,
                 Scalar* x_tile) {
  constexpr Eigen::Index T = batch_tile<Scalar>;
  for (Eigen::Index b0 = 0; b0 < batch; b0 += T) {
    const Eigen::Index width = b0 + T <= batch ? T : batch - b0;
    load_transposed_tile<Scalar>(x + b0 * ld_x, ld_x, in, width, x_tile);
    dispatch_packets<Scalar>(width, [&](auto r) {
      sparse_times_tile<Scalar, decltype(r)::value>(w.row_start.data(), w.col.data(), w.value.data(), bias, out,
                                                    x_tile, width, y + b0 * ld_y, ld_y);
    });
  }
}

/// grad_value[k] += <g tile row o, x tile row i> for every active weight k = (o, i), and, unless
/// grad_bias is null, grad_bias[o] += sum of g tile row o; R packets of the tiles hold the batch.
template <typename Scalar, int R>
void active_weight_gradients(const CsrWeights<Scalar>& w, Eigen::Index out, const Scalar* g_tile,
                             const Scalar* x_tile, Scalar* grad_value, Scalar* grad_bias) {
  using Shape = TileShape<Scalar>;
  using Packet = typename Shape::Packet;
  constexpr Eigen::Index T = Shape::width, P = Shape::packet;
  const Eigen::Index* start = w.row_start.data();
  const std::int32_t* col = w.col.data();
  for (Eigen::Index o = 0; o < out; ++o) {
    const Eigen::Index k1 = start[o + 1];
    Eigen::Index k = start[o];
    Packet go[R];
    unrolled<R>([&](auto r) { go[r] = Eigen::internal::ploadu<Packet>(g_tile + o * T + r * P); });
    if (grad_bias != nullptr) {
      Packet sum = go[0];
      unrolled<R>([&](auto r) {
        if constexpr (decltype(r)::value >= 1) sum = Eigen::internal::padd(sum, go[r]);
      });
      grad_bias[o] += Eigen::internal::predux(sum);
    }
    for (; k < k1; ++k) {
      const Scalar* xr = x_tile + static_cast<Eigen::Index>(col[k]) * T;
      // Two partial sums keep two multiply-add chains in flight.
      Packet s[2];
      s[0] = Eigen::internal::pmul(go[0], Eigen::internal::ploadu<Packet>(xr));
      if constexpr (R > 1) s[1] = Eigen::internal::pmul(go[1], Eigen::internal::ploadu<Packet>(xr + P));
      unrolled<R>([&](auto r) {
        if constexpr (decltype(r)::value >= 2) s[r % 2] = Eigen::internal::pmadd(go[r], Eigen::internal::ploadu<Packet>(xr + r * P), s[r % 2]);
      });
      if constexpr (R > 1) s[0] = Eigen::internal::padd(s[0], s[1]);
      grad_value[k] += Eigen::internal::predux(s[0]);
    }
  }
}

/// Backward through y = W x + b with CSR/CSC weights, for the batch in tiles:
/// grad_value[k] += sum_b g(o, b) x(i, b) for the active weights k = (o, i) only; when grad_bias
/// is not null, grad_bias[o] += sum_b g(o, b); when grad_x is not null, grad_x = W^T g.
/// `x_tile` is scratch of in * batch_tile<Scalar> scalars, `g_tile` of out * batch_tile<Scalar>.
template <typename Scalar>
void csr_backward(const CsrWeights<Scalar>& w, const Scalar* x, Eigen::Index ld_x, const Scalar* g,
                  Eigen::Index ld_g, Eigen::Index in, Eigen::Index out, Eigen::Index batch, Scalar* grad_value,
                  Scalar* grad_bias, Scalar* grad_x, Eigen::Index ld_gx, Scalar* x_tile, Scalar* g_tile) {
  constexpr Eigen::Index T = batch_tile<Scalar>;
  for (Eigen::Index b0 = 0; b0 < batch; b0 += T) {
    const Eigen::Index width = b0 + T <= batch ? T : batch - b0;
    load_transposed_tile<Scalar>(x + b0 * ld_x, ld_x, in, width, x_tile);
    load_transposed_tile<Scalar>(g + b0 * ld_g, ld_g, out, width, g_tile);
    dispatch_packets<Scalar>(width, [&](auto r) {
      constexpr int R = decltype(r)::value;
      active_weight_gradients<Scalar, R>(w, out, g_tile, x_tile, grad_value, grad_bias);
      if (grad_x != nullptr)
        sparse_times_tile<Scalar, R>(w.col_start.data(), w.row.data(), w.col_value.data(), nullptr, in, g_tile, width,
                                     grad_x + b0 * ld_gx, ld_gx);
    });
  }
}

/// grad_x = W^T g only (no weight or bias gradient): the CSC of the active weights times g, in
/// tiles. `g_tile` is scratch of out * batch_tile<Scalar> scalars.
template <typename Scalar>
void csr_backward_input(const CsrWeights<Scalar>& w, const Scalar* g, Eigen::Index ld_g, Eigen::Index in, Eigen::Index out,
                        Eigen::Index batch, Scalar* grad_x, Eigen::Index ld_gx, Scalar* g_tile) {
  constexpr Eigen::Index T = batch_tile<Scalar>;
  for (Eigen::Index b0 = 0; b0 < batch; b0 += T) {
    const Eigen::Index width = b0 + T <= batch ? T : batch - b0;
    load_transposed_tile<Scalar>(g + b0 * ld_g, ld_g, out, width, g_tile);
    dispatch_packets<Scalar>(width, [&](auto r) {
      sparse_times_tile<Scalar, decltype(r)::value>(w.col_start.data(), w.row.data(), w.col_value.data(), nullptr, in, g_tile,
                                                    width, grad_x + b0 * ld_gx, ld_gx);
    });
  }
}

}  // namespace detail
}  // namespace deepstruct

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
