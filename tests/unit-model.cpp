// Tests of the contracts (<deepstruct/module.hpp>, <deepstruct/masked_layer.hpp>,
// <deepstruct/model.hpp>): a layer type the library does not know, with two masked weights, in a
// model of its own, goes through pruning, optimizers, state_dicts and the training loop unchanged.
#include <deepstruct/masked_layer.hpp>
#include <deepstruct/masked_linear.hpp>
#include <deepstruct/model.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/prune.hpp>
#include <deepstruct/sparse_training.hpp>
#include <deepstruct/train.hpp>

#include "test_support.hpp"

namespace {

using Mat = Eigen::MatrixXd;
using Mask = deepstruct::MaskedWeight<double>::Mask;

/// y = (A o Ma) x + (B o Mb) x: two masked weights of the same shape, no bias.
class TwoMask : public deepstruct::MaskedLayer<double> {
 public:
  TwoMask(Eigen::Index in, Eigen::Index out) {
    w_[0].resize(out, in);
    w_[1].resize(out, in);
    deepstruct::Generator gen(3);
    reset_parameters(gen, false);
  }
  void forward(const Eigen::Ref<const Mat>& x, Mat& y) const { y = effective_weight(0) * x + effective_weight(1) * x; }
  void backward(const Eigen::Ref<const Mat>& x, const Eigen::Ref<const Mat>& g, Mat* grad_input) {
    for (int k = 0; k < 2; ++k) grad_[k] += (g * x.transpose()).cwiseProduct(w_[k].mask.cast<double>());
    if (grad_input != nullptr) *grad_input = (effective_weight(0) + effective_weight(1)).transpose() * g;
  }
  const char* type_name() const override { return "TwoMask"; }
  void for_each_parameter(deepstruct::ParameterVisitor<double> fn) override {
    for (int k = 0; k < 2; ++k) fn({w_[k].value.data(), grad_[k].data(), w_[k].value.size(), w_[k].mask.data()});
  }
  void zero_grad() override {
    for (int k = 0; k < 2; ++k) grad_[k].setZero(w_[k].value.rows(), w_[k].value.cols());
  }
  Eigen::Index num_parameters() const override { return 2 * w_[0].value.size(); }
  void reset_parameters(deepstruct::Generator& gen, bool keep_mask) override {
    for (int k = 0; k < 2; ++k) {
      for (Eigen::Index i = 0; i < w_[k].value.size(); ++i) w_[k].value(i) = deepstruct::random::uniform(gen, -1, 1);
      if (!keep_mask) set_mask(static_cast<std::size_t>(k), Mask::Constant(w_[k].value.rows(), w_[k].value.cols(), true));
    }
    zero_grad();
  }
  void for_each_tensor(deepstruct::TensorVisitor<double> fn) const override {
    fn({"a", deepstruct::TensorKind::matrix, w_[0].value.rows(), w_[0].value.cols(), w_[0].value.data(), nullptr});
    fn({"b", deepstruct::TensorKind::matrix, w_[1].value.rows(), w_[1].value.cols(), w_[1].value.data(), nullptr});
    fn({"_mask_a", deepstruct::TensorKind::mask, w_[0].mask.rows(), w_[0].mask.cols(), nullptr, w_[0].mask.data()});
    fn({"_mask_b", deepstruct::TensorKind::mask, w_[1].mask.rows(), w_[1].mask.cols(), nullptr, w_[1].mask.data()});
  }
  std::size_t num_masks() const override { return 2; }
  const char* weight_name(std::size_t k) const override { return k == 0 ? "a" : "b"; }
  const deepstruct::MaskedWeight<double>& masked(std::size_t k) const override { return w_[check_k(k, "masked")]; }
  int mask_changes = 0, weight_changes = 0;

 protected:
  deepstruct::MaskedWeight<double>& masked_storage(std::size_t k) override { return w_[check_k(k, "masked_storage")]; }
  void weight_changed(std::size_t) override { ++weight_changes; }
  void mask_changed(std::size_t k) override {
    ++mask_changes;
    if (grad_[k].size() != 0) grad_[k].array() *= w_[k].mask.cast<double>().array();
  }
  void tensors_loaded() override {
    for (auto& w : w_) w.nnz = w.mask.count();
  }

 private:
  deepstruct::MaskedWeight<double> w_[2];
  Mat grad_[2];
};

/// TwoMask whose weights are kernels: a (4 x 3) matrix that stands for (4, 1, 3, 1) (weight_shape).
class KernelTwoMask : public TwoMask {
 public:
  using TwoMask::TwoMask;
  std::vector<Eigen::Index> weight_shape(std::size_t k) const override { return {mask(k).rows(), 1, mask(k).cols(), 1}; }
};

/// TwoMask -> ReLU -> MaskedLinear.
class Net : public deepstruct::ModelBase<Net, double> {
 public:
  using Matrix = Mat;
  Net() : two_(3, 4), out_(4, 2, true, 1) {}
  static const char* model_name() { return "Net"; }
  template <typename Fn>
  void visit_modules(Fn&& fn) {
    fn(two_, "two", no_index);
    fn(out_, "heads", 0);
  }
  const Matrix& forward(const Eigen::Ref<const Matrix>& x) {
    two_.forward(x, pre_);
    h_ = pre_.cwiseMax(0.0);
    out_.forward(h_, logits_);
    return logits_;
  }
  void backward(const Eigen::Ref<const Matrix>& x, const Eigen::Ref<const Matrix>& g, Matrix* grad_input = nullptr) {
    Matrix gh;
    out_.backward(h_, g, &gh);
    gh = (pre_.array() > 0).select(gh, 0.0);
    two_.backward(x, gh, grad_input);
  }
  void predict(const Eigen::Ref<const Matrix>& x, Matrix& logits) {
    Matrix pre;
    two_.forward(x, pre);
    out_.forward(pre.cwiseMax(0.0), logits);
  }
  TwoMask two_;
  deepstruct::MaskedLinear<double> out_;

 private:
  Matrix pre_, h_, logits_;
};

}  // namespace

TEST_CASE("contracts: a layer with two masked weights gets every mask operation", "[contract]") {
  TwoMask l(3, 4);
  CHECK(l.nnz() == 24);
  CHECK(l.numel() == 24);
  CHECK_THROWS_AS(l.mask(), deepstruct::index_error);  // which of the two?
  CHECK_THROWS_AS(l.mask(2), deepstruct::index_error);
  Mask m = Mask::Constant(4, 3, true);
  m(0, 0) = m(1, 2) = false;
  l.set_mask(1, m);
  CHECK(l.nnz(1) == 10);
  CHECK(l.density() == Approx(22.0 / 24.0));
  CHECK_THROWS_AS(l.set_mask(0, Mask::Constant(3, 4, true)), deepstruct::shape_error);
  l.apply_mask();
  CHECK(l.weight(1)(0, 0) == 0.0);
  CHECK(l.weight(0)(0, 0) != 0.0);
  l.recompute_mask(0.5);
  for (std::size_t k = 0; k < 2; ++k)
    for (Eigen::Index i = 0; i < l.weight(k).size(); ++i) CHECK(l.mask(k)(i) == (std::abs(l.weight(k)(i)) >= 0.5));
  // update_weight / update_mask go through the hooks (caches follow), a resize throws.
  const int w0 = l.weight_changes, m0 = l.mask_changes;
  l.update_weight(0, [](Mat& w) { w(0, 0) = 2.0; });
  l.update_mask(1, [](Mask& mm) { mm(3, 2) = true; });
  CHECK(l.weight_changes > w0);
  CHECK(l.mask_changes > m0);
  CHECK_THROWS_AS(l.update_weight(0, [](Mat& w) { w.resize(1, 1); }), deepstruct::shape_error);
  CHECK(l.weight(0).rows() == 4);
  // Custom saliency per masked weight.
  l.set_saliency(0, Mat::Constant(4, 3, 7.0));
  CHECK(l.saliency(0)(2, 2) == 7.0);
  CHECK(l.saliency(1) == l.weight(1).cwiseAbs());
  l.clear_saliency();
  CHECK_FALSE(l.has_custom_saliency(0));
}

TEST_CASE("contracts: pruning, neuron pruning and optimizers work on a layer type they do not know", "[contract][prune]") {
  TwoMask l(5, 6);
  // prune_layer ranks the entries of both masked weights together.
  std::vector<double> all;
  for (std::size_t k = 0; k < 2; ++k) all.insert(all.end(), l.weight(k).data(), l.weight(k).data() + 30);
  for (double& v : all) v = std::abs(v);
  std::sort(all.begin(), all.end());
  CHECK(deepstruct::prune_layer(l, deepstruct::PruneAmount::count(20)) == 20);
  for (std::size_t k = 0; k < 2; ++k)
    for (Eigen::Index i = 0; i < 30; ++i) CHECK(l.mask(k)(i) == (std::abs(l.weight(k)(i)) > all[19]));
  // Neurons: rows of masked weight 1.
  CHECK(deepstruct::prune_neurons(l, deepstruct::PruneAmount::count(2), 2.0, 1) == 2);
  CHECK((l.mask(1).rowwise().count().array() == 0).count() >= 2);
  // Global pruning over mixed layer types; a null pointer is refused before anything changes.
  deepstruct::MaskedLinear<double> lin(5, 3);
  const Eigen::Index before = l.nnz() + lin.nnz();
  CHECK_THROWS_AS(deepstruct::prune_global(std::vector<deepstruct::MaskedLayer<double>*>{&l, nullptr}, deepstruct::PruneAmount::count(1)),
                  deepstruct::value_error);
  CHECK(l.nnz() + lin.nnz() == before);
  CHECK(deepstruct::prune_global(std::vector<deepstruct::MaskedLayer<double>*>{&l, &lin}, deepstruct::PruneAmount::fraction(0.5)) ==
        static_cast<Eigen::Index>(std::nearbyint(0.5 * double(before))));
}

TEST_CASE("contracts: a model of its own gets state_dict, strict loads, training and untrainable modules", "[contract][model]") {
  Net net;
  CHECK(net.maskable_layers().size() == 2);
  CHECK(net.maskable_layer_names() == std::vector<std::string>{"two", "heads.0"});
  CHECK(net.named_modules()[1].module == &net.out_);
  CHECK(net.num_parameters() == 24 + 8 + 2);
  const auto sd = net.state_dict();
  CHECK(sd.matrices.count("two.a") == 1);
  CHECK(sd.masks.count("two._mask_b") == 1);
  CHECK(sd.vectors.count("heads.0.bias") == 1);
  // Strict and all or nothing: a wrong shape in the last module leaves the first unchanged.
  Net other;
  other.two_.update_weight(0, [](Mat& w) { w.setConstant(3.0); });
  auto bad = sd;
  bad.matrices["heads.0.weight"] = Mat::Zero(1, 1);
  CHECK_THROWS_AS(other.load_state_dict(bad), deepstruct::shape_error);
  CHECK(other.two_.weight(0)(0, 0) == 3.0);
  auto extra = sd;
  extra.vectors["two.c"] = Eigen::VectorXd::Zero(2);
  CHECK_THROWS_AS(other.load_state_dict(extra), deepstruct::shape_error);
  // A key under two kinds (here a weight's name also as a vector): one of them is not the model's.
  auto twice = sd;
  twice.vectors["two.a"] = Eigen::VectorXd::Zero(2);
  CHECK_THROWS_WITH(other.load_state_dict(twice), test::contains("found 'two.a' 2 times"));
  // A recorded shape of more dimensions than a plain 2-D weight has, with as many entries.
  auto three_d = sd;
  const Mat& a = sd.matrices.at("two.a");
  three_d.shapes["two.a"] = {a.rows(), a.cols(), 1};
  CHECK_THROWS_WITH(other.load_state_dict(three_d), test::contains("expected 'two.a' of shape"));
  CHECK(other.two_.weight(0)(0, 0) == 3.0);
  other.load_state_dict(sd);
  CHECK(other.two_.weight(0) == net.two_.weight(0));
  // Training through fit; an untrainable module is left alone by the optimizer.
  net.two_.set_trainable(false);
  const Mat frozen = net.two_.weight(1);
  Mat x = Mat::Random(3, 40);
  deepstruct::Labels y(40);
  for (Eigen::Index i = 0; i < 40; ++i) y[i] = x(0, i) > 0 ? 1 : 0;
  deepstruct::Adam<double> adam(deepstruct::AdamOptions{0.05});
  deepstruct::FitOptions options;
  options.epochs = 20;
  options.batch_size = 10;
  options.quiet = true;
  const auto history = deepstruct::fit(net, adam, x, y, options);
  CHECK(history.back().train_loss < history.front().train_loss);
  CHECK(net.two_.weight(1) == frozen);
  CHECK(adam.num_states() == 2);  // the MaskedLinear's weight and bias only
  net.two_.set_trainable(true);
  deepstruct::prune_global(net, deepstruct::PruneAmount::fraction(0.25));
  CHECK(net.density() == Approx(0.75).margin(0.02));
  deepstruct::Adam<double> fresh;
  deepstruct::train_step(net, fresh, x, y);
  CHECK(fresh.num_states() == 4);
}

TEST_CASE("contracts: sparse training (ERK, SET) runs on a layer type it does not know; RigL says why it cannot", "[contract][sparse_training]") {
  Net net;
  // ERK counts the shape a layer declares: a kernel layer's extra dimensions change its density.
  KernelTwoMask kernel(3, 4);
  CHECK(kernel.weight_shape(0) == std::vector<Eigen::Index>{4, 1, 3, 1});
  const auto as_matrix = deepstruct::allocate_densities({{4, 3}, {4, 3}, {2, 4}}, 0.5);
  const auto as_kernel = deepstruct::allocate_densities({{4, 1, 3, 1}, {4, 1, 3, 1}, {2, 4}}, 0.5);
  CHECK(as_matrix[0] != Approx(as_kernel[0]));
  const auto d = deepstruct::sparse_init(net, 0.5, {}, 7);
  CHECK(d == as_matrix);
  std::vector<Eigen::Index> nnz;
  for (auto* l : net.maskable_layers())
    for (std::size_t k = 0; k < l->num_masks(); ++k) nnz.push_back(l->nnz(k));
  CHECK(nnz[0] == static_cast<Eigen::Index>(std::floor(d[0] * 12)));
  // SET: the layer's default hooks (mask_changed) follow every update; per-weight nnz constant.
  deepstruct::SGD<double> sgd(deepstruct::SGDOptions{0.1});
  deepstruct::MaskUpdateOptions o;
  o.update_every = 1;
  o.drop_fraction = 0.5;
  o.seed = 3;
  deepstruct::SET<deepstruct::SGD<double>, Net> set(net, sgd, o);
  const Mat x = Mat::Random(3, 16);
  deepstruct::Labels y(16);
  for (Eigen::Index i = 0; i < 16; ++i) y[i] = x(1, i) > 0 ? 1 : 0;
  const int changes_before = net.two_.mask_changes;
  for (int s = 0; s < 5; ++s) {
    deepstruct::train_step(net, set, x, y);
    std::size_t i = 0;
    for (auto* l : net.maskable_layers())
      for (std::size_t k = 0; k < l->num_masks(); ++k, ++i) {
        CHECK(l->nnz(k) == nnz[i]);
        CHECK(l->nnz(k) == l->mask(k).count());
      }
  }
  CHECK(net.two_.mask_changes > changes_before);
  CHECK(set.history().size() == 5);
  // RigL needs dense gradients, which this layer type does not keep: refused before training.
  deepstruct::MaskUpdateOptions r;
  r.update_every = 100;  // the first update far away: still refused up front
  r.end = 1000;
  using RigLNet = deepstruct::RigL<deepstruct::SGD<double>, Net>;
  CHECK_THROWS_AS(RigLNet(net, sgd, r), deepstruct::state_error);
}
