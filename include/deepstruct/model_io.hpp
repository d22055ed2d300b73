// SPDX-License-Identifier: MIT
#pragma once

/// \file model_io.hpp
/// Model files that PyTorch and numpy users can read and write: a model's parameters and masks as
/// a numpy .npz archive under deepstruct's state_dict keys. `numpy.load(path)` opens what
/// save_npz() writes, and a file written in Python with
///     numpy.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})
/// loads with load_npz() into the C++ model of the same shape (or with load_ffn_npz() into a
/// MaskedDeepFFN whose shape is read from the file). Weights and biases are stored as float32 or
/// float64 following the model's Scalar, masks as bool.

#include <Eigen/Core>
#include <cstdint>
#include <exception>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/io/npz.hpp"
#include "deepstruct/masked_deep_ffn.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

namespace detail {

/// A 2-D array [rows][cols] in C order re-labelled with the shape the state dict records for it
/// (the same bytes: a row is the rest of the dimensions in C order).
inline NpyArray with_recorded_shape(NpyArray a, const std::map<std::string, std::vector<Eigen::Index>>& shapes, const std::string& key) {
  const auto it = shapes.find(key);
  if (it == shapes.end()) return a;
  std::vector<std::size_t> shape;
  std::size_t n = 1;
  for (const Eigen::Index d : it->second) {
    shape.push_back(static_cast<std::size_t>(d));
    n *= static_cast<std::size_t>(d);
  }
  if (n != a.size())
    DEEPSTRUCT_THROW(shape_error, "to_npz: the recorded shape " + StateDict<float>::dims_str(it->second) + " of '" + key +
                                      "' does not have the " + std::to_string(a.size()) + " elements of the tensor");
  a.shape = std::move(shape);
  return a;
}

/// An N-d array (N > 2) in C order as the 2-D array [shape[0]][rest] of the same bytes, and its
/// shape; io_error for a Fortran-order one (numpy writes C order unless asked otherwise).
inline NpyArray as_two_d(const NpyArray& a, const std::string& what, std::vector<Eigen::Index>& dims) {
  if (a.fortran_order)
    DEEPSTRUCT_THROW(io_error, what + ": expected a " + std::to_string(a.ndim()) + "-D array in C order, found Fortran order");
  NpyArray b = a;
  std::size_t rest = 1;
  for (std::size_t i = 1; i < a.shape.size(); ++i) rest *= a.shape[i];
  b.shape = {a.shape[0], rest};
  dims.assign(a.shape.begin(), a.shape.end());
  return b;
}

/// A 0-d integer array (PyTorch's num_batches_tracked) as its value; io_error for another dtype
/// or a data size that does not match.
inline std::int64_t to_count(const NpyArray& a, const std::string& what) {
  const unsigned char* p = a.data.data();
  const bool size_ok = a.data.size() == a.itemsize();
  switch (size_ok ? a.dtype : NpyDtype::f8) {
    case NpyDtype::i1: return load_item<std::int8_t>(p);
    case NpyDtype::i2: return load_item<std::int16_t>(p);
    case NpyDtype::i4: return load_item<std::int32_t>(p);
    case NpyDtype::i8: return load_item<std::int64_t>(p);
    case NpyDtype::u1: return load_item<std::uint8_t>(p);
    case NpyDtype::u2: return load_item<std::uint16_t>(p);
    case NpyDtype::u4: return load_item<std::uint32_t>(p);
    default: break;
  }
  DEEPSTRUCT_THROW(io_error, what + ": expected a 1-D or 2-D parameter, or a 0-d integer counter, found a 0-d " + npy_type_name(a.dtype) +
                                 " array of " + std::to_string(a.data.size()) + " bytes");
}

}  // namespace detail

/// The arrays of a state dict: 2-D tensors (with their recorded shape, e.g. a convolution's
/// [out][in][kh][kw]), 1-D tensors, bool masks and int64 counters (0-d).
template <typename Scalar>
NpzArchive to_npz(const StateDict<Scalar>& sd) {
  NpzArchive archive;
  for (const auto& kv : sd.matrices) archive.set(kv.first, detail::with_recorded_shape(from_matrix(kv.second), sd.shapes, kv.first));
  for (const auto& kv : sd.vectors) archive.set(kv.first, from_vector(kv.second));
  for (const auto& kv : sd.masks) archive.set(kv.first, detail::with_recorded_shape(from_mask(kv.second), sd.shapes, kv.first));
  for (const auto& kv : sd.counts) {
    NpyArray a;
    a.dtype = NpyDtype::i8;
    a.data.resize(8);
    detail::store_item<std::int64_t>(a.data.data(), kv.second);
    archive.set(kv.first, std::move(a));
  }
  return archive;
}

/// A state dict from an archive: mask keys (is_mask_key: "..._mask", "..._mask_i2h", ...) are
/// masks (bool, or numbers all 0 or 1 as deepstruct's MaskedDeepDAN stores them), other 2-D arrays
/// matrices, 1-D arrays vectors, 0-d integer arrays counters (num_batches_tracked); an array of
/// more dimensions (a convolution's weight) is kept as [shape[0]][rest] with its shape recorded.
/// io_error (naming the file and key) for other dimensions or dtypes.
template <typename Scalar>
StateDict<Scalar> state_dict_from_npz(const NpzArchive& archive) {
  StateDict<Scalar> sd;
  const std::string file = archive.path().empty() ? std::string("npz archive") : "npz file '" + archive.path() + "'";
  for (const auto& kv : archive) {
    const std::string& key = kv.first;
    const NpyArray& a = kv.second;
    const std::string what = file + ": array '" + key + "'";
    if (a.ndim() > 2) {
      std::vector<Eigen::Index> dims;
      const NpyArray two_d = detail::as_two_d(a, what, dims);
      if (is_mask_key(key)) sd.masks[key] = to_mask(two_d, what);
      else sd.matrices[key] = to_matrix<Scalar>(two_d, what);
      sd.shapes[key] = std::move(dims);
    } else if (is_mask_key(key)) {
      sd.masks[key] = to_mask(a, what);
    } else if (a.ndim() == 2) {
      sd.matrices[key] = to_matrix<Scalar>(a, what);
    } else if (a.ndim() == 1) {
      sd.vectors[key] = to_vector<Scalar>(a, what);
    } else {
      sd.counts[key] = detail::to_count(a, what);
    }
  }
  return sd;
}

/// Writes every parameter and mask of `model` (MaskedDeepFFN, MaskedDeepDAN, ...) to `path`.
/// The file appears whole or not at all (temporary file and rename). Throws io_error.
template <typename Model>
void save_npz(const Model& model, const std::string& path) {
  to_npz(model.state_dict()).save(path);
}

namespace detail {

/// Runs `load` and turns every error it throws into an io_error naming `path`: io_errors (which
/// already name it) pass unchanged, and so does std::bad_alloc (out of memory, not a bad file).
template <typename Load>
auto with_npz_path(const std::string& path, const std::string& problem, Load&& load) -> decltype(load()) {
  try {
    return load();
  } catch (const io_error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    DEEPSTRUCT_THROW(io_error, "npz file '" + path + "' " + problem + ": " + e.what());
  }
}

}  // namespace detail

/// Loads parameters and masks from `path` into `model`, which must have the file's structure:
/// every key and shape is checked before anything changes, so a bad file leaves the model as it
/// was. Every error is an io_error naming the file: unreadable or malformed archive, wrong dtype,
/// missing or unexpected keys, wrong shapes.
template <typename Model>
void load_npz(Model& model, const std::string& path) {
  using Scalar = typename Model::Scalar;
  const StateDict<Scalar> sd = state_dict_from_npz<Scalar>(NpzArchive::load(path));
  detail::with_npz_path(path, "does not fit the model", [&] { model.load_state_dict(sd); });
}

/// A MaskedDeepFFN with the structure stored in `path` (layer sizes from the weight shapes,
/// LayerNorm when the file has its parameters), loaded from it. `options` supplies the activation
/// (not stored in state_dicts); use_layer_norm and bias are read from the file. Every error is an
/// io_error naming the file, also for shapes no MaskedDeepFFN has (e.g. a weight with 0 rows).
template <typename Scalar>
MaskedDeepFFN<Scalar> load_ffn_npz(const std::string& path, FFNOptions options = {}) {
  const NpzArchive archive = NpzArchive::load(path);
  const StateDict<Scalar> sd = state_dict_from_npz<Scalar>(archive);
  auto weight = [&](const std::string& key) -> const typename StateDict<Scalar>::Matrix& {
    const auto it = sd.matrices.find(key);
    if (it == sd.matrices.end())
      DEEPSTRUCT_THROW(io_error, "npz file '" + path + "': expected a MaskedDeepFFN weight '" + key +
                                     "', found none (keys: " + sd.key_list() + ")");
    return it->second;
  };
  const auto& first = weight("_layer_first.weight");
  const auto& out = weight("_layer_out.weight");
  options.bias = sd.vectors.count("_layer_first.bias") != 0;
  // Hidden Linear layers sit at _layers_hidden.0, .2, .4, ... or, with LayerNorm, .0, .3, .6, ...
  options.use_layer_norm = sd.vectors.count("_layers_hidden.1.weight") != 0;
  const std::size_t stride = options.use_layer_norm ? 3 : 2;
  std::vector<Eigen::Index> hidden{first.rows()};
  // Every layer's input count must be the previous layer's output count before the network is
  // built: a layer's size is (rows of one weight) x (rows of the previous one), so a file whose
  // shapes do not chain would otherwise make a network far larger than the file (two 200000 x 1
  // weights, 1.6 MB, asked for a 200000 x 200000 layer: std::bad_alloc).
  std::string previous = "_layer_first.weight";
  auto chain = [&](const std::string& key, const typename StateDict<Scalar>::Matrix& w) {
    // (A layer of 0 neurons makes no weights; the constructor below names it.)
    if (hidden.back() != 0 && w.cols() != hidden.back())
      DEEPSTRUCT_THROW(io_error, "npz file '" + path + "' is not a consistent MaskedDeepFFN: expected '" + key + "' with " +
                                     std::to_string(hidden.back()) + " columns (the rows of '" + previous + "'), found " +
                                     detail::shape_str(w.rows(), w.cols()));
    previous = key;
  };
  for (std::size_t i = 0; sd.matrices.count("_layers_hidden." + std::to_string(i) + ".weight") != 0; i += stride) {
    const std::string key = "_layers_hidden." + std::to_string(i) + ".weight";
    const auto& w = sd.matrices.at(key);
    chain(key, w);
    hidden.push_back(w.rows());
  }
  chain("_layer_out.weight", out);
  return detail::with_npz_path(path, "is not a consistent MaskedDeepFFN", [&] {
    MaskedDeepFFN<Scalar> model(first.cols(), out.rows(), hidden, options);
    model.load_state_dict(sd);
    return model;
  });
}

}  // namespace deepstruct
