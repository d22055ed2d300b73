// SPDX-License-Identifier: MIT
#pragma once

/// \file parameter.hpp
/// A view of one trainable tensor and its gradient, as optimizers see it. Models hand these out
/// in a fixed order through for_each_parameter(fn).

#include <Eigen/Core>

#include "deepstruct/masked_linear.hpp"

namespace deepstruct {

template <typename Scalar>
struct ParameterRef {
  Scalar* value;         ///< the values, updated in place
  const Scalar* grad;    ///< dL/dvalue, same size
  Eigen::Index size;     ///< number of scalars
  const bool* mask;      ///< active entries (a MaskedLinear weight), or nullptr: all active
};

/// Visits the weight and (if any) the bias of a MaskedLinear. The weight is visited inside
/// update_weight, so the layer's caches follow whatever `fn` changes.
template <typename Scalar, typename Fn>
void for_each_parameter(MaskedLinear<Scalar>& layer, Fn&& fn) {
  const Scalar* weight_grad = layer.weight_grad().data();
  const Scalar* bias_grad = layer.bias_grad().data();
  const bool* mask = layer.mask().data();
  layer.update_weight([&](auto& w) { fn(ParameterRef<Scalar>{w.data(), weight_grad, w.size(), mask}); });
  if (layer.has_bias())
    layer.update_bias([&](auto& b) { fn(ParameterRef<Scalar>{b.data(), bias_grad, b.size(), nullptr}); });
}

}  // namespace deepstruct

namespace deepstruct {

/// The same for any model with a member for_each_parameter(fn) (MaskedDeepFFN, MaskedDeepDAN).
template <typename Model, typename Fn>
auto for_each_parameter(Model& model, Fn&& fn) -> decltype(model.for_each_parameter(fn), void()) {
  model.for_each_parameter(fn);
}

}  // namespace deepstruct
