// SPDX-License-Identifier: MIT
#pragma once

/// \file detail/alias.hpp
/// Whether a layer's output matrix shares memory with one of its inputs. The layers refuse such
/// calls with a shape_error: writing the output would change the input while it is read (a silent
/// wrong answer), and resizing the output would free the input (a crash).

#include <Eigen/Core>
#include <functional>
#include <string>
#include <type_traits>

#include "deepstruct/errors.hpp"

namespace deepstruct {
namespace detail {

/// Whether n scalars from `out` overlap a rows x cols column-major block at `in` with leading
/// dimension ld (its columns and the gaps between them: a conservative, O(1) test).
template <typename Scalar>
bool memory_overlaps(const Scalar* in, Eigen::Index rows, Eigen::Index cols, Eigen::Index ld, const Scalar* out, Eigen::Index n) {
  if (rows * cols == 0 || n == 0) return false;
  const Scalar* in_end = in + (cols - 1) * ld + rows;
  const std::less<const Scalar*> before;  // a total order, also for pointers into different arrays
  return before(in, out + n) && before(out, in_end);
}

/// Whether the memory of the matrix `out` overlaps that of `in`. An input that is an expression
/// rather than memory (no direct access), or of another scalar type, shares none.
template <typename In, typename Scalar>
bool shares_memory(const Eigen::MatrixBase<In>& in, const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& out) {
  if constexpr (bool(Eigen::internal::traits<In>::Flags & Eigen::DirectAccessBit) && std::is_same<typename In::Scalar, Scalar>::value) {
    const In& m = in.derived();
    const bool row_major = bool(In::IsRowMajor);
    const Eigen::Index inner = row_major ? m.cols() : m.rows(), outer = row_major ? m.rows() : m.cols();
    return memory_overlaps<Scalar>(m.data(), inner, outer, m.outerStride(), out.data(), out.size());
  } else {
    return false;
  }
}

/// Whether `in` is the matrix `out` itself: the same memory, shape and layout (column-major, no
/// gaps). A layer that reads and writes each entry at one position can then work in place.
template <typename In, typename Scalar>
bool same_matrix(const Eigen::MatrixBase<In>& in, const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& out) {
  if constexpr (bool(Eigen::internal::traits<In>::Flags & Eigen::DirectAccessBit) && std::is_same<typename In::Scalar, Scalar>::value &&
                !bool(In::IsRowMajor)) {
    const In& m = in.derived();
    return m.data() == out.data() && m.rows() == out.rows() && m.cols() == out.cols() && (m.cols() <= 1 || m.outerStride() == out.rows());
  } else {
    return false;
  }
}

/// Whether `out` shares memory with `in` without being it (shares_memory and not same_matrix):
/// writing `out` would then change `in` where it is still to be read, or free it.
template <typename In, typename Scalar>
bool partly_shares_memory(const Eigen::MatrixBase<In>& in, const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& out) {
  return shares_memory(in, out) && !same_matrix(in, out);
}

/// Throws shape_error if shares_memory(in, out) (`where`: the function, e.g.
/// "MaskedConv2d::forward").
template <typename In, typename Scalar>
void check_no_alias(const Eigen::MatrixBase<In>& in, const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& out, const char* where,
                    const char* out_name, const char* in_name) {
  if (shares_memory(in, out))
    DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected " + out_name + " not to share memory with " + in_name + ", found " +
                                      out_name + " (" + shape_str(out.rows(), out.cols()) + ") overlapping " + in_name + " (" +
                                      shape_str(in.rows(), in.cols()) + "); in-place calls are not supported, pass a separate matrix");
}

}  // namespace detail
}  // namespace deepstruct
