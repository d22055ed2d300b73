// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/exact_sqrt.hpp
/// A correctly rounded square root for Eigen array expressions: `a.unaryExpr(exact_sqrt_op<S>())`.
/// Eigen's own `sqrt()` and `rsqrt()` of float packets are approximations under EIGEN_FAST_MATH,
/// which is on by default (a reciprocal-square-root estimate and a Newton step, on SSE, AVX and
/// AVX-512; for double too on AVX-512), while the scalar elements of the same expression - the
/// ones before the first aligned packet and after the last - take std::sqrt. The same value then
/// rounds differently depending on where it sits in memory: Adam gave other weights when it
/// gathered its active entries into a buffer than when it updated the tensor in place, and other
/// weights from one run to the next (the buffer's alignment moves with the stack). PyTorch's sqrt
/// is correctly rounded. This functor uses the SIMD square-root instructions, which round
/// correctly (IEEE 754) as std::sqrt does for scalars: the same bits whatever the path.

#include <Eigen/Core>
#include <cmath>
#include <type_traits>
#include <utility>

// MSVC does not define __SSE2__; x64 always has it.
#if defined(__SSE2__) || (defined(_MSC_VER) && (defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)))
#define DEEPSTRUCT_EXACT_SQRT_SSE2 1
#endif
#if defined(DEEPSTRUCT_EXACT_SQRT_SSE2) || defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#endif

// Packet types as template arguments make GCC warn that their vector attributes are ignored
// (Eigen silences this inside its own headers).
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif

namespace deepstruct {
namespace detail {

#if defined(DEEPSTRUCT_EXACT_SQRT_SSE2)
inline __m128 exact_psqrt(__m128 x) { return _mm_sqrt_ps(x); }
inline __m128d exact_psqrt(__m128d x) { return _mm_sqrt_pd(x); }
#endif
#if defined(__AVX__)
inline __m256 exact_psqrt(__m256 x) { return _mm256_sqrt_ps(x); }
inline __m256d exact_psqrt(__m256d x) { return _mm256_sqrt_pd(x); }
#endif
#if defined(__AVX512F__)
// The masked forms with every lane set: the same instruction, without the undefined source
// operand of _mm512_sqrt_ps that makes GCC 12 warn -Wmaybe-uninitialized (GCC bug 105593).
inline __m512 exact_psqrt(__m512 x) { return _mm512_mask_sqrt_ps(x, static_cast<__mmask16>(0xFFFF), x); }
inline __m512d exact_psqrt(__m512d x) { return _mm512_mask_sqrt_pd(x, static_cast<__mmask8>(0xFF), x); }
#endif
#if defined(__ARM_NEON) && defined(__aarch64__)
inline float32x4_t exact_psqrt(float32x4_t x) { return vsqrtq_f32(x); }
inline float64x2_t exact_psqrt(float64x2_t x) { return vsqrtq_f64(x); }
#endif

/// True if exact_psqrt takes Packet (an instruction set without one runs the scalar path).
template <typename Packet, typename = void>
struct has_exact_psqrt : std::false_type {};
template <typename Packet>
struct has_exact_psqrt<Packet, std::void_t<decltype(exact_psqrt(std::declval<Packet>()))>>
    : std::is_same<decltype(exact_psqrt(std::declval<Packet>())), Packet> {};

template <typename Scalar>
struct exact_sqrt_op {
  EIGEN_STRONG_INLINE Scalar operator()(const Scalar& x) const { return std::sqrt(x); }
  template <typename Packet>
  EIGEN_STRONG_INLINE Packet packetOp(const Packet& x) const {
    return exact_psqrt(x);
  }
};

}  // namespace detail
}  // namespace deepstruct

namespace Eigen {
namespace internal {
template <typename Scalar>
struct functor_traits<::deepstruct::detail::exact_sqrt_op<Scalar>> {
  enum {
    Cost = 5 * NumTraits<Scalar>::MulCost,
    PacketAccess = ::deepstruct::detail::has_exact_psqrt<typename packet_traits<Scalar>::type>::value
  };
};
}  // namespace internal
}  // namespace Eigen

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
