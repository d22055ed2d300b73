// SPDX-License-Identifier: MIT
#pragma once

/// \file io/idx.hpp
/// Reading IDX files (the format of MNIST and Fashion-MNIST): a big-endian header
/// (0, 0, type, number of dimensions, then one 32-bit size per dimension) followed by the data.
/// Unsigned-byte data (type 0x08) is supported. Gzipped files (*.gz) are read when zlib is
/// available and DEEPSTRUCT_WITH_ZLIB is defined (link zlib then); otherwise decompress them first.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <istream>
#include <limits>
#include <streambuf>
#include <sstream>
#include <string>
#include <vector>

#include "deepstruct/errors.hpp"

#if defined(DEEPSTRUCT_WITH_ZLIB)
#include <zlib.h>
#endif

namespace deepstruct {

/// An IDX array of unsigned bytes: shape (outermost first) and data in C order.
struct IdxArray {
  std::vector<std::size_t> shape;
  std::vector<std::uint8_t> data;
  /// The product of the shape; io_error when it overflows size_t.
  std::size_t size() const {
    std::size_t n = 1;
    for (std::size_t d : shape) {
      if (d != 0 && n > std::numeric_limits<std::size_t>::max() / d)
        DEEPSTRUCT_THROW(io_error, "IdxArray: the shape's product overflows size_t");
      n *= d;
    }
    return n;
  }
};

/// The most values read_idx accepts (16 GiB of bytes): a header announcing more is an error.
inline constexpr std::size_t idx_max_values = std::size_t{1} << 34;

namespace detail {

/// "a x b x c", the way IDX shapes are printed in messages.
inline std::string idx_shape_str(const std::vector<std::size_t>& shape) {
  std::string out;
  for (std::size_t k = 0; k < shape.size(); ++k) out += (k == 0 ? "" : " x ") + std::to_string(shape[k]);
  return out;
}

#if defined(DEEPSTRUCT_WITH_ZLIB)
/// A std::streambuf that inflates a gzip file as it is read (64 KiB at a time), so read_idx
/// takes no more of a .gz file than the header announces.
class GzStreambuf : public std::streambuf {
 public:
  GzStreambuf(gzFile f, const std::string& path) : f_(f), path_(path) {}

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    const int got = gzread(f_, buffer_, sizeof buffer_);
    if (got < 0) {
      int err = 0;
      const char* message = gzerror(f_, &err);
      DEEPSTRUCT_THROW(io_error, "read_idx: " + path_ + ": expected a valid gzip stream, found an error: " +
                                     std::string(message != nullptr ? message : "unknown"));
    }
    if (got == 0) return traits_type::eof();
    setg(buffer_, buffer_, buffer_ + got);
    return traits_type::to_int_type(*gptr());
  }

 private:
  gzFile f_;
  const std::string& path_;
  char buffer_[1 << 16];
};
#endif

}  // namespace detail

/// Parses an IDX stream; `name` (a path) appears in every error message. The header is checked
/// before anything is allocated (every dimension product for overflow, at most idx_max_values
/// values), and the data is read in pieces into a buffer that grows with the bytes that really
/// arrive: a header that announces more than the stream holds costs no more memory than the
/// stream's bytes, and gives an io_error naming the offset where the data ends.
inline IdxArray read_idx(std::istream& in, const std::string& name) {
  unsigned char head[4];
  if (!in.read(reinterpret_cast<char*>(head), 4))
    DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected a 4-byte IDX magic number, found a shorter file");
  if (head[0] != 0 || head[1] != 0)
    DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected an IDX file (magic starting with two zero bytes), found " +
                                   std::to_string(head[0]) + ", " + std::to_string(head[1]) +
                                   (head[0] == 0x1f && head[1] == 0x8b ? " (a gzip file: decompress it or define DEEPSTRUCT_WITH_ZLIB)" : ""));
  if (head[2] != 0x08)
    DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected unsigned-byte data (type 0x08), found type " +
                                   std::to_string(head[2]));
  if (head[3] == 0 || head[3] > 4)
    DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected 1 to 4 dimensions, found " + std::to_string(head[3]));
  IdxArray out;
  for (int d = 0; d < head[3]; ++d) {
    unsigned char b[4];
    if (!in.read(reinterpret_cast<char*>(b), 4))
      DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected " + std::to_string(head[3]) +
                                     " dimension sizes, found the file ending after " + std::to_string(d));
    out.shape.push_back((std::size_t{b[0]} << 24) | (std::size_t{b[1]} << 16) | (std::size_t{b[2]} << 8) | b[3]);
  }
  // The product of the nonzero dimensions is bounded too: a zero dimension must not hide others
  // that no matrix can hold (0 x 2^32 x 2^32 would make an image of 2^64 pixels).
  std::size_t n = 1, nonzero = 1;
  for (const std::size_t d : out.shape) {
    if (d != 0) {
      if (nonzero > idx_max_values / d)
        DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected at most 2^34 values (nonzero dimensions included), "
                                   "found a header announcing the shape " + detail::idx_shape_str(out.shape));
      nonzero *= d;
    }
    n *= d;  // <= nonzero (or 0)
  }
  const std::uint64_t data_offset = 4 + 4 * std::uint64_t{head[3]};
  const std::string expected = std::to_string(n) + " data bytes (shape " + detail::idx_shape_str(out.shape) + ") at offset " +
                               std::to_string(data_offset);
  // A stream that knows its size (a file) is checked before any data is read.
  const std::istream::pos_type here = in.tellg();
  if (here != std::istream::pos_type(-1)) {
    in.seekg(0, std::ios::end);
    const std::istream::pos_type end = in.tellg();
    in.seekg(here);
    if (end != std::istream::pos_type(-1) && end >= here && static_cast<std::uint64_t>(end - here) < n)
      DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected " + expected + ", found " +
                                     std::to_string(static_cast<std::uint64_t>(end - here)) + " (truncated file)");
    in.clear();
  }
  while (out.data.size() < n) {
    const std::size_t old = out.data.size();
    const std::size_t step = std::min(n - old, std::max<std::size_t>(old, std::size_t{1} << 20));
    out.data.resize(old + step);
    in.read(reinterpret_cast<char*>(out.data.data() + old), static_cast<std::streamsize>(step));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got != step)
      DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected " + expected + ", found " + std::to_string(old + got) +
                                     " (truncated file)");
  }
  return out;
}

/// Reads an IDX file; a name ending in ".gz" is decompressed with zlib (DEEPSTRUCT_WITH_ZLIB) as
/// it is read, no further than the header announces.
inline IdxArray read_idx(const std::string& path) {
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (gz) {
#if defined(DEEPSTRUCT_WITH_ZLIB)
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) DEEPSTRUCT_THROW(io_error, "read_idx: cannot open " + path);
    struct Closer {
      gzFile f;
      ~Closer() { gzclose(f); }
    } closer{f};
    detail::GzStreambuf buffer(f, path);
    std::istream in(&buffer);
    in.exceptions(std::ios::badbit);  // let the streambuf's io_error through
    try {
      return read_idx(in, path);
    } catch (const std::ios_base::failure&) {
      DEEPSTRUCT_THROW(io_error, "read_idx: " + path + ": expected a valid gzip stream, found an error");
    }
#else
    DEEPSTRUCT_THROW(io_error, "read_idx: " + path + " is gzipped: define DEEPSTRUCT_WITH_ZLIB and link zlib, or "
                               "decompress it first (gunzip -k)");
#endif
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) DEEPSTRUCT_THROW(io_error, "read_idx: cannot open " + path);
  return read_idx(in, path);
}

namespace detail {

/// Throws io_error unless `a` has `dims` dimensions and data of the size its shape gives, and
/// its shape fits an Eigen matrix (an IdxArray may be filled by hand).
inline std::size_t check_idx_array(const IdxArray& a, std::size_t dims, const char* who, const std::string& name,
                                   const char* layout) {
  if (a.shape.size() != dims)
    DEEPSTRUCT_THROW(io_error, std::string(who) + ": " + name + ": expected " + std::to_string(dims) + " dimension" +
                                   (dims == 1 ? "" : "s") + " (" + layout + "), found " + std::to_string(a.shape.size()));
  std::size_t n = 1, nonzero = 1;
  for (const std::size_t d : a.shape) {
    if (d != 0) {
      if (nonzero > idx_max_values / d)
        DEEPSTRUCT_THROW(io_error, std::string(who) + ": " + name + ": expected at most 2^34 values (nonzero dimensions included), "
                                   "found the shape " + idx_shape_str(a.shape));
      nonzero *= d;
    }
    n *= d;
  }
  if (a.data.size() != n)
    DEEPSTRUCT_THROW(io_error, std::string(who) + ": " + name + ": expected " + std::to_string(n) + " data bytes for the shape " +
                                   idx_shape_str(a.shape) + ", found " + std::to_string(a.data.size()));
  return n;
}

}  // namespace detail

/// Images (n x rows x cols) as a (rows * cols) x n matrix, one image per column in row-major pixel
/// order (PyTorch's flatten), each byte mapped to (byte / 255 - mean) / std.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> idx_images(const IdxArray& a, const std::string& name,
                                                                   double mean = 0.0, double std = 1.0) {
  detail::check_idx_array(a, 3, "idx_images", name, "images x rows x cols");
  if (!(std > 0.0) || !std::isfinite(std) || !std::isfinite(mean))
    DEEPSTRUCT_THROW(value_error, "idx_images: " + name + ": expected a finite mean and a finite std > 0, found mean " +
                                      std::to_string(mean) + " and std " + std::to_string(std));
  // Each factor is <= 2^34 (check_idx_array), so the casts and the product below fit Eigen::Index.
  const auto n = static_cast<Eigen::Index>(a.shape[0]);
  const auto pixels = static_cast<Eigen::Index>(a.shape[1] * a.shape[2]);
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> x(pixels, n);
  const double scale = 1.0 / (255.0 * std), shift = -mean / std;
  for (Eigen::Index i = 0; i < pixels * n; ++i)
    x.data()[i] = static_cast<Scalar>(a.data[static_cast<std::size_t>(i)] * scale + shift);
  return x;
}

/// Labels (n) as integers.
inline Eigen::VectorXi idx_labels(const IdxArray& a, const std::string& name) {
  detail::check_idx_array(a, 1, "idx_labels", name, "labels");
  Eigen::VectorXi y(static_cast<Eigen::Index>(a.shape[0]));
  for (Eigen::Index i = 0; i < y.size(); ++i) y[i] = a.data[static_cast<std::size_t>(i)];
  return y;
}

}  // namespace deepstruct
