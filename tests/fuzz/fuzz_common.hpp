// Shared by the fuzz harnesses (tests/fuzz/fuzz_*.cpp) and their replay driver (replay.cpp).
//
// A harness is a function DEEPSTRUCT_FUZZ_TARGET(name) over one input. Built with
// -fsanitize=fuzzer (cmake -DDEEPSTRUCT_FUZZ=ON, clang) it is libFuzzer's LLVMFuzzerTestOneInput;
// built into the replay driver (DEEPSTRUCT_FUZZ_REPLAY, the normal build, ctest) it is the plain
// function run_<name> the driver runs over the committed corpus and regression inputs. Either way an input
// "fails" by aborting: an exception other than the ones the reader documents (uncaught, so
// std::terminate), a broken invariant (FUZZ_CHECK), or a sanitizer report.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#if defined(DEEPSTRUCT_FUZZ_REPLAY)
#define DEEPSTRUCT_FUZZ_TARGET(name) int run_##name(const std::uint8_t* data, std::size_t size)
#else
#define DEEPSTRUCT_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
#endif

namespace fuzz {

/// Aborts with a message when an invariant does not hold (a finding).
#define FUZZ_CHECK(condition, message)                                                                    \
  do {                                                                                                    \
    if (!(condition)) {                                                                                   \
      std::fprintf(stderr, "fuzz invariant broken at %s:%d: %s (%s)\n", __FILE__, __LINE__, #condition, message); \
      std::abort();                                                                                       \
    }                                                                                                     \
  } while (false)

/// A private directory for the files a harness must hand to path-taking readers: in /dev/shm
/// when there is one (no disk I/O per input), removed at exit.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm") ? std::filesystem::path("/dev/shm")
                                                                                 : std::filesystem::temp_directory_path();
    const std::filesystem::path d = base / ("deepstruct-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    static const std::string keep = d.string();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(keep, ec);
    });
    return d.string();
  }();
  return dir;
}

/// Writes bytes to scratch_dir()/name and returns the path.
inline std::string scratch_file(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  FUZZ_CHECK(out.good(), "cannot write the scratch file");
  return path;
}

/// True when two state dicts hold the same keys, shapes and bits (NaN payloads included).
template <typename StateDict>
bool same_bits(const StateDict& a, const StateDict& b) {
  auto same_maps = [](const auto& x, const auto& y) {
    if (x.size() != y.size()) return false;
    for (auto i = x.begin(), j = y.begin(); i != x.end(); ++i, ++j) {
      if (i->first != j->first || i->second.rows() != j->second.rows() || i->second.cols() != j->second.cols()) return false;
      const auto bytes = static_cast<std::size_t>(i->second.size()) * sizeof(*i->second.data());
      if (bytes != 0 && std::memcmp(i->second.data(), j->second.data(), bytes) != 0) return false;
    }
    return true;
  };
  return same_maps(a.matrices, b.matrices) && same_maps(a.vectors, b.vectors) && same_maps(a.masks, b.masks);
}

}  // namespace fuzz
