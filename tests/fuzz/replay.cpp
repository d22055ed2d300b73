// Runs fuzz harnesses over files with the normal compiler (no libFuzzer): the committed seed
// corpora and regression inputs, as ctest tests (fuzz-replay-<harness>), in every build.
//   deepstruct_fuzz_replay <harness> <file or directory>...
// Every file of a directory is one input. Exit 0 when every input ran; a finding aborts.
#define DEEPSTRUCT_FUZZ_REPLAY 1

#include "fuzz_graphml.cpp"
#include "fuzz_idx.cpp"
#include "fuzz_load_dan.cpp"
#include "fuzz_load_dan_npz.cpp"
#include "fuzz_load_ffn.cpp"
#include "fuzz_npz.cpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <vector>

int main(int argc, char** argv) {
  using Harness = int (*)(const std::uint8_t*, std::size_t);
  const std::map<std::string, Harness> harnesses = {
      {"fuzz_graphml", run_fuzz_graphml}, {"fuzz_idx", run_fuzz_idx}, {"fuzz_load_dan", run_fuzz_load_dan},
      {"fuzz_load_dan_npz", run_fuzz_load_dan_npz}, {"fuzz_load_ffn", run_fuzz_load_ffn}, {"fuzz_npz", run_fuzz_npz}};
  if (argc < 3 || harnesses.count(argv[1]) == 0) {
    std::cerr << "usage: " << argv[0] << " <harness> <file or directory>...\nharnesses:";
    for (const auto& kv : harnesses) std::cerr << ' ' << kv.first;
    std::cerr << '\n';
    return 2;
  }
  const Harness run = harnesses.at(argv[1]);
  std::vector<std::filesystem::path> files;
  for (int i = 2; i < argc; ++i) {
    const std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& entry : std::filesystem::directory_iterator(p))
        if (entry.is_regular_file()) files.push_back(entry.path());
    } else if (std::filesystem::exists(p)) {
      files.push_back(p);
    } else {
      std::cerr << "no such file or directory: " << p << '\n';
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::cout << argv[1] << ": " << f.string() << " (" << bytes.size() << " bytes)" << std::endl;
    run(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  std::cout << argv[1] << ": " << files.size() << " inputs, no finding" << std::endl;
  return files.empty() ? 1 : 0;
}
