// Fuzz harness: read_idx (stream, and a .gz file when the input is gzipped), idx_images,
// idx_labels. Only io_error may come out; what is read must be consistent with its shape.
#include <deepstruct/io/idx.hpp>

#include <sstream>
#include <string>

#include "fuzz_common.hpp"

namespace fuzz_idx {

inline void use(const deepstruct::IdxArray& a) {
  FUZZ_CHECK(a.data.size() == a.size(), "data does not match the shape");
  if (a.shape.size() == 3) {
    const auto x = deepstruct::idx_images<float>(a, "fuzz.idx");
    FUZZ_CHECK(static_cast<std::size_t>(x.size()) == a.data.size(), "idx_images lost values");
  } else if (a.shape.size() == 1) {
    const auto y = deepstruct::idx_labels(a, "fuzz.idx");
    FUZZ_CHECK(static_cast<std::size_t>(y.size()) == a.data.size(), "idx_labels lost values");
  }
}

}  // namespace fuzz_idx

DEEPSTRUCT_FUZZ_TARGET(fuzz_idx) {
  try {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    fuzz_idx::use(deepstruct::read_idx(in, "fuzz.idx"));
  } catch (const deepstruct::io_error&) {
  }
#if defined(DEEPSTRUCT_WITH_ZLIB)
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    const std::string path = fuzz::scratch_file("fuzz.idx.gz", data, size);
    try {
      fuzz_idx::use(deepstruct::read_idx(path));
    } catch (const deepstruct::io_error&) {
    }
  }
#endif
  return 0;
}
