// Tests of <deepstruct/model_io.hpp>: .npz model files with deepstruct's state_dict keys, round
// trips (with and without bias and LayerNorm), files numpy wrote from the PyTorch fixtures, numpy
// computing with our files, bad files (which change nothing in the model they are loaded into).
#include <deepstruct/masked_deep_dan.hpp>
#include <deepstruct/masked_deep_ffn.hpp>
#include <deepstruct/model_io.hpp>

#include <cstdio>
#include <fstream>
#include <tuple>
#include <type_traits>
#include <utility>

#include "test_support.hpp"

using deepstruct::MaskedDeepFFN;

namespace {

std::string tmp(const std::string& name) { return std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/" + name; }

// LayerNorm weights in [0.5, 1.5] and biases in [-0.2, 0.2] instead of PyTorch's 1 and 0.
template <typename Model>
void randomize_layer_norms(Model& model, deepstruct::Generator& gen) {
  using Vector = typename Model::Vector;
  auto random = [&](Eigen::Index n, double lo, double hi) {
    Vector v(n);
    for (Eigen::Index i = 0; i < n; ++i) v[i] = static_cast<typename Model::Scalar>(deepstruct::random::uniform(gen, lo, hi));
    return v;
  };
  if constexpr (std::is_same<Model, MaskedDeepFFN<typename Model::Scalar>>::value) {
    for (std::size_t k = 0; k < model.num_layers(); ++k)
      if (model.has_layer_norm(k)) {
        model.layer_norm(k).set_weight(random(model.layer(k).out_features(), 0.5, 1.5));
        model.layer_norm(k).set_bias(random(model.layer(k).out_features(), -0.2, 0.2));
      }
  } else {
    if (model.options().use_layer_norm)
      for (std::size_t t = 1; t < model.num_hidden_layers(); ++t) {
        model.layer_norm(t).set_weight(random(model.hidden_layer_size(t), 0.5, 1.5));
        model.layer_norm(t).set_bias(random(model.hidden_layer_size(t), -0.2, 0.2));
      }
  }
}

template <typename Scalar>
MaskedDeepFFN<Scalar> pruned_ffn(bool layer_norm, bool bias = true) {
  deepstruct::FFNOptions options;
  options.use_layer_norm = layer_norm;
  options.bias = bias;
  options.seed = 21;
  MaskedDeepFFN<Scalar> model(13, 4, {9, 7, 5}, options);
  deepstruct::Generator gen(3);
  for (auto* l : model.maskable_layers()) {
    typename MaskedDeepFFN<Scalar>::Mask m(l->mask().rows(), l->mask().cols());
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = deepstruct::random::bernoulli(gen, 0.6);
    l->set_mask(m);
  }
  randomize_layer_norms(model, gen);
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

TEMPLATE_TEST_CASE("model_io: MaskedDeepFFN without bias and with LayerNorm: same outputs after a round trip", "[model_io]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  Mat x(13, 6);
  deepstruct::Generator gen(12);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
  for (const auto& [bias, ln] : std::vector<std::pair<bool, bool>>{{false, false}, {false, true}, {true, true}}) {
    INFO("bias " << bias << " layer norm " << ln);
    auto model = pruned_ffn<TestType>(ln, bias);
    const Mat expected = model.forward(x);
    const std::string path = tmp(std::string("ffn_rt_") + (bias ? "bias_" : "") + (ln ? "ln_" : "") + typeid(TestType).name() + ".npz");
    deepstruct::save_npz(model, path);
    const auto archive = deepstruct::NpzArchive::load(path);
    CHECK(archive.contains("_layer_out.bias") == bias);
    CHECK(archive.contains("_layers_hidden.1.weight") == ln);  // the first LayerNorm
    deepstruct::FFNOptions options;
    options.use_layer_norm = ln;
    options.bias = bias;
    options.seed = 5;
    MaskedDeepFFN<TestType> other(13, 4, {9, 7, 5}, options);
    REQUIRE(other.forward(x) != expected);
    deepstruct::load_npz(other, path);
    check_same_state(model, other);
    CHECK(other.forward(x) == expected);
    auto loaded = deepstruct::load_ffn_npz<TestType>(path);
    CHECK(loaded.options().bias == bias);
    CHECK(loaded.uses_layer_norm() == ln);
    check_same_state(model, loaded);
    CHECK(loaded.forward(x) == expected);
  }
}

TEMPLATE_TEST_CASE("model_io: MaskedDeepDAN with LayerNorm, and without bias: same outputs after a round trip", "[model_io]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  const nlohmann::json fixture = test::load_json("masked_dan.json");
  const auto d = test::dan_description(fixture["cases"][0]);
  Mat x(10, 6);
  deepstruct::Generator gen(13);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<TestType>(deepstruct::random::normal(gen));
  for (const auto& [bias, ln] : std::vector<std::pair<bool, bool>>{{true, true}, {false, false}, {false, true}}) {
    INFO("bias " << bias << " layer norm " << ln);
    deepstruct::DANOptions options;
    options.use_layer_norm = ln;
    options.bias = bias;
    options.seed = 1;
    deepstruct::MaskedDeepDAN<TestType> model(10, 3, d, options);
    randomize_layer_norms(model, gen);
    const Mat expected = model.forward(x);
    const std::string path = tmp(std::string("dan_rt_") + (bias ? "bias_" : "") + (ln ? "ln_" : "") + typeid(TestType).name() + ".npz");
    deepstruct::save_npz(model, path);
    options.seed = 2;
    deepstruct::MaskedDeepDAN<TestType> other(10, 3, d, options);
    REQUIRE(other.forward(x) != expected);
    deepstruct::load_npz(other, path);
    check_same_state(model, other);
    CHECK(other.forward(x) == expected);
    // The file carries the LayerNorm parameters exactly when the network has them, under
    // deepstruct's keys: layer_normalizations.<t> for every hidden layer t, 0 (unused) included.
    std::size_t norm_keys = 0;
    const deepstruct::NpzArchive file = deepstruct::NpzArchive::load(path);
    for (const auto& kv : file.arrays())
      norm_keys += kv.first.rfind("layer_normalizations.", 0) == 0 ? 1 : 0;
    CHECK(norm_keys == (ln ? 2 * model.num_hidden_layers() : 0));
    if (ln) {
      // Files of this library before 0.2 named them layers_norm_hidden.<t-1>, without LN_0: they load too.
      auto sd = model.state_dict();
      for (std::size_t t = 1; t < model.num_hidden_layers(); ++t)
        for (const char* p : {".weight", ".bias"}) {
          sd.vectors["layers_norm_hidden." + std::to_string(t - 1) + p] = sd.vectors.at("layer_normalizations." + std::to_string(t) + p);
          sd.vectors.erase("layer_normalizations." + std::to_string(t) + p);
        }
      sd.vectors.erase("layer_normalizations.0.weight");
      sd.vectors.erase("layer_normalizations.0.bias");
      deepstruct::MaskedDeepDAN<TestType> legacy(10, 3, d, options);
      legacy.load_state_dict(sd);
      CHECK(legacy.forward(x) == expected);
    }
  }
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

namespace {

// A model of pruned_ffn(true)'s shape in which every parameter, mask entry and LayerNorm value
// differs from pruned_ffn(true)'s: a load that stopped half-way would show.
template <typename Scalar>
MaskedDeepFFN<Scalar> different_ffn() {
  deepstruct::FFNOptions options;
  options.use_layer_norm = true;
  options.seed = 77;
  MaskedDeepFFN<Scalar> model(13, 4, {9, 7, 5}, options);
  const auto source = pruned_ffn<Scalar>(true);
  for (std::size_t k = 0; k < model.num_layers(); ++k) model.layer(k).set_mask(source.layer(k).mask().array() == false);
  deepstruct::Generator gen(78);
  randomize_layer_norms(model, gen);
  return model;
}

// Every entry of every array of `a` differs from the same entry in `b`.
template <typename Scalar>
void check_all_different(const deepstruct::StateDict<Scalar>& a, const deepstruct::StateDict<Scalar>& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& kv : a.matrices) CHECK((kv.second.array() != b.matrices.at(kv.first).array()).all());
  for (const auto& kv : a.vectors) CHECK((kv.second.array() != b.vectors.at(kv.first).array()).all());
  for (const auto& kv : a.masks) CHECK((kv.second.array() != b.masks.at(kv.first).array()).all());
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEMPLATE_TEST_CASE("model_io: bad files throw io_error naming the file, and nothing is half-loaded", "[model_io]", float, double) {
  using Mat = Eigen::Matrix<TestType, -1, -1>;
  const std::string prefix = std::string("bad_") + typeid(TestType).name() + "_";
  const std::string good = tmp(prefix + "good.npz");
  deepstruct::save_npz(pruned_ffn<TestType>(true), good);
  // Each bad file holds a whole, valid model except for one entry of the LAST layer: a loader
  // that wrote layer by layer would have changed the first layers and LayerNorms before failing.
  const auto archive = deepstruct::NpzArchive::load(good);
  struct Bad {
    std::string name, expected;  // expected: a part of the message
    deepstruct::NpzArchive archive;
  };
  std::vector<Bad> bad;
  auto edited = [&](const std::string& name, const std::string& expected, auto&& edit) {
    Bad b{name, expected, archive};
    edit(b.archive);
    bad.push_back(std::move(b));
  };
  // Wrong keys: one missing, one renamed, one extra.
  edited("missing_key", "_layer_out._mask", [](auto& a) { a.erase("_layer_out._mask"); });
  edited("renamed_key", "_layer_out.bias", [&](auto& a) {
    a.set("_layer_out.bias_", archive.at("_layer_out.bias"));
    a.erase("_layer_out.bias");
  });
  edited("extra_key", "_layer_out.extra", [](auto& a) { a.set("_layer_out.extra", deepstruct::from_matrix(Eigen::MatrixXf::Zero(2, 2))); });
  // Wrong shapes: weight, mask, bias.
  edited("wrong_weight_shape", "found 4x4", [](auto& a) { a.set("_layer_out.weight", deepstruct::from_matrix(Mat::Ones(4, 4))); });
  edited("wrong_mask_shape", "found 5x4", [](auto& a) {
    a.set("_layer_out._mask", deepstruct::from_mask(Eigen::Matrix<bool, -1, -1>::Constant(5, 4, true)));
  });
  edited("wrong_bias_shape", "found 3", [](auto& a) { a.set("_layer_out.bias", deepstruct::from_vector(Eigen::Matrix<TestType, -1, 1>::Ones(3))); });
  // The weight's entries as a 3-D array (4, 5, 1): read as [4][5], but not the weight's shape.
  edited("weight_three_d", "found (4, 5, 1)", [&](auto& a) {
    deepstruct::NpyArray w = archive.at("_layer_out.weight");
    w.shape.push_back(1);
    a.set("_layer_out.weight", w);
  });
  // Wrong dtypes: integer weight, a float mask that is not 0/1.
  edited("wrong_dtype", "int64", [](auto& a) { a.set("_layer_out.weight", deepstruct::from_matrix(Eigen::Matrix<std::int64_t, -1, -1>::Ones(4, 5))); });
  edited("mask_not_0_1", "0/1", [](auto& a) { a.set("_layer_out._mask", deepstruct::from_matrix(Eigen::MatrixXf::Constant(4, 5, 0.5f))); });
  std::vector<std::pair<std::string, std::string>> files;  // path, expected part of the message
  for (const auto& b : bad) {
    b.archive.save(tmp(prefix + b.name + ".npz"));
    files.emplace_back(tmp(prefix + b.name + ".npz"), b.expected);
  }
  // Truncated: without its last byte (end of central directory), and in the middle.
  const std::string bytes = file_bytes(good);
  std::ofstream(tmp(prefix + "truncated_end.npz"), std::ios::binary) << bytes.substr(0, bytes.size() - 1);
  std::ofstream(tmp(prefix + "truncated_half.npz"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  files.emplace_back(tmp(prefix + "truncated_end.npz"), "");
  files.emplace_back(tmp(prefix + "truncated_half.npz"), "");
  // Not a zip, and no file at all.
  std::ofstream(tmp(prefix + "not_a_zip.npz")) << "this is not an npz file";
  files.emplace_back(tmp(prefix + "not_a_zip.npz"), "");
  files.emplace_back(tmp(prefix + "does_not_exist.npz"), "");

  const auto before = different_ffn<TestType>().state_dict();
  check_all_different(before, pruned_ffn<TestType>(true).state_dict());
  for (const auto& [path, expected] : files) {
    INFO("file " << path);
    auto model = different_ffn<TestType>();
    try {
      deepstruct::load_npz(model, path);
      FAIL_CHECK("no exception");
    } catch (const deepstruct::io_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains(path));
      CHECK_THAT(std::string(e.what()), test::contains(expected));
    }
    const auto now = model.state_dict();
    CHECK(now.matrices == before.matrices);
    CHECK(now.vectors == before.vectors);  // biases and LayerNorm parameters
    CHECK(now.masks == before.masks);
    try {
      (void)deepstruct::load_ffn_npz<TestType>(path);
      FAIL_CHECK("no exception from load_ffn_npz");
    } catch (const deepstruct::io_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains(path));
    }
  }
  // The good file loads (the failures above were the edits').
  auto model = different_ffn<TestType>();
  deepstruct::load_npz(model, good);
  check_same_state(model, pruned_ffn<TestType>(true));
}

TEST_CASE("model_io: load_ffn_npz names the file for shapes no MaskedDeepFFN has", "[model_io]") {
  const auto archive = deepstruct::NpzArchive::load([] {
    const std::string path = tmp("shapes_good.npz");
    deepstruct::save_npz(pruned_ffn<float>(false), path);
    return path;
  }());
  // A first layer of 0 neurons (weight of shape (0, 13)), and one of 0 inputs (shape (9, 0)).
  const std::vector<std::tuple<std::string, Eigen::Index, Eigen::Index, std::string>> cases{
      {"zero_rows", 0, 13, "hidden sizes >= 1"}, {"zero_cols", 9, 0, "inputs >= 1"}};
  for (const auto& [name, rows, cols, expected] : cases) {
    INFO(name);
    auto edited = archive;
    edited.set("_layer_first.weight", deepstruct::from_matrix(Eigen::MatrixXf::Zero(rows, cols)));
    edited.set("_layer_first._mask", deepstruct::from_mask(Eigen::Matrix<bool, -1, -1>::Constant(rows, cols, true)));
    const std::string path = tmp(name + ".npz");
    edited.save(path);
    try {
      (void)deepstruct::load_ffn_npz<float>(path);
      FAIL_CHECK("no exception");
    } catch (const deepstruct::io_error& e) {
      CHECK_THAT(std::string(e.what()), test::contains("npz file '" + path + "'"));
      CHECK_THAT(std::string(e.what()), test::contains(expected));
    }
  }
}

TEST_CASE("model_io: load_ffn_npz checks that the shapes chain before it builds the network", "[model_io][robustness]") {
  // Issue 14 (found while fuzzing): a layer's size is the rows of one weight times the rows of
  // the previous one, so two 200000 x 1 weights (a 1.6 MB file) asked for a 200000 x 200000
  // layer - std::bad_alloc, or 160 GB - before load_state_dict compared any shape.
  deepstruct::NpzArchive a;
  const Eigen::Index n = 200000;
  a.set("_layer_first.weight", deepstruct::from_matrix(Eigen::MatrixXf::Ones(n, 1)));
  a.set("_layers_hidden.0.weight", deepstruct::from_matrix(Eigen::MatrixXf::Ones(n, 1)));
  a.set("_layer_out.weight", deepstruct::from_matrix(Eigen::MatrixXf::Ones(1, 1)));
  const std::string path = tmp("ffn_shapes_do_not_chain.npz");
  a.save(path);
  CHECK_THROWS_WITH(deepstruct::load_ffn_npz<float>(path),
                    test::contains("npz file '" + path + "' is not a consistent MaskedDeepFFN: expected '_layers_hidden.0.weight' with 200000 "
                                   "columns (the rows of '_layer_first.weight'), found 200000x1"));
  // The output layer is checked too (a 0-byte weight of 200000 x 0 would have asked the same).
  a.set("_layers_hidden.0.weight", deepstruct::from_matrix(Eigen::MatrixXf::Ones(3, n)));
  a.set("_layer_out.weight", deepstruct::from_matrix(Eigen::MatrixXf::Ones(n, 0)));
  a.save(path);
  CHECK_THROWS_WITH(deepstruct::load_ffn_npz<float>(path), test::contains("expected '_layer_out.weight' with 3 columns"));
  CHECK_THROWS_AS(deepstruct::load_ffn_npz<float>(path), deepstruct::io_error);
}

namespace {

/// A LayerNorm DAN of 3 inputs, one hidden layer of 4 and 2 outputs (its files before 0.2.0 had
/// no LayerNorm key at all).
deepstruct::MaskedDeepDAN<double> one_hidden_layer_norm_dan() {
  deepstruct::DanDescription d;
  d.layer_sizes = {4};
  deepstruct::DANOptions options;
  options.use_layer_norm = true;
  return deepstruct::MaskedDeepDAN<double>(3, 2, d, options);
}

}  // namespace

TEST_CASE("model_io: a LayerNorm DAN of one hidden layer from before 0.2.0 (no LayerNorm key at all) loads", "[model_io]") {
  deepstruct::MaskedDeepDAN<double> model = one_hidden_layer_norm_dan();
  auto sd = model.state_dict();
  CHECK(sd.vectors.count("layer_normalizations.0.weight") == 1);  // deepstruct's unused LN_0
  sd.vectors.erase("layer_normalizations.0.weight");
  sd.vectors.erase("layer_normalizations.0.bias");
  deepstruct::MaskedDeepDAN<double> other = one_hidden_layer_norm_dan();
  other.load_state_dict(sd);
  CHECK(other.state_dict().matrices == model.state_dict().matrices);
  // A file with some of deepstruct's LayerNorm keys but not all is an error, not a legacy file.
  auto partial = model.state_dict();
  partial.vectors.erase("layer_normalizations.0.bias");
  CHECK_THROWS_AS(other.load_state_dict(partial), deepstruct::shape_error);
}

TEST_CASE("model_io: a file without LayerNorm into a LayerNorm DAN names the file's own keys, not an added LN_0", "[model_io]") {
  // Layers {2, 2, 1}, no skips. The old-file path (files before 0.2.0) adds the model's LN_0 to
  // what it checks; a file with neither old nor new LayerNorm keys is not such a file, and the
  // message listed layer_normalizations.0.* among "the keys" the file had.
  deepstruct::DanDescription d;
  d.layer_sizes = {2, 2, 1};
  d.connections = {{0, 1, Eigen::Matrix<bool, -1, -1>::Constant(2, 2, true)}, {1, 2, Eigen::Matrix<bool, -1, -1>::Constant(1, 2, true)}};
  deepstruct::DANOptions with_norm;
  with_norm.use_layer_norm = true;
  const std::string path = tmp("dan_no_ln_into_ln.npz");
  deepstruct::save_npz(deepstruct::MaskedDeepDAN<float>(3, 2, d), path);
  deepstruct::MaskedDeepDAN<float> model(3, 2, d, with_norm);
  std::string message;
  try {
    deepstruct::load_npz(model, path);
  } catch (const deepstruct::io_error& e) {
    message = e.what();
  }
  INFO(message);
  CHECK_THAT(message, test::contains("expected a 1-D tensor 'layer_normalizations.0.weight'"));
  const std::size_t keys = message.find("(keys: ");
  REQUIRE(keys != std::string::npos);
  CHECK(message.find("layer_normalizations", keys) == std::string::npos);
  // An old file still loads (layers_norm_hidden.<t-1>, no LN_0).
  auto sd = model.state_dict();
  for (const char* p : {".weight", ".bias"}) {
    for (int t = 1; t <= 2; ++t) {
      sd.vectors["layers_norm_hidden." + std::to_string(t - 1) + p] = sd.vectors.at("layer_normalizations." + std::to_string(t) + p);
      sd.vectors.erase("layer_normalizations." + std::to_string(t) + p);
    }
    sd.vectors.erase(std::string("layer_normalizations.0") + p);
  }
  deepstruct::MaskedDeepDAN<float> other(3, 2, d, with_norm);
  other.load_state_dict(sd);
  CHECK(other.state_dict().matrices == model.state_dict().matrices);
}

TEST_CASE("model_io: a LayerNorm parameter of the wrong dimension is named as such, also for a DAN of one hidden layer", "[model_io]") {
  // One hidden layer: its old files had no LayerNorm key, so a state_dict without a 1-D
  // layer_normalizations.* entry took the old-file path, which added the model's LN_0 beside the
  // 2-D one the file has ("found 'layer_normalizations.0.weight' 2 times").
  deepstruct::MaskedDeepDAN<double> model = one_hidden_layer_norm_dan();
  auto sd = model.state_dict();
  for (const std::string key : {"layer_normalizations.0.weight", "layer_normalizations.0.bias"}) {
    sd.matrices[key] = sd.vectors.at(key).transpose();  // 1 x 4
    sd.vectors.erase(key);
  }
  CHECK_THROWS_WITH(model.load_state_dict(sd), test::contains("expected a 1-D tensor 'layer_normalizations.0.weight' of size 4, found a 2-D tensor"));
}
