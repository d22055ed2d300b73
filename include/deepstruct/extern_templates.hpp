// SPDX-License-Identifier: MIT
#pragma once

/// \file extern_templates.hpp
/// Compiled mode, for projects whose build time matters (docs/benchmarks.md#compile-time). With
/// DEEPSTRUCT_EXTERN_TEMPLATES defined (to 1) in every translation unit, the masked layers,
/// networks and optimizers for float and double are declared `extern template`: a translation
/// unit that uses them compiles calls, not the library, and their code comes from one translation
/// unit that includes <deepstruct/instantiate.hpp>. CMake: link deepstruct::compiled instead of
/// deepstruct::deepstruct, which does both. Without the macro this header declares nothing.
/// <deepstruct/deepstruct.hpp> includes it last.

#include "deepstruct/layer_norm.hpp"
#include "deepstruct/masked_deep_dan.hpp"
#include "deepstruct/masked_deep_ffn.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/optim.hpp"

// The classes whose code the compiled mode moves out of the user's translation units, as
// DEEPSTRUCT_INSTANTIATIONS(prefix, Scalar): `extern template` here, the instantiations in
// instantiate.hpp. The entry points a program calls first (the networks' constructors, forward,
// backward, predict) are defined outside their classes, so that nothing beneath them is
// instantiated where they are called.
#define DEEPSTRUCT_INSTANTIATIONS(prefix, S)                                 \
  prefix template class ::deepstruct::Module<S>;                             \
  prefix template class ::deepstruct::MaskedLayer<S>;                        \
  prefix template class ::deepstruct::MaskedLinear<S>;                       \
  prefix template class ::deepstruct::LayerNorm<S>;                          \
  prefix template class ::deepstruct::ModelBase<::deepstruct::MaskedDeepDAN<S>, S>; \
  prefix template class ::deepstruct::MaskedDeepDAN<S>;                      \
  prefix template class ::deepstruct::ModelBase<::deepstruct::MaskedDeepFFN<S>, S>; \
  prefix template class ::deepstruct::MaskedDeepFFN<S>;                      \
  prefix template class ::deepstruct::detail::OptimizerBase<S>;              \
  prefix template class ::deepstruct::SGD<S>;                                \
  prefix template class ::deepstruct::detail::AdamBase<S, false>;            \
  prefix template class ::deepstruct::detail::AdamBase<S, true>;             \
  prefix template class ::deepstruct::Adam<S>;                               \
  prefix template class ::deepstruct::AdamW<S>;

#if defined(DEEPSTRUCT_EXTERN_TEMPLATES) && DEEPSTRUCT_EXTERN_TEMPLATES
DEEPSTRUCT_INSTANTIATIONS(extern, float)
DEEPSTRUCT_INSTANTIATIONS(extern, double)
#endif
