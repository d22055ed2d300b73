// SPDX-License-Identifier: MIT
#pragma once

/// \file activation.hpp
/// Elementwise activations with PyTorch's definitions, and their derivatives.

#include <Eigen/Core>
#include <cmath>
#include <string>

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

/// out = act(in), elementwise; out may alias in.
template <typename In, typename Out>
void activate(Activation a, const Eigen::MatrixBase<In>& in, Eigen::MatrixBase<Out>& out) {
  using Scalar = typename In::Scalar;
  auto x = in.array();
  switch (a) {
    case Activation::relu: out.array() = x.max(Scalar(0)); break;
    case Activation::tanh: out.array() = x.tanh(); break;
    case Activation::sigmoid: out.array() = Scalar(1) / (Scalar(1) + (-x).exp()); break;
    case Activation::gelu:
      out.array() = x.unaryExpr([](Scalar v) {
        return Scalar(0.5) * v * (Scalar(1) + std::erf(v * Scalar(0.70710678118654752440)));
      });
      break;
    case Activation::leaky_relu: out.array() = (x > Scalar(0)).select(x, Scalar(leaky_relu_slope) * x); break;
    case Activation::identity: out = in; break;
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
    case Activation::relu: grad_in.array() = (pre.array() > Scalar(0)).select(g, Scalar(0)); break;
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
