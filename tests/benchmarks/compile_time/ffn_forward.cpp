// A user's translation unit: includes the umbrella header and runs one forward of a
// MaskedDeepFFN. tests/benchmarks/compile_time.sh times its compilation against eigen_forward.cpp.
#include <deepstruct/deepstruct.hpp>

#include <iostream>

int main() {
  deepstruct::MaskedDeepFFN<float> model(784, 10, {300, 100});
  const Eigen::MatrixXf x = Eigen::MatrixXf::Random(784, 64);
  const Eigen::MatrixXf logits = model.forward(x);
  std::cout << logits.sum() << "\n";
}
