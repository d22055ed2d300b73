// Tests of <deepstruct/io/idx.hpp>: IDX parsing (MNIST's format) and its errors.
#include <deepstruct/io/idx.hpp>

#include <fstream>
#include <sstream>

#include "test_support.hpp"

namespace {
std::string idx_bytes(const std::vector<std::uint32_t>& shape, const std::vector<std::uint8_t>& data) {
  std::string s{'\0', '\0', '\x08', static_cast<char>(shape.size())};
  for (std::uint32_t d : shape)
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((d >> shift) & 0xff));
  s.append(data.begin(), data.end());
  return s;
}
}  // namespace

TEST_CASE("idx: images and labels", "[idx]") {
  // Two 2x3 images: pixel (r, c) of image i is 10 i + 3 r + c.
  std::vector<std::uint8_t> pixels;
  for (int i = 0; i < 2; ++i)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c) pixels.push_back(static_cast<std::uint8_t>(10 * i + 3 * r + c));
  std::istringstream in(idx_bytes({2, 2, 3}, pixels));
  const deepstruct::IdxArray a = deepstruct::read_idx(in, "images");
  CHECK(a.shape == std::vector<std::size_t>{2, 2, 3});
  const Eigen::MatrixXd x = deepstruct::idx_images<double>(a, "images", 0.0, 1.0 / 255.0);  // raw byte values
  REQUIRE(x.rows() == 6);
  REQUIRE(x.cols() == 2);
  CHECK(x(4, 1) == Approx(10 + 3 + 1));  // image 1, row 1, col 1 -> flat index 4
  const Eigen::MatrixXf scaled = deepstruct::idx_images<float>(a, "images");
  CHECK(scaled(5, 1) == Approx(15.0 / 255.0));

  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/labels.idx";
  std::ofstream(path, std::ios::binary) << idx_bytes({4}, {3, 1, 4, 1});
  const Eigen::VectorXi y = deepstruct::idx_labels(deepstruct::read_idx(path), path);
  CHECK(y == (Eigen::VectorXi(4) << 3, 1, 4, 1).finished());
}

TEST_CASE("idx: bad files throw io_error naming the file", "[idx]") {
  auto fails = [](const std::string& bytes, const std::string& expected) {
    std::istringstream in(bytes);
    try {
      deepstruct::read_idx(in, "bad.idx");
      FAIL("no exception for " << expected);
    } catch (const deepstruct::io_error& e) {
      const std::string what = e.what();
      CHECK(what.find("bad.idx") != std::string::npos);
      CHECK(what.find(expected) != std::string::npos);
    }
  };
  fails("\0\0", "4-byte IDX magic");
  fails(std::string("\x1f\x8b\x08\x00", 4), "gzip");
  fails(idx_bytes({2}, {1, 2}).replace(2, 1, "\x0d"), "unsigned-byte data");
  fails(idx_bytes({2, 2}, {1, 2, 3}), "truncated");
  fails(std::string("\0\0\x08\x02\0\0\0\x01", 8), "dimension sizes");
  CHECK_THROWS_AS(deepstruct::read_idx(std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/missing.idx"), deepstruct::io_error);
  std::istringstream labels(idx_bytes({2}, {1, 2}));
  const auto a = deepstruct::read_idx(labels, "labels");
  CHECK_THROWS_AS(deepstruct::idx_images<float>(a, "labels"), deepstruct::io_error);
}

#if defined(DEEPSTRUCT_WITH_ZLIB)
TEST_CASE("idx: gzipped files with zlib", "[idx]") {
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/labels.idx.gz";
  const std::string bytes = idx_bytes({3}, {7, 8, 9});
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
  CHECK(deepstruct::idx_labels(deepstruct::read_idx(path), path) == (Eigen::VectorXi(3) << 7, 8, 9).finished());
  // A corrupt gzip stream is an io_error, not garbage.
  const std::string bad = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/corrupt.idx.gz";
  std::ofstream(bad, std::ios::binary) << std::string("\x1f\x8b\x08\x00garbagegarbage", 18);
  CHECK_THROWS_AS(deepstruct::read_idx(bad), deepstruct::io_error);
}
#endif
