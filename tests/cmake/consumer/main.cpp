// A minimal program that uses deepstruct; built by the packaging tests in three ways.
#include <deepstruct/deepstruct.hpp>

#include <iostream>

int main() {
  deepstruct::MaskedLinearf layer(4, 3, true, 7);
  deepstruct::MaskedLinearf::Mask mask = deepstruct::MaskedLinearf::Mask::Constant(3, 4, true);
  mask(0, 0) = false;
  layer.set_mask(mask);
  const Eigen::MatrixXf x = Eigen::MatrixXf::Ones(4, 2);
  const Eigen::MatrixXf y = layer.forward(x);
  std::cout << "deepstruct " << deepstruct::version_string << ": active weights " << layer.nnz() << ", output "
            << y.rows() << "x" << y.cols() << "; threads: " << Eigen::nbThreads() << "; SIMD: " << Eigen::SimdInstructionSetsInUse() << "\n";
  return (layer.nnz() == 11 && y.rows() == 3 && y.cols() == 2) ? 0 : 1;
}
