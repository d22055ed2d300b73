// Failing file systems on demand, for the tests of the writers (detail/atomic_file.hpp):
// a file size limit (RLIMIT_FSIZE: writes past it fail with EFBIG, "File too large", in every
// process, root or not, no mount needed) and a small full tmpfs (ENOSPC, "No space left on
// device"; needs root, skipped with a warning otherwise).
#pragma once

#include <sys/mount.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace test {

/// Runs f with the file size limit at `bytes`: a write that would grow a file past it fails with
/// EFBIG, as a write to a full disk fails with ENOSPC. SIGXFSZ (which would kill the process) is
/// ignored meanwhile; the limit and the signal's handler are restored afterwards.
template <typename F>
void with_file_size_limit(rlim_t bytes, F&& f) {
  rlimit old{};
  getrlimit(RLIMIT_FSIZE, &old);
  rlimit low = old;
  low.rlim_cur = bytes;
  auto* previous = std::signal(SIGXFSZ, SIG_IGN);
  setrlimit(RLIMIT_FSIZE, &low);
  try {
    f();
  } catch (...) {
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, previous);
    throw;
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);
}

/// The whole content of a file ("" when it cannot be read).
inline std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Names of the files in `dir` that look like a writer's temporary files ("*.tmp-*").
inline std::vector<std::string> temporary_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().filename().string().find(".tmp-") != std::string::npos) out.push_back(entry.path().string());
  return out;
}

/// A tmpfs of `bytes` mounted at a new directory `dir` (root only); ok() is false when it could
/// not be mounted. fill() writes a filler file until the file system is full. Unmounted (and the
/// directory removed) on destruction.
class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& dir, std::size_t bytes) : dir_(dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const std::string options = "size=" + std::to_string(bytes);
    ok_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  ~SmallTmpfs() {
    if (ok_) ::umount2(dir_.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove(dir_, ec);
  }
  bool ok() const { return ok_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  /// Writes zeros to "filler" until a write fails; returns the bytes written.
  std::size_t fill() const {
    std::FILE* f = std::fopen(path("filler").c_str(), "wb");
    if (f == nullptr) return 0;
    std::setvbuf(f, nullptr, _IONBF, 0);
    const std::vector<char> block(512, 0);
    std::size_t total = 0;
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) total += block.size();
    std::fclose(f);
    return total;
  }

 private:
  std::string dir_;
  bool ok_ = false;
};

}  // namespace test
