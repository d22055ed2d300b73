// SPDX-License-Identifier: MIT
#pragma once

/// \file activation.hpp
/// Elementwise activations with PyTorch's definitions, and their derivatives.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "deepstruct/errors.hpp"

namespace deepstruct {

enum class Activation {
  relu,        ///< max(0, x)
  tanh,        ///< tanh(x)
  sigmoid,     ///< 1 / (1 + exp(-x))
  gelu,        ///< x * Phi(x), the exact (erf) form, PyTorch's default
  leaky_relu,  ///< x if x > 0 else 0.01 x, PyTorch's default slope
  identity     ///< x
};

inline const char* to_string(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::gelu: return "gelu";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::identity: return "identity";
  }
  return "?";
}

inline Activation activation_from_string(const std::string& name) {
  for (Activation a : {Activation::relu, Activation::tanh, Activation::sigmoid, Activation::gelu,
                       Activation::leaky_relu, Activation::identity})
    if (name == to_string(a)) return a;
  DEEPSTRUCT_THROW(value_error, "activation_from_string: expected relu, tanh, sigmoid, gelu, leaky_relu or "
                                "identity, found '" + name + "'");
}

inline constexpr double leaky_relu_slope = 0.01;

namespace detail {

/// y = act(x) for array expressions x and y of one size (y may be x's memory).
template <typename X, typename Y>
void activate_expr(Activation a, const X& x, Y&& y) {
  using Scalar = typename X::Scalar;
  switch (a) {
    case Activation::relu: y = x.max(Scalar(0)); break;
    case Activation::tanh: y = x.tanh(); break;
    case Activation::sigmoid: y = Scalar(1) / (Scalar(1) + (-x).exp()); break;
    case Activation::gelu:
      y = x.unaryExpr([](Scalar v) { return Scalar(0.5) * v * (Scalar(1) + std::erf(v * Scalar(0.70710678118654752440))); });
      break;
    case Activation::leaky_relu: y = (x > Scalar(0)).select(x, Scalar(leaky_relu_slope) * x); break;
    case Activation::identity: y = x; break;
  }
}

template <typename T>
constexpr bool is_plain_object = std::is_base_of<Eigen::PlainObjectBase<T>, T>::value;

}  // namespace detail

/// out[i] = act(in[i]) for n contiguous values; out may be in. activate() on plain matrices and
/// the batch tiles of MaskedLinear::forward_chain both come here: one compiled copy of each
/// activation (a user's file compiles it once), and the same arithmetic for every value. The last
/// n % packet values go through a zero-padded packet, not Eigen's scalar loop: otherwise a value's
/// tanh or sigmoid could differ in its last bit with its position in the matrix (the scalar
/// functions are not the SIMD ones), and predict, which activates batch tiles, would not give the
/// logits of forward bit for bit.
template <typename Scalar>
void activate_values(Activation a, const Scalar* in, Scalar* out, Eigen::Index n) {
  using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
  constexpr Eigen::Index P = Eigen::internal::packet_traits<Scalar>::size;
  constexpr auto alignment = static_cast<std::uintptr_t>(P) * sizeof(Scalar);  // a packet's
  if (alignment > 1 && reinterpret_cast<std::uintptr_t>(out) % alignment != 0) {
    // Eigen would run the values before the first aligned one without SIMD: through an aligned
    // buffer instead (Eigen's matrices and the batch tiles are aligned and never come here).
    constexpr Eigen::Index chunk = 256;
    alignas(64) Scalar buffer[chunk];
    for (Eigen::Index s = 0; s < n; s += chunk) {
      const Eigen::Index m = std::min(chunk, n - s);
      std::copy(in + s, in + s + m, buffer);
      activate_values(a, buffer, buffer, m);
      std::copy(buffer, buffer + m, out + s);
    }
    return;
  }
  const Eigen::Index head = n - n % P;
  detail::activate_expr(a, Eigen::Map<const Array>(in, head), Eigen::Map<Array>(out, head));
  if (head < n) {
    alignas(64) Scalar part[P];
    for (Eigen::Index i = 0; i < P; ++i) part[i] = head + i < n ? in[head + i] : Scalar(0);
    detail::activate_expr(a, Eigen::Map<const Array>(part, P), Eigen::Map<Array>(part, P));
    for (Eigen::Index i = 0; head + i < n; ++i) out[head + i] = part[i];
  }
}

/// out = act(in), elementwise; out may alias in. A plain matrix `out` is resized to in's shape.
/// Plain matrices of one storage order go through activate_values, anything else through Eigen's
/// expressions.
template <typename In, typename Out>
void activate(Activation a, const Eigen::MatrixBase<In>& in, Eigen::MatrixBase<Out>& out) {
  if constexpr (detail::is_plain_object<In> && detail::is_plain_object<Out> && bool(In::IsRowMajor) == bool(Out::IsRowMajor)) {
    out.derived().resize(in.rows(), in.cols());
    activate_values(a, in.derived().data(), out.derived().data(), in.size());
  } else {
    detail::activate_expr(a, in.array(), out.array());
  }
}

/// grad_in = grad_out * act'(pre), elementwise, given the pre-activation `pre` and the
/// activation's output `post` (whichever the derivative needs). grad_in may alias grad_out.
template <typename Pre, typename Post, typename GradOut, typename GradIn>
void activation_backward(Activation a, const Eigen::MatrixBase<Pre>& pre, const Eigen::MatrixBase<Post>& post,
                         const Eigen::MatrixBase<GradOut>& grad_out, Eigen::MatrixBase<GradIn>& grad_in) {
  using Scalar = typename Pre::Scalar;
  auto g = grad_out.array();
  switch (a) {
    case Activation::relu: grad_in.array() = (pre.array() <= Scalar(0)).select(Scalar(0), g); break;  // NaN passes, as in PyTorch
    case Activation::tanh: grad_in.array() = g * (Scalar(1) - post.array().square()); break;
    case Activation::sigmoid: grad_in.array() = g * post.array() * (Scalar(1) - post.array()); break;
    case Activation::gelu:
      grad_in.array() = g * pre.array().unaryExpr([](Scalar v) {
        const Scalar cdf = Scalar(0.5) * (Scalar(1) + std::erf(v * Scalar(0.70710678118654752440)));
        const Scalar pdf = Scalar(0.39894228040143267794) * std::exp(Scalar(-0.5) * v * v);
        return cdf + v * pdf;
      });
      break;
    case Activation::leaky_relu: grad_in.array() = (pre.array() > Scalar(0)).select(g, Scalar(leaky_relu_slope) * g); break;
    case Activation::identity: grad_in = grad_out; break;
  }
}

}  // namespace deepstruct
