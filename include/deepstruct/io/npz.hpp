// SPDX-License-Identifier: MIT
#pragma once

/// \file io/npz.hpp
/// numpy .npz archives, read and written: NpyArray (one array: dtype, shape, order, bytes),
/// conversions to and from Eigen matrices, and NpzArchive (arrays by key, load and save).
///
/// An .npz file is a zip archive with one member "<key>.npy" per array (numpy.savez). numpy.load
/// opens the files NpzArchive::save writes, and NpzArchive::load reads numpy.savez files
/// (ZIP_STORED, with or without ZIP64 records) and numpy.savez_compressed files (deflate) when
/// DEEPSTRUCT_WITH_ZLIB is defined and zlib is linked. See docs/file-format.md.
///
/// Orientation: a 2-D array [rows][cols] (numpy's shape (rows, cols), C or Fortran order) is the
/// Eigen matrix rows x cols, element (i, j) = a[i][j]; PyTorch's Linear weight [out][in] is the
/// out x in matrix deepstruct uses. Loading is all-or-nothing: load() parses and checks every
/// member before it returns; a malformed file throws deepstruct::io_error naming the path.

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/io/detail/zip.hpp"

namespace deepstruct {

/// The element types of .npy arrays deepstruct reads and writes (numpy's dtype.str without
/// the byte order: "b1" bool, "i4" int32, "f4" float32, ...).
enum class NpyDtype { b1, i1, i2, i4, i8, u1, u2, u4, u8, f4, f8 };

/// Bytes per element.
inline std::size_t npy_itemsize(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::b1: case NpyDtype::i1: case NpyDtype::u1: return 1;
    case NpyDtype::i2: case NpyDtype::u2: return 2;
    case NpyDtype::i4: case NpyDtype::u4: case NpyDtype::f4: return 4;
    case NpyDtype::i8: case NpyDtype::u8: case NpyDtype::f8: return 8;
  }
  return 0;
}

/// The descr deepstruct writes: "|b1", "|i1", "|u1", "<i2", ..., "<f4", "<f8" (little-endian).
inline std::string npy_descr(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::b1: return "|b1";
    case NpyDtype::i1: return "|i1";
    case NpyDtype::i2: return "<i2";
    case NpyDtype::i4: return "<i4";
    case NpyDtype::i8: return "<i8";
    case NpyDtype::u1: return "|u1";
    case NpyDtype::u2: return "<u2";
    case NpyDtype::u4: return "<u4";
    case NpyDtype::u8: return "<u8";
    case NpyDtype::f4: return "<f4";
    case NpyDtype::f8: return "<f8";
  }
  return "?";
}

/// numpy's name of the type: "bool", "int32", "float32", ...
inline std::string npy_type_name(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::b1: return "bool";
    case NpyDtype::i1: return "int8";
    case NpyDtype::i2: return "int16";
    case NpyDtype::i4: return "int32";
    case NpyDtype::i8: return "int64";
    case NpyDtype::u1: return "uint8";
    case NpyDtype::u2: return "uint16";
    case NpyDtype::u4: return "uint32";
    case NpyDtype::u8: return "uint64";
    case NpyDtype::f4: return "float32";
    case NpyDtype::f8: return "float64";
  }
  return "?";
}

/// The dtype of a C++ element type: bool, float, double, and the 8- to 64-bit integers.
template <typename T>
constexpr NpyDtype npy_dtype_of() {
  static_assert(std::is_arithmetic<T>::value && !std::is_same<T, long double>::value,
                "npy_dtype_of<T>: T must be bool, float, double or an integer of 1, 2, 4 or 8 bytes");
  static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8,
                "npy_dtype_of<T>: T must have 1, 2, 4 or 8 bytes");
  if (std::is_same<T, bool>::value) return NpyDtype::b1;
  if (std::is_floating_point<T>::value) return sizeof(T) == 4 ? NpyDtype::f4 : NpyDtype::f8;
  if (std::is_signed<T>::value)
    return sizeof(T) == 1 ? NpyDtype::i1 : sizeof(T) == 2 ? NpyDtype::i2 : sizeof(T) == 4 ? NpyDtype::i4 : NpyDtype::i8;
  return sizeof(T) == 1 ? NpyDtype::u1 : sizeof(T) == 2 ? NpyDtype::u2 : sizeof(T) == 4 ? NpyDtype::u4 : NpyDtype::u8;
}

namespace detail {

/// a * b, false when it overflows std::size_t.
inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return false;
  out = a * b;
  return true;
}

/// Elements of a shape (1 for shape ()); false when the product overflows.
inline bool element_count(const std::vector<std::size_t>& shape, std::size_t& out) {
  std::size_t n = 1;
  for (const std::size_t d : shape)
    if (!checked_mul(n, d, n)) return false;
  out = n;
  return true;
}

inline std::string shape_tuple(const std::vector<std::size_t>& shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

inline bool host_is_little_endian() {
  const std::uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

/// One little-endian item at p as T.
template <typename T>
T load_item(const unsigned char* p) {
  if constexpr (std::is_same<T, bool>::value) {
    return p[0] != 0;
  } else {
    unsigned char bytes[sizeof(T)];
    for (std::size_t k = 0; k < sizeof(T); ++k) bytes[k] = host_is_little_endian() ? p[k] : p[sizeof(T) - 1 - k];
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
  }
}

/// Stores `value` little-endian at p.
template <typename T>
void store_item(unsigned char* p, T value) {
  if constexpr (std::is_same<T, bool>::value) {
    p[0] = value ? 1 : 0;
  } else {
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    for (std::size_t k = 0; k < sizeof(T); ++k) p[k] = host_is_little_endian() ? bytes[k] : bytes[sizeof(T) - 1 - k];
  }
}

}  // namespace detail

/// One numpy array: element type, shape, memory order and raw bytes. `data` holds
/// size() * itemsize() bytes, each item little-endian (big-endian files are swapped on load),
/// in C order (last index fastest) unless fortran_order (first index fastest).
struct NpyArray {
  using Dtype = NpyDtype;

  NpyDtype dtype = NpyDtype::f8;
  std::vector<std::size_t> shape;  ///< empty for a 0-d array (one element)
  bool fortran_order = false;
  std::vector<unsigned char> data;

  std::size_t ndim() const { return shape.size(); }
  std::size_t itemsize() const { return npy_itemsize(dtype); }
  /// numpy's descr of the stored bytes, e.g. "<f4".
  std::string descr() const { return npy_descr(dtype); }
  /// The shape as numpy prints it: "(3, 4)", "(3,)", "()".
  std::string shape_str() const { return detail::shape_tuple(shape); }
  /// Number of elements (product of the shape); shape_error when it overflows.
  std::size_t size() const {
    std::size_t n = 0;
    if (!detail::element_count(shape, n))
      DEEPSTRUCT_THROW(shape_error, "NpyArray: the shape " + shape_str() + " has more elements than size_t holds");
    return n;
  }
  /// size() * itemsize(), the bytes `data` must hold.
  std::size_t nbytes() const {
    std::size_t n = 0;
    if (!detail::checked_mul(size(), itemsize(), n))
      DEEPSTRUCT_THROW(shape_error, "NpyArray: the shape " + shape_str() + " of " + descr() +
                                        " has more bytes than size_t holds");
    return n;
  }
};

namespace detail {

/// Throws io_error unless `a` is an ndim-dimensional array whose dtype `accept` allows and
/// whose data matches its shape. `expected` describes the accepted dtypes for the message.
template <typename Accept>
void check_array(const NpyArray& a, std::size_t ndim, Accept accept, const std::string& expected,
                 const std::string& what) {
  if (a.ndim() != ndim || !accept(a.dtype))
    DEEPSTRUCT_THROW(io_error, what + ": expected a " + std::to_string(ndim) + "-D array of " + expected +
                                   ", found " + std::to_string(a.ndim()) + "-D " + npy_type_name(a.dtype) + " (" +
                                   a.descr() + ") of shape " + a.shape_str());
  std::size_t n = 0, bytes = 0;
  if (!element_count(a.shape, n) || !checked_mul(n, a.itemsize(), bytes))
    DEEPSTRUCT_THROW(io_error, what + ": shape " + a.shape_str() + " of " + a.descr() + " has more bytes than size_t holds");
  if (bytes != a.data.size())
    DEEPSTRUCT_THROW(io_error, what + ": expected " + std::to_string(bytes) + " data bytes for shape " + a.shape_str() +
                                   " of " + a.descr() + ", found " + std::to_string(a.data.size()));
  for (const std::size_t d : a.shape)
    if (d > static_cast<std::size_t>(std::numeric_limits<Eigen::Index>::max()))
      DEEPSTRUCT_THROW(io_error, what + ": shape " + a.shape_str() + " does not fit Eigen::Index");
}

template <typename Scalar>
std::string scalar_expectation() {
  if (std::is_floating_point<Scalar>::value) return "float32 or float64 (<f4 or <f8)";
  return npy_type_name(npy_dtype_of<Scalar>()) + " (" + npy_descr(npy_dtype_of<Scalar>()) + ")";
}

/// Floating targets take f4 and f8; every other target its own dtype only.
template <typename Scalar>
bool accepts(NpyDtype d) {
  if (std::is_floating_point<Scalar>::value) return d == NpyDtype::f4 || d == NpyDtype::f8;
  return d == npy_dtype_of<Scalar>();
}

template <typename Source, typename Scalar>
void decode_items(const NpyArray& a, Scalar* out, Eigen::Index rows, Eigen::Index cols) {
  const unsigned char* p = a.data.data();
  constexpr std::size_t w = sizeof(Source);
  if (a.fortran_order || rows <= 1 || cols <= 1) {  // the column-major order Eigen keeps
    const std::size_t n = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
    for (std::size_t k = 0; k < n; ++k) out[k] = static_cast<Scalar>(load_item<Source>(p + k * w));
  } else {  // C order: a[i][j] at i * cols + j
    for (Eigen::Index i = 0; i < rows; ++i)
      for (Eigen::Index j = 0; j < cols; ++j, p += w) out[i + j * rows] = static_cast<Scalar>(load_item<Source>(p));
  }
}

template <typename Scalar>
void decode(const NpyArray& a, Scalar* out, Eigen::Index rows, Eigen::Index cols) {
  if constexpr (std::is_floating_point<Scalar>::value) {
    if (a.dtype == NpyDtype::f4)
      decode_items<float>(a, out, rows, cols);
    else
      decode_items<double>(a, out, rows, cols);
  } else {
    decode_items<Scalar>(a, out, rows, cols);
  }
}

}  // namespace detail

/// A 2-D array [rows][cols] (C or Fortran order) as the rows x cols matrix with (i, j) = a[i][j].
/// Floating Scalar accepts float32 and float64 arrays (float64 into float rounds to nearest);
/// other Scalar (bool, integers) only their own dtype. Throws io_error naming `what` otherwise.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> to_matrix(const NpyArray& a, const std::string& what) {
  detail::check_array(a, 2, detail::accepts<Scalar>, detail::scalar_expectation<Scalar>(), what);
  const auto rows = static_cast<Eigen::Index>(a.shape[0]), cols = static_cast<Eigen::Index>(a.shape[1]);
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(rows, cols);
  detail::decode(a, m.data(), rows, cols);
  return m;
}

/// A 1-D array as a vector; dtypes as for to_matrix.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, 1> to_vector(const NpyArray& a, const std::string& what) {
  detail::check_array(a, 1, detail::accepts<Scalar>, detail::scalar_expectation<Scalar>(), what);
  const auto n = static_cast<Eigen::Index>(a.shape[0]);
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> v(n);
  detail::decode(a, v.data(), n, 1);
  return v;
}

/// A 2-D mask [rows][cols] as a bool matrix of the same orientation. Takes bool arrays (|b1, any
/// nonzero byte is true) and, since deepstruct's Python models also keep masks as float tensors
/// (MaskedDeepDAN builds them with torch.zeros), numeric arrays whose values are all 0 or 1;
/// any other value throws io_error naming `what` and the first offending entry.
inline Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> to_mask(const NpyArray& a, const std::string& what) {
  if (a.dtype == NpyDtype::b1) return to_matrix<bool>(a, what);
  detail::check_array(a, 2, [](NpyDtype) { return true; }, "bool (|b1), or of numbers that are all 0 or 1", what);
  const auto rows = static_cast<Eigen::Index>(a.shape[0]), cols = static_cast<Eigen::Index>(a.shape[1]);
  Eigen::MatrixXd values(rows, cols);
  switch (a.dtype) {
    case NpyDtype::i1: detail::decode_items<std::int8_t>(a, values.data(), rows, cols); break;
    case NpyDtype::i2: detail::decode_items<std::int16_t>(a, values.data(), rows, cols); break;
    case NpyDtype::i4: detail::decode_items<std::int32_t>(a, values.data(), rows, cols); break;
    case NpyDtype::i8: detail::decode_items<std::int64_t>(a, values.data(), rows, cols); break;
    case NpyDtype::u1: detail::decode_items<std::uint8_t>(a, values.data(), rows, cols); break;
    case NpyDtype::u2: detail::decode_items<std::uint16_t>(a, values.data(), rows, cols); break;
    case NpyDtype::u4: detail::decode_items<std::uint32_t>(a, values.data(), rows, cols); break;
    case NpyDtype::u8: detail::decode_items<std::uint64_t>(a, values.data(), rows, cols); break;
    case NpyDtype::f4: detail::decode_items<float>(a, values.data(), rows, cols); break;
    case NpyDtype::f8: case NpyDtype::b1: detail::decode_items<double>(a, values.data(), rows, cols); break;
  }
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> mask(rows, cols);
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index j = 0; j < cols; ++j) {
      const double v = values(i, j);
      if (!(v == 0.0 || v == 1.0)) {
        std::ostringstream found;
        found << v;
        DEEPSTRUCT_THROW(io_error, what + ": expected a mask of 0/1 values, found " + found.str() + " at [" +
                                       std::to_string(i) + "][" + std::to_string(j) + "] (" + npy_type_name(a.dtype) +
                                       " of shape " + a.shape_str() + ")");
      }
      mask(i, j) = v == 1.0;
    }
  return mask;
}

/// A matrix (or Eigen array) as a 2-D array [rows][cols] in C order, so numpy sees a[i][j] = m(i, j). The dtype
/// follows the scalar: float <f4, double <f8, bool |b1, integers <iN / <uN.
template <typename Derived>
NpyArray from_matrix(const Eigen::DenseBase<Derived>& m) {
  using Scalar = typename Derived::Scalar;
  const auto& plain = m.derived().eval();  // a reference for plain matrices, a temporary otherwise
  NpyArray a;
  a.dtype = npy_dtype_of<Scalar>();
  a.shape = {static_cast<std::size_t>(plain.rows()), static_cast<std::size_t>(plain.cols())};
  a.data.resize(a.nbytes());
  unsigned char* p = a.data.data();
  for (Eigen::Index i = 0; i < plain.rows(); ++i)
    for (Eigen::Index j = 0; j < plain.cols(); ++j, p += sizeof(Scalar)) detail::store_item<Scalar>(p, plain(i, j));
  return a;
}

/// A vector (one row or one column) as a 1-D array; shape_error for other matrices.
template <typename Derived>
NpyArray from_vector(const Eigen::DenseBase<Derived>& v) {
  using Scalar = typename Derived::Scalar;
  if (v.rows() != 1 && v.cols() != 1)
    DEEPSTRUCT_THROW(shape_error, "from_vector: expected a vector (one row or one column), found a " +
                                      detail::shape_str(v.rows(), v.cols()) + " matrix");
  const auto& plain = v.derived().eval();
  NpyArray a;
  a.dtype = npy_dtype_of<Scalar>();
  a.shape = {static_cast<std::size_t>(plain.size())};
  a.data.resize(a.nbytes());
  for (Eigen::Index k = 0; k < plain.size(); ++k)
    detail::store_item<Scalar>(a.data.data() + static_cast<std::size_t>(k) * sizeof(Scalar),
                               plain.rows() == 1 ? plain(0, k) : plain(k, 0));
  return a;
}

/// A bool matrix as a 2-D |b1 array [rows][cols] (PyTorch's bool tensors, deepstruct's _mask).
template <typename Derived>
NpyArray from_mask(const Eigen::DenseBase<Derived>& mask) {
  static_assert(std::is_same<typename Derived::Scalar, bool>::value, "from_mask: expected a bool matrix");
  return from_matrix(mask);
}

namespace detail {
namespace npy {

/// The parsed header dict of a .npy member.
struct Header {
  NpyDtype dtype = NpyDtype::f8;
  bool big_endian = false;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
};

/// numpy's header: a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
/// with exactly these keys in any order, any spacing, trailing commas, ' or " quotes.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& context) : s_(text), context_(context) {}

  Header parse() {
    Header h;
    bool seen[3] = {false, false, false};
    skip_ws();
    expect('{', "'{'");
    skip_ws();
    while (!at('}')) {
      const std::string key = parse_string("a key");
      skip_ws();
      expect(':', "':'");
      skip_ws();
      int slot = -1;
      if (key == "descr") {
        slot = 0;
        if (at('[') || at('{'))
          fail_plain("expected a plain dtype such as '<f4', found a structured dtype (not supported)");
        parse_descr(parse_string("the descr string"), h);
      } else if (key == "fortran_order") {
        slot = 1;
        h.fortran_order = parse_bool();
      } else if (key == "shape") {
        slot = 2;
        h.shape = parse_shape();
      } else {
        fail_plain("expected only the keys 'descr', 'fortran_order' and 'shape', found '" + key + "'");
      }
      if (seen[slot]) fail_plain("duplicate key '" + key + "'");
      seen[slot] = true;
      skip_ws();
      if (at(',')) {
        ++pos_;
        skip_ws();
      } else if (!at('}')) {
        fail("',' or '}'");
      }
    }
    ++pos_;
    skip_ws();
    if (pos_ != s_.size()) fail("the end of the header after '}'");
    const char* names[3] = {"descr", "fortran_order", "shape"};
    for (int k = 0; k < 3; ++k)
      if (!seen[k]) fail_plain(std::string("missing key '") + names[k] + "'");
    return h;
  }

 private:
  const std::string& s_;
  const std::string& context_;
  std::size_t pos_ = 0;

  bool at(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  std::string excerpt() const {
    std::string shown = s_.size() > 200 ? s_.substr(0, 200) + "..." : s_;
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) c = '?';
    return shown;
  }
  [[noreturn]] void fail_plain(const std::string& problem) const {
    DEEPSTRUCT_THROW(io_error, context_ + ": bad .npy header: " + problem + " (header: " + excerpt() + ")");
  }
  [[noreturn]] void fail(const std::string& expected) const {
    const std::string found = pos_ < s_.size() ? "'" + std::string(1, s_[pos_]) + "'" : std::string("the end");
    fail_plain("expected " + expected + " at character " + std::to_string(pos_) + ", found " + found);
  }
  void expect(char c, const char* shown) {
    if (!at(c)) fail(shown);
    ++pos_;
  }
  std::string parse_string(const char* what) {
    if (!at('\'') && !at('"')) fail(what);
    const char quote = s_[pos_++];
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\') fail_plain("escape sequences are not expected in the header");
      ++pos_;
    }
    if (pos_ == s_.size()) fail("a closing quote");
    return s_.substr(start, pos_++ - start);
  }
  bool parse_bool() {
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("True or False");
  }
  std::vector<std::size_t> parse_shape() {
    std::vector<std::size_t> shape;
    expect('(', "'(' starting the shape tuple");
    skip_ws();
    while (!at(')')) {
      if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') fail("a non-negative integer in the shape");
      std::size_t d = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        const std::size_t digit = static_cast<std::size_t>(s_[pos_] - '0');
        if (d > (std::numeric_limits<std::size_t>::max() - digit) / 10) fail_plain("a dimension overflows size_t");
        d = d * 10 + digit;
        ++pos_;
      }
      if (at('L')) ++pos_;  // Python 2 longs
      shape.push_back(d);
      skip_ws();
      if (at(',')) {
        ++pos_;
        skip_ws();
      } else if (!at(')')) {
        fail("',' or ')' in the shape");
      }
    }
    ++pos_;
    return shape;
  }
  void parse_descr(const std::string& descr, Header& h) {
    std::string rest = descr;
    char order = '=';
    if (!rest.empty() && (rest[0] == '<' || rest[0] == '>' || rest[0] == '|' || rest[0] == '=')) {
      order = rest[0];
      rest = rest.substr(1);
    }
    static const std::pair<const char*, NpyDtype> known[] = {
        {"b1", NpyDtype::b1}, {"i1", NpyDtype::i1}, {"i2", NpyDtype::i2}, {"i4", NpyDtype::i4},
        {"i8", NpyDtype::i8}, {"u1", NpyDtype::u1}, {"u2", NpyDtype::u2}, {"u4", NpyDtype::u4},
        {"u8", NpyDtype::u8}, {"f4", NpyDtype::f4}, {"f8", NpyDtype::f8}};
    for (const auto& k : known)
      if (rest == k.first) {
        h.dtype = k.second;
        h.big_endian = order == '>' || (order == '=' && !host_is_little_endian());
        return;
      }
    fail_plain("expected a dtype among b1, i1, i2, i4, i8, u1, u2, u4, u8, f4, f8 (with byte order <, >, | or =), "
               "found '" + descr + "'");
  }
};

/// Reads one .npy member into an array; `context` starts messages. The preamble and header come
/// first; the data is read only once the member's size (as the zip directory claims it) is
/// exactly preamble + header + shape x itemsize, whose product is checked for overflow. Buffers
/// grow with the bytes the member really yields (zip::read_growing), never ahead of them.
inline NpyArray read_array(zip::MemberReader& reader, const std::string& context) {
  const std::uint64_t claimed = reader.claimed_size();
  std::vector<unsigned char> head;
  zip::read_growing(reader, head, std::min<std::uint64_t>(claimed, 10));
  const std::size_t n = head.size();
  if (n < 10 || std::memcmp(head.data(), "\x93NUMPY", 6) != 0)
    DEEPSTRUCT_THROW(io_error, context + ": expected a .npy array starting with \\x93NUMPY, found " +
                                   (n < 10 ? std::to_string(n) + " bytes" : std::string("other bytes")));
  const unsigned major = head[6], minor = head[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    DEEPSTRUCT_THROW(io_error, context + ": expected .npy format version 1.0, 2.0 or 3.0, found " +
                                   std::to_string(major) + "." + std::to_string(minor));
  const std::size_t prefix = major == 1 ? 10 : 12;
  if (prefix == 12) zip::read_growing(reader, head, std::min<std::uint64_t>(claimed - 10, 2));
  if (head.size() < prefix)
    DEEPSTRUCT_THROW(io_error, context + ": truncated .npy preamble: expected " + std::to_string(prefix) +
                                   " bytes, found " + std::to_string(head.size()));
  const std::uint64_t header_len = major == 1 ? zip::get_u16(&head[8]) : zip::get_u32(&head[8]);
  if (header_len > claimed - prefix)
    DEEPSTRUCT_THROW(io_error, context + ": truncated .npy header: expected " + std::to_string(header_len) +
                                   " header bytes, found " + std::to_string(claimed - prefix));
  std::vector<unsigned char> header_bytes;
  if (!zip::read_growing(reader, header_bytes, header_len)) reader.finish();  // the member ends early: throws
  const std::string text(header_bytes.begin(), header_bytes.end());
  const Header h = HeaderParser(text, context).parse();

  NpyArray a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  a.fortran_order = h.fortran_order;
  std::size_t count = 0, expected = 0;
  if (!element_count(a.shape, count) || !checked_mul(count, a.itemsize(), expected))
    DEEPSTRUCT_THROW(io_error, context + ": shape " + a.shape_str() + " of " + npy_descr(a.dtype) +
                                   " has more bytes than size_t holds");
  const std::uint64_t found = claimed - prefix - header_len;
  if (found != expected)
    DEEPSTRUCT_THROW(io_error, context + ": expected " + std::to_string(expected) + " data bytes for shape " +
                                   a.shape_str() + " of " + (h.big_endian ? ">" : "<") +
                                   npy_descr(a.dtype).substr(1) + ", found " + std::to_string(found));
  zip::read_growing(reader, a.data, expected);
  reader.finish();  // every byte there, the end where the directory says, the CRC-32 right
  const std::size_t w = a.itemsize();
  if (h.big_endian && w > 1)
    for (std::size_t k = 0; k < a.data.size(); k += w)
      for (std::size_t l = 0; l < w / 2; ++l) std::swap(a.data[k + l], a.data[k + w - 1 - l]);
  return a;
}

/// The .npy preamble and header of `a`: version 1.0 (2.0 if the header needs more than 65535
/// bytes), padded with spaces and ending in '\n' so that the data starts at a multiple of 64.
inline std::vector<unsigned char> header_bytes(const NpyArray& a) {
  std::string dict = "{'descr': '" + a.descr() + "', 'fortran_order': " + (a.fortran_order ? "True" : "False") +
                     ", 'shape': " + a.shape_str() + ", }";
  const auto padded = [&](std::size_t prefix) { return (prefix + dict.size() + 1 + 63) / 64 * 64; };
  const bool v2 = padded(10) - 10 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t total = padded(prefix);
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::vector<unsigned char> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(v2 ? 2 : 1), 0};
  if (v2)
    zip::put_u32(out, static_cast<std::uint32_t>(dict.size()));
  else
    zip::put_u16(out, static_cast<std::uint32_t>(dict.size()));
  out.insert(out.end(), dict.begin(), dict.end());
  return out;
}

}  // namespace npy
}  // namespace detail

class NpzArchive;

namespace detail {
inline void save_npz(const NpzArchive& archive, const std::string& path, bool force_zip64);
}

/// The arrays of one .npz file by key, ordered by key (std::map); save() writes the members in
/// that order. The key of member "<key>.npy" is <key>, as numpy.load names it.
class NpzArchive {
 public:
  using Arrays = std::map<std::string, NpyArray>;
  using const_iterator = Arrays::const_iterator;

  NpzArchive() = default;

  /// Reads every member of the .npz file at `path`; all-or-nothing. Throws io_error naming the
  /// path: missing file, not a zip, truncated, CRC mismatch, a member that is not "<key>.npy",
  /// duplicate keys, members that share bytes (overlapped entries, a zip bomb), a bad .npy
  /// header, data that does not match shape x itemsize, a shape whose byte count overflows, an
  /// unsupported dtype, or a deflated member without zlib (see DEEPSTRUCT_WITH_ZLIB). Memory grows
  /// with the bytes the file really holds (for deflated members at most 1032 times their
  /// compressed size), never with sizes a header merely claims. See docs/robustness.md.
  static NpzArchive load(const std::string& path) {
    detail::zip::InputFile file(path);
    NpzArchive archive = load(file);
    archive.path_ = path;
    return archive;
  }

  /// Reads an .npz archive from the `size` bytes at `data` (a file already in memory), with the
  /// checks of load(path); `name` stands for the path in messages. path() of the result is "".
  static NpzArchive load(const unsigned char* data, std::size_t size, const std::string& name = "<memory>") {
    detail::zip::InputFile file(data, size, name);
    return load(file);
  }

 private:
  static NpzArchive load(detail::zip::InputFile& file) {
    const std::string& path = file.path();
    const std::vector<detail::zip::Entry> entries = detail::zip::read_directory(file);
    const std::string suffix = ".npy";
    std::map<std::string, const detail::zip::Entry*> by_key;
    for (const auto& e : entries) {
      const std::string member = detail::zip::where(path) + ": member '" + e.name + "'";
      if (e.name.size() < suffix.size() || e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) != 0)
        DEEPSTRUCT_THROW(io_error, member + ": expected only members named '<key>.npy', found '" + e.name + "'");
      const std::string key = e.name.substr(0, e.name.size() - suffix.size());
      if (!by_key.emplace(key, &e).second)
        DEEPSTRUCT_THROW(io_error, member + ": duplicate key '" + key + "' (expected each key once)");
    }
    NpzArchive archive;
    for (const auto& kv : by_key) {
      detail::zip::MemberReader reader(file, *kv.second);
      archive.arrays_.emplace(kv.first, detail::npy::read_array(reader, reader.name()));
    }
    return archive;
  }

 public:
  /// Writes all arrays as an uncompressed .npz (numpy.savez's layout) to a temporary file beside
  /// `path` and renames it over `path`; a failed save leaves `path` as it was. Members of 4 GiB
  /// and more get ZIP64 records. Throws io_error naming the path.
  void save(const std::string& path) const { detail::save_npz(*this, path, false); }

  /// The file this archive was loaded from ("" when built in memory).
  const std::string& path() const { return path_; }

  std::size_t size() const { return arrays_.size(); }
  bool empty() const { return arrays_.empty(); }
  bool contains(const std::string& key) const { return arrays_.count(key) != 0; }
  const Arrays& arrays() const { return arrays_; }
  const_iterator begin() const { return arrays_.begin(); }
  const_iterator end() const { return arrays_.end(); }

  /// The keys, sorted.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& kv : arrays_) out.push_back(kv.first);
    return out;
  }

  /// The array `key`; io_error listing the available keys when there is none.
  const NpyArray& at(const std::string& key) const {
    const auto it = arrays_.find(key);
    if (it == arrays_.end()) {
      std::string list;
      for (const auto& kv : arrays_) list += (list.empty() ? "'" : ", '") + kv.first + "'";
      DEEPSTRUCT_THROW(io_error, where() + ": expected an array '" + key + "', found no such key (keys: " +
                                     (list.empty() ? std::string("none") : list) + ")");
    }
    return it->second;
  }

  /// Adds or replaces the array `key`. shape_error when its data does not hold
  /// shape x itemsize bytes; value_error when "<key>.npy" is longer than a zip name allows.
  void set(const std::string& key, NpyArray array) {
    if (key.size() + 4 > 65535)
      DEEPSTRUCT_THROW(value_error, "NpzArchive::set: expected a key of at most 65531 bytes, found " +
                                        std::to_string(key.size()));
    if (array.data.size() != array.nbytes())
      DEEPSTRUCT_THROW(shape_error, "NpzArchive::set('" + key + "'): expected " + std::to_string(array.nbytes()) +
                                        " data bytes for shape " + array.shape_str() + " of " + array.descr() +
                                        ", found " + std::to_string(array.data.size()));
    arrays_[key] = std::move(array);
  }

  /// Removes `key`; false when there was none.
  bool erase(const std::string& key) { return arrays_.erase(key) != 0; }

  /// The 2-D array `key` as a matrix (see to_matrix); io_error naming the file and key.
  template <typename Scalar>
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> matrix(const std::string& key) const {
    return to_matrix<Scalar>(at(key), what(key));
  }
  /// The 1-D array `key` as a vector (see to_vector).
  template <typename Scalar>
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> vector(const std::string& key) const {
    return to_vector<Scalar>(at(key), what(key));
  }
  /// The 2-D array `key` as a mask: bool, or numbers that are all 0 or 1 (see to_mask).
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> mask(const std::string& key) const {
    return to_mask(at(key), what(key));
  }

 private:
  Arrays arrays_;
  std::string path_;

  std::string where() const { return path_.empty() ? std::string("npz archive") : detail::zip::where(path_); }
  std::string what(const std::string& key) const { return where() + ": array '" + key + "'"; }
};

namespace detail {

/// NpzArchive::save, with ZIP64 records everywhere when force_zip64 (as Python's zipfile
/// force_zip64; the tests use it to exercise the ZIP64 paths without 4 GiB files).
inline void save_npz(const NpzArchive& archive, const std::string& path, bool force_zip64) {
  std::vector<std::vector<unsigned char>> headers;
  headers.reserve(archive.size());
  std::vector<zip::OutputMember> members;
  for (const auto& kv : archive) {
    headers.push_back(npy::header_bytes(kv.second));
    zip::OutputMember m;
    m.name = kv.first + ".npy";
    m.pieces = {{headers.back().data(), headers.back().size()}, {kv.second.data.data(), kv.second.data.size()}};
    members.push_back(std::move(m));
  }
  zip::write_file_atomically(path, [&](zip::OutputFile& out) {
    zip::write_stored_archive(out, members, force_zip64, path);
  });
}

}  // namespace detail
}  // namespace deepstruct
