// Tests of <deepstruct/io/npz.hpp>: round trips, interop with numpy, and malformed files.
#include <deepstruct/io/npz.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "allocation_guard.hpp"
#include "file_faults.hpp"
#include "test_support.hpp"

using deepstruct::NpyArray;
using deepstruct::NpyDtype;
using deepstruct::NpzArchive;
using Bytes = std::vector<unsigned char>;
using MaskMatrix = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

namespace {

std::string tmp_path(const std::string& name) { return std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/npz-" + name; }

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  REQUIRE(out);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out);
}

/// The message of the io_error that f throws ("" and a failed check when it throws nothing).
std::string io_error_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const deepstruct::io_error& e) {
    return e.what();
  }
  FAIL_CHECK("expected deepstruct::io_error, none thrown");
  return "";
}

std::string load_error(const std::string& path) {
  return io_error_message([&] { NpzArchive::load(path); });
}

/// A .npy member: preamble of the given version, header text as is, then data.
Bytes npy_member(const std::string& header, const Bytes& data, int version = 1) {
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(version), 0};
  if (version == 1)
    deepstruct::detail::zip::put_u16(out, static_cast<std::uint32_t>(header.size()));
  else
    deepstruct::detail::zip::put_u32(out, static_cast<std::uint32_t>(header.size()));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// A zip of stored members with the given names and bytes, written by the library's zip writer.
void write_zip(const std::string& path, const std::vector<std::pair<std::string, Bytes>>& members,
               bool force_zip64 = false) {
  namespace zip = deepstruct::detail::zip;
  std::vector<zip::OutputMember> out;
  for (const auto& m : members) out.push_back({m.first, {{m.second.data(), m.second.size()}}});
  zip::write_file_atomically(path, [&](zip::OutputFile& f) { zip::write_stored_archive(f, out, force_zip64, path); });
}

/// Little-endian bytes of doubles.
Bytes f8_bytes(const std::vector<double>& values) {
  Bytes out(values.size() * 8);
  for (std::size_t k = 0; k < values.size(); ++k) deepstruct::detail::store_item<double>(&out[8 * k], values[k]);
  return out;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/// Python with numpy, or "" (tests that need it warn and return).
std::string python_with_numpy() {
  static const std::string python = [] {
    const std::string exe = DEEPSTRUCT_PYTHON;
    if (exe.empty()) return std::string();
    const std::string cmd = exe + " -c \"import numpy\" > /dev/null 2>&1";
    return std::system(cmd.c_str()) == 0 ? exe : std::string();
  }();
  return python;
}

/// Runs a Python script (written to a file) with arguments; returns its exit code.
int run_python(const std::string& name, const std::string& script, const std::string& args) {
  const std::string path = tmp_path(name + ".py");
  {
    std::ofstream out(path);
    out << script;
  }
  const std::string cmd = python_with_numpy() + " " + path + " " + args;
  return std::system(cmd.c_str());
}

// The arrays of tests/data/numpy_savez.npz and numpy_savez_compressed.npz, made by numpy 1.24:
//
//   import numpy as np
//   arrays = {
//       "_layer_first.weight": np.array([[10 * i + j + 0.5 for j in range(4)] for i in range(3)], np.float32),
//       "_layer_first._mask": np.array([[(4 * i + j) % 3 != 0 for j in range(4)] for i in range(3)]),
//       "_layer_first.bias": np.array([-1.5, 0.0, 2.25], np.float32),
//       "fortran_f8": np.asfortranarray([[(i + 1) / (j + 3) for j in range(3)] for i in range(2)]),
//       "fortran_b1": np.asfortranarray([[True, False, False], [True, True, False]]),
//       "big_endian_f4": np.array([[1.5, -2.0], [3.25, 0.125]], dtype=">f4"),
//       "int64_vec": np.arange(-2, 3, dtype=np.int64),
//       "scalar": np.float32(7.0),
//       "empty_0x3": np.zeros((0, 3), np.float32),
//   }
//   np.savez("numpy_savez.npz", **arrays)
//   np.savez_compressed("numpy_savez_compressed.npz", **arrays)
void check_numpy_fixture(const NpzArchive& a) {
  CHECK(a.keys() == std::vector<std::string>{"_layer_first._mask", "_layer_first.bias", "_layer_first.weight",
                                             "big_endian_f4", "empty_0x3", "fortran_b1", "fortran_f8", "int64_vec",
                                             "scalar"});
  const Eigen::MatrixXf w = a.matrix<float>("_layer_first.weight");
  REQUIRE(w.rows() == 3);
  REQUIRE(w.cols() == 4);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) CHECK(w(i, j) == float(10 * i + j) + 0.5f);
  CHECK(a.at("_layer_first.weight").dtype == NpyDtype::f4);
  CHECK_FALSE(a.at("_layer_first.weight").fortran_order);

  const auto mask = a.mask("_layer_first._mask");
  REQUIRE(mask.rows() == 3);
  REQUIRE(mask.cols() == 4);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) CHECK(mask(i, j) == ((4 * i + j) % 3 != 0));

  const Eigen::VectorXf b = a.vector<float>("_layer_first.bias");
  REQUIRE(b.size() == 3);
  CHECK(b[0] == -1.5f);
  CHECK(b[1] == 0.0f);
  CHECK(b[2] == 2.25f);

  CHECK(a.at("fortran_f8").fortran_order);
  const Eigen::MatrixXd f = a.matrix<double>("fortran_f8");
  REQUIRE(f.rows() == 2);
  REQUIRE(f.cols() == 3);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) CHECK(f(i, j) == double(i + 1) / double(j + 3));
  // float64 into float rounds to nearest.
  const Eigen::MatrixXf f32 = a.matrix<float>("fortran_f8");
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) CHECK(f32(i, j) == static_cast<float>(double(i + 1) / double(j + 3)));

  CHECK(a.at("fortran_b1").fortran_order);
  Eigen::Matrix<bool, -1, -1> fb(2, 3);
  fb << true, false, false, true, true, false;
  CHECK(a.mask("fortran_b1") == fb);

  Eigen::Matrix2d be;
  be << 1.5, -2.0, 3.25, 0.125;
  CHECK(a.matrix<double>("big_endian_f4") == be);

  const Eigen::Matrix<std::int64_t, -1, 1> iv = a.vector<std::int64_t>("int64_vec");
  REQUIRE(iv.size() == 5);
  for (int k = 0; k < 5; ++k) CHECK(iv[k] == k - 2);

  CHECK(a.at("scalar").ndim() == 0);
  CHECK(a.at("scalar").size() == 1);
  CHECK(deepstruct::detail::load_item<float>(a.at("scalar").data.data()) == 7.0f);

  const Eigen::MatrixXf e = a.matrix<float>("empty_0x3");
  CHECK(e.rows() == 0);
  CHECK(e.cols() == 3);
}

template <typename Scalar>
Eigen::Matrix<Scalar, -1, -1> pattern(Eigen::Index rows, Eigen::Index cols) {
  Eigen::Matrix<Scalar, -1, -1> m(rows, cols);
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index j = 0; j < cols; ++j) m(i, j) = static_cast<Scalar>(Scalar(i * cols + j) * Scalar(0.25) - Scalar(100));
  return m;
}

}  // namespace

// ---- round trips ------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("npz: matrices and vectors round trip with their orientation", "[npz]", float, double) {
  using Matrix = Eigen::Matrix<TestType, -1, -1>;
  using Vector = Eigen::Matrix<TestType, -1, 1>;
  std::mt19937_64 gen(7);
  std::uniform_real_distribution<double> dist(-1, 1);
  NpzArchive out;
  const std::vector<std::pair<Eigen::Index, Eigen::Index>> shapes = {{1, 1}, {3, 5}, {5, 3}, {0, 4}, {4, 0}, {17, 1}, {1, 17}};
  std::vector<Matrix> matrices;
  for (const auto& s : shapes) {
    Matrix m(s.first, s.second);
    for (Eigen::Index k = 0; k < m.size(); ++k) m.data()[k] = static_cast<TestType>(dist(gen));
    matrices.push_back(m);
    out.set("m" + std::to_string(s.first) + "x" + std::to_string(s.second), deepstruct::from_matrix(m));
  }
  const Vector v = Vector::LinSpaced(9, TestType(-2), TestType(2));
  out.set("_layer_first.bias", deepstruct::from_vector(v));
  out.set("row", deepstruct::from_vector(v.transpose()));
  out.set("empty_vec", deepstruct::from_vector(Vector(0)));
  Eigen::Matrix<bool, -1, -1> mask(2, 3);
  mask << true, false, true, false, false, true;
  out.set("_layer_first._mask", deepstruct::from_mask(mask));

  CHECK(out.at("m3x5").shape == std::vector<std::size_t>{3, 5});
  CHECK(out.at("m3x5").dtype == deepstruct::npy_dtype_of<TestType>());
  CHECK(out.at("_layer_first._mask").descr() == "|b1");

  const std::string path = tmp_path(std::string("roundtrip-") + (sizeof(TestType) == 4 ? "f4" : "f8") + ".npz");
  out.save(path);
  const NpzArchive in = NpzArchive::load(path);
  CHECK(in.path() == path);
  CHECK(in.size() == out.size());
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const std::string key = "m" + std::to_string(shapes[k].first) + "x" + std::to_string(shapes[k].second);
    const Matrix back = in.matrix<TestType>(key);
    REQUIRE(back.rows() == matrices[k].rows());
    REQUIRE(back.cols() == matrices[k].cols());
    CHECK(back == matrices[k]);
    // Bytes, shape and dtype survive exactly.
    CHECK(in.at(key).data == out.at(key).data);
    CHECK(in.at(key).shape == out.at(key).shape);
  }
  CHECK(in.vector<TestType>("_layer_first.bias") == v);
  CHECK(in.vector<TestType>("row") == v);
  CHECK(in.vector<TestType>("empty_vec").size() == 0);
  CHECK(in.mask("_layer_first._mask") == mask);
  // C order on disk: a[i][j] = m(i, j), so row 0 of the 3x5 matrix comes first.
  const NpyArray& a = in.at("m3x5");
  CHECK_FALSE(a.fortran_order);
  CHECK(deepstruct::detail::load_item<TestType>(a.data.data() + sizeof(TestType)) == matrices[1](0, 1));
  // float <-> double in both directions: widening is exact, narrowing rounds to nearest.
  using Other = std::conditional_t<std::is_same<TestType, float>::value, double, float>;
  CHECK(in.matrix<Other>("m3x5") == matrices[1].template cast<Other>());
}

TEST_CASE("npz: every dtype round trips", "[npz]") {
  NpzArchive out;
  const auto put = [&](const std::string& key, auto first) {
    using T = decltype(first);
    Eigen::Matrix<T, -1, 1> v(4);
    v << std::numeric_limits<T>::lowest(), T(0), T(1), std::numeric_limits<T>::max();
    out.set(key, deepstruct::from_vector(v));
    return v;
  };
  const auto i1 = put("i1", std::int8_t{});
  const auto i2 = put("i2", std::int16_t{});
  const auto i4 = put("i4", std::int32_t{});
  const auto i8 = put("i8", std::int64_t{});
  const auto u1 = put("u1", std::uint8_t{});
  const auto u2 = put("u2", std::uint16_t{});
  const auto u4 = put("u4", std::uint32_t{});
  const auto u8 = put("u8", std::uint64_t{});
  const auto f4 = put("f4", float{});
  const auto f8 = put("f8", double{});
  out.save(tmp_path("dtypes.npz"));
  const NpzArchive in = NpzArchive::load(tmp_path("dtypes.npz"));
  CHECK(in.vector<std::int8_t>("i1") == i1);
  CHECK(in.vector<std::int16_t>("i2") == i2);
  CHECK(in.vector<std::int32_t>("i4") == i4);
  CHECK(in.vector<std::int64_t>("i8") == i8);
  CHECK(in.vector<std::uint8_t>("u1") == u1);
  CHECK(in.vector<std::uint16_t>("u2") == u2);
  CHECK(in.vector<std::uint32_t>("u4") == u4);
  CHECK(in.vector<std::uint64_t>("u8") == u8);
  CHECK(in.vector<float>("f4") == f4);
  CHECK(in.vector<double>("f8") == f8);
  CHECK(in.at("i2").descr() == "<i2");
  CHECK(in.at("u1").descr() == "|u1");
  // Integers convert only from their own dtype.
  CHECK(contains(io_error_message([&] { in.vector<std::int32_t>("i8"); }), "expected a 1-D array of int32 (<i4)"));
}

TEST_CASE("npz: saving is deterministic, 64-byte aligned and atomic", "[npz]") {
  NpzArchive a;
  a.set("w", deepstruct::from_matrix(pattern<float>(3, 7)));
  a.set("a.b.c", deepstruct::from_vector(Eigen::VectorXd::Constant(5, 0.5)));
  const std::string p1 = tmp_path("det1.npz"), p2 = tmp_path("det2.npz");
  a.save(p1);
  a.save(p2);
  const Bytes bytes = read_bytes(p1);
  CHECK(bytes == read_bytes(p2));
  // First member "a.b.c.npy": local header (30 + 9 name bytes), then the .npy preamble; the
  // data starts at a multiple of 64 within the member, the header ends in '\n'.
  REQUIRE(bytes.size() > 50);
  const std::size_t member = 30 + 9;
  CHECK(std::string(bytes.begin() + 30, bytes.begin() + 39) == "a.b.c.npy");
  const std::size_t header_len = deepstruct::detail::zip::get_u16(&bytes[member + 8]);
  CHECK((10 + header_len) % 64 == 0);
  CHECK(bytes[member + 10 + header_len - 1] == '\n');
  CHECK(std::string(bytes.begin() + long(member) + 10, bytes.begin() + long(member) + 10 + 60) ==
        "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }   ");

  // Replacing a file works; a save that fails leaves the old file and no temporary file.
  NpzArchive b;
  b.set("only", deepstruct::from_vector(Eigen::VectorXf::Ones(2)));
  b.save(p1);
  CHECK(NpzArchive::load(p1).keys() == std::vector<std::string>{"only"});
  const std::string dir_target = tmp_path("is-a-directory.npz");
  std::filesystem::create_directories(dir_target);
  const std::string msg = io_error_message([&] { b.save(dir_target); });
  CHECK(contains(msg, dir_target));
  CHECK(std::filesystem::is_directory(dir_target));
  for (const auto& entry : std::filesystem::directory_iterator(DEEPSTRUCT_TEST_TMP_DIR))
    CHECK_FALSE(contains(entry.path().filename().string(), ".tmp-"));
  CHECK(contains(io_error_message([&] { b.save(tmp_path("no/such/dir/x.npz")); }), "no/such/dir/x.npz"));
}

TEST_CASE("npz: ZIP64 records are read back", "[npz]") {
  NpzArchive a;
  a.set("w", deepstruct::from_matrix(pattern<double>(4, 6)));
  a.set("m", deepstruct::from_mask(pattern<double>(4, 6).array() > -97.0));
  const std::string path = tmp_path("zip64.npz");
  deepstruct::detail::save_npz(a, path, /*force_zip64=*/true);
  const Bytes bytes = read_bytes(path);
  // ZIP64 end record and locator are there, 32-bit fields hold the 0xFFFFFFFF markers.
  REQUIRE(bytes.size() > 98);
  CHECK(deepstruct::detail::zip::get_u32(&bytes[bytes.size() - 22 - 20]) == 0x07064b50u);
  CHECK(deepstruct::detail::zip::get_u32(&bytes[bytes.size() - 22 + 16]) == 0xFFFFFFFFu);
  const NpzArchive b = NpzArchive::load(path);
  CHECK(b.matrix<double>("w") == pattern<double>(4, 6));
  CHECK(b.mask("m") == (pattern<double>(4, 6).array() > -97.0).matrix());
}

TEST_CASE("npz: masks from bool arrays and from 0/1 numbers", "[npz]") {
  // deepstruct's MaskedDeepDAN keeps float masks (torch.zeros); PyTorch's bool tensors give |b1.
  MaskMatrix expected(2, 3);
  expected << true, false, true, false, false, true;
  NpzArchive a;
  a.set("b1", deepstruct::from_mask(expected));
  a.set("f4", deepstruct::from_matrix(expected.cast<float>()));
  a.set("f8", deepstruct::from_matrix(expected.cast<double>()));
  a.set("u1", deepstruct::from_matrix(expected.cast<std::uint8_t>()));
  a.set("i8", deepstruct::from_matrix(expected.cast<std::int64_t>()));
  Eigen::MatrixXf almost = expected.cast<float>();
  almost(1, 2) = 0.5f;
  a.set("half", deepstruct::from_matrix(almost));
  Eigen::MatrixXd nan = expected.cast<double>();
  nan(0, 1) = std::numeric_limits<double>::quiet_NaN();
  a.set("nan", deepstruct::from_matrix(nan));
  a.set("two", deepstruct::from_matrix(Eigen::Matrix<std::int32_t, 1, 2>(1, 2)));
  for (const char* key : {"b1", "f4", "f8", "u1", "i8"}) {
    INFO(key);
    CHECK(a.mask(key) == expected);
  }
  CHECK(contains(io_error_message([&] { a.mask("half"); }), "array 'half': expected a mask of 0/1 values, found 0.5 at [1][2]"));
  CHECK(contains(io_error_message([&] { a.mask("nan"); }), "found nan at [0][1]"));
  CHECK(contains(io_error_message([&] { a.mask("two"); }), "found 2 at [0][1] (int32 of shape (1, 2))"));
}

TEST_CASE("npz: NpzArchive API", "[npz]") {
  NpzArchive a;
  CHECK(a.empty());
  CHECK(a.path().empty());
  a.set("b", deepstruct::from_vector(Eigen::VectorXf::Ones(3)));
  a.set("a", deepstruct::from_vector(Eigen::VectorXf::Zero(2)));
  CHECK(a.keys() == std::vector<std::string>{"a", "b"});
  CHECK(a.contains("a"));
  a.set("a", deepstruct::from_vector(Eigen::VectorXf::Zero(4)));
  CHECK(a.vector<float>("a").size() == 4);
  CHECK(a.erase("a"));
  CHECK_FALSE(a.erase("a"));
  CHECK(a.size() == 1);
  const std::string missing = io_error_message([&] { a.at("_layer_first.weight"); });
  CHECK(contains(missing, "'_layer_first.weight'"));
  CHECK(contains(missing, "keys: 'b'"));
  NpyArray bad;
  bad.dtype = NpyDtype::f4;
  bad.shape = {2, 3};
  bad.data.resize(23);
  CHECK_THROWS_AS(a.set("bad", bad), deepstruct::shape_error);
  CHECK_FALSE(a.contains("bad"));
  CHECK_THROWS_AS(deepstruct::from_vector(Eigen::MatrixXf::Zero(2, 2)), deepstruct::shape_error);
  // to_matrix on a hand-built inconsistent array throws instead of reading past the data.
  CHECK(contains(io_error_message([&] { deepstruct::to_matrix<float>(bad, "bad"); }),
                 "bad: expected 24 data bytes for shape (2, 3) of <f4, found 23"));
}

// ---- numpy's files ------------------------------------------------------------------------------------

TEST_CASE("npz: the committed numpy.savez file loads", "[npz][numpy]") {
  const NpzArchive a = NpzArchive::load(test::data_path("numpy_savez.npz"));
  check_numpy_fixture(a);

  // Wrong requests name the file, the key, what was expected and what was found.
  const std::string file = test::data_path("numpy_savez.npz");
  const std::string as_mask = io_error_message([&] { a.mask("_layer_first.weight"); });
  CHECK(contains(as_mask, file));
  CHECK(contains(as_mask, "'_layer_first.weight'"));
  CHECK(contains(as_mask, "expected a mask of 0/1 values, found 0.5 at [0][0] (float32 of shape (3, 4))"));
  CHECK(contains(io_error_message([&] { a.matrix<bool>("_layer_first.weight"); }),
                 "expected a 2-D array of bool (|b1), found 2-D float32 (<f4) of shape (3, 4)"));
  CHECK(contains(io_error_message([&] { a.mask("_layer_first.bias"); }),
                 "expected a 2-D array of bool (|b1), or of numbers that are all 0 or 1, found 1-D float32"));
  CHECK(contains(io_error_message([&] { a.matrix<float>("_layer_first.bias"); }),
                 "expected a 2-D array of float32 or float64 (<f4 or <f8), found 1-D float32 (<f4) of shape (3,)"));
  CHECK(contains(io_error_message([&] { a.vector<float>("scalar"); }), "found 0-D float32 (<f4) of shape ()"));
  CHECK(contains(io_error_message([&] { a.matrix<float>("_layer_first._mask"); }), "found 2-D bool"));
  CHECK(contains(io_error_message([&] { a.vector<double>("int64_vec"); }), "found 1-D int64 (<i8)"));
  const std::string missing = io_error_message([&] { a.matrix<float>("_layer_first.wieght"); });
  CHECK(contains(missing, file));
  CHECK(contains(missing, "'_layer_first.wieght', found no such key"));
  CHECK(contains(missing, "'_layer_first.weight'"));
}

TEST_CASE("npz: the committed numpy.savez_compressed file", "[npz][numpy]") {
  const std::string path = test::data_path("numpy_savez_compressed.npz");
#if defined(DEEPSTRUCT_WITH_ZLIB)
  check_numpy_fixture(NpzArchive::load(path));
  // A corrupt deflate stream (or CRC) is an io_error, not a crash.
  Bytes bytes = read_bytes(path);
  bytes[100] ^= 0x5A;  // inside the first member's deflated data
  write_bytes(tmp_path("corrupt-deflate.npz"), bytes);
  const std::string msg = load_error(tmp_path("corrupt-deflate.npz"));
  CHECK((contains(msg, "deflate") || contains(msg, "CRC-32")));
#else
  const std::string msg = load_error(path);
  CHECK(contains(msg, path));
  CHECK(contains(msg, "compressed npz (numpy.savez_compressed) needs zlib: define DEEPSTRUCT_WITH_ZLIB and link "
                      "zlib, or save with numpy.savez"));
#endif
}

TEST_CASE("npz: files numpy writes now load (interop)", "[npz][numpy]") {
  if (python_with_numpy().empty()) {
    WARN("skipped: no Python with numpy (DEEPSTRUCT_PYTHON='" DEEPSTRUCT_PYTHON "')");
    return;
  }
  const std::string script = R"(
import sys
import numpy as np
r, c = 37, 53
w = (np.arange(r * c, dtype=np.float64).reshape(r, c) * 0.25 - 100).astype(np.float32)
arrays = {
    "w": w,
    "wf": np.asfortranarray((np.arange(c)[:, None] - np.arange(r)[None, :]) / 7.0),
    "m": (np.arange(r)[:, None] * np.arange(c)[None, :]) % 5 == 1,
    "v": np.arange(r, dtype=np.float32) * 0.5,
}
np.savez(sys.argv[1], **arrays)
np.savez_compressed(sys.argv[2], **arrays)
)";
  const std::string plain = tmp_path("from-numpy.npz"), packed = tmp_path("from-numpy-compressed.npz");
  REQUIRE(run_python("write", script, plain + " " + packed) == 0);
  std::vector<std::string> paths = {plain};
  if (deepstruct::detail::zip::has_zlib()) paths.push_back(packed);
  for (const auto& path : paths) {
    INFO(path);
    const NpzArchive a = NpzArchive::load(path);
    CHECK(a.matrix<float>("w") == pattern<float>(37, 53));
    CHECK(a.at("wf").fortran_order);
    const Eigen::MatrixXd wf = a.matrix<double>("wf");
    REQUIRE(wf.rows() == 53);
    REQUIRE(wf.cols() == 37);
    const MaskMatrix m = a.mask("m");
    REQUIRE(m.rows() == 37);
    REQUIRE(m.cols() == 53);
    for (int i = 0; i < 53; ++i)
      for (int j = 0; j < 37; ++j) CHECK(wf(i, j) == double(i - j) / 7.0);
    for (int i = 0; i < 37; ++i)
      for (int j = 0; j < 53; ++j) CHECK(m(i, j) == ((i * j) % 5 == 1));
    CHECK(a.vector<float>("v") == Eigen::VectorXf::LinSpaced(37, 0.0f, 18.0f));
  }
  if (!deepstruct::detail::zip::has_zlib())
    CHECK(contains(load_error(packed), "needs zlib"));
}

TEST_CASE("npz: files we write load in numpy (interop)", "[npz][numpy]") {
  if (python_with_numpy().empty()) {
    WARN("skipped: no Python with numpy (DEEPSTRUCT_PYTHON='" DEEPSTRUCT_PYTHON "')");
    return;
  }
  NpzArchive a;
  a.set("_layer_first.weight", deepstruct::from_matrix(pattern<float>(37, 53)));
  a.set("_layer_first._mask", deepstruct::from_mask((pattern<float>(37, 53).array() > -50.0f).matrix()));
  a.set("_layers_hidden.0.bias", deepstruct::from_vector(Eigen::VectorXd::LinSpaced(5, -1.0, 1.0)));
  a.set("one", deepstruct::from_matrix(Eigen::MatrixXd::Constant(1, 1, 3.0)));
  a.set("empty", deepstruct::from_matrix(Eigen::MatrixXf(0, 4)));
  a.set("i8", deepstruct::from_vector(Eigen::Matrix<std::int64_t, 3, 1>(-5, 0, 5)));
  const std::string script = R"(
import sys, zipfile
import numpy as np
for path in sys.argv[1:]:
    assert zipfile.ZipFile(path).testzip() is None  # CRC-32 of every member
    d = np.load(path)
    assert sorted(d.files) == sorted(["_layer_first.weight", "_layer_first._mask", "_layers_hidden.0.bias",
                                      "one", "empty", "i8"]), d.files
    w = (np.arange(37 * 53, dtype=np.float64).reshape(37, 53) * 0.25 - 100).astype(np.float32)
    assert d["_layer_first.weight"].dtype == np.float32 and d["_layer_first.weight"].shape == (37, 53)
    assert (d["_layer_first.weight"] == w).all()
    assert d["_layer_first._mask"].dtype == np.bool_
    assert (d["_layer_first._mask"] == (w > -50)).all()
    assert d["_layers_hidden.0.bias"].dtype == np.float64
    assert (d["_layers_hidden.0.bias"] == np.linspace(-1, 1, 5)).all()
    assert d["one"].shape == (1, 1) and d["one"][0, 0] == 3.0
    assert d["empty"].shape == (0, 4) and d["empty"].dtype == np.float32
    assert d["i8"].dtype == np.int64 and list(d["i8"]) == [-5, 0, 5]
    with zipfile.ZipFile(path) as z:
        with z.open("_layer_first.weight.npy") as f:
            version = np.lib.format.read_magic(f)
            np.lib.format._read_array_header(f, version)
            assert version == (1, 0) and f.tell() % 64 == 0, (version, f.tell())
)";
  const std::string plain = tmp_path("for-numpy.npz"), zip64 = tmp_path("for-numpy-zip64.npz");
  a.save(plain);
  deepstruct::detail::save_npz(a, zip64, /*force_zip64=*/true);
  CHECK(run_python("read", script, plain + " " + zip64) == 0);
  // The same check fails on a file with different values (the script can fail).
  a.set("one", deepstruct::from_matrix(Eigen::MatrixXd::Constant(1, 1, 4.0)));
  a.save(plain);
  CHECK(run_python("read", script + "\n", plain + " 2> /dev/null") != 0);
}

// ---- malformed files ------------------------------------------------------------------------------------

TEST_CASE("npz: missing, empty, random and non-zip files", "[npz][errors]") {
  const std::string missing = tmp_path("does-not-exist.npz");
  std::remove(missing.c_str());
  const std::string m = load_error(missing);
  CHECK(contains(m, "cannot open npz file '" + missing + "'"));

  const std::string dir = io_error_message([] { NpzArchive::load(DEEPSTRUCT_TEST_TMP_DIR); });
  CHECK(contains(dir, "npz file '" DEEPSTRUCT_TEST_TMP_DIR "'"));

  write_bytes(tmp_path("empty.npz"), {});
  CHECK(contains(load_error(tmp_path("empty.npz")), "not a zip archive"));

  std::mt19937_64 gen(1);
  Bytes random(4096);
  for (auto& b : random) b = static_cast<unsigned char>(gen());
  write_bytes(tmp_path("random.npz"), random);
  const std::string r = load_error(tmp_path("random.npz"));
  CHECK(contains(r, tmp_path("random.npz")));
  CHECK(contains(r, "not a zip archive"));

  write_bytes(tmp_path("single.npy"), npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
                                                 f8_bytes({1.0})));
  CHECK(contains(load_error(tmp_path("single.npy")), "expected a zip archive (.npz), found a single .npy array"));
}

TEST_CASE("npz: every truncation and every flipped byte is an io_error or harmless", "[npz][errors]") {
  std::vector<std::string> sources = {test::data_path("numpy_savez.npz")};
  if (deepstruct::detail::zip::has_zlib()) sources.push_back(test::data_path("numpy_savez_compressed.npz"));
  NpzArchive ours;
  ours.set("w", deepstruct::from_matrix(pattern<float>(2, 3)));
  ours.set("m", deepstruct::from_mask(MaskMatrix::Constant(2, 2, true)));
  deepstruct::detail::save_npz(ours, tmp_path("fuzz-zip64.npz"), true);
  sources.push_back(tmp_path("fuzz-zip64.npz"));
  const std::string path = tmp_path("fuzz.npz");
  for (const auto& source : sources) {
    INFO(source);
    const Bytes good = read_bytes(source);
    const NpzArchive reference = NpzArchive::load(source);
    for (std::size_t n = 0; n < good.size(); ++n) {
      write_bytes(path, Bytes(good.begin(), good.begin() + long(n)));
      INFO("truncated to " << n << " bytes");
      CHECK_THROWS_AS(NpzArchive::load(path), deepstruct::io_error);
    }
    std::size_t harmless = 0;
    for (std::size_t k = 0; k < good.size(); ++k) {
      Bytes bad = good;
      bad[k] ^= 0xFF;
      write_bytes(path, bad);
      INFO("byte " << k << " flipped");
      try {
        const NpzArchive a = NpzArchive::load(path);
        // Only bytes nothing depends on (times, local copies of sizes): same arrays.
        ++harmless;
        REQUIRE(a.keys() == reference.keys());
        for (const auto& kv : reference) {
          CHECK(a.at(kv.first).data == kv.second.data);
          CHECK(a.at(kv.first).shape == kv.second.shape);
          CHECK(a.at(kv.first).dtype == kv.second.dtype);
        }
      } catch (const deepstruct::io_error&) {
      }
    }
    CHECK(harmless < good.size() / 2);  // most bytes matter: the checks are not vacuous
  }
}

TEST_CASE("npz: CRC-32 mismatch", "[npz][errors]") {
  Bytes bytes = read_bytes(test::data_path("numpy_savez.npz"));
  // The first member is _layer_first.weight.npy: local header 30 + 23 name + 20 zip64 extra,
  // .npy preamble and header 128 bytes, then the data.
  const std::size_t data = 30 + 23 + 20 + 128;
  REQUIRE(std::string(bytes.begin() + 30, bytes.begin() + 53) == "_layer_first.weight.npy");
  bytes[data + 5] ^= 0x01;
  write_bytes(tmp_path("crc.npz"), bytes);
  const std::string msg = load_error(tmp_path("crc.npz"));
  CHECK(contains(msg, tmp_path("crc.npz")));
  CHECK(contains(msg, "member '_layer_first.weight.npy': CRC-32 mismatch"));
}

TEST_CASE("npz: zip members that are not arrays, or twice the same key", "[npz][errors]") {
  const Bytes ok = npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", f8_bytes({1, 2}));
  write_zip(tmp_path("txt.npz"), {{"a.npy", ok}, {"README.txt", {'h', 'i'}}});
  CHECK(contains(load_error(tmp_path("txt.npz")), "expected only members named '<key>.npy', found 'README.txt'"));
  write_zip(tmp_path("dup.npz"), {{"a.npy", ok}, {"a.npy", ok}});
  CHECK(contains(load_error(tmp_path("dup.npz")), "duplicate key 'a'"));
  write_zip(tmp_path("fine.npz"), {{"a.npy", ok}, {"dir/b.npy", ok}});
  CHECK(NpzArchive::load(tmp_path("fine.npz")).keys() == std::vector<std::string>{"a", "dir/b"});
}

TEST_CASE("npz: .npy headers numpy may write are parsed", "[npz]") {
  const Bytes data = f8_bytes({1, 2, 3, 4, 5, 6});
  Eigen::MatrixXd c_order(2, 3), f_order(2, 3);
  c_order << 1, 2, 3, 4, 5, 6;
  f_order << 1, 3, 5, 2, 4, 6;
  const std::vector<std::tuple<std::string, int, bool>> cases = {
      {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }" + std::string(5, ' ') + "\n", 1, false},
      {"{ \"shape\" :(2,3) , \"descr\":\"<f8\",\"fortran_order\":False}", 1, false},
      {"{'descr':'<f8','fortran_order':True,'shape':(2L, 3L),}\n", 1, true},
      {"{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3,), }\n", 2, true},
      {"{'descr': 'f8', 'fortran_order': False, 'shape': (2, 3)}", 3, false},
  };
  for (const auto& c : cases) {
    INFO(std::get<0>(c));
    write_zip(tmp_path("header.npz"), {{"x.npy", npy_member(std::get<0>(c), data, std::get<1>(c))}});
    const NpzArchive a = NpzArchive::load(tmp_path("header.npz"));
    CHECK(a.matrix<double>("x") == (std::get<2>(c) ? f_order : c_order));
  }
  // Big-endian data is swapped on load; 0-d and 1-d shapes.
  Bytes be(8);
  const Bytes le = f8_bytes({-0.375});
  std::reverse_copy(le.begin(), le.end(), be.begin());
  write_zip(tmp_path("header.npz"), {{"be.npy", npy_member("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", be)},
                                     {"s.npy", npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", le)}});
  const NpzArchive a = NpzArchive::load(tmp_path("header.npz"));
  CHECK(a.vector<double>("be")[0] == -0.375);
  CHECK(a.at("s").shape.empty());
  CHECK(a.at("s").data == le);
}

TEST_CASE("npz: bad .npy members", "[npz][errors]") {
  const Bytes six = f8_bytes({1, 2, 3, 4, 5, 6});
  const std::string head = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
  struct Case {
    Bytes member;
    std::string message;
  };
  Bytes bad_magic = npy_member(head, six);
  bad_magic[1] = 'n';
  Bytes short_header = npy_member(head, six);  // header length 32767: past the end of the member
  short_header[8] = 0xFF;
  short_header[9] = 0x7F;
  const std::vector<Case> cases = {
      {npy_member(head, f8_bytes({1, 2, 3, 4, 5})), "expected 48 data bytes for shape (2, 3) of <f8, found 40"},
      {npy_member(head, f8_bytes({1, 2, 3, 4, 5, 6, 7})), "expected 48 data bytes for shape (2, 3) of <f8, found 56"},
      {bad_magic, "expected a .npy array starting with \\x93NUMPY"},
      {npy_member(head, six, 4), "expected .npy format version 1.0, 2.0 or 3.0, found 4.0"},
      {short_header, "truncated .npy header: expected 32767 header bytes"},
      {Bytes{0x93, 'N', 'U', 'M'}, "found 4 bytes"},
      {npy_member("{'descr': '<f8', 'fortran_order': False}", six), "missing key 'shape'"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", six),
       "expected only the keys 'descr', 'fortran_order' and 'shape', found 'x'"},
      {npy_member("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)}", six), "duplicate key 'descr'"},
      {npy_member("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (6,)}", six), "structured dtype"},
      {npy_member("{'descr': '<c16', 'fortran_order': False, 'shape': (3,)}", six), "found '<c16'"},
      {npy_member("{'descr': '|O', 'fortran_order': False, 'shape': (6,)}", six), "found '|O'"},
      {npy_member("{'descr': '<f8', 'fortran_order': 0, 'shape': (2, 3)}", six), "expected True or False"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2, -3)}", six), "non-negative integer"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': [2, 3]}", six), "'(' starting the shape"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2 3)}", six), "',' or ')' in the shape"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999, 1)}", six),
       "overflows size_t"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}", six),
       "has more bytes than size_t holds"},
      {npy_member("{'descr': '<f8, 'fortran_order': False, 'shape': (2, 3)}", six), "found '<f8, '"},
      {npy_member("{'descr' '<f8', 'fortran_order': False, 'shape': (2, 3)}", six), "expected ':'"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)", six), "expected ',' or '}'"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'sh", six), "a closing quote"},
      {npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)} x", six), "the end of the header"},
      {npy_member("'descr': '<f8'", six), "expected '{'"},
  };
  for (const auto& c : cases) {
    INFO(c.message);
    const std::string path = tmp_path("bad-member.npz");
    write_zip(path, {{"bad.npy", c.member}});
    const std::string msg = load_error(path);
    INFO(msg);
    CHECK(contains(msg, path));
    CHECK(contains(msg, "member 'bad.npy'"));
    CHECK(contains(msg, c.message));
  }
}

// ---- hostile files (issue 14) ----------------------------------------------------------------------

namespace {

namespace zipfmt = deepstruct::detail::zip;

/// A local header for a member of `size` bytes (compressed and, unless given, uncompressed).
Bytes local_header(const std::string& name, std::uint16_t method, std::uint32_t crc, std::uint32_t compressed,
                   std::uint32_t uncompressed) {
  Bytes h;
  zipfmt::put_u32(h, zipfmt::local_header_sig);
  zipfmt::put_u16(h, 20);
  zipfmt::put_u16(h, 0);
  zipfmt::put_u16(h, method);
  zipfmt::put_u16(h, 0);
  zipfmt::put_u16(h, zipfmt::dos_date_1980);
  zipfmt::put_u32(h, crc);
  zipfmt::put_u32(h, compressed);
  zipfmt::put_u32(h, uncompressed);
  zipfmt::put_u16(h, static_cast<std::uint32_t>(name.size()));
  zipfmt::put_u16(h, 0);
  h.insert(h.end(), name.begin(), name.end());
  return h;
}

struct RawEntry {
  std::string name;
  std::uint16_t method;
  std::uint32_t crc, compressed, uncompressed, offset;
};

/// `body` (local headers and data, laid out by the caller) followed by a central directory of
/// `entries` and the end record: zip files no well-behaved writer makes.
Bytes raw_zip(Bytes body, const std::vector<RawEntry>& entries) {
  Bytes central;
  for (const RawEntry& e : entries) {
    zipfmt::put_u32(central, zipfmt::central_header_sig);
    zipfmt::put_u16(central, 20);
    zipfmt::put_u16(central, 20);
    zipfmt::put_u16(central, 0);
    zipfmt::put_u16(central, e.method);
    zipfmt::put_u16(central, 0);
    zipfmt::put_u16(central, zipfmt::dos_date_1980);
    zipfmt::put_u32(central, e.crc);
    zipfmt::put_u32(central, e.compressed);
    zipfmt::put_u32(central, e.uncompressed);
    zipfmt::put_u16(central, static_cast<std::uint32_t>(e.name.size()));
    zipfmt::put_u16(central, 0);
    zipfmt::put_u16(central, 0);
    zipfmt::put_u16(central, 0);
    zipfmt::put_u16(central, 0);
    zipfmt::put_u32(central, 0);
    zipfmt::put_u32(central, e.offset);
    central.insert(central.end(), e.name.begin(), e.name.end());
  }
  const auto cd_offset = static_cast<std::uint32_t>(body.size());
  body.insert(body.end(), central.begin(), central.end());
  zipfmt::put_u32(body, zipfmt::eocd_sig);
  zipfmt::put_u16(body, 0);
  zipfmt::put_u16(body, 0);
  zipfmt::put_u16(body, static_cast<std::uint32_t>(entries.size()));
  zipfmt::put_u16(body, static_cast<std::uint32_t>(entries.size()));
  zipfmt::put_u32(body, static_cast<std::uint32_t>(central.size()));
  zipfmt::put_u32(body, cd_offset);
  zipfmt::put_u16(body, 0);
  return body;
}

std::uint32_t crc_of(const Bytes& b) { return zipfmt::crc32(b.data(), b.size()); }

/// Two valid stored members where the first one's data holds the whole second member (its local
/// header and data): both parse, and their bytes overlap.
Bytes overlapping_zip() {
  const Bytes inner = npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", f8_bytes({1, 2}));
  Bytes inner_member = local_header("b.npy", 0, crc_of(inner), static_cast<std::uint32_t>(inner.size()),
                                    static_cast<std::uint32_t>(inner.size()));
  inner_member.insert(inner_member.end(), inner.begin(), inner.end());
  const Bytes outer = npy_member("{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(inner_member.size()) + ",), }",
                                 inner_member);
  const auto outer_size = static_cast<std::uint32_t>(outer.size());
  Bytes body = local_header("a.npy", 0, crc_of(outer), outer_size, outer_size);
  const auto inner_offset = static_cast<std::uint32_t>(body.size() + outer.size() - inner_member.size());
  body.insert(body.end(), outer.begin(), outer.end());
  return raw_zip(body, {{"a.npy", 0, crc_of(outer), outer_size, outer_size, 0},
                        {"b.npy", 0, crc_of(inner), static_cast<std::uint32_t>(inner.size()),
                         static_cast<std::uint32_t>(inner.size()), inner_offset}});
}

}  // namespace

TEST_CASE("npz: members that share bytes are refused (overlapped entries, a zip bomb)", "[npz][errors][robustness]") {
  // Issue 14: such members were accepted; nested 400 deep, a 1 MB file held 400 MB of arrays.
  const std::string path = tmp_path("overlap.npz");
  write_bytes(path, overlapping_zip());
  const std::string msg = load_error(path);
  CHECK(contains(msg, path));
  CHECK(contains(msg, "member 'a.npy' (bytes 0 to "));
  CHECK(contains(msg, "overlaps member 'b.npy'"));
  CHECK(contains(msg, "overlapped entries (possible zip bomb)"));
  if (!python_with_numpy().empty()) {  // numpy refuses it too, where zipfile has the check (CPython 3.12, backported)
    const std::string script =
        "import sys, inspect, zipfile, numpy\n"
        "if 'Overlapped' not in inspect.getsource(zipfile): sys.exit(0)\n"
        "try:\n    f = numpy.load(sys.argv[1]); [f[k] for k in f.files]\nexcept zipfile.BadZipFile as e:\n"
        "    sys.exit(0 if 'Overlapped' in str(e) else 2)\nsys.exit(1)\n";
    CHECK(run_python("overlap", script, path) == 0);
  }
  // The same member under two central entries (same name and offset): refused as well.
  const Bytes data = npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", f8_bytes({3}));
  Bytes body = local_header("a.npy", 0, crc_of(data), static_cast<std::uint32_t>(data.size()), static_cast<std::uint32_t>(data.size()));
  body.insert(body.end(), data.begin(), data.end());
  const RawEntry entry{"a.npy", 0, crc_of(data), static_cast<std::uint32_t>(data.size()), static_cast<std::uint32_t>(data.size()), 0};
  write_bytes(tmp_path("doubled.npz"), raw_zip(body, {entry, entry}));
  CHECK(contains(load_error(tmp_path("doubled.npz")), "overlapped entries"));
  write_bytes(tmp_path("single-entry.npz"), raw_zip(body, {entry}));  // the helper makes valid files
  CHECK(NpzArchive::load(tmp_path("single-entry.npz")).vector<double>("a")[0] == 3.0);
}

TEST_CASE("npz: memory grows with the bytes a member yields, not with the sizes its headers claim", "[npz][errors][robustness]") {
  // A stored member whose .npy header claims far more data than the member has: refused before
  // the data is read (the .npy header must agree with the zip directory).
  {
    test::AllocationGuard guard(std::size_t{64} << 20);
    const Bytes lying = npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000,), }", f8_bytes({1}));
    write_zip(tmp_path("lying.npz"), {{"a.npy", lying}});
    CHECK(contains(load_error(tmp_path("lying.npz")), "expected 800000000 data bytes for shape (100000000,) of <f8, found 8"));
    CHECK(guard.largest() < (std::size_t{1} << 20));
  }
  if (!zipfmt::has_zlib()) {
    WARN("built without zlib: the deflate cases are skipped");
    return;
  }
  // Issue 14: a deflated member's claimed size was allocated before inflating: 1 MB of garbage
  // claiming 1032 times as much allocated 1 GB before the stream failed. Here 100 kB claim
  // 100 MB; every allocation above 64 MiB throws std::bad_alloc, which is not an io_error.
  test::AllocationGuard guard(std::size_t{64} << 20);
  const Bytes garbage(100000, 0xFF);  // 0xFF: a final block of the reserved type 3, invalid at once
  const std::uint32_t claimed = 100000000;
  Bytes body = local_header("a.npy", 8, 0, static_cast<std::uint32_t>(garbage.size()), claimed);
  body.insert(body.end(), garbage.begin(), garbage.end());
  write_bytes(tmp_path("garbage-deflate.npz"), raw_zip(body, {{"a.npy", 8, 0, static_cast<std::uint32_t>(garbage.size()), claimed, 0}}));
  const std::string msg = load_error(tmp_path("garbage-deflate.npz"));
  CHECK(contains(msg, "member 'a.npy': corrupt deflate stream"));
  CHECK(guard.largest() < (std::size_t{1} << 20));
  // A claim beyond what deflate can expand to (1032:1) is refused without inflating.
  const std::uint32_t impossible = 0xFFFFFFF0u;
  body = local_header("a.npy", 8, 0, 1000, impossible);
  body.insert(body.end(), garbage.begin(), garbage.begin() + 1000);
  write_bytes(tmp_path("impossible-deflate.npz"), raw_zip(body, {{"a.npy", 8, 0, 1000, impossible, 0}}));
  CHECK(contains(load_error(tmp_path("impossible-deflate.npz")), "1000 deflated bytes at offset 35 cannot hold the 4294967280 bytes"));
}

TEST_CASE("npz: load from memory checks as load from a file", "[npz][robustness]") {
  const Bytes good = read_bytes(test::data_path("numpy_savez.npz"));
  const NpzArchive a = NpzArchive::load(good.data(), good.size(), "in-memory");
  check_numpy_fixture(a);
  CHECK(a.path().empty());
  const Bytes bomb = overlapping_zip();
  try {
    NpzArchive::load(bomb.data(), bomb.size(), "in-memory");
    FAIL("no io_error");
  } catch (const deepstruct::io_error& e) {
    CHECK(contains(e.what(), "npz file 'in-memory'"));
    CHECK(contains(e.what(), "overlapped entries"));
  }
  CHECK_THROWS_AS(NpzArchive::load(good.data(), 100, "cut"), deepstruct::io_error);
  CHECK_THROWS_AS(NpzArchive::load(nullptr, 0), deepstruct::io_error);
}

TEST_CASE("npz: save is atomic on a full disk and past a file size limit", "[npz][robustness]") {
  NpzArchive small, big;
  small.set("w", deepstruct::from_vector(Eigen::VectorXf::Ones(4)));
  big.set("w", deepstruct::from_matrix(pattern<double>(40, 40)));
  const std::string dir = tmp_path("atomic");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/m.npz";
  small.save(path);
  const Bytes before = read_bytes(path);
  std::string msg;
  test::with_file_size_limit(2048, [&] { msg = io_error_message([&] { big.save(path); }); });
  CHECK(contains(msg, "cannot save npz file '" + path + "'"));
  CHECK(contains(msg, "File too large"));
  CHECK(read_bytes(path) == before);
  CHECK(test::temporary_files(dir).empty());

  test::SmallTmpfs fs(dir + "/mnt", 64 * 1024);
  if (!fs.ok()) {
    WARN("cannot mount a tmpfs here (not root?): the full-disk variant is skipped");
    return;
  }
  const std::string full = fs.path("m.npz");
  small.save(full);
  const Bytes old = read_bytes(full);
  fs.fill();
  CHECK(contains(io_error_message([&] { big.save(full); }), "No space left on device"));
  CHECK(read_bytes(full) == old);
  std::filesystem::remove(fs.path("filler"));
  CHECK(test::temporary_files(fs.path("")).empty());
}
