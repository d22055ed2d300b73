// SPDX-License-Identifier: MIT
#pragma once

/// \file instantiate.hpp
/// The other half of the compiled mode (see extern_templates.hpp): include this header in exactly
/// one translation unit of the program (deepstruct::compiled does it for CMake users) to compile
/// the masked layers, networks and optimizers for float and double there.

#include "deepstruct/extern_templates.hpp"

DEEPSTRUCT_INSTANTIATIONS(, float)
DEEPSTRUCT_INSTANTIATIONS(, double)

namespace deepstruct {
namespace detail {
// The memory ABI this library is compiled for (see DEEPSTRUCT_COMPILED_ABI). Weak, as the
// instantiations are: a program may hold this header's code more than once (two libraries that
// each compiled it), which links.
extern const int DEEPSTRUCT_COMPILED_ABI;
#if defined(__GNUC__)
[[gnu::weak]]
#elif defined(_MSC_VER)
__declspec(selectany)
#endif
extern const int DEEPSTRUCT_COMPILED_ABI = 1;
}  // namespace detail
}  // namespace deepstruct
