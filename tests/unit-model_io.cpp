// Tests of <deepstruct/model_io.hpp>: .npz model files with deepstruct's state_dict keys, round
// trips, files numpy wrote from the PyTorch fixtures, numpy computing with our files, bad files.
#include <deepstruct/masked_deep_dan.hpp>
#include <deepstruct/masked_deep_ffn.hpp>
#include <deepstruct/model_io.hpp>

#include <cstdio>
#include <fstream>

#include "test_support.hpp"

using deepstruct::MaskedDeepFFN;

namespace {

std::string tmp(const std::string& name) { return std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/" + name; }

template <typename Scalar>
MaskedDeepFFN<Scalar> pruned_ffn(bool layer_norm) {
  deepstruct::FFNOptions options;
  options.use_layer_norm = layer_norm;
  options.seed = 21;
  MaskedDeepFFN<Scalar> model(13, 4, {9, 7, 5}, options);
  deepstruct::Generator gen(3);
  for (auto* l : model.maskable_layers()) {
    typename MaskedDeepFFN<Scalar>::Mask m(l->out_features(), l->in_features());
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, 0.6);
    l->set_mask(m);
  }
  return model;
}

// The whole state of a model as plain comparable values.
template <typename Model>
void check_same_state(const Model& a, const Model& b) {
  const auto sa = a.state_dict(), sb = b.state_dict();
  CHECK(sa.matrices == sb.matrices);
  CHECK(sa.vectors == sb.vectors);
  CHECK(sa.masks == sb.masks);
}

}  // namespace

TEMPLATE_TEST_CASE("model_io: MaskedDeepFFN round trip, also with LayerNorm", "[model_io]", float, double) {
  for (const bool ln : {false, true}) {
    auto model = pruned_ffn<TestType>(ln);
    const std::string path = tmp(std::string("ffn_") + (ln ? "ln_" : "") + typeid(TestType).name() + ".npz");
    deepstruct::save_npz(model, path);
    // Into a model of the same shape...
    deepstruct::FFNOptions options;
    options.use_layer_norm = ln;
    options.seed = 99;
    MaskedDeepFFN<TestType> other(13, 4, {9, 7, 5}, options);
    deepstruct::load_npz(other, path);
    check_same_state(model, other);
    // ...and into one whose shape is read from the file.
    const auto loaded = deepstruct::load_ffn_npz<TestType>(path);
    CHECK(loaded.hidden_sizes() == std::vector<Eigen::Index>{9, 7, 5});
    CHECK(loaded.uses_layer_norm() == ln);
    check_same_state(model, loaded);
    // The archive has deepstruct's keys and dtypes.
    const auto archive = deepstruct::NpzArchive::load(path);
    CHECK(archive.at("_layer_first.weight").dtype == (sizeof(TestType) == 4 ? deepstruct::NpyDtype::f4 : deepstruct::NpyDtype::f8));
    CHECK(archive.at("_layer_first._mask").dtype == deepstruct::NpyDtype::b1);
    CHECK(archive.at("_layer_first.weight").shape == std::vector<std::size_t>{9, 13});  // [out][in]
    CHECK(archive.at("_layer_out.bias").shape == std::vector<std::size_t>{4});
    CHECK(archive.contains(ln ? "_layers_hidden.3.weight" : "_layers_hidden.2.weight"));
    CHECK(archive.size() == model.state_dict().size());
  }
}

TEST_CASE("model_io: MaskedDeepDAN round trip", "[model_io]") {
  const nlohmann::json fixture = test::load_json("masked_dan.json");
  const auto d = test::dan_description(fixture["cases"][0]);
  deepstruct::MaskedDeepDAN<float> model(10, 3, d), other(10, 3, d, deepstruct::DANOptions{false, deepstruct::Activation::relu, true, 5});
  deepstruct::save_npz(model, tmp("dan.npz"));
  deepstruct::load_npz(other, tmp("dan.npz"));
  check_same_state(model, other);
}

TEMPLATE_TEST_CASE("model_io: files numpy wrote from deepstruct/PyTorch state_dicts give PyTorch's outputs", "[model_io][parity]", float, double) {
  if (!test::python_with("numpy")) return;
  // As a PyTorch user would save them: numpy.savez of the state_dict's arrays (float32 weights,
  // bool masks for the FFN, float32 masks for deepstruct's DAN).
  const std::string script = tmp("write_fixtures.py");
  std::ofstream(script) << "import json, sys, numpy as np\n"
                           "d = sys.argv[1]\n"
                           "for name in ['masked_ffn', 'masked_dan']:\n"
                           "    cases = json.load(open(d + '/' + name + '.json'))['cases']\n"
                           "    for i, c in enumerate(cases):\n"
                           "        arrays = {k: np.array(v, dtype=bool if (k.endswith('._mask') and name == 'masked_ffn') else np.float32)\n"
                           "                  for k, v in c['state_dict'].items()}\n"
                           "        np.savez(sys.argv[2] + '/%s_%d.npz' % (name, i), **arrays)\n";
  REQUIRE(std::system((std::string(DEEPSTRUCT_PYTHON) + " " + script + " " + DEEPSTRUCT_TEST_DATA_DIR + " " +
                       DEEPSTRUCT_TEST_TMP_DIR).c_str()) == 0);
  const nlohmann::json ffn = test::load_json("masked_ffn.json");
  for (std::size_t i = 0; i < ffn["cases"].size(); ++i) {
    const auto& c = ffn["cases"][i];
    auto model = deepstruct::load_ffn_npz<TestType>(tmp("masked_ffn_" + std::to_string(i) + ".npz"));
    CHECK(model.uses_layer_norm() == c["use_layer_norm"].get<bool>());
    const Eigen::Matrix<TestType, -1, -1> x = test::matrix<TestType>(c["x"]).transpose();
    CHECK(test::max_rel_diff(model.forward(x).template cast<double>(), test::matrix<double>(c["output_float32"]).transpose().eval()) <= 1e-5);
  }
  const nlohmann::json dan = test::load_json("masked_dan.json");
  for (std::size_t i = 0; i < dan["cases"].size(); ++i) {
    const auto& c = dan["cases"][i];
    deepstruct::MaskedDeepDAN<TestType> model(c["inputs"].get<Eigen::Index>(), c["outputs"].get<Eigen::Index>(), test::dan_description(c));
    deepstruct::load_npz(model, tmp("masked_dan_" + std::to_string(i) + ".npz"));
    const Eigen::Matrix<TestType, -1, -1> x = test::matrix<TestType>(c["x"]).transpose();
    CHECK(test::max_rel_diff(model.forward(x).template cast<double>(), test::matrix<double>(c["output_float32"]).transpose().eval()) <= 1e-5);
  }
}

TEST_CASE("model_io: numpy computes our outputs from our file", "[model_io]") {
  if (!test::python_with("numpy")) return;
  auto model = pruned_ffn<double>(false);
  deepstruct::save_npz(model, tmp("for_numpy.npz"));
  Eigen::MatrixXd x(13, 6);
  deepstruct::Generator gen(8);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = deepstruct::random::normal(gen);
  {
    std::ofstream out(tmp("x.txt"));
    out.precision(17);
    out << x.transpose() << "\n";  // [batch][features], as numpy reads it
  }
  // A numpy user's forward pass: relu(x W^T + b) with W * mask, layer by layer.
  const std::string script = tmp("forward.py");
  std::ofstream(script) << "import sys, numpy as np\n"
                           "sd = np.load(sys.argv[1]); x = np.loadtxt(sys.argv[2], ndmin=2)\n"
                           "assert sd['_layer_first._mask'].dtype == np.bool_ and sd['_layer_first.weight'].dtype == np.float64\n"
                           "names = ['_layer_first', '_layers_hidden.0', '_layers_hidden.2', '_layer_out']\n"
                           "for i, n in enumerate(names):\n"
                           "    x = x @ (sd[n + '.weight'] * sd[n + '._mask']).T + sd[n + '.bias']\n"
                           "    if i + 1 < len(names): x = np.maximum(x, 0)\n"
                           "np.savetxt(sys.argv[3], x, fmt='%.17g')\n";
  REQUIRE(std::system((std::string(DEEPSTRUCT_PYTHON) + " " + script + " " + tmp("for_numpy.npz") + " " + tmp("x.txt") + " " +
                       tmp("y.txt")).c_str()) == 0);
  std::ifstream in(tmp("y.txt"));
  Eigen::MatrixXd y(6, 4);
  for (Eigen::Index b = 0; b < 6; ++b)
    for (Eigen::Index o = 0; o < 4; ++o) in >> y(b, o);
  REQUIRE(in);
  CHECK(test::max_rel_diff(model.forward(x), Eigen::MatrixXd(y.transpose())) <= 1e-12);
}

TEST_CASE("model_io: bad files throw io_error naming the file, and change nothing", "[model_io]") {
  auto model = pruned_ffn<float>(false);
  const auto before = model.state_dict();
  const std::string good = tmp("good.npz");
  deepstruct::save_npz(model, good);
  auto expect_failure = [&](const std::string& path, const std::string& expected) {
    try {
      deepstruct::load_npz(model, path);
      FAIL("no exception for " << path);
    } catch (const deepstruct::io_error& e) {
      const std::string what = e.what();
      CHECK(what.find(path) != std::string::npos);
      CHECK(what.find(expected) != std::string::npos);
    }
    const auto now = model.state_dict();
    CHECK(now.matrices == before.matrices);
    CHECK(now.masks == before.masks);
  };
  // Not a zip.
  std::ofstream(tmp("not_a_zip.npz")) << "this is not an npz file";
  expect_failure(tmp("not_a_zip.npz"), "");
  // Truncated.
  {
    std::ifstream in(good, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(tmp("truncated.npz"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  expect_failure(tmp("truncated.npz"), "");
  // A missing key, an unexpected key, a wrong shape, a wrong dtype.
  auto archive = deepstruct::NpzArchive::load(good);
  auto edited = archive;
  edited.erase("_layer_out._mask");
  edited.save(tmp("missing_key.npz"));
  expect_failure(tmp("missing_key.npz"), "_layer_out._mask");
  edited = archive;
  edited.set("_layers_hidden.9.weight", deepstruct::from_matrix(Eigen::MatrixXf::Zero(2, 2)));
  edited.save(tmp("extra_key.npz"));
  expect_failure(tmp("extra_key.npz"), "_layers_hidden.9.weight");
  edited = archive;
  edited.set("_layers_hidden.0.weight", deepstruct::from_matrix(Eigen::MatrixXf::Zero(7, 8)));
  edited.save(tmp("wrong_shape.npz"));
  expect_failure(tmp("wrong_shape.npz"), "found 7x8");
  edited = archive;
  edited.set("_layer_first.weight", deepstruct::from_matrix(Eigen::Matrix<std::int64_t, -1, -1>::Zero(9, 13)));
  edited.save(tmp("wrong_dtype.npz"));
  expect_failure(tmp("wrong_dtype.npz"), "int64");
  expect_failure(tmp("does_not_exist.npz"), "");
  CHECK_THROWS_AS(deepstruct::load_ffn_npz<float>(tmp("missing_key.npz")), deepstruct::io_error);
}
