// Tests of <deepstruct/scalable.hpp>: ScalableDeepFFN.
#include <deepstruct/scalable.hpp>

#include <limits>

#include "test_support.hpp"

TEST_CASE("ScalableDeepFFN: sizes from proportions and a scale, as deepstruct", "[scalable]") {
  const deepstruct::ScalableDeepFFN family({0.5, 0.3, 0.2});
  CHECK(family.draw(1000) == std::vector<Eigen::Index>{500, 300, 200});
  CHECK(family.draw(10) == std::vector<Eigen::Index>{5, 3, 2});
  CHECK(family.draw(1) == std::vector<Eigen::Index>{1, 1, 1});  // a layer never vanishes
  // Proportions are rounded to two decimals before scaling (deepstruct's precision).
  const deepstruct::ScalableDeepFFN thirds({0.3334, 0.3333, 0.3333});
  CHECK(thirds.draw(100) == std::vector<Eigen::Index>{33, 33, 33});
  // In double arithmetic as deepstruct (numpy): 100 * 0.29 = 28.999999999999996 gives 28.
  CHECK(deepstruct::ScalableDeepFFN({0.29, 0.71}).draw(100) == std::vector<Eigen::Index>{28, 71});
  CHECK(deepstruct::ScalableDeepFFN({0.57, 0.43}).draw(100) == std::vector<Eigen::Index>{56, 43});
  CHECK(deepstruct::ScalableDeepFFN({0.58, 0.42}).draw(100) == std::vector<Eigen::Index>{57, 42});
  const auto model = family.build<float>(784, 10, 100);
  CHECK(model.hidden_sizes() == std::vector<Eigen::Index>{50, 30, 20});
  CHECK(model.inputs() == 784);
  CHECK_THROWS_AS(deepstruct::ScalableDeepFFN({0.5, 0.4}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::ScalableDeepFFN({}), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::ScalableDeepFFN({1.2, -0.2}), deepstruct::value_error);
  CHECK_THROWS_AS(family.draw(0), deepstruct::value_error);
}

TEST_CASE("ScalableDeepFFN: a precision or scale whose sizes cannot be computed is value_error", "[scalable][robustness]") {
  // 10^309 is +inf in double: the rounded proportions were NaN and every layer silently got one
  // neuron (deepstruct's draw fails there: numpy's round gives NaN, int(NaN) raises).
  CHECK_THROWS_WITH(deepstruct::ScalableDeepFFN({0.5, 0.5}, 309), test::contains("expected precision in [1, 308]"));
  CHECK(deepstruct::ScalableDeepFFN({0.5, 0.5}, 308).draw(10) == std::vector<Eigen::Index>{5, 5});
  // A size of 2^63 does not convert to Eigen::Index (undefined; it gave one neuron on x86).
  const Eigen::Index max = std::numeric_limits<Eigen::Index>::max();
  CHECK_THROWS_WITH(deepstruct::ScalableDeepFFN({1.0}).draw(max), test::contains("expected layer sizes below 2^63") &&
                                                                      test::contains("for proportion 0 at scale " + std::to_string(max)));
  CHECK(deepstruct::ScalableDeepFFN({0.5, 0.5}).draw(Eigen::Index{1} << 62) ==
        std::vector<Eigen::Index>{Eigen::Index{1} << 61, Eigen::Index{1} << 61});
}
