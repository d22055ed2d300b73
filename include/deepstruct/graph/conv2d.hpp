// SPDX-License-Identifier: MIT
#pragma once

/// \file graph/conv2d.hpp
/// The neuron graph of a 2-d convolution with PyTorch's semantics (torch.nn.Conv2d): an edge from
/// every input value a kernel tap reads to the output value it contributes to, i.e. the nonzero
/// pattern of the layer's Jacobian for nonzero weights. Stride, zero padding, dilation and groups
/// as in PyTorch; inputs need not be square.

#include <array>
#include <cstddef>
#include <cstdint>
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

/// Output (height, width): floor((H + 2p - d(k-1) - 1) / s) + 1 per axis, PyTorch's formula.
/// Throws value_error for non-positive sizes, strides, kernels, dilations or channels, negative
/// padding, channels not divisible by groups, or a kernel larger than the padded input (empty output).
inline std::array<std::int64_t, 2> conv2d_output_size(const Conv2dGeometry& c) {
  detail::check_conv2d(c);
  std::array<std::int64_t, 2> out{};
  for (int d = 0; d < 2; ++d) {
    const std::int64_t span = c.input[d] + 2 * c.padding[d] - c.dilation[d] * (c.kernel[d] - 1) - 1;
    if (span < 0)
      DEEPSTRUCT_THROW(value_error, std::string("conv2d: the output is empty: the dilated kernel ") + (d == 0 ? "height " : "width ") +
                                        std::to_string(c.dilation[d] * (c.kernel[d] - 1) + 1) + " exceeds the padded input " +
                                        std::to_string(c.input[d] + 2 * c.padding[d]));
    out[d] = span / c.stride[d] + 1;
  }
  return out;
}

/// The neuron DAG of the convolution: inputs are vertices 0..Cin*H*W-1 in (channel, row, col)
/// order, outputs follow in (channel, row, col) order of the output. Output channel oc of group
/// g = oc / (Cout/groups) reads input channels g*(Cin/groups)..; its tap (ky, kx) at output (oy, ox)
/// reads input row oy*s_h - p_h + ky*d_h and col ox*s_w - p_w + kx*d_w when that lies inside the
/// input (outside it reads padding: no edge). Edge weights are 1; stored layers are 0 for the
/// inputs and 1 for the outputs. Throws as conv2d_output_size.
/// O(V + E), E <= Cout*Ho*Wo*(Cin/groups)*kh*kw.
inline Dag conv2d_structure(const Conv2dGeometry& c) {
  const auto out_size = conv2d_output_size(c);
  const std::int64_t H = c.input[0], W = c.input[1], Ho = out_size[0], Wo = out_size[1];
  const std::int64_t num_inputs = c.in_channels * H * W;
  Dag g(static_cast<std::size_t>(num_inputs + c.out_channels * Ho * Wo));
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
              add_edge(static_cast<std::size_t>((ic * H + iy) * W + ix), out_id, g);
            }
          }
      }
  }
  return g;
}

}  // namespace deepstruct
