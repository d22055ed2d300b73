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

// The memory ABI of the compiled code, as a symbol name. Eigen allocates with malloc or with its
// own aligned allocator depending on EIGEN_DEFAULT_ALIGN_BYTES (16 with SSE2, 32 with AVX, 64 with
// AVX-512) and EIGEN_MALLOC_ALREADY_ALIGNED, so a matrix that the library allocates and a file
// compiled with other flags frees corrupts the heap (a user's target built with -march=native
// against a library built without it crashed in its first forward). instantiate.hpp defines the
// symbol named after its own settings and every file in the compiled mode refers to the one named
// after its settings: files and library that disagree do not link, and the linker names the
// setting ("undefined reference to deepstruct::detail::
// compiled_library_was_not_built_with_EIGEN_DEFAULT_ALIGN_BYTES_64_MALLOC_ALREADY_ALIGNED_0").
#define DEEPSTRUCT_ABI_CAT_(a, b, c, d) a##b##c##d
#define DEEPSTRUCT_ABI_CAT(a, b, c, d) DEEPSTRUCT_ABI_CAT_(a, b, c, d)
#define DEEPSTRUCT_COMPILED_ABI                                                                 \
  DEEPSTRUCT_ABI_CAT(compiled_library_was_not_built_with_EIGEN_DEFAULT_ALIGN_BYTES_, EIGEN_DEFAULT_ALIGN_BYTES, \
                     _MALLOC_ALREADY_ALIGNED_, EIGEN_MALLOC_ALREADY_ALIGNED)

#if defined(DEEPSTRUCT_EXTERN_TEMPLATES) && DEEPSTRUCT_EXTERN_TEMPLATES
DEEPSTRUCT_INSTANTIATIONS(extern, float)
DEEPSTRUCT_INSTANTIATIONS(extern, double)

namespace deepstruct {
namespace detail {
extern const int DEEPSTRUCT_COMPILED_ABI;
#if defined(__GNUC__)
// Kept in every object file (`used`), so that the reference reaches the linker.
[[gnu::used]] static const int* const compiled_abi_reference = &DEEPSTRUCT_COMPILED_ABI;
#endif
}  // namespace detail
}  // namespace deepstruct
#endif
