// SPDX-License-Identifier: MIT
#pragma once

/// \file extern_templates.hpp
/// Compiled mode, for projects whose build time matters (docs/benchmarks.md#compile-time). With
/// DEEPSTRUCT_EXTERN_TEMPLATES defined (to 1) in every translation unit, the masked layers,
/// networks and optimizers for float and double are declared `extern template` by the headers
/// that define them (detail/compiled_mode.hpp), whichever of them a file includes: a translation
/// unit that uses them compiles calls, not the library, and their code comes from one translation
/// unit that includes <deepstruct/instantiate.hpp>. CMake: link deepstruct::compiled instead of
/// deepstruct::deepstruct, which does both. Without the macro nothing is declared.
///
/// This header includes those headers and gathers their lists in DEEPSTRUCT_INSTANTIATIONS
/// (instantiate.hpp compiles it for float and double); <deepstruct/deepstruct.hpp> includes it.

#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/layer_norm.hpp"
#include "deepstruct/masked_deep_dan.hpp"
#include "deepstruct/masked_deep_ffn.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/optim.hpp"

// The classes whose code the compiled mode moves out of the user's translation units, as
// DEEPSTRUCT_INSTANTIATIONS(prefix, Scalar). The entry points a program calls first (the networks'
// constructors, forward, backward, predict) are defined outside their classes, so that nothing
// beneath them is instantiated where they are called.
#define DEEPSTRUCT_INSTANTIATIONS(prefix, S)         \
  DEEPSTRUCT_INSTANTIATIONS_MODULE(prefix, S)          \
  DEEPSTRUCT_INSTANTIATIONS_MASKED_LAYER(prefix, S)    \
  DEEPSTRUCT_INSTANTIATIONS_MASKED_LINEAR(prefix, S)   \
  DEEPSTRUCT_INSTANTIATIONS_LAYER_NORM(prefix, S)      \
  DEEPSTRUCT_INSTANTIATIONS_MASKED_DEEP_DAN(prefix, S) \
  DEEPSTRUCT_INSTANTIATIONS_MASKED_DEEP_FFN(prefix, S) \
  DEEPSTRUCT_INSTANTIATIONS_OPTIM(prefix, S)
