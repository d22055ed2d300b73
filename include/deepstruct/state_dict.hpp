// SPDX-License-Identifier: MIT
#pragma once

/// \file state_dict.hpp
/// StateDict<Scalar>: a model's named tensors with deepstruct's (PyTorch's) state_dict keys, e.g.
/// "_layer_first.weight" (2-D, out x in), "_layer_first.bias" (1-D, out),
/// "_layer_first._mask" (bool, out x in). Models fill one with state_dict() and take one with
/// load_state_dict(), which checks every key and shape before it changes anything.

#include <Eigen/Core>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "deepstruct/errors.hpp"

namespace deepstruct {

/// True for the key of a boolean mask in deepstruct's state_dicts: its last component starts with
/// "_mask" (a MaskedLinearLayer's "_mask", a recurrent layer's "_mask_i2h" and "_mask_h2h").
inline bool is_mask_key(const std::string& key) {
  const std::size_t dot = key.rfind('.');
  return key.compare(dot == std::string::npos ? 0 : dot + 1, 5, "_mask") == 0;
}

template <typename Scalar>
struct StateDict {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

  std::map<std::string, Matrix> matrices;  ///< 2-D tensors (weights)
  std::map<std::string, Vector> vectors;   ///< 1-D tensors (biases, LayerNorm parameters)
  std::map<std::string, Mask> masks;       ///< boolean masks (2-D)
  std::map<std::string, std::int64_t> counts;  ///< integer counters (BatchNorm's num_batches_tracked)
  /// The shape of a matrix or mask that stands for a tensor of more dimensions (a convolution's
  /// [out][in/groups][kh][kw] weight kept as out x (in/groups * kh * kw)); files use it.
  std::map<std::string, std::vector<Eigen::Index>> shapes;

  bool contains(const std::string& key) const {
    return matrices.count(key) != 0 || vectors.count(key) != 0 || masks.count(key) != 0 || counts.count(key) != 0;
  }
  std::size_t size() const { return matrices.size() + vectors.size() + masks.size() + counts.size(); }

  /// Every key with the number of kinds (matrix, vector, mask, counter) it stands under.
  std::map<std::string, int> key_kinds() const {
    std::map<std::string, int> all;
    for (const auto& kv : matrices) ++all[kv.first];
    for (const auto& kv : vectors) ++all[kv.first];
    for (const auto& kv : masks) ++all[kv.first];
    for (const auto& kv : counts) ++all[kv.first];
    return all;
  }

  /// All keys, sorted, comma-separated (for messages).
  std::string key_list() const {
    std::string out;
    for (const auto& kv : key_kinds()) out += (out.empty() ? "" : ", ") + kv.first;
    return out.empty() ? std::string("(none)") : out;
  }

  /// The 2-D tensor `key` with the given shape; shape_error otherwise.
  const Matrix& matrix(const std::string& key, Eigen::Index rows, Eigen::Index cols) const {
    const auto it = matrices.find(key);
    if (it == matrices.end())
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected a 2-D tensor '" + key + "' of shape " +
                                        detail::shape_str(rows, cols) + ", found " + found(key));
    if (it->second.rows() != rows || it->second.cols() != cols)
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected '" + key + "' of shape " + detail::shape_str(rows, cols) +
                                        ", found " + detail::shape_str(it->second.rows(), it->second.cols()));
    return it->second;
  }
  /// The 1-D tensor `key` of the given size; shape_error otherwise.
  const Vector& vector(const std::string& key, Eigen::Index size) const {
    const auto it = vectors.find(key);
    if (it == vectors.end())
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected a 1-D tensor '" + key + "' of size " + std::to_string(size) +
                                        ", found " + found(key));
    if (it->second.size() != size)
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected '" + key + "' of size " + std::to_string(size) + ", found " +
                                        std::to_string(it->second.size()));
    return it->second;
  }
  const Mask& mask(const std::string& key, Eigen::Index rows, Eigen::Index cols) const {
    const auto it = masks.find(key);
    if (it == masks.end())
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected a boolean mask '" + key + "' of shape " +
                                        detail::shape_str(rows, cols) + ", found " + found(key));
    if (it->second.rows() != rows || it->second.cols() != cols)
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected mask '" + key + "' of shape " + detail::shape_str(rows, cols) +
                                        ", found " + detail::shape_str(it->second.rows(), it->second.cols()));
    return it->second;
  }
  /// The counter `key`; shape_error otherwise.
  std::int64_t count(const std::string& key) const {
    const auto it = counts.find(key);
    if (it == counts.end()) DEEPSTRUCT_THROW(shape_error, "state_dict: expected an integer counter '" + key + "', found " + found(key));
    return it->second;
  }
  /// Throws shape_error when `key` has a recorded shape other than dims[0..ndim) (a matrix
  /// without a recorded shape passes: its rows and columns were checked).
  void check_dims(const std::string& key, const Eigen::Index* dims, int ndim) const {
    const auto it = shapes.find(key);
    if (it == shapes.end()) return;
    const std::vector<Eigen::Index> want(dims, dims + ndim);
    if (it->second != want)
      DEEPSTRUCT_THROW(shape_error, "state_dict: expected '" + key + "' of shape " + dims_str(want) + ", found " + dims_str(it->second));
  }
  /// "(2, 3, 5, 5)".
  static std::string dims_str(const std::vector<Eigen::Index>& dims) {
    std::string s = "(";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + (dims.size() == 1 ? ",)" : ")");
  }

 private:
  /// What stands under `key` instead, for messages.
  std::string found(const std::string& key) const {
    if (matrices.count(key)) return "a 2-D tensor";
    if (vectors.count(key)) return "a 1-D tensor";
    if (masks.count(key)) return "a boolean mask";
    if (counts.count(key)) return "an integer counter";
    return "no such key (keys: " + key_list() + ")";
  }
};

namespace detail {

/// Throws if `sd` holds keys that `expected` does not name (PyTorch's strict loading).
template <typename Scalar, typename Container>
void check_no_unexpected_keys(const StateDict<Scalar>& sd, const Container& expected, const char* model) {
  // A key under two kinds (say a matrix and a vector of one name): one of them is not the model's.
  for (const auto& kv : sd.key_kinds())
    if (kv.second > 1)
      DEEPSTRUCT_THROW(shape_error, std::string(model) + "::load_state_dict: expected every key once, found '" + kv.first + "' " +
                                        std::to_string(kv.second) + " times (as tensors of different kinds)");
  std::string unexpected;
  auto check = [&](const std::string& key) {
    bool found = false;
    for (const auto& e : expected) found = found || e == key;
    if (!found) unexpected += (unexpected.empty() ? "" : ", ") + key;
  };
  for (const auto& kv : sd.matrices) check(kv.first);
  for (const auto& kv : sd.vectors) check(kv.first);
  for (const auto& kv : sd.masks) check(kv.first);
  for (const auto& kv : sd.counts) check(kv.first);
  if (!unexpected.empty())
    DEEPSTRUCT_THROW(shape_error, std::string(model) + "::load_state_dict: expected only this model's keys, found "
                                  "unexpected keys: " + unexpected);
}

}  // namespace detail
}  // namespace deepstruct
