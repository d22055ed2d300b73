// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/memory.hpp
/// Up-front size checks for calls that allocate in proportion to a size they are given (graph
/// generators, DAN descriptions): the physical memory of the machine, and a check that throws a
/// named exception, naming the size, when a lower bound of what a call needs exceeds it, before
/// anything is allocated. A lower bound never rejects a call that could succeed; what it catches
/// are the sizes that would otherwise end in std::bad_alloc, std::length_error or a machine that
/// swaps for hours.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#if !defined(_WIN32)
#include <unistd.h>
#endif

#include "deepstruct/errors.hpp"

namespace deepstruct {
namespace detail {

/// Bytes of physical memory, or 0 when the platform does not say (then nothing is rejected).
inline double physical_memory_bytes() {
#if !defined(_WIN32) && defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 0.0;
}

/// "12.5 GiB", for messages.
inline std::string gib_str(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

/// Throws Error "<who>: <what> needs at least <bytes>, more than the <physical> of physical
/// memory of this machine" when `bytes` (a lower bound of what the call allocates; computed in
/// double, so it cannot overflow) exceeds the physical memory.
template <typename Error>
void check_fits_memory(const std::string& who, const std::string& what, double bytes) {
  const double physical = physical_memory_bytes();
  if (physical > 0.0 && !(bytes <= physical))
    DEEPSTRUCT_THROW(Error, who + ": " + what + " needs at least " + gib_str(bytes) + ", more than the " + gib_str(physical) +
                                " of physical memory of this machine");
}

}  // namespace detail
}  // namespace deepstruct
