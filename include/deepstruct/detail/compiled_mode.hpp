// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/compiled_mode.hpp
/// The compiled mode's half that every translation unit sees (docs/architecture.md, "Compile
/// time"; extern_templates.hpp). Each header that defines a class template of the compiled mode
/// lists its instantiations as a macro `list(prefix, Scalar)` and ends with
/// `DEEPSTRUCT_DECLARE_EXTERN(list)`: with DEEPSTRUCT_EXTERN_TEMPLATES defined (to 1) that declares
/// them `extern template` for float and double, whichever header a file includes, and makes the
/// file refer to the memory ABI symbol that instantiate.hpp defines; without it, nothing.

#include <Eigen/Core>

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
#define DEEPSTRUCT_DECLARE_EXTERN(list) list(extern, float) list(extern, double)

namespace deepstruct {
namespace detail {
extern const int DEEPSTRUCT_COMPILED_ABI;
#if defined(__GNUC__)
// Kept in every object file (`used`), so that the reference reaches the linker.
[[gnu::used]] static const int* const compiled_abi_reference = &DEEPSTRUCT_COMPILED_ABI;
#endif
}  // namespace detail
}  // namespace deepstruct
#else
#define DEEPSTRUCT_DECLARE_EXTERN(list)
#endif
