// SPDX-License-Identifier: MIT
#pragma once

/// \file random.hpp
/// Portable random draws. The standard distributions are implementation-defined (libstdc++ and
/// libc++ give different numbers for the same seed), so deepstruct draws its own from
/// std::mt19937_64, whose output the standard fixes: the same seed gives the same network with
/// every compiler and standard library.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>

#include "deepstruct/errors.hpp"

namespace deepstruct {

/// The generator every seeded function of deepstruct takes.
using Generator = std::mt19937_64;

namespace random {

/// Uniform double in [0, 1) from the top 53 bits of one draw.
inline double uniform01(Generator& gen) { return static_cast<double>(gen() >> 11) * 0x1.0p-53; }

/// Uniform in [lo, hi).
inline double uniform(Generator& gen, double lo, double hi) { return lo + (hi - lo) * uniform01(gen); }

/// True with probability p.
inline bool bernoulli(Generator& gen, double p) { return uniform01(gen) < p; }

/// Uniform integer in [0, n) without modulo bias (rejection on the top range). Throws value_error
/// for n = 0 (an empty range: there is no index to draw).
inline std::uint64_t uniform_index(Generator& gen, std::uint64_t n) {
  if (n == 0) DEEPSTRUCT_THROW(value_error, "uniform_index: expected n > 0 (an index in [0, n)), found n = 0");
  const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
  std::uint64_t draw = gen();
  while (draw >= limit) draw = gen();
  return draw % n;
}

/// Standard normal by Box-Muller (one value per call).
inline double normal(Generator& gen) {
  double u1 = uniform01(gen);
  while (u1 <= 0.0) u1 = uniform01(gen);
  const double u2 = uniform01(gen);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

/// Fisher-Yates shuffle of [first, last) with uniform_index (std::shuffle is not portable).
template <typename RandomIt>
void shuffle(RandomIt first, RandomIt last, Generator& gen) {
  const auto n = static_cast<std::uint64_t>(last - first);
  for (std::uint64_t i = n; i > 1; --i) {
    const std::uint64_t j = uniform_index(gen, i);
    using std::swap;
    swap(first[static_cast<std::ptrdiff_t>(i - 1)], first[static_cast<std::ptrdiff_t>(j)]);
  }
}

}  // namespace random
}  // namespace deepstruct
