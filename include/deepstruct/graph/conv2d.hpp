// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/conv2d.hpp
/// The neuron graph of a 2-d convolution with PyTorch's semantics (torch.nn.Conv2d): an edge from
/// every input value a kernel tap reads to the output value it contributes to, i.e. the nonzero
/// pattern of the layer's Jacobian for nonzero weights. Stride, zero padding, dilation and groups
/// as in PyTorch; inputs need not be square.

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "deepstruct/errors.hpp"
#include "deepstruct/graph/dag.hpp"

namespace deepstruct {

/// The shape of a Conv2d layer and its input. Pairs are (height, width), as PyTorch's tuples.
struct Conv2dGeometry {
  std::int64_t in_channels = 1;
  std::int64_t out_channels = 1;
  std::array<std::int64_t, 2> kernel{1, 1};
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> padding{0, 0};  ///< zeros added on both sides
  std::array<std::int64_t, 2> dilation{1, 1};
  std::int64_t groups = 1;
  std::array<std::int64_t, 2> input{1, 1};  ///< H x W of one input channel
};

namespace detail {

inline void check_conv2d(const Conv2dGeometry& c) {
  auto positive = [](const char* what, std::int64_t v) {
    if (v <= 0) DEEPSTRUCT_THROW(value_error, std::string("conv2d: expected a positive ") + what + ", found " + std::to_string(v));
  };
  positive("in_channels", c.in_channels);
  positive("out_channels", c.out_channels);
  positive("groups", c.groups);
  for (int d = 0; d < 2; ++d) {
    const std::string axis = d == 0 ? " height" : " width";
    positive(("kernel" + axis).c_str(), c.kernel[d]);
    positive(("stride" + axis).c_str(), c.stride[d]);
    positive(("dilation" + axis).c_str(), c.dilation[d]);
    positive(("input" + axis).c_str(), c.input[d]);
    if (c.padding[d] < 0)
      DEEPSTRUCT_THROW(value_error, "conv2d: expected a non-negative padding" + axis + ", found " + std::to_string(c.padding[d]));
  }
  if (c.in_channels % c.groups != 0 || c.out_channels % c.groups != 0)
    DEEPSTRUCT_THROW(value_error, "conv2d: expected in_channels and out_channels divisible by groups = " + std::to_string(c.groups) +
                                      ", found " + std::to_string(c.in_channels) + " and " + std::to_string(c.out_channels));
}

}  // namespace detail

namespace detail {

/// a * b, throwing value_error naming `what` when it overflows int64 (both are non-negative).
inline std::int64_t conv2d_mul(std::int64_t a, std::int64_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<std::int64_t>::max() / a)
    DEEPSTRUCT_THROW(value_error, std::string("conv2d: ") + what + " overflows 64 bits (" + std::to_string(a) + " * " + std::to_string(b) + ")");
  return a * b;
}

inline std::int64_t conv2d_add(std::int64_t a, std::int64_t b, const char* what) {
  if (b > std::numeric_limits<std::int64_t>::max() - a)
    DEEPSTRUCT_THROW(value_error, std::string("conv2d: ") + what + " overflows 64 bits (" + std::to_string(a) + " + " + std::to_string(b) + ")");
  return a + b;
}

/// Kernel taps of one axis that read inside the input, summed over the outputs: the number of
/// pairs (o, k) with 0 <= o*s - p + k*d < H. O(outputs).
inline double conv2d_taps_inside(std::int64_t H, std::int64_t K, std::int64_t s, std::int64_t p, std::int64_t d, std::int64_t outputs) {
  double taps = 0.0;
  for (std::int64_t o = 0; o < outputs; ++o) {
    const std::int64_t start = o * s - p;  // input coordinate of tap 0 (fits: o*s <= H + 2p)
    // k in [ceil(-start / d), floor((H - 1 - start) / d)] intersected with [0, K - 1].
    const std::int64_t lo = start >= 0 ? 0 : (-start) / d + ((-start) % d != 0 ? 1 : 0);
    const std::int64_t hi_raw = H - 1 - start;
    if (hi_raw < 0) continue;
    const std::int64_t hi = std::min(K - 1, hi_raw / d);
    if (hi >= lo) taps += static_cast<double>(hi - lo + 1);
  }
  return taps;
}

}  // namespace detail

namespace detail {
inline Dag conv2d_structure(const Conv2dGeometry& c, const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>* mask);
}  // namespace detail

/// Output (height, width): floor((H + 2p - d(k-1) - 1) / s) + 1 per axis, PyTorch's formula.
/// Throws value_error for non-positive sizes, strides, kernels, dilations or channels, negative
/// padding, channels not divisible by groups, a kernel larger than the padded input (empty
/// output), or sizes whose arithmetic overflows 64 bits.
inline std::array<std::int64_t, 2> conv2d_output_size(const Conv2dGeometry& c) {
  detail::check_conv2d(c);
  std::array<std::int64_t, 2> out{};
  for (int d = 0; d < 2; ++d) {
    const std::int64_t padded = detail::conv2d_add(c.input[d], detail::conv2d_mul(2, c.padding[d], "the padding"), "the padded input");
    const std::int64_t reach = detail::conv2d_add(detail::conv2d_mul(c.dilation[d], c.kernel[d] - 1, "the dilated kernel"), 1, "the dilated kernel");
    if (reach > padded)
      DEEPSTRUCT_THROW(value_error, std::string("conv2d: the output is empty: the dilated kernel ") + (d == 0 ? "height " : "width ") +
                                        std::to_string(reach) + " exceeds the padded input " + std::to_string(padded));
    out[d] = (padded - reach) / c.stride[d] + 1;
  }
  return out;
}

/// The neuron DAG of the convolution: inputs are vertices 0..Cin*H*W-1 in (channel, row, col)
/// order, outputs follow in (channel, row, col) order of the output. Output channel oc of group
/// g = oc / (Cout/groups) reads input channels g*(Cin/groups)..; its tap (ky, kx) at output (oy, ox)
/// reads input row oy*s_h - p_h + ky*d_h and col ox*s_w - p_w + kx*d_w when that lies inside the
/// input (outside it reads padding: no edge). Edge weights are 1; stored layers are 0 for the
/// inputs and 1 for the outputs. Throws as conv2d_output_size, and value_error before anything is
/// allocated when the graph has more than max_dag_vertices vertices or its edges cannot fit in
/// memory (the message names the sizes). O(V + E), E <= Cout*Ho*Wo*(Cin/groups)*kh*kw.
inline Dag conv2d_structure(const Conv2dGeometry& c) { return detail::conv2d_structure(c, nullptr); }

/// The same with a mask over the weight, out_channels x (in_channels/groups * kh * kw) as
/// MaskedConv2d keeps it (row oc, column (ic_in_group * kh + ky) * kw + kx): an edge only where the
/// weight that connects the two values is active. value_error for a mask of another shape.
inline Dag conv2d_structure(const Conv2dGeometry& c, const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>& mask) {
  detail::check_conv2d(c);
  const std::int64_t cols =
      detail::conv2d_mul(detail::conv2d_mul(c.in_channels / c.groups, c.kernel[0], "the kernel"), c.kernel[1], "the kernel");
  if (mask.rows() != c.out_channels || mask.cols() != cols)
    DEEPSTRUCT_THROW(value_error, "conv2d_structure: expected a mask of " + std::to_string(c.out_channels) + " x " + std::to_string(cols) +
                                      " (out_channels x in_channels/groups*kh*kw), found " + std::to_string(mask.rows()) + " x " +
                                      std::to_string(mask.cols()));
  return detail::conv2d_structure(c, &mask);
}

namespace detail {

inline Dag conv2d_structure(const Conv2dGeometry& c, const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>* mask) {
  const auto out_size = conv2d_output_size(c);
  const std::int64_t H = c.input[0], W = c.input[1], Ho = out_size[0], Wo = out_size[1];
  const std::int64_t num_inputs = detail::conv2d_mul(detail::conv2d_mul(c.in_channels, H, "the inputs"), W, "the inputs");
  const std::int64_t num_outputs = detail::conv2d_mul(detail::conv2d_mul(c.out_channels, Ho, "the outputs"), Wo, "the outputs");
  const std::int64_t num_vertices_ = detail::conv2d_add(num_inputs, num_outputs, "the vertices");
  if (static_cast<std::uint64_t>(num_vertices_) > max_dag_vertices)
    DEEPSTRUCT_THROW(value_error, "conv2d_structure: expected at most 2^31 - 1 = " + std::to_string(max_dag_vertices) + " vertices, found " +
                                      std::to_string(num_inputs) + " inputs + " + std::to_string(num_outputs) + " outputs");
  // The exact edge count (taps inside the input, per axis), in O(Ho + Wo): Ho, Wo < 2^31 now.
  const double edges = static_cast<double>(c.out_channels) * static_cast<double>(c.in_channels / c.groups) *
                       detail::conv2d_taps_inside(H, c.kernel[0], c.stride[0], c.padding[0], c.dilation[0], Ho) *
                       detail::conv2d_taps_inside(W, c.kernel[1], c.stride[1], c.padding[1], c.dilation[1], Wo);
  detail::check_graph_size("conv2d_structure", static_cast<std::size_t>(num_vertices_), edges);
  Dag g(static_cast<std::size_t>(num_vertices_));
  for (std::size_t v = static_cast<std::size_t>(num_inputs); v < num_vertices(g); ++v) g[v].layer = 1;
  const std::int64_t in_per_group = c.in_channels / c.groups, out_per_group = c.out_channels / c.groups;
  for (std::int64_t oc = 0; oc < c.out_channels; ++oc) {
    const std::int64_t first_ic = (oc / out_per_group) * in_per_group;
    for (std::int64_t oy = 0; oy < Ho; ++oy)
      for (std::int64_t ox = 0; ox < Wo; ++ox) {
        const auto out_id = static_cast<std::size_t>(num_inputs + (oc * Ho + oy) * Wo + ox);
        for (std::int64_t ic = first_ic; ic < first_ic + in_per_group; ++ic)
          for (std::int64_t ky = 0; ky < c.kernel[0]; ++ky) {
            const std::int64_t iy = oy * c.stride[0] - c.padding[0] + ky * c.dilation[0];
            if (iy < 0 || iy >= H) continue;
            for (std::int64_t kx = 0; kx < c.kernel[1]; ++kx) {
              const std::int64_t ix = ox * c.stride[1] - c.padding[1] + kx * c.dilation[1];
              if (ix < 0 || ix >= W) continue;
              if (mask != nullptr && !(*mask)(oc, ((ic - first_ic) * c.kernel[0] + ky) * c.kernel[1] + kx)) continue;
              add_edge(static_cast<std::size_t>((ic * H + iy) * W + ix), out_id, g);
            }
          }
      }
  }
  return g;
}

}  // namespace detail

}  // namespace deepstruct
