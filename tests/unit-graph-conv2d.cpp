// Tests of <deepstruct/graph/conv2d.hpp>.
#include <deepstruct/graph/conv2d.hpp>

#include <set>
#include <utility>

#include "graph_test_support.hpp"
#include "test_support.hpp"

using test::EdgeSet;
using test::edge_set;

namespace {

// The definition pair by pair: input (ic, iy, ix) feeds output (oc, oy, ox) when both channels are in
// the same group and some tap k in [0, kernel) has iy == oy*s - p + k*d (per axis), i.e.
// (iy - oy*s + p) is a non-negative multiple of d below kernel*d.
EdgeSet brute_force(const deepstruct::Conv2dGeometry& c, std::int64_t Ho, std::int64_t Wo) {
  auto reads = [&](int axis, std::int64_t in_pos, std::int64_t out_pos) {
    const std::int64_t offset = in_pos - out_pos * c.stride[axis] + c.padding[axis];
    return offset >= 0 && offset % c.dilation[axis] == 0 && offset / c.dilation[axis] < c.kernel[axis];
  };
  const std::int64_t H = c.input[0], W = c.input[1], n_in = c.in_channels * H * W;
  EdgeSet s;
  for (std::int64_t ic = 0; ic < c.in_channels; ++ic)
    for (std::int64_t oc = 0; oc < c.out_channels; ++oc) {
      if (ic / (c.in_channels / c.groups) != oc / (c.out_channels / c.groups)) continue;
      for (std::int64_t iy = 0; iy < H; ++iy)
        for (std::int64_t ix = 0; ix < W; ++ix)
          for (std::int64_t oy = 0; oy < Ho; ++oy)
            for (std::int64_t ox = 0; ox < Wo; ++ox)
              if (reads(0, iy, oy) && reads(1, ix, ox))
                s.emplace(std::size_t((ic * H + iy) * W + ix), std::size_t(n_in + (oc * Ho + oy) * Wo + ox));
    }
  return s;
}

// A fixture case's geometry; dilation and groups default to 1 when the case has none.
deepstruct::Conv2dGeometry geometry(const nlohmann::json& c) {
  deepstruct::Conv2dGeometry geo;
  geo.in_channels = c["in_channels"].get<std::int64_t>();
  geo.out_channels = c["out_channels"].get<std::int64_t>();
  geo.kernel = c["kernel"].get<std::array<std::int64_t, 2>>();
  geo.stride = c["stride"].get<std::array<std::int64_t, 2>>();
  geo.padding = c["padding"].get<std::array<std::int64_t, 2>>();
  if (c.contains("dilation")) geo.dilation = c["dilation"].get<std::array<std::int64_t, 2>>();
  if (c.contains("groups")) geo.groups = c["groups"].get<std::int64_t>();
  geo.input = c["input_hw"].get<std::array<std::int64_t, 2>>();
  return geo;
}

}  // namespace

TEST_CASE("conv2d: dilation, groups, depthwise and non-square kernels match PyTorch's Jacobian pattern", "[graph][conv2d]") {
  // tests/data/make_conv2d_fixtures.py: torch.autograd Jacobians of torch.nn.Conv2d layers.
  const auto fixture = test::load_json("conv2d_pytorch.json");
  REQUIRE(fixture["cases"].size() == 8);
  std::size_t with_dilation = 0, grouped = 0, depthwise = 0;
  for (const auto& c : fixture["cases"]) {
    INFO(c["note"].get<std::string>());
    const deepstruct::Conv2dGeometry geo = geometry(c);
    with_dilation += geo.dilation[0] > 1 || geo.dilation[1] > 1;
    grouped += geo.groups > 1;
    depthwise += geo.groups == geo.in_channels && geo.groups > 1;
    const auto out = deepstruct::conv2d_output_size(geo);
    CHECK(out == c["output_hw"].get<std::array<std::int64_t, 2>>());
    const deepstruct::Dag g = deepstruct::conv2d_structure(geo);
    const auto n_in = std::size_t(geo.in_channels * geo.input[0] * geo.input[1]);
    REQUIRE(num_vertices(g) == n_in + std::size_t(geo.out_channels * out[0] * out[1]));
    EdgeSet expected;
    for (const auto& e : c["edges"]) expected.emplace(e[0].get<std::size_t>(), n_in + e[1].get<std::size_t>());
    CHECK(edge_set(g) == expected);
    CHECK(num_edges(g) == expected.size());
  }
  CHECK(with_dilation >= 5);
  CHECK(grouped >= 4);
  CHECK(depthwise >= 3);
}

TEST_CASE("conv2d: the neuron graph is PyTorch's Jacobian pattern", "[graph][conv2d]") {
  const auto fixture = test::load_json("conv2d_structure.json");
  REQUIRE(fixture["cases"].size() == 3);
  for (const auto& c : fixture["cases"]) {
    const deepstruct::Conv2dGeometry geo = geometry(c);
    const auto out = deepstruct::conv2d_output_size(geo);
    CHECK(out == c["output_hw"].get<std::array<std::int64_t, 2>>());

    const deepstruct::Dag g = deepstruct::conv2d_structure(geo);
    const auto n_in = std::size_t(geo.in_channels * geo.input[0] * geo.input[1]);
    CHECK(num_vertices(g) == n_in + std::size_t(geo.out_channels * out[0] * out[1]));
    EdgeSet expected;  // fixture outputs count from 0; ours follow the inputs
    for (const auto& e : c["edges"]) expected.emplace(e[0].get<std::size_t>(), n_in + e[1].get<std::size_t>());
    CHECK(edge_set(g) == expected);
    CHECK(num_edges(g) == expected.size());  // no parallel edges
    CHECK(edge_set(g) == brute_force(geo, out[0], out[1]));
    for (std::size_t v = 0; v < num_vertices(g); ++v) CHECK(g[v].layer == (v < n_in ? 0u : 1u));  // stored layers
  }
}

// The same definition pair by pair (brute_force above) on more geometries than the PyTorch fixture.
TEST_CASE("conv2d: dilation, groups and non-square inputs against the pairwise definition", "[graph][conv2d]") {
  struct Case {
    std::int64_t cin, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups, H, W;
  };
  for (const Case& k : {Case{2, 4, 3, 3, 1, 1, 0, 0, 2, 2, 2, 7, 7}, Case{3, 3, 2, 3, 2, 1, 1, 2, 3, 1, 3, 9, 6},
                        Case{4, 2, 3, 1, 1, 2, 2, 0, 1, 1, 2, 5, 8}, Case{6, 6, 3, 3, 3, 2, 1, 1, 2, 3, 6, 10, 11},
                        Case{1, 5, 1, 1, 1, 1, 0, 0, 4, 4, 1, 3, 2}, Case{2, 2, 4, 2, 1, 3, 3, 1, 2, 2, 1, 4, 9}}) {
    deepstruct::Conv2dGeometry geo;
    geo.in_channels = k.cin;
    geo.out_channels = k.cout;
    geo.kernel = {k.kh, k.kw};
    geo.stride = {k.sh, k.sw};
    geo.padding = {k.ph, k.pw};
    geo.dilation = {k.dh, k.dw};
    geo.groups = k.groups;
    geo.input = {k.H, k.W};
    const auto out = deepstruct::conv2d_output_size(geo);
    for (int d = 0; d < 2; ++d) {  // PyTorch's formula, with floor division of a non-negative numerator
      const std::int64_t num = geo.input[d] + 2 * geo.padding[d] - geo.dilation[d] * (geo.kernel[d] - 1) - 1;
      CHECK(out[d] == num / geo.stride[d] + 1);
    }
    const deepstruct::Dag g = deepstruct::conv2d_structure(geo);
    const EdgeSet expected = brute_force(geo, out[0], out[1]);
    CHECK(edge_set(g) == expected);
    CHECK(num_edges(g) == expected.size());
  }
  // Known values: H = 7, k = 3, s = 2, p = 1, d = 2 gives 3; W = 10, k = 2, s = 3, p = 0, d = 1 gives 3.
  deepstruct::Conv2dGeometry geo;
  geo.kernel = {3, 2};
  geo.stride = {2, 3};
  geo.padding = {1, 0};
  geo.dilation = {2, 1};
  geo.input = {7, 10};
  CHECK(deepstruct::conv2d_output_size(geo) == std::array<std::int64_t, 2>{3, 3});
  // groups = in_channels: each output channel reads exactly one input channel.
  geo = {};
  geo.in_channels = geo.out_channels = geo.groups = 3;
  geo.input = {2, 2};
  const auto g = deepstruct::conv2d_structure(geo);
  CHECK(num_edges(g) == 12);
  for (std::size_t v = 0; v < 12; ++v) CHECK(out_degree(v, g) == 1);
}

TEST_CASE("conv2d: bad geometries throw value_error", "[graph][conv2d]") {
  auto throws = [](auto change) {
    deepstruct::Conv2dGeometry geo;
    geo.in_channels = 4;
    geo.out_channels = 2;
    geo.kernel = {3, 3};
    geo.input = {5, 5};
    CHECK_NOTHROW(deepstruct::conv2d_structure(geo));
    change(geo);
    CHECK_THROWS_AS(deepstruct::conv2d_structure(geo), deepstruct::value_error);
    CHECK_THROWS_AS(deepstruct::conv2d_output_size(geo), deepstruct::value_error);
  };
  throws([](auto& g) { g.stride[0] = 0; });
  throws([](auto& g) { g.stride[1] = -1; });
  throws([](auto& g) { g.kernel[1] = 0; });
  throws([](auto& g) { g.dilation[0] = 0; });
  throws([](auto& g) { g.padding[0] = -1; });
  throws([](auto& g) { g.in_channels = 0; });
  throws([](auto& g) { g.groups = 3; });  // 4 input channels
  throws([](auto& g) { g.groups = 4; });  // 2 output channels
  throws([](auto& g) { g.input = {2, 5}; });  // kernel taller than the input: empty output
  throws([](auto& g) { g.dilation = {1, 3}; });  // dilated kernel 7 wide > 5
  deepstruct::Conv2dGeometry geo;
  geo.kernel = {3, 3};
  geo.input = {2, 2};
  CHECK_THROWS_WITH(deepstruct::conv2d_structure(geo), test::contains("output is empty"));
  geo.padding = {1, 1};  // padding makes room
  CHECK(deepstruct::conv2d_output_size(geo) == std::array<std::int64_t, 2>{2, 2});
}

TEST_CASE("conv2d: absurd geometries are refused up front with value_error naming the size", "[graph][conv2d][robustness]") {
  // Issue 14: 2^40 channels ended in std::bad_alloc; products beyond 64 bits were undefined.
  deepstruct::Conv2dGeometry geo;
  geo.in_channels = std::int64_t{1} << 40;
  CHECK_THROWS_WITH(deepstruct::conv2d_structure(geo),
                    test::contains("expected at most 2^31 - 1 = 2147483647 vertices, found " + std::to_string(std::int64_t{1} << 40) + " inputs"));
  geo = {};
  geo.out_channels = std::int64_t{1} << 40;
  CHECK_THROWS_AS(deepstruct::conv2d_structure(geo), deepstruct::value_error);
  geo = {};
  geo.in_channels = std::int64_t{1} << 40;
  geo.input = {std::int64_t{1} << 40, std::int64_t{1} << 40};  // (2^40)^3 overflows 64 bits
  CHECK_THROWS_WITH(deepstruct::conv2d_structure(geo), test::contains("overflows 64 bits"));
  geo = {};
  geo.kernel = {std::int64_t{1} << 32, std::int64_t{1} << 32};  // the mask's columns overflow (was signed overflow)
  CHECK_THROWS_WITH(deepstruct::conv2d_structure(geo, Eigen::Matrix<bool, -1, -1>::Ones(1, 1)), test::contains("the kernel overflows 64 bits"));
  geo = {};
  geo.padding = {std::int64_t{1} << 62, 0};  // 2 * padding overflows
  CHECK_THROWS_WITH(deepstruct::conv2d_output_size(geo), test::contains("overflows 64 bits"));
  geo = {};
  geo.kernel = {3, 3};
  geo.dilation = {std::int64_t{1} << 62, 1};  // dilated kernel overflows
  CHECK_THROWS_AS(deepstruct::conv2d_output_size(geo), deepstruct::value_error);
  // Few vertices, too many edges for any memory: 46000 x 46000 channels of 1 pixel.
  geo = {};
  geo.in_channels = geo.out_channels = 46000;
  CHECK_THROWS_WITH(deepstruct::conv2d_structure(geo), test::contains("of physical memory of this machine"));
  // The exact edge count behind that check, against the graph, with padding and dilation.
  geo = {};
  geo.in_channels = 2;
  geo.out_channels = 3;
  geo.kernel = {3, 2};
  geo.padding = {2, 1};
  geo.dilation = {2, 1};
  geo.stride = {1, 2};
  geo.input = {5, 4};
  const auto out = deepstruct::conv2d_output_size(geo);
  const double taps = deepstruct::detail::conv2d_taps_inside(5, 3, 1, 2, 2, out[0]) * deepstruct::detail::conv2d_taps_inside(4, 2, 2, 1, 1, out[1]);
  CHECK(static_cast<double>(num_edges(deepstruct::conv2d_structure(geo))) == 3.0 * 2.0 * taps);
}
