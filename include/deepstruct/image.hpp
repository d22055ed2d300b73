// SPDX-License-Identifier: MIT
#pragma once

/// \file image.hpp
/// Images in the library's convention: a batch is a (channels * height * width) x batch
/// column-major matrix, one sample per column, each sample's values in PyTorch's (channel, row,
/// column) order - value (c, h, w) of sample b at row (c * H + h) * W + w of column b. That is the
/// memory of a contiguous PyTorch tensor [batch][channel][row][col], and a flattened image is what
/// MaskedDeepFFN and MaskedDeepDAN take. One sample is also a column-major (H * W) x C matrix:
/// column c is channel c's plane, row by row.
///
/// ImageShape names (channels, height, width); the helpers here check shapes, zero-pad images at
/// the bottom and right and concatenate them along channels (deepstruct's DeepCellDAN).

#include <Eigen/Core>
#include <algorithm>
#include <string>
#include <vector>

#include "deepstruct/errors.hpp"

namespace deepstruct {

/// The shape of one image: channels x height x width.
struct ImageShape {
  Eigen::Index channels = 1;
  Eigen::Index height = 1;
  Eigen::Index width = 1;

  /// Values per sample: channels * height * width.
  Eigen::Index size() const { return channels * height * width; }
  /// Values per channel: height * width.
  Eigen::Index plane() const { return height * width; }
  bool operator==(const ImageShape& o) const { return channels == o.channels && height == o.height && width == o.width; }
  bool operator!=(const ImageShape& o) const { return !(*this == o); }
};

/// "3x28x28" (channels x height x width), for messages.
inline std::string to_string(const ImageShape& s) {
  return std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" + std::to_string(s.width);
}

namespace detail {

/// Throws shape_error unless every dimension of `s` is at least 1 and the sample size fits.
inline void check_image_shape(const ImageShape& s, const std::string& where) {
  if (s.channels < 1 || s.height < 1 || s.width < 1)
    DEEPSTRUCT_THROW(shape_error, where + ": expected an image shape with every dimension >= 1, found " + to_string(s));
  const double n = static_cast<double>(s.channels) * static_cast<double>(s.height) * static_cast<double>(s.width);
  if (n > 9.0e18) DEEPSTRUCT_THROW(shape_error, where + ": expected an image of fewer than 2^63 values, found " + to_string(s));
}

/// Throws shape_error unless x has shape.size() rows (one image per column).
template <typename Derived>
void check_images(const Eigen::MatrixBase<Derived>& x, const ImageShape& shape, const std::string& where) {
  if (x.rows() != shape.size())
    DEEPSTRUCT_THROW(shape_error, where + ": expected images of " + to_string(shape) + " = " + std::to_string(shape.size()) +
                                      " rows (channels * height * width x batch, one image per column), found " +
                                      std::to_string(x.rows()) + "x" + std::to_string(x.cols()));
}

}  // namespace detail

/// Copies images of shape `from` into the top-left corner of images of shape `to` (the same
/// channels, height and width at least those of `from`), zeros elsewhere; `out` is resized to
/// to.size() x batch. deepstruct's zero padding at the bottom and right.
template <typename Scalar>
void pad_images(const Eigen::Ref<const Eigen::Matrix<Scalar, -1, -1>>& x, const ImageShape& from, const ImageShape& to,
                Eigen::Matrix<Scalar, -1, -1>& out) {
  detail::check_images(x, from, "pad_images");
  if (to.channels != from.channels || to.height < from.height || to.width < from.width)
    DEEPSTRUCT_THROW(shape_error, "pad_images: expected a target with the same channels and at least the height and width of " +
                                      to_string(from) + ", found " + to_string(to));
  out.setZero(to.size(), x.cols());
  for (Eigen::Index b = 0; b < x.cols(); ++b)
    for (Eigen::Index c = 0; c < from.channels; ++c)
      for (Eigen::Index h = 0; h < from.height; ++h)
        out.col(b).segment((c * to.height + h) * to.width, from.width) = x.col(b).segment((c * from.height + h) * from.width, from.width);
}

}  // namespace deepstruct
