// Tests of <deepstruct/io/idx.hpp>: IDX parsing (MNIST's format) and its errors.
#include <deepstruct/io/idx.hpp>

#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "allocation_guard.hpp"
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
TEST_CASE("idx: a gzipped file is inflated no further than its header announces", "[idx][robustness]") {
  // 64 MiB of zeros after a header announcing 16 bytes: only the 16 are inflated; and a header
  // announcing 16 GiB with 64 MiB behind it is a truncated file, read in pieces.
  const std::string path = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/bomb.idx.gz";
  for (const std::uint32_t rows : {4u, 131072u}) {
    const std::string header = idx_bytes({rows, rows}, {});
    gzFile f = gzopen(path.c_str(), "wb9");
    REQUIRE(f != nullptr);
    gzwrite(f, header.data(), static_cast<unsigned>(header.size()));
    const std::string zeros(1 << 20, '\0');
    for (int k = 0; k < 64; ++k) gzwrite(f, zeros.data(), static_cast<unsigned>(zeros.size()));
    gzclose(f);
    test::AllocationGuard guard(std::size_t{256} << 20);
    if (rows == 4) {
      CHECK(deepstruct::read_idx(path).data.size() == 16);
      CHECK(guard.largest() < (std::size_t{1} << 20));
    } else {
      CHECK_THROWS_WITH(deepstruct::read_idx(path), test::contains("found 67108864 (truncated file)"));
      CHECK(guard.largest() <= (std::size_t{128} << 20));  // the buffer at most doubles past the 64 MiB that arrived
    }
  }
}

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
  // So is a stream whose checksum does not match its data (one bit of the CRC-32 trailer flipped),
  // also when the data ends exactly where the reader's 64 KiB buffer does.
  for (const std::uint32_t n : {3u, 65536u - 8u, 2u * 65536u - 8u}) {
    std::vector<std::uint8_t> values(n);
    for (std::uint32_t i = 0; i < n; ++i) values[i] = static_cast<std::uint8_t>(i * 7 + i / 251);
    const std::string data = idx_bytes({n}, values);
    gzFile g = gzopen(path.c_str(), "wb");
    REQUIRE(g != nullptr);
    REQUIRE(gzwrite(g, data.data(), static_cast<unsigned>(data.size())) == static_cast<int>(data.size()));
    gzclose(g);
    CHECK(deepstruct::read_idx(path).data == values);
    std::string gz;
    {
      std::ifstream in(path, std::ios::binary);
      gz.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    REQUIRE(gz.size() > 8);
    gz[gz.size() - 8] = static_cast<char>(gz[gz.size() - 8] ^ 1);  // the first byte of the CRC-32
    const std::string flipped = std::string(DEEPSTRUCT_TEST_TMP_DIR) + "/crc.idx.gz";
    std::ofstream(flipped, std::ios::binary) << gz;
    CHECK_THROWS_WITH(deepstruct::read_idx(flipped), test::contains("incorrect data check"));
  }
}
#endif

TEST_CASE("idx: sizes from the header are not trusted", "[idx][robustness]") {
  // Every allocation above 64 MiB fails at once (std::bad_alloc, which is not an io_error): a
  // reader that allocates what a header announces fails these checks instead of taking gigabytes.
  test::AllocationGuard guard(std::size_t{64} << 20);
  auto message = [](const std::string& bytes) {
    std::istringstream in(bytes);
    try {
      deepstruct::read_idx(in, "hostile.idx");
    } catch (const deepstruct::io_error& e) {
      return std::string(e.what());
    }
    return std::string("no io_error");
  };
  // Issue 14: 12 bytes claiming 131072 x 131072 allocated 16 GiB before reading anything.
  CHECK_THAT(message(idx_bytes({131072, 131072}, {})),
             test::contains("hostile.idx: expected 17179869184 data bytes (shape 131072 x 131072) at offset 12, found 0 (truncated file)"));
  CHECK_THAT(message(idx_bytes({131072, 131072}, std::vector<std::uint8_t>(1000, 7))), test::contains("found 1000 (truncated file)"));
  // A stream that cannot tell its size is read in pieces: still no 16 GiB.
  struct Unseekable : std::stringbuf {
    using std::stringbuf::stringbuf;
    pos_type seekoff(off_type, std::ios_base::seekdir, std::ios_base::openmode) override { return pos_type(-1); }
  } unseekable(idx_bytes({131072, 131072}, std::vector<std::uint8_t>(3000, 1)));
  std::istream stream(&unseekable);
  CHECK_THROWS_WITH(deepstruct::read_idx(stream, "pipe"), test::contains("found 3000 (truncated file)"));
  // Dimensions whose product overflows (2^22 x 2^21 x 2^21 = 2^64 wrapped to 0: read_idx
  // succeeded with no data, then idx_images threw std::bad_alloc).
  CHECK_THAT(message(idx_bytes({1u << 22, 1u << 21, 1u << 21}, {})), test::contains("expected at most 2^34 values"));
  // A zero dimension does not hide the others: 0 x 0xFFFFFFFF x 0xFFFFFFFF made idx_images build
  // a matrix of a negative number of rows (an Eigen assertion).
  CHECK_THAT(message(idx_bytes({0, 0xFFFFFFFFu, 0xFFFFFFFFu}, {})), test::contains("expected at most 2^34 values (nonzero dimensions included)"));
  CHECK(guard.largest() < (std::size_t{4} << 20));
  // Zero images of a sane size are fine.
  std::istringstream empty(idx_bytes({0, 28, 28}, {}));
  const deepstruct::IdxArray none = deepstruct::read_idx(empty, "empty");
  CHECK(deepstruct::idx_images<float>(none, "empty").cols() == 0);
}

TEST_CASE("idx: idx_images and idx_labels check arrays filled by hand", "[idx][robustness]") {
  deepstruct::IdxArray a;
  a.shape = {0, 0xFFFFFFFFu, 0xFFFFFFFFu};
  CHECK_THROWS_WITH(deepstruct::idx_images<float>(a, "hand"), test::contains("idx_images: hand: expected at most 2^34 values"));
  a.shape = {2, 2, 2};
  a.data = {1, 2, 3};  // 8 expected: reading them would run past the data
  CHECK_THROWS_WITH(deepstruct::idx_images<float>(a, "hand"), test::contains("expected 8 data bytes for the shape 2 x 2 x 2, found 3"));
  a.shape = {5};
  CHECK_THROWS_WITH(deepstruct::idx_labels(a, "hand"), test::contains("idx_labels: hand: expected 5 data bytes for the shape 5, found 3"));
  a.shape = {std::numeric_limits<std::size_t>::max(), 2};
  CHECK_THROWS_AS(a.size(), deepstruct::io_error);
}
