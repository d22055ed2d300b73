// SPDX-License-Identifier: MIT
#pragma once

/// \file parameter.hpp
/// for_each_parameter(x, fn) for anything that visits its trainable tensors: a module (a layer,
/// a LayerNorm) or a model. ParameterRef itself is defined with the Module contract in
/// <deepstruct/module.hpp>.

#include "deepstruct/module.hpp"

namespace deepstruct {

/// Visits every trainable tensor of a module or model as a ParameterRef<Scalar>, in the fixed
/// order optimizers keep their state in: fn(const ParameterRef<Scalar>&).
template <typename T, typename Fn>
auto for_each_parameter(T& x, Fn&& fn) -> decltype(x.for_each_parameter(fn), void()) {
  x.for_each_parameter(fn);
}

}  // namespace deepstruct
