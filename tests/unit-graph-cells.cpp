// Tests of <deepstruct/graph/cells.hpp>: a Dag as a DeepCellDAN's cell graph, the cells as a
// labelled Dag, GraphML with per-cell numbers, SVG; the neuron graph of a masked convolution is
// its Jacobian's pattern.
#include <deepstruct/graph/cells.hpp>
#include <deepstruct/graph/generators.hpp>
#include <deepstruct/graph/svg.hpp>
#include <deepstruct/prune.hpp>

#include <fstream>
#include <iterator>
#include <string>

#include "test_support.hpp"

using deepstruct::Dag;

TEST_CASE("cell_graph: in-edge order of the Dag; a Watts-Strogatz prior becomes a DeepCellDAN", "[graph][cells]") {
  Dag g(4);
  add_edge(2, 3, g);
  add_edge(0, 3, g);
  add_edge(1, 3, g);
  add_edge(0, 1, g);
  const auto c = deepstruct::cell_graph(g);
  CHECK(c.num_nodes == 4);
  deepstruct::DeepCellDAN<float> model(10, {1, 8, 8}, c, deepstruct::reduction_cells<float>());
  CHECK(model.predecessors(3) == std::vector<std::size_t>{2, 0, 1});  // as the edges were added
  CHECK(model.input_nodes() == std::vector<std::size_t>{0, 2});
  CHECK(model.output_nodes() == std::vector<std::size_t>{3});
  deepstruct::Generator gen(3);
  const Dag ws = deepstruct::watts_strogatz(12, 4, 0.75, gen);
  deepstruct::DeepCellDAN<float> prior(10, {1, 16, 16}, deepstruct::cell_graph(ws), deepstruct::reduction_cells<float>());
  CHECK(prior.num_nodes() == 12);
  CHECK(prior.graph().edges.size() == num_edges(ws));
}

TEST_CASE("cell_structure, write_cell_graphml and the SVG: per-cell parameters and densities", "[graph][cells]") {
  deepstruct::CellGraph c{4, {{0, 1}, {0, 2}, {1, 3}, {2, 3}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 2;
  deepstruct::DeepCellDAN<float> model(10, {1, 8, 8}, c, deepstruct::keep_size_cells<float>(), o);
  deepstruct::prune_global(model, deepstruct::PruneAmount::fraction(0.5), deepstruct::layers_of_type({"MaskedConv2d"}));
  const Dag g = deepstruct::cell_structure(model);
  CHECK(num_edges(g) == 4);
  CHECK(g[3].layer == 2);
  const auto w = model.cell_weights(1);
  CHECK(w.second == 2 * 2 * 9);
  CHECK(model.cell_parameters(1) == 2 * 2 * 9 + 2 + 2 + 2);  // conv weight and bias, BN weight and bias
  CHECK_THAT(g[1].label, test::contains("1: " + std::to_string(model.cell_parameters(1)) + " p, "));
  const std::string dir = DEEPSTRUCT_TEST_TMP_DIR;
  deepstruct::write_cell_graphml(dir + "/cells.graphml", model);
  const Dag back = deepstruct::read_graphml(dir + "/cells.graphml");
  CHECK(num_vertices(back) == 4);
  CHECK(num_edges(back) == 4);
  CHECK(back[2].label == g[2].label);
  std::ifstream in(dir + "/cells.graphml");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, test::contains("attr.name=\"density\" attr.type=\"double\""));
  CHECK_THAT(text, test::contains("<data key=\"d3\">" + std::to_string(w.first) + "</data>"));
  deepstruct::SvgOptions svg;
  svg.vertex_labels = true;
  deepstruct::write_svg(dir + "/cells.svg", g, svg);
  std::ifstream s(dir + "/cells.svg");
  const std::string picture((std::istreambuf_iterator<char>(s)), std::istreambuf_iterator<char>());
  CHECK_THAT(picture, test::contains(g[3].label));
}

TEST_CASE("cell_structure: a cell that lost one weight is not labelled 100%, one that kept one not 0%", "[graph][cells]") {
  // The share was printed with %.0f: 2303 of 2304 active weights read "100%", 1 of 2304 "0%".
  deepstruct::CellGraph c{3, {{0, 1}, {1, 2}}};
  deepstruct::DeepCellDANOptions o;
  o.width = 16;
  deepstruct::DeepCellDAN<float> model(10, {1, 8, 8}, c, deepstruct::keep_size_cells<float>(), o);
  auto& one = model.cell(1).as<deepstruct::KeepSizeCell<float>>()->conv;
  auto& two = model.cell(2).as<deepstruct::KeepSizeCell<float>>()->conv;
  REQUIRE(model.cell_weights(1).second == 16 * 16 * 9);
  one.update_mask([](auto& m) { m(0, 0) = false; });
  two.update_mask([](auto& m) {
    m.setConstant(false);
    m(0, 0) = true;
  });
  const Dag g = deepstruct::cell_structure(model);
  CHECK_THAT(g[0].label, Catch::Matchers::EndsWith(" p, 100%"));
  CHECK_THAT(g[1].label, Catch::Matchers::EndsWith(" p, >99%"));
  CHECK_THAT(g[2].label, Catch::Matchers::EndsWith(" p, <1%"));
  two.update_mask([](auto& m) { m.setConstant(false); });
  one.update_mask([](auto& m) { m.setConstant(true); m.leftCols(m.cols() / 3).setConstant(false); });
  const Dag h = deepstruct::cell_structure(model);
  CHECK_THAT(h[2].label, Catch::Matchers::EndsWith(" p, 0%"));
  CHECK_THAT(h[1].label, Catch::Matchers::EndsWith(" p, 67%"));
}

TEST_CASE("conv2d_structure of a masked convolution: exactly the Jacobian's nonzero pattern", "[graph][cells][conv2d]") {
  deepstruct::Conv2dOptions o;
  o.kernel = {3, 2};
  o.stride = {2, 1};
  o.padding = {1, 1};
  o.dilation = {1, 2};
  o.groups = 2;
  deepstruct::MaskedConv2d<double> conv(4, 6, o, 7);
  deepstruct::Generator gen(2);
  auto m = conv.mask();
  for (Eigen::Index i = 0; i < m.size(); ++i) m(i) = deepstruct::random::bernoulli(gen, 0.4);
  conv.set_mask(m);
  conv.set_bias(Eigen::VectorXd::Zero(6));
  const deepstruct::ImageShape in{4, 5, 6};
  const Dag g = deepstruct::conv2d_structure(conv, 5, 6);
  const Eigen::Index n_in = in.size(), n_out = conv.output_shape(in).size();
  REQUIRE(num_vertices(g) == static_cast<std::size_t>(n_in + n_out));
  // Column j of the Jacobian: the convolution of the j-th unit image.
  Eigen::MatrixXd jac(n_out, n_in), y;
  for (Eigen::Index j = 0; j < n_in; ++j) {
    Eigen::MatrixXd e = Eigen::MatrixXd::Zero(n_in, 1);
    e(j) = 1.0;
    conv.forward(e, in, y);
    jac.col(j) = y;
  }
  std::size_t expected = 0;
  for (Eigen::Index o2 = 0; o2 < n_out; ++o2)
    for (Eigen::Index j = 0; j < n_in; ++j)
      if (jac(o2, j) != 0.0) {
        ++expected;
        CHECK(boost::edge(static_cast<std::size_t>(j), static_cast<std::size_t>(n_in + o2), g).second);
      }
  CHECK(num_edges(g) == expected);
  CHECK_THROWS_AS(deepstruct::conv2d_structure(deepstruct::Conv2dGeometry{}, Eigen::Matrix<bool, -1, -1>(2, 2)), deepstruct::value_error);
}
