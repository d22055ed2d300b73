// Tests of <deepstruct/dan_description.hpp>.
#include <deepstruct/dan_description.hpp>
#include <deepstruct/masked_deep_dan.hpp>

#include <limits>
#include <vector>

#include "allocation_guard.hpp"
#include "test_support.hpp"

namespace {

// Layers of sizes 2, 3, 1; main connections 0->1, 1->2 and a skip 0->2.
deepstruct::DanDescription valid() {
  deepstruct::DanDescription d;
  d.layer_sizes = {2, 3, 1};
  d.layer_vertices = {{0, 1}, {2, 3, 4}, {5}};
  using M = Eigen::Matrix<bool, -1, -1>;
  d.connections.push_back({0, 1, M::Constant(3, 2, true)});
  d.connections.push_back({0, 2, M::Constant(1, 2, false)});
  d.connections.push_back({1, 2, M::Constant(1, 3, true)});
  return d;
}

}  // namespace

TEST_CASE("DanDescription: check_dan_description accepts a consistent description", "[dan_description]") {
  CHECK_NOTHROW(deepstruct::check_dan_description(valid()));
  deepstruct::DanDescription one;
  one.layer_sizes = {4};
  one.layer_vertices = {{0, 1, 2, 3}};
  CHECK_NOTHROW(deepstruct::check_dan_description(one));
}

TEST_CASE("DanDescription: check_dan_description names what is wrong", "[dan_description]") {
  CHECK_THROWS_AS(deepstruct::check_dan_description(deepstruct::DanDescription{}), deepstruct::value_error);

  auto d = valid();
  d.layer_vertices[1].pop_back();
  CHECK_THROWS_AS(deepstruct::check_dan_description(d), deepstruct::shape_error);

  d = valid();
  d.layer_vertices.pop_back();
  CHECK_THROWS_AS(deepstruct::check_dan_description(d), deepstruct::shape_error);

  d = valid();
  d.connections[2].mask.resize(3, 1);
  CHECK_THROWS_WITH(deepstruct::check_dan_description(d), test::contains("expected a mask of 1x3, found 3x1"));

  d = valid();
  std::swap(d.connections[1], d.connections[2]);  // sources of target 2 not ascending
  CHECK_THROWS_AS(deepstruct::check_dan_description(d), deepstruct::value_error);

  d = valid();
  d.connections.erase(d.connections.begin());  // main 0 -> 1 missing
  CHECK_THROWS_WITH(deepstruct::check_dan_description(d), test::contains("main connection 0 -> 1"));

  d = valid();
  d.connections.push_back(d.connections[0]);  // out of order
  CHECK_THROWS_AS(deepstruct::check_dan_description(d), deepstruct::value_error);

  d = valid();
  d.connections[1].source_layer = 2;  // 2 -> 2
  CHECK_THROWS_AS(deepstruct::check_dan_description(d), deepstruct::value_error);
}

TEST_CASE("DanDescription: without vertex lists the ids are consecutive layer by layer", "[dan_description]") {
  // The plain description: layer sizes and (source, target, mask) only.
  auto d = valid();
  d.layer_vertices.clear();
  CHECK_NOTHROW(deepstruct::check_dan_description(d));
  using Lists = std::vector<std::vector<std::size_t>>;
  CHECK(deepstruct::default_layer_vertices({2, 3, 1}) == Lists{{0, 1}, {2, 3, 4}, {5}});
  CHECK(deepstruct::default_layer_vertices({}).empty());
  CHECK(deepstruct::layer_vertices_or_default(d) == Lists{{0, 1}, {2, 3, 4}, {5}});
  // Lists that are given are kept as they are.
  auto given = valid();
  given.layer_vertices = {{7, 3}, {0, 1, 2}, {9}};
  CHECK(deepstruct::layer_vertices_or_default(given) == given.layer_vertices);
  // Mask shapes are still checked without vertex lists.
  d.connections[0].mask.resize(2, 3);
  CHECK_THROWS_WITH(deepstruct::check_dan_description(d), test::contains("expected a mask of 3x2, found 2x3"));
  deepstruct::DanDescription sizes_only;
  sizes_only.layer_sizes = {4};
  CHECK_NOTHROW(deepstruct::check_dan_description(sizes_only));
}

TEST_CASE("DanDescription: a layer beyond 2^31 - 1 vertices is refused before anything is allocated", "[dan_description][robustness]") {
  // Issue 14: one layer of 3e9 vertices made default_layer_vertices push 3e9 ids one by one (a
  // hang, then 24 GB). The guard turns any allocation beyond 64 MiB into std::bad_alloc at once.
  test::AllocationGuard guard(std::size_t{64} << 20);
  deepstruct::DanDescription d;
  d.layer_sizes = {3000000000};
  CHECK_THROWS_WITH(deepstruct::check_dan_description(d),
                    test::contains("expected at most 2^31 - 1 = 2147483647 vertices per layer") && test::contains("found layer 0 of 3000000000"));
  CHECK_THROWS_AS(deepstruct::check_dan_description(d), deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::default_layer_vertices({2, 3000000000}), deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::layer_vertices_or_default(d), deepstruct::shape_error);
  CHECK_THROWS_AS(deepstruct::default_layer_vertices({std::numeric_limits<std::size_t>::max()}), deepstruct::shape_error);
  // Each layer within the limit, all of them together beyond any memory: ids of 8 bytes each.
  CHECK_THROWS_WITH(deepstruct::default_layer_vertices(std::vector<std::size_t>(1u << 16, deepstruct::max_layer_vertices)),
                    test::contains("of physical memory of this machine"));
  // The network built on such a description: the same error, before any layer exists.
  CHECK_THROWS_AS(deepstruct::MaskedDeepDAN<float>(4, 2, d), deepstruct::shape_error);
  CHECK(guard.largest() < (std::size_t{1} << 20));
  CHECK(deepstruct::max_layer_vertices == 2147483647u);
}
