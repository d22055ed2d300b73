// SPDX-License-Identifier: MIT
#pragma once

/// \file state_dict.hpp
/// StateDict<Scalar>: a model's named tensors with deepstruct's (PyTorch's) state_dict keys, e.g.
/// "_layer_first.weight" (out x in), "_layer_first.bias" (out, stored as out x 1),
/// "_layer_first._mask" (bool, out x in). Models fill one with state_dict() and take one with
/// load_state_dict(), which checks every key and shape before it changes anything.

#include <Eigen/Core>
#include <map>
#include <string>

#include "deepstruct/errors.hpp"

namespace deepstruct {

template <typename Scalar>
struct StateDict {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

  std::map<std::string, Matrix> tensors;  ///< weights (2-D) and vectors (n x 1)
  std::map<std::string, Mask> masks;      ///< boolean masks (2-D)

  bool contains(const std::string& key) const { return tensors.count(key) != 0 || masks.count(key) != 0; }
  std::size_t size() const { return tensors.size() + masks.size(); }

  /// All keys, sorted, comma-separated (for messages).
  std::string key_list() const {
    std::map<std::string, int> all;
    for (const auto& kv : tensors) all[kv.first] = 0;
    for (const auto& kv : masks) all[kv.first] = 0;
    std::string out;
    for (const auto& kv : all) out += (out.empty() ? "" : ", ") + kv.first;
    return out.empty() ? std::string("(none)") : out;
  }

  /// The tensor `key` with the given shape; shape_error otherwise (cols = 1 for vectors).
  const Matrix& tensor(const std::string& key, Eigen::Index rows, Eigen::Index cols) const {
    const auto it = tensors.find(key);
    if (it == tensors.end())
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected a tensor '" + key + "' of shape " +
                                        detail::shape_str(rows, cols) + ", found no such key (keys: " + key_list() + ")");
    if (it->second.rows() != rows || it->second.cols() != cols)
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected '" + key + "' of shape " + detail::shape_str(rows, cols) +
                                        ", found " + detail::shape_str(it->second.rows(), it->second.cols()));
    return it->second;
  }
  const Mask& mask(const std::string& key, Eigen::Index rows, Eigen::Index cols) const {
    const auto it = masks.find(key);
    if (it == masks.end())
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected a boolean mask '" + key + "' of shape " +
                                        detail::shape_str(rows, cols) + ", found no such mask (keys: " + key_list() + ")");
    if (it->second.rows() != rows || it->second.cols() != cols)
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected mask '" + key + "' of shape " + detail::shape_str(rows, cols) +
                                        ", found " + detail::shape_str(it->second.rows(), it->second.cols()));
    return it->second;
  }
};

namespace detail {

/// Throws if `sd` holds keys that `expected` does not name (PyTorch's strict loading).
template <typename Scalar, typename Container>
void check_no_unexpected_keys(const StateDict<Scalar>& sd, const Container& expected, const char* model) {
  std::string unexpected;
  auto check = [&](const std::string& key) {
    bool found = false;
    for (const auto& e : expected) found = found || e == key;
    if (!found) unexpected += (unexpected.empty() ? "" : ", ") + key;
  };
  for (const auto& kv : sd.tensors) check(kv.first);
  for (const auto& kv : sd.masks) check(kv.first);
  if (!unexpected.empty())
    DEEPSTRUCT_THROW(shape_error, std::string(model) + "::load_state_dict: expected only this model's keys, found "
                                  "unexpected keys: " + unexpected);
}

}  // namespace detail
}  // namespace deepstruct
