// The same program as ffn_forward.cpp with Eigen alone: three masked linear layers (W o M) with
// bias and ReLU, as plain Eigen products. The baseline of tests/benchmarks/compile_time.sh.
#include <Eigen/Core>

#include <iostream>
#include <vector>

int main() {
  const std::vector<int> sizes{784, 300, 100, 10};
  Eigen::MatrixXf h = Eigen::MatrixXf::Random(784, 64);
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    const Eigen::MatrixXf w = Eigen::MatrixXf::Random(sizes[l + 1], sizes[l]);
    const Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> mask = Eigen::MatrixXf::Random(sizes[l + 1], sizes[l]).array() > -0.5f;
    const Eigen::VectorXf b = Eigen::VectorXf::Random(sizes[l + 1]);
    Eigen::MatrixXf y = (w.array() * mask.cast<float>().array()).matrix() * h;
    y.colwise() += b;
    h = l + 2 < sizes.size() ? Eigen::MatrixXf(y.cwiseMax(0.0f)) : y;
  }
  std::cout << h.sum() << "\n";
}
