// SPDX-License-Identifier: MIT
#pragma once

/// \file scalable.hpp
/// ScalableDeepFFN: a family of MaskedDeepFFNs whose hidden layer sizes follow fixed proportions,
/// instantiated at any scale (deepstruct's ScalableDeepFFN). The graph side's counterpart for
/// DAGs is ScalableDAN in <deepstruct/graph/scalable.hpp>.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "deepstruct/detail/text_output.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/masked_deep_ffn.hpp"

namespace deepstruct {

class ScalableDeepFFN {
 public:
  /// Proportions of the hidden layers: positive, summing to 1 (within 1e-3, as deepstruct).
  /// They are rounded to `precision` decimals before use (deepstruct's default: 2); precision is
  /// 1..308 (10^precision must be a finite double: numpy's round gives NaN beyond, and
  /// deepstruct's draw then fails).
  explicit ScalableDeepFFN(std::vector<double> proportions, int precision = 2)
      : proportions_(std::move(proportions)), precision_(precision) {
    if (proportions_.empty())
      DEEPSTRUCT_THROW(value_error, "ScalableDeepFFN: expected at least one proportion, found none");
    double sum = 0.0;
    for (std::size_t i = 0; i < proportions_.size(); ++i) {
      if (!(proportions_[i] > 0.0))
        DEEPSTRUCT_THROW(value_error, "ScalableDeepFFN: expected positive proportions, found " +
                                          detail::number_str(proportions_[i]) + " at position " + std::to_string(i));
      sum += proportions_[i];
    }
    if (std::abs(sum - 1.0) >= 1e-3)
      DEEPSTRUCT_THROW(value_error, "ScalableDeepFFN: expected proportions summing to 1, found a sum of " + detail::number_str(sum));
    if (precision < 1 || precision > 308)
      DEEPSTRUCT_THROW(value_error, "ScalableDeepFFN: expected precision in [1, 308] (10^precision a finite double), found " +
                                        std::to_string(precision));
  }

  const std::vector<double>& proportions() const { return proportions_; }

  /// Hidden layer sizes at `scale` total neurons: max(1, floor(scale * p)) for each proportion p
  /// rounded to `precision` decimals, in double arithmetic as deepstruct's draw() (so 100 x 0.29
  /// = 28.999999999999996 gives 28, as there). A layer never vanishes. Throws value_error for
  /// scale < 1, and for a size that does not fit in an Eigen::Index (2^63 or more: a scale near
  /// the Index maximum).
  std::vector<Eigen::Index> draw(Eigen::Index scale) const {
    if (scale <= 0) DEEPSTRUCT_THROW(value_error, "ScalableDeepFFN::draw: expected scale >= 1, found " + std::to_string(scale));
    const double factor = std::pow(10.0, precision_);
    std::vector<Eigen::Index> sizes;
    for (std::size_t i = 0; i < proportions_.size(); ++i) {
      const double rounded = std::nearbyint(proportions_[i] * factor) / factor;
      const double size = std::floor(static_cast<double>(scale) * rounded);
      // 2^63 and above would not convert (undefined; x86 gives INT64_MIN, so size 1).
      if (!(size < 9223372036854775808.0))
        DEEPSTRUCT_THROW(value_error, "ScalableDeepFFN::draw: expected layer sizes below 2^63, found " + detail::c_number("%.6g", size) +
                                          " for proportion " + std::to_string(i) + " at scale " + std::to_string(scale));
      sizes.push_back(std::max<Eigen::Index>(1, static_cast<Eigen::Index>(size)));
    }
    return sizes;
  }

  /// A MaskedDeepFFN inputs -> draw(scale) -> outputs.
  template <typename Scalar>
  MaskedDeepFFN<Scalar> build(Eigen::Index inputs, Eigen::Index outputs, Eigen::Index scale,
                              const FFNOptions& options = {}) const {
    return MaskedDeepFFN<Scalar>(inputs, outputs, draw(scale), options);
  }

 private:
  std::vector<double> proportions_;
  int precision_;
};

}  // namespace deepstruct
