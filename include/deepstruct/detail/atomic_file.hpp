// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/atomic_file.hpp
/// The one way deepstruct writes a file: into a new temporary file in the target's directory
/// ("<path>.tmp-<pid>-<n>"), flushed to the disk (fsync), then renamed over the target. A reader
/// sees the old file or the new one, never a mix, and a failure at any step (a full disk, a file
/// size limit, a read-only directory, a directory in the target's place) removes the temporary
/// file and leaves an existing target untouched. Errors are io_error naming the path, the step
/// that failed and errno's reason (std::strerror).
///
/// Every writer goes through it: write_graphml, write_dot, write_svg (graph side), save_dan (its
/// GraphML via detail::write_file_text) and NpzArchive::save / save_npz.
///
/// On POSIX systems a replaced file keeps its rwx permission bits (the new file gets the old file's
/// mode); a new file gets 0666 minus the umask, as std::ofstream would create it. A symbolic link
/// at `path` is replaced by the new regular file, not followed. After the rename the directory is
/// flushed too (best effort: the file is complete and in place whether or not that succeeds).

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <io.h>
#include <process.h>
#else
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "deepstruct/errors.hpp"

namespace deepstruct {
namespace detail {

/// std::strerror(err), or "unknown error" for 0.
inline std::string errno_text(int err) {
  return err != 0 ? std::string(std::strerror(err)) : std::string("unknown error");
}

/// The temporary file behind write_file_atomically: every write is checked and counted.
class AtomicWriter {
 public:
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;

  /// Appends n bytes; io_error (naming the target and errno's reason) when the system refuses.
  void write(const void* bytes, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(bytes);
    std::size_t done = 0;
    while (done < n) {
      errno = 0;
#if defined(_WIN32)
      const std::size_t chunk = n - done < (1u << 30) ? n - done : (1u << 30);
      const std::size_t got = std::fwrite(p + done, 1, chunk, file_);
      if (got == 0) fail_write(errno);
#else
      const std::size_t chunk = n - done < (std::size_t{1} << 30) ? n - done : (std::size_t{1} << 30);
      const ssize_t got = ::write(fd_, p + done, chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) fail_write(got == 0 ? EIO : errno);
#endif
      done += static_cast<std::size_t>(got);
      written_ += static_cast<std::uint64_t>(got);
    }
  }
  void write(const std::vector<unsigned char>& bytes) { write(bytes.data(), bytes.size()); }
  void write(const std::string& text) { write(text.data(), text.size()); }

  /// Bytes written so far.
  std::uint64_t written() const { return written_; }

 private:
  template <typename Write>
  friend void write_file_atomically(const std::string& path, Write&& write, const std::string& context);

#if defined(_WIN32)
  AtomicWriter(std::FILE* file, const std::string& tmp, const std::string& context) : file_(file), tmp_(tmp), context_(context) {}
  std::FILE* file_;
#else
  AtomicWriter(int fd, const std::string& tmp, const std::string& context) : fd_(fd), tmp_(tmp), context_(context) {}
  int fd_;
#endif
  const std::string& tmp_;
  const std::string& context_;
  std::uint64_t written_ = 0;

  [[noreturn]] void fail_write(int err) const {
    DEEPSTRUCT_THROW(io_error, context_ + ": writing the temporary file '" + tmp_ + "' failed after " + std::to_string(written_) +
                                   " bytes: " + errno_text(err) + " (the target is left as it was)");
  }
};

/// Calls write(AtomicWriter&) on a new temporary file beside `path`, flushes it to the disk and
/// renames it to `path`. On any failure (including an exception from `write`) the temporary file
/// is removed and `path` is left as it was. `context` starts every message, e.g.
/// "write_graphml: cannot write 'a.graphml'" (default: "cannot write '<path>'").
template <typename Write>
void write_file_atomically(const std::string& path, Write&& write, const std::string& context) {
  static std::atomic<unsigned> counter{0};
  std::string tmp;
  int err = 0;
#if defined(_WIN32)
  std::FILE* handle = nullptr;
  const unsigned long pid = static_cast<unsigned long>(::_getpid());
#else
  int handle = -1;
  const unsigned long pid = static_cast<unsigned long>(::getpid());
  struct stat existing {};
  const bool replaces = ::stat(path.c_str(), &existing) == 0 && S_ISREG(existing.st_mode);
#endif
  for (int attempt = 0; attempt < 64; ++attempt) {
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".tmp-%lu-%x", pid, counter.fetch_add(1));
    tmp = path + suffix;
    errno = 0;
#if defined(_WIN32)
    handle = std::fopen(tmp.c_str(), "wbx");  // C11 exclusive mode: never clobbers an existing file
    err = errno;
    if (handle != nullptr || err != EEXIST) break;
#else
    handle = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    err = errno;
    if (handle >= 0 || err != EEXIST) break;
#endif
  }
#if defined(_WIN32)
  const bool opened = handle != nullptr;
#else
  const bool opened = handle >= 0;
#endif
  if (!opened)
    DEEPSTRUCT_THROW(io_error, context + ": cannot create the temporary file '" + tmp + "': " + errno_text(err) +
                                   " (the target is left as it was)");
  auto fail = [&](const std::string& step, int e) {
    std::remove(tmp.c_str());
    DEEPSTRUCT_THROW(io_error, context + ": " + step + ": " + errno_text(e) + " (the target is left as it was)");
  };
  try {
    AtomicWriter out(handle, tmp, context);
    write(out);
  } catch (...) {
#if defined(_WIN32)
    std::fclose(handle);
#else
    ::close(handle);
#endif
    std::remove(tmp.c_str());
    throw;
  }
#if defined(_WIN32)
  errno = 0;
  if (std::fflush(handle) != 0 || ::_commit(::_fileno(handle)) != 0) {
    err = errno;
    std::fclose(handle);
    fail("flushing the temporary file '" + tmp + "' failed", err);
  }
  errno = 0;
  if (std::fclose(handle) != 0) fail("closing the temporary file '" + tmp + "' failed", errno);
#else
  if (replaces) (void)::fchmod(handle, existing.st_mode & 0777);  // keep the replaced file's rwx permission bits
  errno = 0;
  int synced = ::fsync(handle);
  while (synced != 0 && errno == EINTR) synced = ::fsync(handle);
  if (synced != 0) {
    err = errno;
    ::close(handle);
    fail("flushing the temporary file '" + tmp + "' to the disk (fsync) failed", err);
  }
  errno = 0;
  if (::close(handle) != 0 && errno != EINTR) fail("closing the temporary file '" + tmp + "' failed", errno);
#endif
  errno = 0;
  bool renamed = std::rename(tmp.c_str(), path.c_str()) == 0;
  err = errno;
#if defined(_WIN32)
  if (!renamed) {  // rename does not replace an existing file on Windows
    std::remove(path.c_str());
    errno = 0;
    renamed = std::rename(tmp.c_str(), path.c_str()) == 0;
    err = errno;
  }
#endif
  if (!renamed) fail("renaming the temporary file '" + tmp + "' to it failed", err);
#if !defined(_WIN32)
  // Make the rename itself durable: flush the directory (best effort).
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? std::string(".") : slash == 0 ? std::string("/") : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
#endif
}

template <typename Write>
void write_file_atomically(const std::string& path, Write&& write) {
  write_file_atomically(path, std::forward<Write>(write), "cannot write '" + path + "'");
}

/// Writes `text` to `path` atomically (see write_file_atomically).
inline void write_file_atomically_text(const std::string& path, const std::string& text, const std::string& context) {
  write_file_atomically(path, [&](AtomicWriter& out) { out.write(text); }, context);
}

}  // namespace detail
}  // namespace deepstruct
