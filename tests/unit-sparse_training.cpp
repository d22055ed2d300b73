// Tests of <deepstruct/sparse_training.hpp>: ERK/ER/uniform allocation, the RigL and SET updates
// against tests/data/sparse_training.json (made with numpy by make_sparse_training.py), RigL's
// cosine schedule, sparse initialisation, and the updates inside the training loop on an FFN, a
// DAN and a recurrent network: per-layer nnz constant, dropped weights the smallest, grown ones the
// largest-gradient inactive positions, grown weights zero with reset optimizer state, no optimizer
// step on RigL's update steps; incremental mask changes equal to full rebuilds; dense gradients.
#include <deepstruct/loss.hpp>
#include <deepstruct/masked_conv2d.hpp>
#include <deepstruct/masked_deep_dan.hpp>
#include <deepstruct/masked_deep_ffn.hpp>
#include <deepstruct/masked_deep_rnn.hpp>
#include <deepstruct/masked_linear.hpp>
#include <deepstruct/optim.hpp>
#include <deepstruct/sparse_training.hpp>
#include <deepstruct/train.hpp>

#include <algorithm>
#include <iterator>
#include <limits>
#include <set>

#include "test_support.hpp"

namespace {

using Mat = Eigen::MatrixXd;
using Mask = Eigen::Matrix<bool, -1, -1>;

/// Row-major flat indices (the fixture's) of column-major positions, sorted.
std::vector<long> row_major(const std::vector<Eigen::Index>& pos, Eigen::Index rows, Eigen::Index cols) {
  std::vector<long> out;
  for (const Eigen::Index p : pos) out.push_back(static_cast<long>((p % rows) * cols + p / rows));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<long> longs(const nlohmann::json& a) {
  std::vector<long> out;
  for (const auto& v : a) out.push_back(v.get<long>());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("allocate_densities: ERK as RigL allocates it (sparse_training.json)", "[sparse_training][parity]") {
  const nlohmann::json f = test::load_json("sparse_training.json");
  REQUIRE(f["erk"].size() == 8);
  for (const auto& c : f["erk"]) {
    std::vector<std::vector<Eigen::Index>> shapes;
    for (const auto& s : c["shapes_out_in"]) shapes.push_back({s[0].get<Eigen::Index>(), s[1].get<Eigen::Index>()});
    deepstruct::AllocationOptions o;
    for (const auto& d : c["forced_dense"]) o.dense.push_back(d.get<std::size_t>());
    std::vector<std::size_t> dense;
    const auto d = deepstruct::allocate_densities(shapes, c["density"].get<double>(), o, &dense);
    INFO(c.dump().substr(0, 120));
    REQUIRE(d.size() == c["densities"].size());
    for (std::size_t i = 0; i < d.size(); ++i) CHECK(d[i] == Approx(c["densities"][i].get<double>()).epsilon(1e-12));
    std::vector<std::size_t> expected;
    for (const auto& v : c["dense_layers"]) expected.push_back(v.get<std::size_t>());
    CHECK(dense == expected);
    // The nonzeros add up to the target: sum floor-free d_i n_i == sum (n_i - floor(n_i (1 - density))).
    double got = 0, want = 0;
    for (std::size_t i = 0; i < d.size(); ++i) {
      const double n = double(shapes[i][0] * shapes[i][1]);
      got += d[i] * n;
      want += n - std::floor(n * (1 - c["density"].get<double>()));
    }
    CHECK(got == Approx(want).epsilon(1e-9));
  }
  // ER equals ERK for 2-D shapes at power 1; uniform gives every sparse layer the density.
  const std::vector<std::vector<Eigen::Index>> shapes{{300, 784}, {100, 300}, {10, 100}};
  deepstruct::AllocationOptions er, erk, uniform;
  er.method = deepstruct::DensityAllocation::er;
  uniform.method = deepstruct::DensityAllocation::uniform;
  uniform.dense = {2};
  CHECK(deepstruct::allocate_densities(shapes, 0.1, er) == deepstruct::allocate_densities(shapes, 0.1, erk));
  const auto u = deepstruct::allocate_densities(shapes, 0.1, uniform);
  CHECK(u == std::vector<double>{0.1, 0.1, 1.0});
  // ERK counts kernel dimensions: a 3x3 convolution gets a denser share than ER gives it.
  const std::vector<std::vector<Eigen::Index>> conv{{64, 32, 3, 3}, {64, 64, 3, 3}};
  CHECK(deepstruct::allocate_densities(conv, 0.2, erk)[0] != deepstruct::allocate_densities(conv, 0.2, er)[0]);
  CHECK_THROWS_AS(deepstruct::allocate_densities(shapes, 0.0), deepstruct::value_error);
  CHECK_THROWS_AS(deepstruct::allocate_densities({{3}}, 0.5), deepstruct::shape_error);
  // A NaN or infinite erk_power made every layer dense without a word.
  for (const double power : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity()}) {
    INFO("erk_power " << power);
    deepstruct::AllocationOptions bad;
    bad.erk_power = power;
    CHECK_THROWS_AS(deepstruct::allocate_densities(shapes, 0.1, bad), deepstruct::value_error);
    CHECK_THROWS_WITH(deepstruct::allocate_densities(shapes, 0.1, bad), test::contains("expected a finite erk_power"));
    deepstruct::MaskedDeepFFN<float> model(8, 2, {6});
    const auto mask = model.layer(0).mask();
    CHECK_THROWS_AS(deepstruct::sparse_init(model, 0.1, bad, 1), deepstruct::value_error);
    CHECK(model.layer(0).mask() == mask);
  }
  deepstruct::AllocationOptions half;
  half.erk_power = 0.5;
  CHECK(deepstruct::allocate_densities(shapes, 0.1, half)[0] < 1.0);
}

TEST_CASE("RigL, SET and the cosine schedule match the reference (sparse_training.json)", "[sparse_training][parity]") {
  const nlohmann::json f = test::load_json("sparse_training.json");
  for (const auto& c : f["rigl"]) {
    const Mat w = test::matrix<double>(c["weight"]), g = test::matrix<double>(c["dense_grad"]);
    const Mask m = test::mask(c["mask"]);
    const deepstruct::MaskChange change = deepstruct::rigl_change(w, m, g, c["drop_fraction"].get<double>());
    CHECK(change.n_drop == c["n_drop"].get<Eigen::Index>());
    CHECK(row_major(change.grown, w.rows(), w.cols()) == longs(c["grown_flat"]));
    // Applied to a layer: the new mask, grown weights zero, the rest as they were.
    deepstruct::MaskedLinear<double> layer(w, Eigen::VectorXd::Zero(w.rows()), m);
    layer.change_mask(0, change.dropped, change.grown);
    layer.update_weight([&](Mat& v) {
      for (const auto p : change.grown) v.data()[p] = 0;
    });
    CHECK(layer.mask() == test::mask(c["new_mask"]));
    CHECK(layer.weight() == test::matrix<double>(c["new_weight"]));
    CHECK(layer.nnz() == m.count());  // the density stays
  }
  for (const auto& c : f["set"]) {
    const Mat w = test::matrix<double>(c["weight"]);
    const Mask m = test::mask(c["mask"]);
    const auto dropped = deepstruct::set_removal(w, m, c["zeta"].get<double>());
    CHECK(row_major(dropped, w.rows(), w.cols()) == longs(c["dropped_flat"]));
    Mask after = m;
    for (const auto p : dropped) after.data()[p] = false;
    CHECK(after == test::mask(c["mask_after_removal"]));
  }
  for (const auto& s : f["cosine_schedule"])
    CHECK(deepstruct::drop_fraction(deepstruct::DropSchedule::cosine, s["alpha"].get<double>(), s["t"].get<long>(), s["t_end"].get<long>()) ==
          Approx(s["cosine"].get<double>()).margin(1e-15));
  CHECK(deepstruct::drop_fraction(deepstruct::DropSchedule::constant, 0.3, 5000, 1000) == 0.3);
  CHECK(deepstruct::drop_fraction(deepstruct::DropSchedule::exponential, 0.3, 500, 1000, 2.0) == Approx(0.3 * 0.25));
}

TEST_CASE("rigl_change: a NaN active weight or a NaN gradient at a growth candidate is a value_error naming its position", "[sparse_training][rigl]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Mat w = Mat::Zero(4, 4), g = Mat::Random(4, 4);
  Mask m = Mask::Constant(4, 4, false);
  for (int i = 0; i < 4; ++i) {
    w(i, i) = i + 1;  // keeps (2, 2) and (3, 3) at fraction 0.5
    m(i, i) = true;
  }
  CHECK(deepstruct::rigl_change(w, m, g, 0.5).grown.size() == 2);
  // Behind the mask a NaN weight is no candidate; a NaN gradient at a kept position neither.
  Mat w_behind = w, g_kept = g;
  w_behind(0, 1) = nan;
  g_kept(3, 3) = nan;
  CHECK(deepstruct::rigl_change(w_behind, m, g_kept, 0.5).grown == deepstruct::rigl_change(w, m, g, 0.5).grown);
  Mat w_nan = w, g_nan = g;
  w_nan(1, 1) = nan;
  g_nan(2, 1) = nan;
  CHECK_THROWS_AS(deepstruct::rigl_change(w_nan, m, g, 0.5), deepstruct::value_error);
  CHECK_THROWS_WITH(deepstruct::rigl_change(w_nan, m, g, 0.5, "fc.weight"), test::contains("found NaN at row 1, column 1 of 'fc.weight'"));
  CHECK_THROWS_AS(deepstruct::rigl_change(w, m, g_nan, 0.5), deepstruct::value_error);
  CHECK_THROWS_WITH(deepstruct::rigl_change(w, m, g_nan, 0.5), test::contains("dense gradient that is not NaN at the growth candidates, found NaN at row 2, column 1"));
  // All NaN (an exploded layer), and the radix selection's size (>= 4096 candidates).
  CHECK_THROWS_AS(deepstruct::rigl_change<double>(Mat::Constant(2, 2, nan), Mask::Constant(2, 2, true), Mat::Random(2, 2), 0.5),
                  deepstruct::value_error);
  Mat big_w = Mat::Random(100, 100), big_g = Mat::Random(100, 100);
  Mask big_m = Mask::Constant(100, 100, false);
  for (int i = 0; i < 100; ++i) big_m(i, i) = true;
  for (int i = 0; i < 50; ++i) big_g(i, 3) = nan;
  CHECK_THROWS_AS(deepstruct::rigl_change(big_w, big_m, big_g, 0.5), deepstruct::value_error);
  // The selection itself stays inside its arrays whatever the scores: NaN ranks below every number.
  const std::vector<Eigen::Index> c{0, 1, 2, 3, 4, 5};
  CHECK(deepstruct::detail::largest(c, std::vector<double>(6, nan), 3, 6, 1) == std::vector<Eigen::Index>{0, 1, 2});
  CHECK(deepstruct::detail::largest(c, std::vector<double>{nan, 1, nan, 3, 2, nan}, 4, 6, 1) == std::vector<Eigen::Index>{0, 1, 3, 4});
  CHECK(deepstruct::detail::largest(c, std::vector<double>{nan, 1, nan, 3, 2, nan}, 2, 6, 1) == std::vector<Eigen::Index>{3, 4});
}

TEST_CASE("rigl_change and set_removal: a fraction outside [0, 1] is a value_error, a mask or gradient of another shape a shape_error", "[sparse_training]") {
  const Mat w = Mat::Random(4, 4), g = Mat::Random(4, 4);
  Mask m = Mask::Constant(4, 4, false);
  m(0, 0) = m(1, 1) = true;
  for (const double f : {-0.1, 1.5, 2.0, std::numeric_limits<double>::quiet_NaN()}) {
    INFO("fraction " << f);
    CHECK_THROWS_AS(deepstruct::rigl_change(w, m, g, f), deepstruct::value_error);
    CHECK_THROWS_WITH(deepstruct::rigl_change(w, m, g, f, "fc.weight"), test::contains("expected a drop fraction in [0, 1]") && test::contains("'fc.weight'"));
    CHECK_THROWS_AS(deepstruct::set_removal(w, m, f), deepstruct::value_error);
    CHECK_THROWS_WITH(deepstruct::set_removal(w, m, f), test::contains("set_removal: expected zeta in [0, 1]"));
  }
  CHECK(deepstruct::rigl_change(w, m, g, 1.0).grown.size() == 2);
  CHECK(deepstruct::rigl_change(w, m, g, 0.0).grown.empty());
  CHECK(deepstruct::set_removal(w, Mask::Constant(4, 4, true), 1.0).size() == static_cast<std::size_t>((w.array() != 0).count()));
  // Shapes: read past the end before.
  const Mat big = Mat::Random(40, 40);
  Mask big_m = Mask::Constant(40, 40, false);
  big_m(0, 0) = big_m(1, 1) = true;
  CHECK_THROWS_AS(deepstruct::rigl_change(big, big_m, g, 0.5), deepstruct::shape_error);
  CHECK_THROWS_WITH(deepstruct::rigl_change(big, big_m, g, 0.5), test::contains("expected a dense gradient of the weight's shape 40x40, found 4x4"));
  CHECK_THROWS_WITH(deepstruct::rigl_change(w, big_m, g, 0.5), test::contains("expected a mask of the weight's shape 4x4, found 40x40"));
  CHECK_THROWS_AS(deepstruct::set_removal(w, big_m, 0.5), deepstruct::shape_error);
  CHECK_THROWS_WITH(deepstruct::set_removal(w, big_m, 0.5), test::contains("expected a mask of the weight's shape 4x4, found 40x40"));
}

namespace {
// 8 -> 6 -> 2 at 30% density (seed 1), and RigL updating on every step until step 10: the
// setting of the error tests below.
deepstruct::MaskedDeepFFN<float> small_sparse_ffn() {
  deepstruct::FFNOptions fo;
  fo.seed = 1;
  deepstruct::MaskedDeepFFN<float> model(8, 2, {6}, fo);
  deepstruct::sparse_init(model, 0.3, {}, 1);
  return model;
}
deepstruct::MaskUpdateOptions rigl_every_step() {
  deepstruct::MaskUpdateOptions o;
  o.update_every = 1;
  o.end = 10;
  o.drop_fraction = 0.5;
  return o;
}
}  // namespace

TEST_CASE("RigL::step: a NaN weight or gradient is a value_error naming the weight; nothing changes", "[sparse_training][rigl]") {
  deepstruct::MaskedDeepFFN<float> model = small_sparse_ffn();
  deepstruct::SGD<float> sgd;
  deepstruct::RigL<deepstruct::SGD<float>, deepstruct::MaskedDeepFFN<float>> rigl(model, sgd, rigl_every_step());
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(8, 16);
  deepstruct::Labels y(16);
  for (int i = 0; i < 16; ++i) y[i] = i % 2;
  auto backward = [&] {
    model.zero_grad();
    Eigen::MatrixXf grad;
    deepstruct::cross_entropy(model.forward(x), y, &grad);
    model.backward(x, grad);
  };
  backward();
  // A NaN in an active weight of the second layer: the first layer's update must not happen either.
  const Mask m0 = model.layer(0).mask(), m1 = model.layer(1).mask();
  const Eigen::MatrixXf w0 = model.layer(0).weight();
  Eigen::Index p = 0;
  while (!m1(p)) ++p;
  Eigen::MatrixXf w1 = model.layer(1).weight();
  w1(p) = std::numeric_limits<float>::quiet_NaN();
  model.layer(1).set_weight(w1);
  CHECK_THROWS_AS(rigl.step(model), deepstruct::value_error);
  CHECK_THROWS_WITH(rigl.step(model), test::contains("of '_layer_out.weight'"));
  CHECK(model.layer(0).mask() == m0);
  CHECK((model.layer(0).weight().array() != w0.array()).count() == 0);
  CHECK(model.layer(1).mask() == m1);
  CHECK(rigl.steps() == 0);
  CHECK(rigl.history().empty());
  // A NaN gradient: one NaN sample in the batch.
  w1(p) = 0.5f;
  model.layer(1).set_weight(w1);
  x(3, 5) = std::numeric_limits<float>::quiet_NaN();
  backward();
  CHECK_THROWS_WITH(rigl.step(model), test::contains("dense gradient that is not NaN") && test::contains("of '_layer_first.weight'"));
  CHECK(model.layer(0).mask() == m0);
  CHECK(rigl.steps() == 0);
  // With the batch fixed, the same step updates.
  x(3, 5) = 0.0f;
  backward();
  rigl.step(model);
  CHECK(rigl.steps() == 1);
  CHECK(rigl.history().size() == 1);
}

TEST_CASE("sparse_init: exact counts per layer from a seed, dense layers full", "[sparse_training]") {
  deepstruct::MaskedDeepFFN<float> a(784, 10, {300, 100}), b(784, 10, {300, 100}), c(784, 10, {300, 100});
  deepstruct::AllocationOptions o;
  o.dense = {2};
  const auto d = deepstruct::sparse_init(a, 0.1, o, 7);
  deepstruct::sparse_init(b, 0.1, o, 7);
  deepstruct::sparse_init(c, 0.1, o, 8);
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(a.layer(k).nnz() == static_cast<Eigen::Index>(std::floor(d[k] * double(a.layer(k).numel()) + 1e-9)));
    CHECK(a.layer(k).mask() == b.layer(k).mask());
  }
  CHECK(a.layer(0).mask() != c.layer(0).mask());
  CHECK(a.layer(2).density() == 1.0);
}

TEST_CASE("change_mask: incremental rebuilds of the sparse index equal full rebuilds, on both paths", "[sparse_training][masked_linear]") {
  deepstruct::Generator gen(3);
  for (int trial = 0; trial < 20; ++trial) {
    const Eigen::Index out = 3 + static_cast<Eigen::Index>(deepstruct::random::uniform_index(gen, 40)),
                       in = 3 + static_cast<Eigen::Index>(deepstruct::random::uniform_index(gen, 40));
    Mat w(out, in);
    for (Eigen::Index i = 0; i < w.size(); ++i) w(i) = deepstruct::random::normal(gen);
    Mask m(out, in);
    for (Eigen::Index i = 0; i < m.size(); ++i) m(i) = deepstruct::random::bernoulli(gen, 0.15);
    deepstruct::MaskedLinear<double> layer(w, Eigen::VectorXd::Random(out), m);
    const Mat x = Mat::Random(in, 37), g = Mat::Random(out, 37);
    for (const auto path : {deepstruct::Execution::sparse, deepstruct::Execution::dense}) {
      layer.set_execution(path);
      (void)layer.forward(x);  // the caches are built: the change must update them
      Mat gx0;
      layer.backward(x, g, &gx0);
      std::vector<Eigen::Index> off, on;
      for (Eigen::Index p = 0; p < m.size(); ++p) {
        if (layer.mask()(p) && deepstruct::random::bernoulli(gen, 0.3)) off.push_back(p);
        else if (!layer.mask()(p) && deepstruct::random::bernoulli(gen, 0.05)) on.push_back(p);
      }
      if (!off.empty()) on.push_back(off.front());  // off and on again: no change
      if (trial % 2 == 1) {  // in any order
        std::reverse(off.begin(), off.end());
        std::reverse(on.begin(), on.end());
      }
      layer.change_mask(0, off, on);
      deepstruct::MaskedLinear<double> fresh(layer.weight(), layer.bias(), layer.mask());
      fresh.set_execution(path);
      INFO("trial " << trial << " path " << int(path));
      CHECK(layer.nnz() == layer.mask().count());
      CHECK(layer.forward(x) == fresh.forward(x));
      layer.zero_grad();
      Mat gx, gx_fresh;
      layer.backward(x, g, &gx);
      fresh.backward(x, g, &gx_fresh);
      CHECK(gx == gx_fresh);
      CHECK(layer.weight_grad() == fresh.weight_grad());
      CHECK(layer.active_positions() == fresh.active_positions());
      layer.zero_grad();
    }
  }
  deepstruct::MaskedLinear<double> l(3, 2);
  CHECK_THROWS_AS(l.change_mask(0, {6}, {}), deepstruct::index_error);
}

TEST_CASE("dense gradients: the gradient of every weight while on, the parameter gradient still masked", "[sparse_training]") {
  deepstruct::MaskedLinear<double> layer(5, 4, true, 1);
  Mask m = Mask::Constant(4, 5, false);
  m(1, 2) = m(3, 0) = true;
  layer.set_mask(m);
  layer.set_execution(deepstruct::Execution::sparse);
  const Mat x = Mat::Random(5, 6), g = Mat::Random(4, 6);
  CHECK(layer.dense_gradient(0) == nullptr);
  layer.set_dense_gradient(true);
  layer.zero_grad();
  Mat gx;
  layer.backward(x, g, &gx);
  const Mat full = g * x.transpose();
  CHECK(test::max_rel_diff(*layer.dense_gradient(0), full) <= 1e-14);
  CHECK(test::max_rel_diff(layer.weight_grad(), full.cwiseProduct(m.cast<double>())) <= 1e-14);
  CHECK(test::max_rel_diff(gx, layer.effective_weight().transpose() * g) <= 1e-14);
  layer.set_dense_gradient(false);
  CHECK(layer.dense_gradient(0) == nullptr);
  // A recurrent layer passes it on to its two products.
  deepstruct::MaskedLSTMLayer<double> lstm(3, 2);
  lstm.set_dense_gradient(true);
  Mat y;
  lstm.forward(Mat::Random(3, 8), 4, y);
  lstm.backward(Mat::Random(3, 8), Mat::Random(2, 8), nullptr);
  REQUIRE(lstm.dense_gradient(1) != nullptr);
  CHECK(lstm.dense_gradient(1)->rows() == 8);
}

TEST_CASE("dense gradients: none until a backward after turning them on or zero_grad, for every layer type that keeps them", "[sparse_training]") {
  // MaskedLinear
  deepstruct::MaskedLinear<double> linear(5, 4, true, 1);
  linear.set_dense_gradient(true);
  CHECK(linear.dense_gradient(0) == nullptr);  // was a matrix of zeros: RigL grew from it
  linear.backward(Mat::Random(5, 3), Mat::Random(4, 3), nullptr);
  REQUIRE(linear.dense_gradient(0) != nullptr);
  CHECK(linear.dense_gradient(0)->cwiseAbs().sum() > 0);
  linear.zero_grad();
  CHECK(linear.dense_gradient(0) == nullptr);
  linear.backward(Mat::Random(5, 3), Mat::Random(4, 3), nullptr);
  CHECK(linear.dense_gradient(0) != nullptr);
  linear.set_dense_gradient(true);  // armed again: a new accumulation
  CHECK(linear.dense_gradient(0) == nullptr);
  // MaskedConv2d, on both paths
  for (const auto path : {deepstruct::Execution::dense, deepstruct::Execution::sparse}) {
    deepstruct::MaskedConv2d<double> conv(2, 3, deepstruct::Conv2dOptions{});
    conv.set_execution(path);
    const deepstruct::ImageShape in{2, 4, 4};
    const Mat x = Mat::Random(in.size(), 2), g = Mat::Random(conv.output_shape(in).size(), 2);
    Mat y, gx;
    conv.set_dense_gradient(true);
    CHECK(conv.dense_gradient(0) == nullptr);
    conv.forward(x, in, y);
    conv.backward(x, in, g, &gx);
    CHECK(conv.dense_gradient(0) != nullptr);
    conv.zero_grad();
    CHECK(conv.dense_gradient(0) == nullptr);
  }
  // A recurrent layer: both of its masked weights
  deepstruct::MaskedGRULayer<double> gru(3, 2);
  gru.set_dense_gradient(true);
  CHECK(gru.dense_gradient(0) == nullptr);
  CHECK(gru.dense_gradient(1) == nullptr);
  Mat y;
  gru.forward(Mat::Random(3, 8), 4, y);
  gru.backward(Mat::Random(3, 8), Mat::Random(2, 8), nullptr);
  CHECK(gru.dense_gradient(0) != nullptr);
  CHECK(gru.dense_gradient(1) != nullptr);
  gru.zero_grad();
  CHECK(gru.dense_gradient(0) == nullptr);
  CHECK(gru.dense_gradient(1) == nullptr);
}

TEST_CASE("RigL::step: an update step without a backward since the dense gradients were armed is a state_error; nothing changes", "[sparse_training][rigl]") {
  deepstruct::MaskedDeepFFN<float> model = small_sparse_ffn();
  deepstruct::SGD<float> sgd;
  deepstruct::RigL<deepstruct::SGD<float>, deepstruct::MaskedDeepFFN<float>> rigl(model, sgd, rigl_every_step());
  const Mask m0 = model.layer(0).mask(), m1 = model.layer(1).mask();
  CHECK_THROWS_AS(rigl.step(model), deepstruct::state_error);  // no forward/backward at all
  CHECK_THROWS_WITH(rigl.step(model), test::contains("found none for '_layer_first.weight'"));
  model.zero_grad();  // and after zero_grad without a backward
  CHECK_THROWS_AS(rigl.step(model), deepstruct::state_error);
  CHECK(model.layer(0).mask() == m0);
  CHECK(model.layer(1).mask() == m1);
  CHECK(rigl.steps() == 0);
  CHECK(rigl.history().empty());
  // The training loop (zero_grad, forward, backward, step) updates from the backward's gradient.
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(8, 16);
  deepstruct::Labels y(16);
  for (int i = 0; i < 16; ++i) y[i] = i % 2;
  deepstruct::train_step(model, rigl, x, y);
  CHECK(rigl.steps() == 1);
  REQUIRE(rigl.history().size() == 1);
  CHECK(rigl.history().back().layers[0].grown > 0);
  // The next update step needs its own backward: the one before the last step does not count.
  CHECK_THROWS_AS(rigl.step(model), deepstruct::state_error);
  deepstruct::train_step(model, rigl, x, y);
  CHECK(rigl.history().size() == 2);
}

namespace {

// Blobs in 20 dimensions: learnable, so the gradients are not noise.
void blobs20(Eigen::Index n, std::uint64_t seed, Eigen::MatrixXf& x, deepstruct::Labels& y) {
  deepstruct::Generator gen(seed);
  x.resize(20, n);
  y.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    y[i] = static_cast<int>(deepstruct::random::uniform_index(gen, 4));
    for (Eigen::Index f = 0; f < 20; ++f) x(f, i) = static_cast<float>(deepstruct::random::normal(gen) + (f % 4 == y[i] ? 1.5 : 0.0));
  }
}

/// An optimizer in front of an updater that snapshots the model before every step.
template <typename Updater, typename Model>
struct Spy {
  Updater& updater;
  Model& model;
  std::function<void(Model&, long)> before;
  template <typename M>
  void step(M& m) {
    before(model, updater.steps() + 1);
    updater.step(m);
  }
};

}  // namespace

TEST_CASE("RigL in the training loop: invariants on an FFN", "[sparse_training][rigl]") {
  Eigen::MatrixXf x;
  deepstruct::Labels y;
  blobs20(512, 1, x, y);
  deepstruct::MaskedDeepFFN<float> model(20, 4, {32, 16});
  deepstruct::AllocationOptions alloc;
  alloc.dense = {2};
  deepstruct::sparse_init(model, 0.2, alloc, 5);
  std::vector<Eigen::Index> nnz0;
  for (std::size_t k = 0; k < 3; ++k) nnz0.push_back(model.layer(k).nnz());
  deepstruct::Adam<float> adam(deepstruct::AdamOptions{0.01});
  deepstruct::MaskUpdateOptions o;
  o.update_every = 10;
  o.end = 120;
  o.drop_fraction = 0.3;
  deepstruct::RigL<deepstruct::Adam<float>, deepstruct::MaskedDeepFFN<float>> rigl(model, adam, o);
  // Before every update step: the weights, masks and dense gradients the update sees.
  std::vector<Eigen::MatrixXf> w_before, g_before;
  std::vector<Mask> m_before;
  int updates_checked = 0;
  Eigen::Index total_regrown = 0;
  rigl.on_update = [&](deepstruct::UpdateRecord& r) {
    CHECK(r.drop_fraction == Approx(deepstruct::drop_fraction(deepstruct::DropSchedule::cosine, 0.3, r.step, 120)));
    REQUIRE(r.layers.size() == 3);
    for (std::size_t k = 0; k < 3; ++k) {
      const auto& l = model.layer(k);
      CHECK(l.nnz() == nnz0[k]);  // per-layer density constant
      CHECK(r.layers[k].nnz == nnz0[k]);
      // The dense output layer has no inactive position: nothing to rewire, it is skipped.
      const bool dense = k == 2;
      CHECK(dense == (nnz0[k] == l.numel()));
      CHECK(r.layers[k].dropped == (dense ? 0 : static_cast<Eigen::Index>(std::floor(r.drop_fraction * double(nnz0[k])))));
      CHECK(r.layers[k].grown == r.layers[k].dropped);
      const Eigen::MatrixXf& wb = w_before[k];
      const Mask& mb = m_before[k];
      // Dropped: active before, inactive now; their |w| no larger than any kept weight's.
      float largest_dropped = 0, smallest_kept = 1e30f, smallest_grown_g = 1e30f, largest_ungrown_g = 0;
      for (Eigen::Index p = 0; p < mb.size(); ++p) {
        const bool now = l.mask()(p);
        if (mb(p) && !now) largest_dropped = std::max(largest_dropped, std::abs(wb(p)));
        if (mb(p) && now && l.weight()(p) != 0.0f) smallest_kept = std::min(smallest_kept, std::abs(wb(p)));
        if (now && (!mb(p) || l.weight()(p) == 0.0f) && wb(p) != 0.0f)
          smallest_grown_g = std::min(smallest_grown_g, std::abs(g_before[k](p)));
        if (!now) largest_ungrown_g = std::max(largest_ungrown_g, std::abs(g_before[k](p)));
      }
      // The mask is exactly RigL's change of what the update saw (the parity-tested definition),
      // and the record counts its regrown positions (dropped and grown back in the same update).
      const deepstruct::MaskChange c = dense ? deepstruct::MaskChange{} : deepstruct::rigl_change(wb, mb, g_before[k], r.drop_fraction);
      Mask expected = mb;
      for (const Eigen::Index p : c.dropped) expected(p) = false;
      for (const Eigen::Index p : c.grown) expected(p) = true;
      CHECK(l.mask() == expected);
      std::vector<Eigen::Index> both;
      std::set_intersection(c.dropped.begin(), c.dropped.end(), c.grown.begin(), c.grown.end(), std::back_inserter(both));
      CHECK(r.layers[k].regrown == static_cast<Eigen::Index>(both.size()));
      for (const Eigen::Index p : both) CHECK(l.weight()(p) == 0.0f);
      total_regrown += static_cast<Eigen::Index>(both.size());
      if (r.layers[k].dropped > 0) {
        CHECK(largest_dropped <= smallest_kept);
        CHECK(smallest_grown_g >= largest_ungrown_g);
      }
      // Grown weights are zero, their Adam moments too (reset); nothing else moved (no optimizer step).
      for (Eigen::Index p = 0; p < mb.size(); ++p) {
        const bool grown = l.mask()(p) && (!mb(p) || l.weight()(p) == 0.0f);
        if (grown) {
          CHECK(l.weight()(p) == 0.0f);
          CHECK(adam.state_buffer(l.weight().data(), 0)[static_cast<std::size_t>(p)] == 0.0f);
          CHECK(adam.state_buffer(l.weight().data(), 1)[static_cast<std::size_t>(p)] == 0.0f);
        } else {
          CHECK(l.weight()(p) == wb(p));
        }
      }
    }
    ++updates_checked;
  };
  using Rig = decltype(rigl);
  Spy<Rig, deepstruct::MaskedDeepFFN<float>> spy{rigl, model, [&](deepstruct::MaskedDeepFFN<float>& m, long t) {
                                                    if (!rigl.is_update_step(t)) return;
                                                    w_before.clear();
                                                    g_before.clear();
                                                    m_before.clear();
                                                    for (std::size_t k = 0; k < 3; ++k) {
                                                      w_before.push_back(m.layer(k).weight());
                                                      m_before.push_back(m.layer(k).mask());
                                                      REQUIRE(m.layer(k).dense_gradient(0) != nullptr);
                                                      g_before.push_back(*m.layer(k).dense_gradient(0));
                                                    }
                                                  }};
  deepstruct::FitOptions fit;
  fit.epochs = 4;
  fit.batch_size = 16;
  fit.quiet = true;
  const auto history = deepstruct::fit(model, spy, x, y, fit);
  CHECK(updates_checked == 11);  // steps 10, 20, ..., 110 (T_end 120)
  CHECK(total_regrown > 0);       // a just-dropped weight may come back (and did here)
  CHECK(rigl.history().size() == 11);
  CHECK(history.back().train_loss < history.front().train_loss);
  // Between updates the dense gradient is off (the sparse kernels carry the backward).
  CHECK(model.layer(0).dense_gradient(0) == nullptr);
  // JSON lines.
  const std::string line = deepstruct::to_json_line(rigl.history().front());
  CHECK(line.find("\"step\":10") != std::string::npos);
  CHECK(line.find("\"name\":\"_layer_first.weight\"") != std::string::npos);
}

TEST_CASE("to_json_line: names with quotes, backslashes and control characters stay valid JSON", "[sparse_training]") {
  // The names were written between quotes as they were: a structure field a user's logger named
  // 'dead "hidden"' broke the line for every JSON reader.
  deepstruct::UpdateRecord r;
  r.step = 3;
  r.layers.push_back({"layer \"0\".weight", 4, 8, 1, 1, 0});
  const std::string odd = std::string("dead \"hidden\" \\ tab\t newline\n bell") + char(7);
  r.structure = {{odd, 2.0}, {"paths", std::nan("")}};
  const std::string line = deepstruct::to_json_line(r);
  INFO(line);
  CHECK(line.find('\n') == std::string::npos);  // one line
  const nlohmann::json j = nlohmann::json::parse(line);
  CHECK(j.at("step") == 3);
  CHECK(j.at("layers").at(0).at("name") == "layer \"0\".weight");
  CHECK(j.at(odd) == 2.0);
  CHECK(j.at("paths").is_null());
}

TEST_CASE("RigL and SET skip a fully dense masked weight (ERK's forced-dense output layer): no weight is zeroed", "[sparse_training][rigl][set]") {
  Eigen::MatrixXf x;
  deepstruct::Labels y;
  blobs20(64, 2, x, y);
  auto run = [&](auto make_updater, bool rigl) {
    INFO((rigl ? "RigL" : "SET"));
    deepstruct::FFNOptions fo;
    fo.seed = 1;
    deepstruct::MaskedDeepFFN<float> model(20, 4, {16}, fo);
    deepstruct::AllocationOptions erk;
    erk.dense = {1};
    deepstruct::sparse_init(model, 0.3, erk, 1);
    auto& out = model.layer(1);
    REQUIRE(out.nnz() == out.numel());
    REQUIRE((out.weight().array() == 0.0f).count() == 0);
    deepstruct::SGD<float> sgd(deepstruct::SGDOptions{0.05});
    deepstruct::MaskUpdateOptions o;
    o.update_every = 2;
    o.end = 100;
    o.drop_fraction = 0.5;
    auto updater = make_updater(model, sgd, o);
    Eigen::MatrixXf out_before;  // before the step (RigL's update step takes no optimizer step)
    int updates = 0;
    updater.on_update = [&](deepstruct::UpdateRecord& r) {
      REQUIRE(r.layers.size() == 2);
      CHECK(r.layers[0].dropped > 0);  // the sparse layer is rewired as before
      CHECK(r.layers[0].grown == r.layers[0].dropped);
      CHECK(r.layers[1].name == "_layer_out.weight");
      CHECK(r.layers[1].dropped == 0);
      CHECK(r.layers[1].grown == 0);
      CHECK(r.layers[1].regrown == 0);
      CHECK(r.layers[1].nnz == r.layers[1].numel);
      CHECK((out.weight().array() == 0.0f).count() == 0);  // was: every weight dropped and grown back at 0
      if (rigl) CHECK((out.weight().array() != out_before.array()).count() == 0);
      ++updates;
    };
    for (int t = 0; t < 12; ++t) {
      out_before = out.weight();
      deepstruct::train_step(model, updater, x, y);
    }
    CHECK(updates == 6);
    CHECK(out.nnz() == out.numel());
  };
  using FFN = deepstruct::MaskedDeepFFN<float>;
  using SGD = deepstruct::SGD<float>;
  run([](FFN& m, SGD& s, const deepstruct::MaskUpdateOptions& o) { return deepstruct::RigL<SGD, FFN>(m, s, o); }, true);
  run([](FFN& m, SGD& s, const deepstruct::MaskUpdateOptions& o) { return deepstruct::SET<SGD, FFN>(m, s, o); }, false);
}

TEST_CASE("SET in the training loop on a DAN: regrowth inside the layer-pair matrices, constant nnz, deterministic", "[sparse_training][set]") {
  const deepstruct::DanDescription d = test::dan_description(test::load_json("masked_dan.json")["cases"][0]);
  auto run = [&](std::uint64_t seed) {
    deepstruct::MaskedDeepDAN<float> model(10, 3, d);
    deepstruct::sparse_init(model, 0.4, {}, 3);
    std::vector<Eigen::Index> nnz0;
    for (auto* l : model.maskable_layers()) nnz0.push_back(l->nnz());
    deepstruct::SGD<float> sgd(deepstruct::SGDOptions{0.05});
    deepstruct::MaskUpdateOptions o;
    o.update_every = 8;
    o.drop_fraction = 0.2;
    o.seed = seed;
    deepstruct::SET<deepstruct::SGD<float>, deepstruct::MaskedDeepDAN<float>> set(model, sgd, o);
    int grown_total = 0;
    set.on_update = [&](deepstruct::UpdateRecord& r) {
      const auto layers = model.maskable_layers();
      for (std::size_t i = 0; i < layers.size(); ++i) {
        CHECK(layers[i]->nnz() == nnz0[i]);
        grown_total += static_cast<int>(r.layers[i].grown);
      }
    };
    Eigen::MatrixXf x = Eigen::MatrixXf::Random(10, 64);
    deepstruct::Labels y(64);
    for (int i = 0; i < 64; ++i) y[i] = i % 3;
    deepstruct::FitOptions fit;
    fit.epochs = 3;
    fit.batch_size = 8;
    fit.quiet = true;
    deepstruct::fit(model, set, x, y, fit);
    CHECK(grown_total > 0);
    CHECK(set.history().size() == 3);  // 24 steps, every 8th
    // The skip layers and their sources and targets are the structure's: regrowth never leaves a
    // layer-pair matrix, so the network is still a DAN on the same layers.
    const deepstruct::MaskedDeepDAN<float> original(10, 3, d);
    REQUIRE(model.skips().size() == original.skips().size());
    for (std::size_t j = 0; j < model.skips().size(); ++j) {
      CHECK(model.skips()[j].source == original.skips()[j].source);
      CHECK(model.skips()[j].target == original.skips()[j].target);
    }
    return model.state_dict().masks;
  };
  CHECK(run(1) == run(1));
  CHECK(run(1) != run(2));
}

TEST_CASE("RigL on a recurrent network: both masked weights evolve, nnz constant", "[sparse_training][rigl]") {
  deepstruct::RNNOptions options;
  options.kind = deepstruct::RecurrentKind::gru;
  options.head = 2;
  deepstruct::MaskedDeepRNN<double> model(3, {6}, options);
  const auto recurrent = deepstruct::weights_named({"_weight_ih", "_weight_hh"});
  deepstruct::sparse_init(model, 0.3, {}, 2, recurrent);
  const Eigen::Index ih = model.layer(0).nnz(0), hh = model.layer(0).nnz(1);
  deepstruct::SGD<double> sgd(deepstruct::SGDOptions{0.1});
  deepstruct::MaskUpdateOptions o;
  o.update_every = 5;
  o.end = 40;
  deepstruct::RigL<deepstruct::SGD<double>, deepstruct::MaskedDeepRNN<double>, deepstruct::WeightsNamed> rigl(model, sgd, o, recurrent);
  const Eigen::MatrixXd x = Eigen::MatrixXd::Random(3 * 5, 32);
  deepstruct::Labels y(32);
  for (int i = 0; i < 32; ++i) y[i] = x(0, i) > 0;
  deepstruct::FitOptions fit;
  fit.epochs = 10;
  fit.batch_size = 8;
  fit.quiet = true;
  deepstruct::fit(model, rigl, x, y, fit);
  CHECK(rigl.history().size() == 7);
  CHECK(model.layer(0).nnz(0) == ih);
  CHECK(model.layer(0).nnz(1) == hh);
  CHECK(model.head().density() == 1.0);  // not selected
  CHECK(rigl.history().front().layers.size() == 2);
  CHECK(rigl.history().front().layers[1].name == "_recurrent_layers.0._weight_hh");
  deepstruct::MaskUpdateOptions no_end;
  CHECK_THROWS_AS((deepstruct::RigL<deepstruct::SGD<double>, deepstruct::MaskedDeepRNN<double>>(model, sgd, no_end)), deepstruct::value_error);
}
