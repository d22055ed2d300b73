// SPDX-License-Identifier: MIT
#pragma once

/// \file io/idx.hpp
/// Reading IDX files (the format of MNIST and Fashion-MNIST): a big-endian header
/// (0, 0, type, number of dimensions, then one 32-bit size per dimension) followed by the data.
/// Unsigned-byte data (type 0x08) is supported. Gzipped files (*.gz) are read when zlib is
/// available and DEEPSTRUCT_WITH_ZLIB is defined (link zlib then); otherwise decompress them first.

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <istream>
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
  std::size_t size() const {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
  }
};

/// Parses an IDX stream; `name` (a path) appears in every error message.
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
  const std::size_t n = out.size();
  if (n > (std::size_t{1} << 34))
    DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected at most 2^34 values, found a header announcing " + std::to_string(n));
  out.data.resize(n);
  in.read(reinterpret_cast<char*>(out.data.data()), static_cast<std::streamsize>(n));
  if (static_cast<std::size_t>(in.gcount()) != n)
    DEEPSTRUCT_THROW(io_error, "read_idx: " + name + ": expected " + std::to_string(n) + " data bytes, found " +
                                   std::to_string(in.gcount()) + " (truncated file)");
  return out;
}

/// Reads an IDX file; a name ending in ".gz" is decompressed with zlib (DEEPSTRUCT_WITH_ZLIB).
inline IdxArray read_idx(const std::string& path) {
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (gz) {
#if defined(DEEPSTRUCT_WITH_ZLIB)
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) DEEPSTRUCT_THROW(io_error, "read_idx: cannot open " + path);
    std::string bytes;
    char buffer[1 << 16];
    int got = 0;
    while ((got = gzread(f, buffer, sizeof buffer)) > 0) bytes.append(buffer, static_cast<std::size_t>(got));
    int err = 0;
    const char* message = gzerror(f, &err);
    const std::string zlib_message = message != nullptr ? message : "";
    gzclose(f);
    if (got < 0 || (err != Z_OK && err != Z_STREAM_END))
      DEEPSTRUCT_THROW(io_error, "read_idx: " + path + ": expected a valid gzip stream, found an error: " + zlib_message);
    std::istringstream in(bytes);
    return read_idx(in, path);
#else
    DEEPSTRUCT_THROW(io_error, "read_idx: " + path + " is gzipped: define DEEPSTRUCT_WITH_ZLIB and link zlib, or "
                               "decompress it first (gunzip -k)");
#endif
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) DEEPSTRUCT_THROW(io_error, "read_idx: cannot open " + path);
  return read_idx(in, path);
}

/// Images (n x rows x cols) as a (rows * cols) x n matrix, one image per column in row-major pixel
/// order (PyTorch's flatten), each byte mapped to (byte / 255 - mean) / std.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> idx_images(const IdxArray& a, const std::string& name,
                                                                   double mean = 0.0, double std = 1.0) {
  if (a.shape.size() != 3)
    DEEPSTRUCT_THROW(io_error, "idx_images: " + name + ": expected 3 dimensions (images x rows x cols), found " +
                                   std::to_string(a.shape.size()));
  if (!(std > 0.0) || !std::isfinite(std) || !std::isfinite(mean))
    DEEPSTRUCT_THROW(value_error, "idx_images: " + name + ": expected a finite mean and a finite std > 0, found mean " +
                                      std::to_string(mean) + " and std " + std::to_string(std));
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
  if (a.shape.size() != 1)
    DEEPSTRUCT_THROW(io_error, "idx_labels: " + name + ": expected 1 dimension (labels), found " + std::to_string(a.shape.size()));
  Eigen::VectorXi y(static_cast<Eigen::Index>(a.shape[0]));
  for (Eigen::Index i = 0; i < y.size(); ++i) y[i] = a.data[static_cast<std::size_t>(i)];
  return y;
}

}  // namespace deepstruct
