// Fuzz harness: load_dan, deepstruct's two DAN files. The input is the GraphML text, the
// separator "\n#NPZ#\n", then the .npz bytes (no separator: all GraphML, no .npz). Every error
// must be an io_error naming a file.
#include <deepstruct/graph.hpp>
#include <deepstruct/model_io.hpp>

#include <algorithm>
#include <string>

#include "fuzz_common.hpp"

namespace fuzz_load_dan {
inline const std::string separator = "\n#NPZ#\n";
}

DEEPSTRUCT_FUZZ_TARGET(fuzz_load_dan) {
  const auto* begin = reinterpret_cast<const char*>(data);
  const auto* end = begin + size;
  const auto* split = std::search(begin, end, fuzz_load_dan::separator.begin(), fuzz_load_dan::separator.end());
  const std::size_t graphml_size = static_cast<std::size_t>(split - begin);
  const std::size_t npz_at = split == end ? size : graphml_size + fuzz_load_dan::separator.size();
  fuzz::scratch_file("dan.graphml", data, graphml_size);
  fuzz::scratch_file("dan.npz", data + npz_at, size - npz_at);
  try {
    const auto model = deepstruct::load_dan<float>(fuzz::scratch_dir() + "/dan");
    FUZZ_CHECK(model.num_hidden_layers() >= 1, "load_dan returned a network without layers");
  } catch (const deepstruct::io_error& e) {
    FUZZ_CHECK(std::string(e.what()).find("dan.") != std::string::npos, "an io_error that names no file");
  }
  return 0;
}
