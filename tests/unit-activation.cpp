// Tests of <deepstruct/activation.hpp> against PyTorch (tests/data/torch_training.json).
#include <deepstruct/activation.hpp>

#include "test_support.hpp"

TEMPLATE_TEST_CASE("activation: values and derivatives match PyTorch", "[activation][parity]", float, double) {
  using Vec = Eigen::Matrix<TestType, -1, 1>;
  const nlohmann::json fixture = test::load_json("torch_training.json")["activations"];
  const Vec x = test::vector<TestType>(fixture["x"]);
  for (auto it = fixture["cases"].begin(); it != fixture["cases"].end(); ++it) {
    INFO("activation " << it.key());
    const deepstruct::Activation a = deepstruct::activation_from_string(it.key());
    CHECK(std::string(deepstruct::to_string(a)) == it.key());
    Vec y(x.size()), g(x.size());
    deepstruct::activate(a, x, y);
    CHECK(test::max_rel_diff(y.template cast<double>(), test::vector<double>(it.value()["y"])) <= test::tol<TestType>(10));
    const Vec ones = Vec::Ones(x.size());
    deepstruct::activation_backward(a, x, y, ones, g);
    CHECK(test::max_rel_diff(g.template cast<double>(), test::vector<double>(it.value()["dy_dx"])) <= test::tol<TestType>(10));
    // In place, as the networks use it.
    Vec inplace = x;
    deepstruct::activate(a, inplace, inplace);
    CHECK(inplace == y);
  }
  Vec id(3), out(3);
  id << -1, 0, 2;
  deepstruct::activate(deepstruct::Activation::identity, id, out);
  CHECK(out == id);
  CHECK_THROWS_AS(deepstruct::activation_from_string("swish"), deepstruct::value_error);
}
