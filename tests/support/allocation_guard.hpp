// Watches the allocations made through operator new (std::vector, std::string, ...) of a test
// binary: the largest single request while a guard is alive, and a cap above which a request
// throws std::bad_alloc at once instead of touching gigabytes. Include it in exactly one
// translation unit of a binary (it replaces the global operator new and delete); readers are
// then tested to allocate in proportion to the bytes a file really holds. Eigen allocates with
// malloc and is not seen; the aligned forms (align_val_t: the sparse kernels' cache-aligned
// scratch) are seen too.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <new>

namespace test {
namespace detail {
inline std::atomic<std::size_t> largest_request{0};
inline std::atomic<std::size_t> request_cap{std::numeric_limits<std::size_t>::max()};
}  // namespace detail

/// While alive: records the largest request (largest()) and refuses requests above `cap` bytes
/// with std::bad_alloc (a test of a reader that would otherwise allocate gigabytes fails fast).
class AllocationGuard {
 public:
  explicit AllocationGuard(std::size_t cap = std::numeric_limits<std::size_t>::max()) {
    detail::largest_request = 0;
    detail::request_cap = cap;
  }
  ~AllocationGuard() { detail::request_cap = std::numeric_limits<std::size_t>::max(); }
  AllocationGuard(const AllocationGuard&) = delete;
  AllocationGuard& operator=(const AllocationGuard&) = delete;
  std::size_t largest() const { return detail::largest_request; }
};

}  // namespace test

void* operator new(std::size_t n) {
  std::size_t seen = test::detail::largest_request.load(std::memory_order_relaxed);
  while (n > seen && !test::detail::largest_request.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  if (n > test::detail::request_cap.load(std::memory_order_relaxed)) throw std::bad_alloc();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
// The nothrow forms too, so that every plain delete below frees what our new allocated (a
// sanitizer's own nothrow new would otherwise meet our delete: alloc-dealloc-mismatch).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return ::operator new(n, std::nothrow); }
// free through a pointer the compiler cannot see through: GCC would otherwise warn that memory
// from (what it takes for the builtin) operator new is released with free.
namespace test::detail {
inline void (*volatile release)(void*) = std::free;
}
void operator delete(void* p) noexcept { test::detail::release(p); }
void operator delete[](void* p) noexcept { test::detail::release(p); }
void operator delete(void* p, std::size_t) noexcept { test::detail::release(p); }
void operator delete[](void* p, std::size_t) noexcept { test::detail::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { test::detail::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { test::detail::release(p); }
// The aligned forms, through aligned_alloc (whose memory free releases).
void* operator new(std::size_t n, std::align_val_t a) {
  std::size_t seen = test::detail::largest_request.load(std::memory_order_relaxed);
  while (n > seen && !test::detail::largest_request.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  if (n > test::detail::request_cap.load(std::memory_order_relaxed)) throw std::bad_alloc();
  const auto align = static_cast<std::size_t>(a);
  const std::size_t size = n == 0 ? align : (n + align - 1) / align * align;  // a multiple, as aligned_alloc asks
  if (void* p = std::aligned_alloc(align, size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return ::operator new(n, a); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return ::operator new(n, a, std::nothrow); }
void operator delete(void* p, std::align_val_t) noexcept { test::detail::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { test::detail::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { test::detail::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { test::detail::release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { test::detail::release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { test::detail::release(p); }
