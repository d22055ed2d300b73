// SPDX-License-Identifier: MIT
#pragma once

/// \file module.hpp
/// The Module contract: what every building block of a model provides to the code that is written
/// once for all of them (optimizers, model files, parameter snapshots). A module owns named
/// tensors (its state_dict entries) and trainable parameters with gradients. Masked layers extend
/// it (<deepstruct/masked_layer.hpp>); LayerNorm is a plain module. docs/architecture.md is the map.
///
/// The contract is a small abstract class with virtual functions, called per tensor, never per
/// scalar: models call their concrete layers' forward/backward directly (no virtual call on the
/// hot path), and everything else (an optimizer step, a state_dict, pruning) reaches any layer
/// type through Module and MaskedLayer.

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

/// deepstruct's default threshold of MaskedLinearLayer.recompute_mask (a single layer).
inline constexpr double default_layer_theta = 1e-3;
/// deepstruct's default threshold of MaskableModule.recompute_mask (a whole model).
inline constexpr double default_model_theta = 1e-4;

/// One trainable tensor and its gradient, as optimizers see it. Models hand these out in a fixed
/// order through for_each_parameter(fn); the order is the order optimizers keep their state in.
template <typename Scalar>
struct ParameterRef {
  Scalar* value;       ///< the values, updated in place
  const Scalar* grad;  ///< dL/dvalue, same size
  Eigen::Index size;   ///< number of scalars
  const bool* mask;    ///< active entries (a masked weight), or nullptr: all active
  /// Positions of the active entries (the true entries of mask), ascending, or nullptr when the
  /// layer keeps no such list (then scan mask). Lets an optimizer touch only active entries.
  const std::vector<Eigen::Index>* active = nullptr;
};

namespace detail {

/// A non-owning reference to a callable (the type-erased visitor of the contract): a pointer to
/// the callable and one to a function that calls it. Valid while the callable lives.
template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same<std::decay_t<F>, FunctionRef>::value>>
  FunctionRef(F&& f) noexcept  // NOLINT(google-explicit-constructor): a lambda converts implicitly
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* object, Args... args) -> R {
          return (*static_cast<std::add_pointer_t<std::remove_reference_t<F>>>(object))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

}  // namespace detail

template <typename Scalar>
using ParameterVisitor = detail::FunctionRef<void(const ParameterRef<Scalar>&)>;

/// The kinds of state_dict entries (StateDict's maps).
enum class TensorKind {
  matrix,  ///< 2-D floating-point tensor (a weight)
  vector,  ///< 1-D floating-point tensor (a bias, a LayerNorm parameter, a running mean)
  mask,    ///< 2-D boolean tensor
  count    ///< an integer counter (BatchNorm's num_batches_tracked: a 0-d int64 tensor)
};

/// One state_dict entry of a module: its name relative to the module ("weight", "_mask") and the
/// module's own storage. Column-major, rows x cols (a vector has cols 1).
template <typename Scalar>
struct TensorRef {
  const char* name;
  TensorKind kind;
  Eigen::Index rows;
  Eigen::Index cols;
  const Scalar* values;  ///< matrix and vector entries
  const bool* mask;      ///< mask entries
  const std::int64_t* count = nullptr;  ///< the counter of a TensorKind::count entry
  /// A matrix or mask that stands for a tensor of more dimensions (a convolution's
  /// [out][in/groups][kh][kw] weight as out x (in/groups * kh * kw), its rows the first dimension
  /// and each row the rest in C order): its `ndim` dimensions, written to files as that shape.
  const Eigen::Index* dims = nullptr;
  int ndim = 0;
  /// A mask that may be missing from a state_dict: loading then makes it all true, and
  /// state_dict() leaves it out while it is all true (a convolution whose files stay PyTorch's).
  bool optional = false;
};

template <typename Scalar>
using TensorVisitor = detail::FunctionRef<void(const TensorRef<Scalar>&)>;

template <typename Scalar>
class MaskedLayer;

/// The contract of every module. A new module implements the pure virtual functions; the
/// state_dict functions are written here once, on top of for_each_tensor().
template <typename Scalar_>
class Module {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;

  virtual ~Module() = default;

  /// The class name, for messages ("MaskedLinear", "LayerNorm").
  virtual const char* type_name() const = 0;

  /// Visits every trainable tensor with its gradient, in a fixed order. A layer with caches
  /// refreshes them after fn returns (fn may change the values).
  virtual void for_each_parameter(ParameterVisitor<Scalar> fn) = 0;
  /// Sets every gradient to zero.
  virtual void zero_grad() = 0;
  /// Number of trainable scalars (masked weights included).
  virtual Index num_parameters() const = 0;
  /// Initialises the parameters again, drawing from gen where the initialisation is random; a
  /// masked layer keeps its masks when keep_mask, otherwise they become all true.
  virtual void reset_parameters(Generator& gen, bool keep_mask) = 0;

  /// Visits every state_dict entry (the module's own storage, in a fixed order).
  virtual void for_each_tensor(TensorVisitor<Scalar> fn) const = 0;

  /// The masked layer behind this module, or nullptr (cheaper and clearer than dynamic_cast).
  virtual MaskedLayer<Scalar>* as_masked() { return nullptr; }
  virtual const MaskedLayer<Scalar>* as_masked() const { return nullptr; }

  /// Whether optimizers update this module (models skip untrainable modules in
  /// for_each_parameter, as PyTorch skips parameters without a gradient).
  bool trainable() const { return trainable_; }
  void set_trainable(bool trainable) { trainable_ = trainable; }

  // ---- state_dict, written once for every module --------------------------------------------

  /// Adds every entry under `prefix` + name (prefix "layer_first." gives "layer_first.weight").
  void state_dict(StateDict<Scalar>& sd, const std::string& prefix) const {
    for_each_tensor([&](const TensorRef<Scalar>& t) {
      const std::string key = prefix + t.name;
      switch (t.kind) {
        case TensorKind::matrix:
          sd.matrices[key] = Eigen::Map<const typename StateDict<Scalar>::Matrix>(t.values, t.rows, t.cols);
          break;
        case TensorKind::vector:
          sd.vectors[key] = Eigen::Map<const typename StateDict<Scalar>::Vector>(t.values, t.rows);
          break;
        case TensorKind::mask:
          if (t.optional && Eigen::Map<const typename StateDict<Scalar>::Mask>(t.mask, t.rows, t.cols).all()) return;
          sd.masks[key] = Eigen::Map<const typename StateDict<Scalar>::Mask>(t.mask, t.rows, t.cols);
          break;
        case TensorKind::count:
          sd.counts[key] = *t.count;
          break;
      }
      if (t.ndim > 0) sd.shapes[key] = std::vector<Eigen::Index>(t.dims, t.dims + t.ndim);
    });
  }

  /// Checks that `sd` has every entry of this module under `prefix` with the right shape (throws
  /// shape_error naming the key otherwise) and appends the keys to `expected`. Changes nothing.
  template <typename OtherScalar>
  void check_state_dict(const StateDict<OtherScalar>& sd, const std::string& prefix,
                        std::vector<std::string>& expected) const {
    for_each_tensor([&](const TensorRef<Scalar>& t) {
      const std::string key = prefix + t.name;
      switch (t.kind) {
        case TensorKind::matrix: (void)sd.matrix(key, t.rows, t.cols); break;
        case TensorKind::vector: (void)sd.vector(key, t.rows); break;
        case TensorKind::mask:
          if (t.optional && !sd.contains(key)) return;  // all true
          (void)sd.mask(key, t.rows, t.cols);
          break;
        case TensorKind::count: (void)sd.count(key); break;
      }
      if (t.ndim > 0) {
        sd.check_dims(key, t.dims, t.ndim);
      } else if (t.kind == TensorKind::matrix || t.kind == TensorKind::mask) {
        // A plain 2-D tensor: an array of more dimensions with as many entries does not fit it
        // (PyTorch's size mismatch), though it reads as [shape[0]][rest].
        const Eigen::Index dims[2] = {t.rows, t.cols};
        sd.check_dims(key, dims, 2);
      }
      expected.push_back(key);
    });
  }

  /// Copies every entry from `sd` (checked by check_state_dict first: otherwise a missing key
  /// throws halfway). The module refreshes what depends on them (tensors_loaded()).
  template <typename OtherScalar>
  void load_state_dict(const StateDict<OtherScalar>& sd, const std::string& prefix) {
    for_each_tensor([&](const TensorRef<Scalar>& t) {
      const std::string key = prefix + t.name;
      // The refs point at this (non-const) module's own storage: writing through them is the load.
      switch (t.kind) {
        case TensorKind::matrix:
          Eigen::Map<typename StateDict<Scalar>::Matrix>(const_cast<Scalar*>(t.values), t.rows, t.cols) =
              sd.matrix(key, t.rows, t.cols).template cast<Scalar>();
          break;
        case TensorKind::vector:
          Eigen::Map<typename StateDict<Scalar>::Vector>(const_cast<Scalar*>(t.values), t.rows) =
              sd.vector(key, t.rows).template cast<Scalar>();
          break;
        case TensorKind::mask:
          if (t.optional && !sd.contains(key))
            Eigen::Map<typename StateDict<Scalar>::Mask>(const_cast<bool*>(t.mask), t.rows, t.cols).setConstant(true);
          else
            Eigen::Map<typename StateDict<Scalar>::Mask>(const_cast<bool*>(t.mask), t.rows, t.cols) = sd.mask(key, t.rows, t.cols);
          break;
        case TensorKind::count:
          *const_cast<std::int64_t*>(t.count) = sd.count(key);
          break;
      }
    });
    tensors_loaded();
  }

 protected:
  Module() = default;
  Module(const Module&) = default;
  Module(Module&&) noexcept = default;
  Module& operator=(const Module&) = default;
  Module& operator=(Module&&) noexcept = default;

  /// Called after load_state_dict wrote new values through for_each_tensor's refs: refresh
  /// counts and caches.
  virtual void tensors_loaded() = 0;

 private:
  bool trainable_ = true;
};

}  // namespace deepstruct

// Compiled mode (detail/compiled_mode.hpp): the instantiations that instantiate.hpp compiles.
#define DEEPSTRUCT_INSTANTIATIONS_MODULE(prefix, S) prefix template class ::deepstruct::Module<S>;
DEEPSTRUCT_DECLARE_EXTERN(DEEPSTRUCT_INSTANTIATIONS_MODULE)
