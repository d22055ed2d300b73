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
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/io/npz.hpp"
#include "deepstruct/masked_deep_ffn.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

/// The arrays of a state dict: 2-D tensors, 1-D tensors and bool masks.
template <typename Scalar>
NpzArchive to_npz(const StateDict<Scalar>& sd) {
  NpzArchive archive;
  for (const auto& kv : sd.matrices) archive.set(kv.first, from_matrix(kv.second));
  for (const auto& kv : sd.vectors) archive.set(kv.first, from_vector(kv.second));
  for (const auto& kv : sd.masks) archive.set(kv.first, from_mask(kv.second));
  return archive;
}

/// A state dict from an archive: mask keys (is_mask_key: "..._mask", "..._mask_i2h", ...) are
/// masks (bool, or numbers all 0 or 1 as deepstruct's MaskedDeepDAN stores them), other 2-D arrays
/// matrices, 1-D arrays vectors.
/// io_error (naming the file and key) for other dimensions or dtypes.
template <typename Scalar>
StateDict<Scalar> state_dict_from_npz(const NpzArchive& archive) {
  StateDict<Scalar> sd;
  const std::string file = archive.path().empty() ? std::string("npz archive") : "npz file '" + archive.path() + "'";
  for (const auto& kv : archive) {
    const std::string& key = kv.first;
    const NpyArray& a = kv.second;
    const std::string what = file + ": array '" + key + "'";
    if (is_mask_key(key)) {
      sd.masks[key] = to_mask(a, what);
    } else if (a.ndim() == 2) {
      sd.matrices[key] = to_matrix<Scalar>(a, what);
    } else if (a.ndim() == 1) {
      sd.vectors[key] = to_vector<Scalar>(a, what);
    } else {
      DEEPSTRUCT_THROW(io_error, what + ": expected a 1-D or 2-D parameter, found " + std::to_string(a.ndim()) +
                                     "-D of shape " + a.shape_str());
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
  for (std::size_t i = 0; sd.matrices.count("_layers_hidden." + std::to_string(i) + ".weight") != 0; i += stride)
    hidden.push_back(sd.matrices.at("_layers_hidden." + std::to_string(i) + ".weight").rows());
  return detail::with_npz_path(path, "is not a consistent MaskedDeepFFN", [&] {
    MaskedDeepFFN<Scalar> model(first.cols(), out.rows(), hidden, options);
    model.load_state_dict(sd);
    return model;
  });
}

}  // namespace deepstruct
