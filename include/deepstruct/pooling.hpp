// SPDX-License-Identifier: MIT
#pragma once

/// \file pooling.hpp
/// Pooling on images (image.hpp's layout), with PyTorch's semantics (floor mode): MaxPool2d
/// (padding reads as -infinity; the first largest value of a window takes the gradient, a NaN
/// wins and of several NaNs the last, as in PyTorch), AvgPool2d (count_include_pad: the divisor is the window size, padding
/// included), AdaptiveAvgPool2d (window i of n along an axis of size L covers
/// [floor(i L / n), ceil((i + 1) L / n)), so (1, 1) is the global average). They have no
/// parameters and keep nothing: backward takes the input forward saw. An output (y, grad_x) must
/// not share memory with an input (shape_error).

#include <Eigen/Core>
#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "deepstruct/detail/alias.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/image.hpp"

namespace deepstruct {

/// The window of a pooling layer; pairs are (height, width). stride 0 means "the kernel size"
/// (PyTorch's default).
struct Pool2dOptions {
  std::array<Eigen::Index, 2> kernel{2, 2};
  std::array<Eigen::Index, 2> stride{0, 0};
  std::array<Eigen::Index, 2> padding{0, 0};

  static Pool2dOptions square(Eigen::Index k, Eigen::Index stride = 0, Eigen::Index padding = 0) {
    Pool2dOptions o;
    o.kernel = {k, k};
    o.stride = {stride, stride};
    o.padding = {padding, padding};
    return o;
  }
};

namespace detail {

/// Checks a pooling window's options (PyTorch's rules): value_error for a kernel or stride < 1, a
/// negative padding or one above half the kernel.
inline void check_pool_options(const Pool2dOptions& o, const char* who) {
  for (int a = 0; a < 2; ++a) {
    const Eigen::Index k = o.kernel[a], s = o.stride[a] == 0 ? k : o.stride[a], p = o.padding[a];
    if (k < 1 || s < 1 || p < 0)
      DEEPSTRUCT_THROW(value_error, std::string(who) + ": expected kernel and stride >= 1 and padding >= 0, found " + std::to_string(k) +
                                        ", " + std::to_string(s) + ", " + std::to_string(p));
    if (p > k / 2)  // 2p > k, without overflowing
      DEEPSTRUCT_THROW(value_error, std::string(who) + ": expected padding at most half the kernel (PyTorch's rule), found padding " +
                                        std::to_string(p) + " for kernel " + std::to_string(k));
  }
}

/// Checks a pooling window for images of shape `in` and returns the output shape.
inline ImageShape pool_output_shape(const Pool2dOptions& o, const ImageShape& in, const char* who) {
  check_image_shape(in, who);
  check_pool_options(o, who);
  const Eigen::Index size[2] = {in.height, in.width};
  Eigen::Index out[2];
  for (int a = 0; a < 2; ++a) {
    const Eigen::Index k = o.kernel[a], s = o.stride[a] == 0 ? k : o.stride[a], p = o.padding[a];
    const Eigen::Index uncovered = k - 2 * p;  // >= 0: what the padding leaves of the kernel
    if (size[a] < uncovered)
      DEEPSTRUCT_THROW(shape_error, std::string(who) + ": expected an input whose padded size holds the kernel " + std::to_string(k) +
                                        ", found " + to_string(in));
    out[a] = (size[a] - uncovered) / s + 1;
  }
  return ImageShape{in.channels, out[0], out[1]};
}

}  // namespace detail

/// torch.nn.MaxPool2d(kernel, stride, padding) (dilation 1, floor mode).
class MaxPool2d {
 public:
  explicit MaxPool2d(const Pool2dOptions& options = {}) : o_(options) { detail::check_pool_options(o_, "MaxPool2d"); }
  ImageShape output_shape(const ImageShape& in) const { return detail::pool_output_shape(o_, in, "MaxPool2d"); }

  template <typename DX, typename Scalar>
  void forward(const Eigen::MatrixBase<DX>& x, const ImageShape& in, Eigen::Matrix<Scalar, -1, -1>& y) const {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "MaxPool2d::forward");
    detail::check_no_alias(x, y, "MaxPool2d::forward", "y", "x");
    y.resize(out.size(), x.cols());
    for_each_window(in, out, x.cols(), [&](Eigen::Index b, Eigen::Index c, Eigen::Index at, Eigen::Index y0, Eigen::Index y1, Eigen::Index x0,
                                           Eigen::Index x1) {
      y(at, b) = x(argmax(x, b, c, in, y0, y1, x0, x1), b);
    });
  }
  /// grad_x (in.size() x batch): each output's gradient goes to the input its window took.
  template <typename DX, typename DG, typename Scalar>
  void backward(const Eigen::MatrixBase<DX>& x, const ImageShape& in, const Eigen::MatrixBase<DG>& grad_y,
                Eigen::Matrix<Scalar, -1, -1>& grad_x) const {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "MaxPool2d::backward");
    detail::check_images(grad_y, out, "MaxPool2d::backward (grad_y)");
    detail::check_no_alias(x, grad_x, "MaxPool2d::backward", "grad_x", "x");
    detail::check_no_alias(grad_y, grad_x, "MaxPool2d::backward", "grad_x", "grad_y");
    grad_x.setZero(in.size(), x.cols());
    for_each_window(in, out, x.cols(), [&](Eigen::Index b, Eigen::Index c, Eigen::Index at, Eigen::Index y0, Eigen::Index y1, Eigen::Index x0,
                                           Eigen::Index x1) {
      grad_x(argmax(x, b, c, in, y0, y1, x0, x1), b) += grad_y(at, b);
    });
  }

 private:
  /// fn(b, c, output row index, window rows [y0, y1), cols [x0, x1)) clipped to the input.
  template <typename Fn>
  void for_each_window(const ImageShape& in, const ImageShape& out, Eigen::Index batch, Fn&& fn) const {
    const Eigen::Index sh = o_.stride[0] == 0 ? o_.kernel[0] : o_.stride[0], sw = o_.stride[1] == 0 ? o_.kernel[1] : o_.stride[1];
    for (Eigen::Index b = 0; b < batch; ++b)
      for (Eigen::Index c = 0; c < in.channels; ++c)
        for (Eigen::Index oy = 0; oy < out.height; ++oy)
          for (Eigen::Index ox = 0; ox < out.width; ++ox) {
            const Eigen::Index ys = oy * sh - o_.padding[0], xs = ox * sw - o_.padding[1];
            fn(b, c, (c * out.height + oy) * out.width + ox, std::max<Eigen::Index>(ys, 0), std::min(ys + o_.kernel[0], in.height),
               std::max<Eigen::Index>(xs, 0), std::min(xs + o_.kernel[1], in.width));
          }
  }
  template <typename X>
  static Eigen::Index argmax(const X& x, Eigen::Index b, Eigen::Index c, const ImageShape& in, Eigen::Index y0, Eigen::Index y1,
                             Eigen::Index x0, Eigen::Index x1) {
    Eigen::Index best = (c * in.height + y0) * in.width + x0;
    for (Eigen::Index iy = y0; iy < y1; ++iy)
      for (Eigen::Index ix = x0; ix < x1; ++ix) {
        const Eigen::Index at = (c * in.height + iy) * in.width + ix;
        const auto v = x(at, b);
        // PyTorch's rule (max_pool2d's CPU and CUDA kernels): a larger value or any NaN takes
        // over, so the first of tied values and the last NaN of a window take the gradient.
        if (v > x(best, b) || std::isnan(v)) best = at;
      }
    return best;
  }
  Pool2dOptions o_;
};

/// torch.nn.AvgPool2d(kernel, stride, padding) (floor mode, count_include_pad).
class AvgPool2d {
 public:
  explicit AvgPool2d(const Pool2dOptions& options = {}) : o_(options) { detail::check_pool_options(o_, "AvgPool2d"); }
  ImageShape output_shape(const ImageShape& in) const { return detail::pool_output_shape(o_, in, "AvgPool2d"); }

  template <typename DX, typename Scalar>
  void forward(const Eigen::MatrixBase<DX>& x, const ImageShape& in, Eigen::Matrix<Scalar, -1, -1>& y) const {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "AvgPool2d::forward");
    detail::check_no_alias(x, y, "AvgPool2d::forward", "y", "x");
    y.setZero(out.size(), x.cols());
    visit(in, out, x.cols(), [&](Eigen::Index b, Eigen::Index at_in, Eigen::Index at_out, Scalar scale) { y(at_out, b) += scale * x(at_in, b); });
  }
  template <typename DX, typename DG, typename Scalar>
  void backward(const Eigen::MatrixBase<DX>& x, const ImageShape& in, const Eigen::MatrixBase<DG>& grad_y,
                Eigen::Matrix<Scalar, -1, -1>& grad_x) const {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "AvgPool2d::backward");
    detail::check_images(grad_y, out, "AvgPool2d::backward (grad_y)");
    detail::check_no_alias(x, grad_x, "AvgPool2d::backward", "grad_x", "x");
    detail::check_no_alias(grad_y, grad_x, "AvgPool2d::backward", "grad_x", "grad_y");
    grad_x.setZero(in.size(), x.cols());
    visit(in, out, x.cols(),
          [&](Eigen::Index b, Eigen::Index at_in, Eigen::Index at_out, Scalar scale) { grad_x(at_in, b) += scale * grad_y(at_out, b); });
  }

 private:
  template <typename Fn>
  void visit(const ImageShape& in, const ImageShape& out, Eigen::Index batch, Fn&& fn) const {
    const Eigen::Index sh = o_.stride[0] == 0 ? o_.kernel[0] : o_.stride[0], sw = o_.stride[1] == 0 ? o_.kernel[1] : o_.stride[1];
    const double scale = 1.0 / (static_cast<double>(o_.kernel[0]) * static_cast<double>(o_.kernel[1]));  // no Index overflow
    for (Eigen::Index b = 0; b < batch; ++b)
      for (Eigen::Index c = 0; c < in.channels; ++c)
        for (Eigen::Index oy = 0; oy < out.height; ++oy)
          for (Eigen::Index ox = 0; ox < out.width; ++ox) {
            const Eigen::Index ys = oy * sh - o_.padding[0], xs = ox * sw - o_.padding[1];
            const Eigen::Index at_out = (c * out.height + oy) * out.width + ox;
            for (Eigen::Index iy = std::max<Eigen::Index>(ys, 0); iy < std::min(ys + o_.kernel[0], in.height); ++iy)
              for (Eigen::Index ix = std::max<Eigen::Index>(xs, 0); ix < std::min(xs + o_.kernel[1], in.width); ++ix)
                fn(b, (c * in.height + iy) * in.width + ix, at_out, scale);
          }
  }
  Pool2dOptions o_;
};

/// torch.nn.AdaptiveAvgPool2d((height, width)); (1, 1) averages each channel.
class AdaptiveAvgPool2d {
 public:
  explicit AdaptiveAvgPool2d(Eigen::Index height = 1, Eigen::Index width = 1) : h_(height), w_(width) {
    if (height < 1 || width < 1)
      DEEPSTRUCT_THROW(value_error, "AdaptiveAvgPool2d: expected an output size >= 1, found " + std::to_string(height) + "x" + std::to_string(width));
  }
  ImageShape output_shape(const ImageShape& in) const {
    detail::check_image_shape(in, "AdaptiveAvgPool2d");
    const ImageShape out{in.channels, h_, w_};
    detail::check_image_shape(out, "AdaptiveAvgPool2d (output)");  // channels * height * width must fit
    return out;
  }

  template <typename DX, typename Scalar>
  void forward(const Eigen::MatrixBase<DX>& x, const ImageShape& in, Eigen::Matrix<Scalar, -1, -1>& y) const {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "AdaptiveAvgPool2d::forward");
    detail::check_no_alias(x, y, "AdaptiveAvgPool2d::forward", "y", "x");
    y.setZero(out.size(), x.cols());
    visit(in, x.cols(), [&](Eigen::Index b, Eigen::Index at_in, Eigen::Index at_out, Scalar scale) { y(at_out, b) += scale * x(at_in, b); });
  }
  template <typename DX, typename DG, typename Scalar>
  void backward(const Eigen::MatrixBase<DX>& x, const ImageShape& in, const Eigen::MatrixBase<DG>& grad_y,
                Eigen::Matrix<Scalar, -1, -1>& grad_x) const {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "AdaptiveAvgPool2d::backward");
    detail::check_images(grad_y, out, "AdaptiveAvgPool2d::backward (grad_y)");
    detail::check_no_alias(x, grad_x, "AdaptiveAvgPool2d::backward", "grad_x", "x");
    detail::check_no_alias(grad_y, grad_x, "AdaptiveAvgPool2d::backward", "grad_x", "grad_y");
    grad_x.setZero(in.size(), x.cols());
    visit(in, x.cols(),
          [&](Eigen::Index b, Eigen::Index at_in, Eigen::Index at_out, Scalar scale) { grad_x(at_in, b) += scale * grad_y(at_out, b); });
  }

 private:
  template <typename Fn>
  void visit(const ImageShape& in, Eigen::Index batch, Fn&& fn) const {
    for (Eigen::Index b = 0; b < batch; ++b)
      for (Eigen::Index c = 0; c < in.channels; ++c)
        for (Eigen::Index oy = 0; oy < h_; ++oy)
          for (Eigen::Index ox = 0; ox < w_; ++ox) {
            const Eigen::Index y0 = oy * in.height / h_, y1 = ((oy + 1) * in.height + h_ - 1) / h_;
            const Eigen::Index x0 = ox * in.width / w_, x1 = ((ox + 1) * in.width + w_ - 1) / w_;
            const double scale = 1.0 / static_cast<double>((y1 - y0) * (x1 - x0));
            const Eigen::Index at_out = (c * h_ + oy) * w_ + ox;
            for (Eigen::Index iy = y0; iy < y1; ++iy)
              for (Eigen::Index ix = x0; ix < x1; ++ix) fn(b, (c * in.height + iy) * in.width + ix, at_out, scale);
          }
  }
  Eigen::Index h_, w_;
};

}  // namespace deepstruct
