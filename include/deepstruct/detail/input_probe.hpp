// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/input_probe.hpp
/// A cheap check that backward(x, ...) gets the input of the last forward. The models keep the
/// activations of a forward, never its input (no pointer to x); backward reads x again for the
/// first layers' weight gradients. A matrix of the right shape but other values would give
/// gradients that belong to neither input, without a word: forward remembers 16 entries spread
/// over x, and backward compares them bit for bit (NaN included). Not a proof that x is the same,
/// but it catches the usual mistakes (another batch, the logits, a matrix changed in place).

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstring>

namespace deepstruct {
namespace detail {

/// Up to 16 entries of a matrix, spread evenly over its column-major positions.
template <typename Scalar>
struct InputProbe {
  std::array<Scalar, 16> value{};
  Eigen::Index count = 0;

  template <typename Derived>
  static InputProbe of(const Eigen::DenseBase<Derived>& x) {
    InputProbe p;
    const Eigen::Index n = x.size();
    p.count = std::min<Eigen::Index>(16, n);
    for (Eigen::Index i = 0; i < p.count; ++i) {
      const Eigen::Index pos = p.count == 1 ? 0 : i * (n - 1) / (p.count - 1);
      p.value[static_cast<std::size_t>(i)] = x(pos % x.rows(), pos / x.rows());
    }
    return p;
  }

  /// True when x has the probed entries, bit for bit.
  template <typename Derived>
  bool matches(const Eigen::DenseBase<Derived>& x) const {
    const InputProbe now = of(x);
    return now.count == count &&
           std::memcmp(now.value.data(), value.data(), sizeof(Scalar) * static_cast<std::size_t>(count)) == 0;
  }
};

}  // namespace detail
}  // namespace deepstruct
