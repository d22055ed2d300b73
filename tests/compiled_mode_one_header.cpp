// A user's translation unit in the compiled mode that includes one model header, not the umbrella:
// the header itself declares the extern templates and the memory ABI reference
// (detail/compiled_mode.hpp), so the file calls the library as ffn_forward.cpp does
// (compiled-mode-symbols-one-header) and refuses to link against a library of other Eigen memory
// settings (compiled-mode-abi).
#include <deepstruct/masked_deep_ffn.hpp>

#include <iostream>

int main() {
  deepstruct::MaskedDeepFFN<float> model(784, 10, {300, 100});
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(784, 64);
  const Eigen::MatrixXf logits = model.forward(x);
  std::cout << logits.sum() << "\n";
}
