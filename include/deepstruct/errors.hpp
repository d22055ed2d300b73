// SPDX-License-Identifier: MIT
#pragma once

/// \file errors.hpp
/// The exceptions deepstruct throws. Every message says what was expected and what was found,
/// and ends with the library source location that raised it, e.g. "[masked_linear.hpp:120]".

#include <cstddef>
#include <locale>
#include <sstream>
#include <stdexcept>
#include <string>

namespace deepstruct {

/// A matrix, mask or file entry whose shape does not fit.
struct shape_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// A value outside its domain (negative threshold, density outside [0, 1], ...).
struct value_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

/// A file that cannot be read or written, or whose content is malformed.
/// The message names the path and, for text formats, the line.
struct io_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// An index outside its range: a layer, masked weight or parameter that does not exist.
struct index_error : std::out_of_range {
  using std::out_of_range::out_of_range;
};

/// A call out of order: backward() before any forward() (or after one that failed), or with an
/// input other than the one of the forward it follows.
struct state_error : std::logic_error {
  using std::logic_error::logic_error;
};

/// A graph that should be acyclic has a cycle; vertex() is a vertex on the cycle.
struct not_a_dag : std::invalid_argument {
  not_a_dag(const std::string& what, std::size_t vertex) : std::invalid_argument(what), vertex_(vertex) {}
  std::size_t vertex() const noexcept { return vertex_; }

 private:
  std::size_t vertex_;
};

namespace detail {

inline const char* file_basename(const char* path) {
  const char* base = path;
  for (const char* p = path; *p != '\0'; ++p)
    if (*p == '/' || *p == '\\') base = p + 1;
  return base;
}

template <typename Error>
[[noreturn]] void raise(const char* file, int line, const std::string& message) {
  std::ostringstream out;
  out << message << " [" << file_basename(file) << ':' << line << ']';
  throw Error(out.str());
}

/// A double as messages and text files print it: the shortest of `min_digits` to 17 significant
/// digits that reads back as the same value, in the classic locale ("-1e-07", "1.0000001", "0.3";
/// "nan", "inf", "-inf" as streams print them), where std::to_string's six decimals print -1e-07
/// as "-0.000000" and 1.0000001 as "1.000000".
inline std::string number_str(double x, int min_digits = 6) {
  std::ostringstream out;
  out.imbue(std::locale::classic());
  for (int digits = min_digits;; ++digits) {
    out.str("");
    out.precision(digits);
    out << x;
    if (digits >= 17 || !(x - x == 0.0)) break;  // 17 always reads back; inf and nan print alike at any precision
    std::istringstream in(out.str());
    in.imbue(std::locale::classic());
    double back = 0.0;
    if (in >> back && back == x) break;
  }
  return out.str();
}

/// "rows x cols", the way shapes are printed in every message.
template <typename Index>
std::string shape_str(Index rows, Index cols) {
  std::ostringstream out;
  out << rows << 'x' << cols;
  return out.str();
}

}  // namespace detail
}  // namespace deepstruct

/// Throws `Type` with `message` (a std::string expression) and the source location.
#define DEEPSTRUCT_THROW(Type, message) ::deepstruct::detail::raise<Type>(__FILE__, __LINE__, (message))

/// Checks `condition` and throws `Type` with `message` when it does not hold. Always on.
#define DEEPSTRUCT_CHECK(condition, Type, message) \
  do {                                             \
    if (!(condition)) DEEPSTRUCT_THROW(Type, message); \
  } while (false)
