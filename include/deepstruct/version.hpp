// deepstruct - structure of neural networks, header-only C++17.
// SPDX-License-Identifier: MIT
#pragma once

/// \file version.hpp
/// The library version as macros (for the preprocessor) and constexpr values.

#define DEEPSTRUCT_VERSION_MAJOR 0
#define DEEPSTRUCT_VERSION_MINOR 2
#define DEEPSTRUCT_VERSION_PATCH 0
#define DEEPSTRUCT_VERSION_STRING "0.2.0"
/// major * 10000 + minor * 100 + patch, for `#if DEEPSTRUCT_VERSION >= 100`.
#define DEEPSTRUCT_VERSION \
  (DEEPSTRUCT_VERSION_MAJOR * 10000 + DEEPSTRUCT_VERSION_MINOR * 100 + DEEPSTRUCT_VERSION_PATCH)

namespace deepstruct {
inline constexpr int version_major = DEEPSTRUCT_VERSION_MAJOR;
inline constexpr int version_minor = DEEPSTRUCT_VERSION_MINOR;
inline constexpr int version_patch = DEEPSTRUCT_VERSION_PATCH;
inline constexpr const char* version_string = DEEPSTRUCT_VERSION_STRING;
inline constexpr int version = DEEPSTRUCT_VERSION;
}  // namespace deepstruct
