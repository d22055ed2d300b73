// A MaskedLinear learns a sparse linear map: build, mask, train a few steps of SGD, print.
#include <deepstruct/deepstruct.hpp>

#include <cstdio>

int main() {
  using Layer = deepstruct::MaskedLinearf;
  deepstruct::Generator gen(1);
  // A hidden "teacher": 32 inputs -> 8 outputs, only 25% of the connections exist.
  Layer teacher(32, 8, true, gen);
  Layer::Mask structure(8, 32);
  for (Eigen::Index i = 0; i < structure.size(); ++i) structure.data()[i] = deepstruct::random::bernoulli(gen, 0.25);
  teacher.set_mask(structure);

  // The student knows the structure and learns the weights.
  Layer student(32, 8, true, gen);
  student.set_mask(structure);
  std::printf("student: %ld -> %ld, %ld of %ld weights active (density %.2f), %s path\n",
              static_cast<long>(student.in_features()), static_cast<long>(student.out_features()),
              static_cast<long>(student.nnz()), static_cast<long>(student.numel()), student.density(),
              student.uses_sparse_path() ? "sparse" : "dense");

  const float lr = 0.1f;
  for (int step = 0; step <= 200; ++step) {
    Eigen::MatrixXf x(32, 64);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(deepstruct::random::normal(gen));
    const Eigen::MatrixXf target = teacher.forward(x);
    const Eigen::MatrixXf y = student.forward(x);
    const Eigen::MatrixXf diff = y - target;
    const float loss = diff.squaredNorm() / static_cast<float>(diff.size());
    student.zero_grad();
    student.backward(x, (2.0f / static_cast<float>(diff.size())) * diff, nullptr);
    student.update_weight([&](Eigen::MatrixXf& w) { w -= lr * student.weight_grad(); });
    student.update_bias([&](Eigen::VectorXf& b) { b -= lr * student.bias_grad(); });
    if (step % 40 == 0) std::printf("step %3d  mse %.6f\n", step, loss);
  }
  const float weight_error = (student.effective_weight() - teacher.effective_weight()).cwiseAbs().maxCoeff();
  std::printf("largest error of an active weight after training: %.2e\n", weight_error);
  return weight_error < 0.05f ? 0 : 1;
}
