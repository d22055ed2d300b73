// SPDX-License-Identifier: MIT
#pragma once

/// \file model.hpp
/// ModelBase<Derived, Scalar>: the Model contract, and every whole-model operation written once
/// on top of it. A model (MaskedDeepFFN, MaskedDeepDAN, ...) derives from ModelBase and provides
///
///   template <typename Fn> void visit_modules(Fn&& fn);   // fn(Module<Scalar>& m, const char* name,
///                                                         //    std::size_t index) for every module in
///                                                         //    state_dict order; the module's name is
///                                                         //    name, or name + "." + index when
///                                                         //    index != ModelBase::no_index
///   static const char* model_name();                      // "MaskedDeepDAN", for messages
///
/// plus its own forward / backward / predict, which follow one rule for every model:
///
///   const Matrix& forward(x)                     logits; keeps the activations backward needs
///                                                (never the input itself)
///   void backward(x, grad_logits, grad_input*)   x is the input of the last forward; adds every
///                                                parameter gradient, writes dL/dx if asked
///   void predict(x, logits)                      evaluation; keeps nothing of x (scratch
///                                                buffers at most) and changes nothing backward uses
///
/// What ModelBase then gives every model: maskable_layers() (a type-erased view: pointers to the
/// MaskedLayer base, whatever the layer type), named modules, for_each_parameter, zero_grad,
/// state_dict / load_state_dict (strict, all or nothing), apply_mask, recompute_mask,
/// reset_parameters, set_execution, and the counts (parameters, weights, density).

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/state_dict.hpp"

namespace deepstruct {

namespace detail {

/// The number of features of a multi-dimensional input shape (e.g. {1, 28, 28} -> 784), checked:
/// shape_error for an empty shape, a dimension < 1, or a product that does not fit in Index.
inline Eigen::Index flattened_input(const std::vector<Eigen::Index>& shape, const char* model) {
  if (shape.empty()) DEEPSTRUCT_THROW(shape_error, std::string(model) + ": expected a non-empty input shape, found {}");
  Eigen::Index n = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const Eigen::Index d = shape[i];
    if (d <= 0)
      DEEPSTRUCT_THROW(shape_error, std::string(model) + ": expected positive input dimensions, found " + std::to_string(d) +
                                        " at position " + std::to_string(i));
    if (n > std::numeric_limits<Eigen::Index>::max() / d)
      DEEPSTRUCT_THROW(shape_error, std::string(model) + ": expected an input shape whose product fits in 64 bits, found "
                                    "dimension " + std::to_string(d) + " at position " + std::to_string(i) +
                                    " after a product of " + std::to_string(n));
    n *= d;
  }
  return n;
}

}  // namespace detail

/// A module of a model with its state_dict prefix ("layer_first", "layers_main_hidden.2").
template <typename Scalar>
struct NamedModule {
  std::string name;
  Module<Scalar>* module;
};

template <typename Derived, typename Scalar_>
class ModelBase {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

  /// The `index` of a module name without an index.
  static constexpr std::size_t no_index = std::numeric_limits<std::size_t>::max();

  // ---- modules and masked layers ----------------------------------------------------------------

  /// Every module with its state_dict prefix, in state_dict order.
  std::vector<NamedModule<Scalar>> named_modules() {
    std::vector<NamedModule<Scalar>> out;
    derived().visit_modules([&](Module<Scalar>& m, const char* name, std::size_t index) {
      out.push_back({module_name(name, index), &m});
    });
    return out;
  }

  /// Every masked layer, whatever its type, in state_dict order (deepstruct's
  /// maskable_layers(model)). The pointers stay valid until the model is moved or destroyed.
  std::vector<MaskedLayer<Scalar>*> maskable_layers() {
    std::vector<MaskedLayer<Scalar>*> out;
    derived().visit_modules([&](Module<Scalar>& m, const char*, std::size_t) {
      if (MaskedLayer<Scalar>* l = m.as_masked()) out.push_back(l);
    });
    return out;
  }
  std::vector<const MaskedLayer<Scalar>*> maskable_layers() const {
    std::vector<const MaskedLayer<Scalar>*> out;
    mutable_derived().visit_modules([&](Module<Scalar>& m, const char*, std::size_t) {
      if (const MaskedLayer<Scalar>* l = m.as_masked()) out.push_back(l);
    });
    return out;
  }
  /// maskable_layers() with their state_dict prefixes: for (auto& [name, layer] : model.named_maskable_layers()).
  std::vector<std::pair<std::string, MaskedLayer<Scalar>*>> named_maskable_layers() {
    std::vector<std::pair<std::string, MaskedLayer<Scalar>*>> out;
    derived().visit_modules([&](Module<Scalar>& m, const char* name, std::size_t index) {
      if (MaskedLayer<Scalar>* l = m.as_masked()) out.emplace_back(module_name(name, index), l);
    });
    return out;
  }
  std::vector<std::pair<std::string, const MaskedLayer<Scalar>*>> named_maskable_layers() const {
    std::vector<std::pair<std::string, const MaskedLayer<Scalar>*>> out;
    mutable_derived().visit_modules([&](Module<Scalar>& m, const char* name, std::size_t index) {
      if (const MaskedLayer<Scalar>* l = m.as_masked()) out.emplace_back(module_name(name, index), l);
    });
    return out;
  }
  /// The state_dict prefixes of maskable_layers(), in the same order.
  std::vector<std::string> maskable_layer_names() const {
    std::vector<std::string> out;
    mutable_derived().visit_modules([&](Module<Scalar>& m, const char* name, std::size_t index) {
      if (m.as_masked() != nullptr) out.push_back(module_name(name, index));
    });
    return out;
  }

  /// Every trainable tensor as a ParameterRef, module by module in state_dict order (the order
  /// optimizers keep their state in). Untrainable modules are skipped.
  template <typename Fn>
  void for_each_parameter(Fn&& fn) {
    derived().visit_modules([&](Module<Scalar>& m, const char*, std::size_t) {
      if (m.trainable()) m.for_each_parameter(fn);
    });
  }

  void zero_grad() {
    derived().visit_modules([](Module<Scalar>& m, const char*, std::size_t) { m.zero_grad(); });
  }

  // ---- state_dict ------------------------------------------------------------------------------

  /// Every parameter and mask under its state_dict key.
  StateDict<Scalar> state_dict() const {
    StateDict<Scalar> sd;
    mutable_derived().visit_modules([&](Module<Scalar>& m, const char* name, std::size_t index) {
      m.state_dict(sd, module_name(name, index) + ".");
    });
    return sd;
  }

  /// Takes every parameter and mask from `sd` (StateDict<float> or <double>). All keys and shapes
  /// are checked first and keys the model does not have are an error (PyTorch's strict mode), so
  /// on any error (shape_error) nothing changes.
  template <typename OtherScalar>
  void load_state_dict(const StateDict<OtherScalar>& sd) {
    std::vector<std::string> expected;
    derived().visit_modules([&](Module<Scalar>& m, const char* name, std::size_t index) {
      m.check_state_dict(sd, module_name(name, index) + ".", expected);
    });
    detail::check_no_unexpected_keys(sd, expected, Derived::model_name());
    derived().visit_modules([&](Module<Scalar>& m, const char* name, std::size_t index) {
      m.load_state_dict(sd, module_name(name, index) + ".");
    });
  }

  // ---- whole-model mask operations --------------------------------------------------------------

  /// Zeroes every weight behind its mask, in every masked layer.
  void apply_mask() {
    for (auto* l : maskable_layers()) l->apply_mask();
  }
  /// Every mask becomes |W| >= theta (deepstruct's model default 1e-4).
  void recompute_mask(double theta = default_model_theta) {
    for (auto* l : maskable_layers()) l->recompute_mask(theta);
  }
  /// Re-initialises every module in order from one generator (the order the constructor drew in);
  /// masks become all true unless keep_mask.
  void reset_parameters(Generator& gen, bool keep_mask = false) {
    derived().visit_modules([&](Module<Scalar>& m, const char*, std::size_t) { m.reset_parameters(gen, keep_mask); });
  }
  void reset_parameters(std::uint64_t seed, bool keep_mask = false) {
    Generator gen(seed);
    reset_parameters(gen, keep_mask);
  }
  /// Forces every masked layer onto one execution path, or back to Execution::automatic.
  void set_execution(Execution e) {
    for (auto* l : maskable_layers()) l->set_execution(e);
  }
  /// Every mask of every masked layer, layer by layer.
  std::vector<Mask> masks() const {
    std::vector<Mask> out;
    for (const auto* l : maskable_layers())
      for (std::size_t k = 0; k < l->num_masks(); ++k) out.push_back(l->mask(k));
    return out;
  }

  // ---- counts ------------------------------------------------------------------------------------

  /// All trainable scalars: weights (active or not), biases, normalisation parameters.
  Index num_parameters() const {
    Index n = 0;
    mutable_derived().visit_modules([&](Module<Scalar>& m, const char*, std::size_t) { n += m.num_parameters(); });
    return n;
  }
  /// Entries of the masked weights, active or not.
  Index num_weights() const {
    Index n = 0;
    for (const auto* l : maskable_layers()) n += l->numel();
    return n;
  }
  Index num_active_weights() const {
    Index n = 0;
    for (const auto* l : maskable_layers()) n += l->nnz();
    return n;
  }
  /// Active weights / all masked weights.
  double density() const { return static_cast<double>(num_active_weights()) / static_cast<double>(num_weights()); }
  /// The density of every masked layer, in maskable_layers() order.
  std::vector<double> layer_densities() const {
    std::vector<double> d;
    for (const auto* l : maskable_layers()) d.push_back(l->density());
    return d;
  }

 protected:
  ModelBase() = default;
  ModelBase(const ModelBase&) = default;
  ModelBase(ModelBase&&) noexcept = default;
  ModelBase& operator=(const ModelBase&) = default;
  ModelBase& operator=(ModelBase&&) noexcept = default;
  ~ModelBase() = default;

  static std::string module_name(const char* name, std::size_t index) {
    return index == no_index ? std::string(name) : std::string(name) + "." + std::to_string(index);
  }

 private:
  Derived& derived() { return static_cast<Derived&>(*this); }
  /// visit_modules is written once, non-const; the const operations above only read through it.
  Derived& mutable_derived() const { return const_cast<Derived&>(static_cast<const Derived&>(*this)); }
};

}  // namespace deepstruct
