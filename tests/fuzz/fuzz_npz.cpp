// Fuzz harness: NpzArchive::load from memory (the checks of a file load: zip directory, ZIP64,
// overlapping members, deflate, .npy headers), then every conversion on what loaded, and a save
// and load round trip of it. Only io_error may come out of loading and converting.
#include <deepstruct/io/npz.hpp>

#include <string>

#include "fuzz_common.hpp"

namespace fuzz_npz {

inline void convert(const deepstruct::NpzArchive& a) {
  for (const auto& kv : a) {
    const deepstruct::NpyArray& x = kv.second;
    FUZZ_CHECK(x.data.size() == x.nbytes(), "data does not match shape x itemsize");
    try {
      if (x.ndim() == 2) {
        (void)a.matrix<float>(kv.first);
        (void)a.matrix<std::int64_t>(kv.first);
        (void)a.mask(kv.first);
      } else if (x.ndim() == 1) {
        (void)a.vector<double>(kv.first);
      }
    } catch (const deepstruct::io_error&) {
    }
  }
}

}  // namespace fuzz_npz

DEEPSTRUCT_FUZZ_TARGET(fuzz_npz) {
  deepstruct::NpzArchive a;
  try {
    a = deepstruct::NpzArchive::load(data, size, "fuzz.npz");
  } catch (const deepstruct::io_error&) {
    return 0;
  }
  fuzz_npz::convert(a);
  // What loads saves, and loads back the same.
  const std::string path = fuzz::scratch_dir() + "/roundtrip.npz";
  a.save(path);
  const deepstruct::NpzArchive back = deepstruct::NpzArchive::load(path);
  FUZZ_CHECK(back.keys() == a.keys(), "round trip changed the keys");
  for (const auto& kv : a) {
    const deepstruct::NpyArray& y = back.at(kv.first);
    FUZZ_CHECK(y.dtype == kv.second.dtype && y.shape == kv.second.shape && y.data == kv.second.data, "round trip changed an array");
  }
  return 0;
}
