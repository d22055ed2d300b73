// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/sparse_kernels.hpp
/// Sparse kernels of MaskedLinear: compressed sparse rows (CSR) of the active weights, applied to
/// a batch in tiles. Each tile of the input is transposed into a small buffer so that every
/// feature's batch values are contiguous: then each nonzero weight multiplies a contiguous run of
/// batch values (one fused multiply-add per SIMD lane), as in sparse inference engines
/// (Elsen et al., "Fast Sparse ConvNets"; XNNPACK's SpMM). The tile is sized to stay in L2.

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <vector>

namespace deepstruct {
namespace detail {

/// Batch columns per tile: 256 bytes of a feature's batch values (64 floats, 32 doubles).
template <typename Scalar>
constexpr Eigen::Index batch_tile = static_cast<Eigen::Index>(256 / sizeof(Scalar));

/// The active weights of an out x in matrix, row by row.
template <typename Scalar>
struct CsrWeights {
  std::vector<Eigen::Index> row_start;   ///< out + 1 offsets into col/value
  std::vector<std::int32_t> col;         ///< input feature of each active weight
  std::vector<Eigen::Index> dense_pos;   ///< o + i * out: position in the column-major weight
  std::vector<Scalar> value;             ///< the weight values, refreshed when W changes

  Eigen::Index nnz() const { return static_cast<Eigen::Index>(col.size()); }

  /// Rebuilds the pattern from a mask (out x in, column-major).
  template <typename MaskType>
  void build_pattern(const MaskType& mask) {
    const Eigen::Index out = mask.rows(), in = mask.cols();
    row_start.assign(static_cast<std::size_t>(out + 1), 0);
    for (Eigen::Index i = 0; i < in; ++i)
      for (Eigen::Index o = 0; o < out; ++o)
        if (mask(o, i)) ++row_start[static_cast<std::size_t>(o + 1)];
    for (Eigen::Index o = 0; o < out; ++o)
      row_start[static_cast<std::size_t>(o + 1)] += row_start[static_cast<std::size_t>(o)];
    const auto total = static_cast<std::size_t>(row_start.back());
    col.resize(total);
    dense_pos.resize(total);
    value.resize(total);
    std::vector<Eigen::Index> fill(row_start.begin(), row_start.end() - 1);
    // Column-major sweep: inputs arrive in ascending order inside every row.
    for (Eigen::Index i = 0; i < in; ++i)
      for (Eigen::Index o = 0; o < out; ++o)
        if (mask(o, i)) {
          const auto k = static_cast<std::size_t>(fill[static_cast<std::size_t>(o)]++);
          col[k] = static_cast<std::int32_t>(i);
          dense_pos[k] = o + i * out;
        }
  }

  /// Copies the active weight values out of the dense column-major weight.
  void gather_values(const Scalar* weight) {
    const std::size_t n = col.size();
    for (std::size_t k = 0; k < n; ++k) value[k] = weight[dense_pos[k]];
  }
};

/// Copies columns [b0, b0 + width) of a features x batch column-major matrix (leading dimension
/// ld) into tile (features x T, row-major), zero-padding columns width..T-1.
template <typename Scalar, Eigen::Index T>
void load_transposed_tile(const Scalar* x, Eigen::Index ld, Eigen::Index features, Eigen::Index b0,
                          Eigen::Index width, Scalar* tile) {
  constexpr Eigen::Index block = 8;
  for (Eigen::Index f0 = 0; f0 < features; f0 += block) {
    const Eigen::Index f1 = f0 + block < features ? f0 + block : features;
    for (Eigen::Index j = 0; j < width; ++j) {
      const Scalar* column = x + (b0 + j) * ld;
      for (Eigen::Index f = f0; f < f1; ++f) tile[f * T + j] = column[f];
    }
    for (Eigen::Index f = f0; f < f1; ++f)
      for (Eigen::Index j = width; j < T; ++j) tile[f * T + j] = Scalar(0);
  }
}

/// Adds tile (features x T, row-major) into columns [b0, b0 + width) of a column-major matrix.
template <typename Scalar, Eigen::Index T>
void store_transposed_tile(const Scalar* tile, Eigen::Index features, Eigen::Index b0, Eigen::Index width,
                           Scalar* y, Eigen::Index ld) {
  constexpr Eigen::Index block = 8;
  for (Eigen::Index f0 = 0; f0 < features; f0 += block) {
    const Eigen::Index f1 = f0 + block < features ? f0 + block : features;
    for (Eigen::Index j = 0; j < width; ++j) {
      Scalar* column = y + (b0 + j) * ld;
      for (Eigen::Index f = f0; f < f1; ++f) column[f] = tile[f * T + j];
    }
  }
}

/// y = W x + b for a features x batch x (column-major, leading dimension ld_x), CSR weights.
/// `bias` may be null. `x_tile` is scratch of at least in * T scalars.
template <typename Scalar>
void csr_forward(const CsrWeights<Scalar>& w, const Scalar* bias, const Scalar* x, Eigen::Index ld_x,
                 Eigen::Index in, Eigen::Index out, Eigen::Index batch, Scalar* y, Eigen::Index ld_y,
                 Scalar* x_tile) {
  constexpr Eigen::Index T = batch_tile<Scalar>;
  using Run = Eigen::Array<Scalar, T, 1>;
  using ConstRunMap = Eigen::Map<const Run>;
  Run acc;
  for (Eigen::Index b0 = 0; b0 < batch; b0 += T) {
    const Eigen::Index width = b0 + T <= batch ? T : batch - b0;
    load_transposed_tile<Scalar, T>(x, ld_x, in, b0, width, x_tile);
    for (Eigen::Index o = 0; o < out; ++o) {
      acc.setConstant(bias != nullptr ? bias[o] : Scalar(0));
      const auto k1 = static_cast<std::size_t>(w.row_start[static_cast<std::size_t>(o + 1)]);
      for (auto k = static_cast<std::size_t>(w.row_start[static_cast<std::size_t>(o)]); k < k1; ++k)
        acc += w.value[k] * ConstRunMap(x_tile + static_cast<Eigen::Index>(w.col[k]) * T);
      Scalar* yo = y + o + b0 * ld_y;
      for (Eigen::Index j = 0; j < width; ++j) yo[j * ld_y] = acc[j];
    }
  }
}

/// Backward through y = W x + b with CSR weights, for the batch in tiles:
/// grad_value[k] += sum_b g(o, b) x(i, b) for the active weights only, and, when grad_x is not
/// null, grad_x = W^T g. `x_tile` and `gx_tile` are scratch of in * T scalars each.
template <typename Scalar>
void csr_backward(const CsrWeights<Scalar>& w, const Scalar* x, Eigen::Index ld_x, const Scalar* g,
                  Eigen::Index ld_g, Eigen::Index in, Eigen::Index out, Eigen::Index batch,
                  Scalar* grad_value, Scalar* grad_x, Eigen::Index ld_gx, Scalar* x_tile, Scalar* gx_tile) {
  constexpr Eigen::Index T = batch_tile<Scalar>;
  using Run = Eigen::Array<Scalar, T, 1>;
  using RunMap = Eigen::Map<Run>;
  using ConstRunMap = Eigen::Map<const Run>;
  Run go;
  for (Eigen::Index b0 = 0; b0 < batch; b0 += T) {
    const Eigen::Index width = b0 + T <= batch ? T : batch - b0;
    load_transposed_tile<Scalar, T>(x, ld_x, in, b0, width, x_tile);
    if (grad_x != nullptr) std::fill(gx_tile, gx_tile + in * T, Scalar(0));
    for (Eigen::Index o = 0; o < out; ++o) {
      const Scalar* go_src = g + o + b0 * ld_g;
      for (Eigen::Index j = 0; j < width; ++j) go[j] = go_src[j * ld_g];
      for (Eigen::Index j = width; j < T; ++j) go[j] = Scalar(0);
      const auto k1 = static_cast<std::size_t>(w.row_start[static_cast<std::size_t>(o + 1)]);
      auto k = static_cast<std::size_t>(w.row_start[static_cast<std::size_t>(o)]);
      if (grad_x != nullptr) {
        for (; k < k1; ++k) {
          const Eigen::Index i = w.col[k];
          grad_value[k] += (go * ConstRunMap(x_tile + i * T)).sum();
          RunMap(gx_tile + i * T) += w.value[k] * go;
        }
      } else {
        for (; k < k1; ++k) grad_value[k] += (go * ConstRunMap(x_tile + static_cast<Eigen::Index>(w.col[k]) * T)).sum();
      }
    }
    if (grad_x != nullptr) store_transposed_tile<Scalar, T>(gx_tile, in, b0, width, grad_x, ld_gx);
  }
}

}  // namespace detail
}  // namespace deepstruct
