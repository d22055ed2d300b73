// Tests of <deepstruct/optim.hpp> (and parameter.hpp) against PyTorch's optimizers
// (tests/data/torch_training.json): SGD with momentum, dampening, nesterov, weight decay;
// Adam with weight decay; AdamW.
#include <deepstruct/masked_linear.hpp>
#include <deepstruct/optim.hpp>

#include "test_support.hpp"

namespace {

// One parameter vector with a given gradient and mask, as a model hands it to an optimizer.
template <typename Scalar>
struct VectorModel {
  Eigen::Matrix<Scalar, -1, 1> value, grad;
  Eigen::Matrix<bool, -1, 1> mask;
  template <typename Fn>
  void for_each_parameter(Fn&& fn) {
    fn(deepstruct::ParameterRef<Scalar>{value.data(), grad.data(), value.size(), mask.data()});
  }
};

template <typename Scalar, typename Optimizer>
void run(Optimizer& opt, const nlohmann::json& fixture, const nlohmann::json& expected) {
  VectorModel<Scalar> model;
  model.value = test::vector<Scalar>(fixture["initial"]);
  model.mask.resize(model.value.size());
  for (Eigen::Index i = 0; i < model.mask.size(); ++i) model.mask[i] = fixture["mask"][static_cast<std::size_t>(i)].get<bool>();
  for (std::size_t s = 0; s < expected.size(); ++s) {
    model.grad = test::vector<Scalar>(fixture["grads"][s]);
    opt.step(model);
    INFO("step " << s + 1);
    CHECK(test::max_rel_diff(model.value.template cast<double>(), test::vector<double>(expected[s])) <= test::tol<Scalar>(100));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("optimizers: every configuration matches PyTorch step by step", "[optim][parity]", float, double) {
  const nlohmann::json f = test::load_json("torch_training.json")["optimizers"];
  int cases = 0;
  for (const auto& c : f["cases"]) {
    const std::string name = c["optimizer"].get<std::string>();
    const auto& o = c["options"];
    INFO(name << " " << o.dump());
    if (name == "SGD") {
      deepstruct::SGDOptions so;
      so.lr = o["lr"].get<double>();
      so.momentum = o.value("momentum", 0.0);
      so.dampening = o.value("dampening", 0.0);
      so.nesterov = o.value("nesterov", false);
      so.weight_decay = o.value("weight_decay", 0.0);
      deepstruct::SGD<TestType> opt(so);
      run<TestType>(opt, f, c["after_each_step"]);
    } else {
      deepstruct::AdamOptions ao = name == "AdamW" ? deepstruct::AdamW<TestType>::default_options() : deepstruct::AdamOptions{};
      ao.lr = o["lr"].get<double>();
      if (o.contains("betas")) {
        ao.beta1 = o["betas"][0].get<double>();
        ao.beta2 = o["betas"][1].get<double>();
      }
      ao.eps = o.value("eps", 1e-8);
      if (o.contains("weight_decay")) ao.weight_decay = o["weight_decay"].get<double>();
      if (name == "Adam") {
        deepstruct::Adam<TestType> opt(ao);
        run<TestType>(opt, f, c["after_each_step"]);
        CHECK(opt.steps() == 3);
      } else {
        deepstruct::AdamW<TestType> opt(ao);
        run<TestType>(opt, f, c["after_each_step"]);
      }
    }
    ++cases;
  }
  CHECK(cases == 9);
}

TEST_CASE("optimizers: masked weights keep zero gradient and stay inactive", "[optim]") {
  deepstruct::MaskedLinear<double> layer(4, 3, true, 1);
  deepstruct::MaskedLinear<double>::Mask m = deepstruct::MaskedLinear<double>::Mask::Constant(3, 4, true);
  m(0, 1) = m(2, 3) = false;
  layer.set_mask(m);
  const Eigen::MatrixXd before = layer.weight();
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(4, 5);
  deepstruct::SGDOptions so;
  so.lr = 0.1;
  so.momentum = 0.9;
  deepstruct::SGD<double> sgd(so);
  for (int step = 0; step < 3; ++step) {
    layer.zero_grad();
    layer.backward(x, Eigen::MatrixXd::Ones(3, 5), nullptr);
    sgd.step(layer);
  }
  CHECK(layer.weight()(0, 1) == before(0, 1));  // untouched without weight decay
  CHECK(layer.weight()(2, 3) == before(2, 3));
  CHECK(layer.weight()(0, 0) != before(0, 0));
  // With weight decay the masked values shrink as in PyTorch, but the mask never changes.
  so.weight_decay = 0.5;
  deepstruct::SGD<double> decayed(so);
  layer.zero_grad();
  decayed.step(layer);
  CHECK(std::abs(layer.weight()(0, 1)) < std::abs(before(0, 1)));
  CHECK(layer.mask() == m);
  CHECK(layer.effective_weight()(0, 1) == 0.0);
  // The forward pass sees the new weights (the caches were refreshed).
  CHECK(test::max_rel_diff(layer.forward(x), Eigen::MatrixXd((layer.effective_weight() * x).colwise() + layer.bias())) < 1e-12);
}

TEST_CASE("optimizers: bad options and a changed model throw", "[optim]") {
  deepstruct::SGDOptions so;
  so.lr = -1;
  CHECK_THROWS_AS(deepstruct::SGD<float>(so), deepstruct::value_error);
  so = {};
  so.nesterov = true;
  CHECK_THROWS_AS(deepstruct::SGD<float>(so), deepstruct::value_error);
  deepstruct::AdamOptions ao;
  ao.beta1 = 1.0;
  CHECK_THROWS_AS(deepstruct::Adam<float>(ao), deepstruct::value_error);
  ao = {};
  ao.eps = -1;
  CHECK_THROWS_AS(deepstruct::AdamW<float>(ao), deepstruct::value_error);
  deepstruct::Adam<float> adam;
  deepstruct::MaskedLinear<float> a(4, 3), b(5, 3);
  adam.step(a);
  CHECK_THROWS_AS(adam.step(b), deepstruct::shape_error);
}

TEST_CASE("optimizers: large tensors (chunked across threads with OpenMP) follow the scalar rule", "[optim]") {
  // 100,003 scalars: several chunks and a ragged last one. A plain scalar loop is the reference.
  VectorModel<double> model;
  const Eigen::Index n = 100003;
  model.value = Eigen::VectorXd::LinSpaced(n, -1.0, 1.0);
  model.mask = Eigen::Matrix<bool, -1, 1>::Constant(n, true);
  deepstruct::AdamOptions o;
  o.lr = 0.01;
  o.weight_decay = 0.1;
  deepstruct::AdamW<double> adamw(o);
  std::vector<double> p(model.value.data(), model.value.data() + n), m(n, 0.0), v(n, 0.0);
  for (int t = 1; t <= 3; ++t) {
    model.grad = Eigen::VectorXd::LinSpaced(n, double(t), -double(t)).array().sin();
    adamw.step(model);
    const double bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
    for (Eigen::Index i = 0; i < n; ++i) {
      const double g = model.grad[i];
      p[i] *= 1 - o.lr * o.weight_decay;
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      p[i] -= o.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + o.eps);
    }
  }
  CHECK(test::max_rel_diff(model.value, Eigen::Map<Eigen::VectorXd>(p.data(), n)) <= 1e-12);
}
