// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_layer.hpp
/// The maskable-layer contract. A masked layer is a Module with one or more masked weights (a
/// MaskedLinear has one, a recurrent layer two: input-to-hidden and hidden-to-hidden), each a
/// matrix with a boolean mask of the same shape and an optional custom saliency. Everything that
/// only reads or changes masked weights - nnz and density, apply_mask, recompute_mask, saliency,
/// pruning, sparse training - is written here or in prune.hpp once, against this class; a layer
/// type implements a handful of virtual functions (see docs/architecture.md):
///
///   num_masks(), weight_name(k)          how many masked weights, and their state_dict names
///   masked(k), masked_storage(k)         the storage (MaskedWeight) of masked weight k
///   weight_changed(k), mask_changed(k)   hooks: refresh caches after a change went through here
///   reset_parameters, for_each_parameter, for_each_tensor, ... (Module's contract)
///
/// A masked weight is stored rows x cols, column-major; rows are the units it feeds (output
/// neurons, output channels, gate units), so a row is what first-order (neuron) pruning removes.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

/// Which kernels a masked product runs.
enum class Execution {
  automatic,  ///< sparse when the density is at most the layer's sparse threshold, dense otherwise
  dense,      ///< always the dense product with W o M
  sparse      ///< always the sparse kernels over the active weights
};

/// The density at or below which Execution::automatic takes the sparse path. Measured on a
/// 2-core AVX2 machine (docs/benchmarks.md, 1000x1000 layers, batch 128 to 1024): the sparse
/// kernels stop paying off between densities 0.37 and 0.48 with -march=native (0.66 to 0.90
/// without); 0.2 stays below every measured crossover, single runs at 0.2-0.3 being noisy.
inline constexpr double default_sparse_threshold = 0.2;

/// The storage of one masked weight: the values (also behind the mask), the mask, the number of
/// active entries, and custom pruning scores. Owned by the layer; changed through MaskedLayer.
template <typename Scalar>
struct MaskedWeight {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

  Matrix value;     ///< W, rows x cols
  Mask mask;        ///< M, same shape; true = active
  Matrix saliency;  ///< custom scores (same shape), or empty: |W|
  Eigen::Index nnz = 0;

  /// A rows x cols weight (uninitialised values), all active.
  void resize(Eigen::Index rows, Eigen::Index cols) {
    value.resize(rows, cols);
    mask.setConstant(rows, cols, true);
    saliency.resize(0, 0);
    nnz = rows * cols;
  }
};

namespace detail {

/// The dense gradient a layer keeps for sparse training's growth criterion (set_dense_gradient):
/// while `on`, a backward computes the gradient of every entry of a masked weight into `step`
/// and finish() adds it to `total` and, zero behind the mask, to the parameter gradient.
/// `accumulated` says whether a backward finished since it was turned on or zeroed: until then
/// there is no gradient to read (get() is null), not a gradient of zeros.
template <typename Scalar>
struct DenseGradient {
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  bool on = false;
  bool accumulated = false;
  Matrix total, step;

  void set(bool enable, Eigen::Index rows, Eigen::Index cols) {
    on = enable;
    accumulated = false;
    if (on) {
      total.setZero(rows, cols);
    } else {
      total.resize(0, 0);
      step.resize(0, 0);
    }
  }
  /// zero_grad: a new accumulation.
  void zero(Eigen::Index rows, Eigen::Index cols) {
    accumulated = false;
    if (on) total.setZero(rows, cols);
  }
  const Matrix* get() const { return on && accumulated ? &total : nullptr; }
  template <typename MaskType>
  void finish(const MaskType& mask, Matrix& grad) {
    total += step;
    grad += mask.select(step, Scalar(0));
    accumulated = true;
  }
};

}  // namespace detail

template <typename Scalar_>
class MaskedLayer : public Module<Scalar_> {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;

  MaskedLayer* as_masked() override { return this; }
  const MaskedLayer* as_masked() const override { return this; }

  // ---- implemented by each layer type -----------------------------------------------------------

  /// Number of masked weights of the layer (1 for MaskedLinear).
  virtual std::size_t num_masks() const = 0;
  /// The state_dict name of masked weight k ("weight"; a recurrent layer's "_weight_ih").
  virtual const char* weight_name(std::size_t k) const = 0;
  /// The storage of masked weight k (read only; changes go through the functions below).
  virtual const MaskedWeight<Scalar>& masked(std::size_t k) const = 0;
  /// Positions (column-major, ascending) of the active entries of masked weight k when the layer
  /// keeps that list (next to the sparse kernels' index), otherwise nullptr.
  virtual const std::vector<Index>* active_positions(std::size_t) const { return nullptr; }

  // ---- masked weights: written once for every layer ------------------------------------------

  const Matrix& weight(std::size_t k) const { return masked(check_k(k, "weight")).value; }
  const Mask& mask(std::size_t k) const { return masked(check_k(k, "mask")).mask; }

  /// W o M of masked weight k: what the layer computes with.
  Matrix effective_weight(std::size_t k) const {
    const MaskedWeight<Scalar>& mw = masked(check_k(k, "effective_weight"));
    // select, not W * M: a NaN or Inf behind the mask stays out (NaN * 0 is NaN).
    return mw.mask.select(mw.value, Scalar(0));
  }

  // The same without an index, for a layer with one masked weight (MaskedLinear, MaskedConv2d);
  // index_error for a layer with several (use the indexed forms).
  const Matrix& weight() const { return masked(single("weight")).value; }
  const Mask& mask() const { return masked(single("mask")).mask; }
  Matrix effective_weight() const { return effective_weight(single("effective_weight")); }
  void set_weight(const Eigen::Ref<const Matrix>& w) { set_weight(single("set_weight"), w); }
  void set_mask(const Mask& m) { set_mask(single("set_mask"), m); }
  template <typename Fn>
  void update_weight(Fn&& fn) {
    update_weight(single("update_weight"), std::forward<Fn>(fn));
  }
  template <typename Fn>
  void update_mask(Fn&& fn) {
    update_mask(single("update_mask"), std::forward<Fn>(fn));
  }
  Matrix saliency() const { return saliency(single("saliency")); }
  void set_saliency(const Eigen::Ref<const Matrix>& s) { set_saliency(single("set_saliency"), s); }
  bool has_custom_saliency() const { return has_custom_saliency(single("has_custom_saliency")); }

  /// Replaces masked weight k (same shape).
  void set_weight(std::size_t k, const Eigen::Ref<const Matrix>& w) {
    check_shape(k, w.rows(), w.cols(), "set_weight", "weight");
    masked_storage(k).value = w;
    weight_changed(k);
  }
  /// Replaces mask k (same shape).
  void set_mask(std::size_t k, const Mask& m) {
    check_shape(k, m.rows(), m.cols(), "set_mask", "mask");
    MaskedWeight<Scalar>& mw = masked_storage(k);
    mw.mask = m;
    mw.nnz = mw.mask.count();
    mask_changed(k);
  }
  /// Changes masked weight k in place: fn(Matrix& w). Caches follow, also when fn throws halfway.
  /// fn must keep the shape: if it resizes w, w is reset to zeros of the layer's shape and
  /// shape_error is thrown (or fn's own exception passes through, w reset the same way).
  template <typename Fn>
  void update_weight(std::size_t k, Fn&& fn) {
    check_k(k, "update_weight");
    MaskedWeight<Scalar>& mw = masked_storage(k);
    const Index rows = mw.mask.rows(), cols = mw.mask.cols();
    weight_changed(k);  // before fn: a throw from fn leaves the caches marked stale
    try {
      fn(mw.value);
    } catch (...) {
      if (mw.value.rows() != rows || mw.value.cols() != cols) mw.value.setZero(rows, cols);
      throw;
    }
    weight_changed(k);  // and after, in case fn ran a forward of this layer
    if (mw.value.rows() != rows || mw.value.cols() != cols) {
      const std::string found = detail::shape_str(mw.value.rows(), mw.value.cols());
      mw.value.setZero(rows, cols);
      DEEPSTRUCT_THROW(shape_error, std::string(this->type_name()) + "::update_weight: expected fn to keep the weight's shape " +
                                        detail::shape_str(rows, cols) + " (" + shape_note(k) + "), found " + found +
                                        " (the weight was reset to zeros of the expected shape)");
    }
  }
  /// Turns off the entries `off` of mask k, then on the entries `on` (positions, column-major; a
  /// position in both ends up active). For the few changes of a sparse-training update: the layer
  /// refreshes its caches in proportion to the changes and its active weights (MaskedLinear: no
  /// pass over the whole matrix), not to its size. Throws index_error for a position out of range,
  /// changing nothing.
  void change_mask(std::size_t k, const std::vector<Index>& off, const std::vector<Index>& on) {
    MaskedWeight<Scalar>& mw = masked_storage(check_k(k, "change_mask"));
    const Index n = mw.mask.size();
    for (const auto* list : {&off, &on})
      for (const Index p : *list)
        if (p < 0 || p >= n)
          DEEPSTRUCT_THROW(index_error, std::string(this->type_name()) + "::change_mask: expected positions in [0, " + std::to_string(n) +
                                            "), found " + std::to_string(p));
    std::vector<Index> removed, added;
    bool* m = mw.mask.data();
    for (const Index p : off)
      if (m[p]) {
        m[p] = false;
        removed.push_back(p);
      }
    for (const Index p : on)
      if (!m[p]) {
        m[p] = true;
        added.push_back(p);
      }
    // Sorted for the hook; a position turned off and on again is no change.
    std::sort(removed.begin(), removed.end());
    std::sort(added.begin(), added.end());
    if (!removed.empty() && !added.empty()) {
      std::vector<Index> r, a;
      std::set_difference(removed.begin(), removed.end(), added.begin(), added.end(), std::back_inserter(r));
      std::set_difference(added.begin(), added.end(), removed.begin(), removed.end(), std::back_inserter(a));
      removed.swap(r);
      added.swap(a);
    }
    mw.nnz += static_cast<Index>(added.size()) - static_cast<Index>(removed.size());
    mask_entries_changed(k, removed, added);
  }

  /// Changes mask k in place: fn(Mask& m). fn must keep the shape (shape_error otherwise, and the
  /// mask is left as it was before fn).
  template <typename Fn>
  void update_mask(std::size_t k, Fn&& fn) {
    check_k(k, "update_mask");
    Mask m = masked(k).mask;
    fn(m);
    const MaskedWeight<Scalar>& mw = masked(k);
    if (m.rows() != mw.mask.rows() || m.cols() != mw.mask.cols())
      DEEPSTRUCT_THROW(shape_error, std::string(this->type_name()) + "::update_mask: expected fn to keep the mask's shape " +
                                        detail::shape_str(mw.mask.rows(), mw.mask.cols()) + " (" + shape_note(k) + "), found " +
                                        detail::shape_str(m.rows(), m.cols()) + " (the mask was left as it was)");
    set_mask(k, m);
  }

  /// Active entries of masked weight k, and of all masked weights.
  Index nnz(std::size_t k) const { return masked(check_k(k, "nnz")).nnz; }
  Index nnz() const {
    Index n = 0;
    for (std::size_t k = 0; k < num_masks(); ++k) n += masked(k).nnz;
    return n;
  }
  /// Entries of masked weight k, and of all masked weights, active or not.
  Index numel(std::size_t k) const { return masked(check_k(k, "numel")).value.size(); }
  Index numel() const {
    Index n = 0;
    for (std::size_t k = 0; k < num_masks(); ++k) n += masked(k).value.size();
    return n;
  }
  double density(std::size_t k) const { return static_cast<double>(nnz(k)) / static_cast<double>(numel(k)); }
  /// nnz() / numel() over all masked weights of the layer.
  double density() const { return static_cast<double>(nnz()) / static_cast<double>(numel()); }

  /// Zeroes every weight behind its mask for good (deepstruct's apply_mask).
  void apply_mask() {
    for (std::size_t k = 0; k < num_masks(); ++k) {
      MaskedWeight<Scalar>& mw = masked_storage(k);
      mw.value = mw.mask.select(mw.value, Scalar(0));
      weight_changed(k);
    }
  }
  /// Every mask becomes |W| >= theta (deepstruct's recompute_mask; the layer default 1e-3).
  void recompute_mask(double theta = default_layer_theta) {
    if (!(theta >= 0.0))
      DEEPSTRUCT_THROW(value_error, std::string(this->type_name()) + "::recompute_mask: expected theta >= 0, found " +
                                        detail::number_str(theta));
    for (std::size_t k = 0; k < num_masks(); ++k) {
      MaskedWeight<Scalar>& mw = masked_storage(k);
      mw.mask = (mw.value.array().abs() >= static_cast<Scalar>(theta)).matrix();
      mw.nnz = mw.mask.count();
      mask_changed(k);
    }
  }

  /// The pruning score of each entry of masked weight k: |W| unless set_saliency() gave one.
  Matrix saliency(std::size_t k) const {
    const MaskedWeight<Scalar>& mw = masked(check_k(k, "saliency"));
    return mw.saliency.size() != 0 ? mw.saliency : Matrix(mw.value.cwiseAbs());
  }
  void set_saliency(std::size_t k, const Eigen::Ref<const Matrix>& s) {
    check_shape(k, s.rows(), s.cols(), "set_saliency", "saliency");
    masked_storage(k).saliency = s;
  }
  bool has_custom_saliency(std::size_t k) const { return masked(check_k(k, "has_custom_saliency")).saliency.size() != 0; }
  /// Back to the default saliency |W| for every masked weight, or for masked weight k.
  void clear_saliency() {
    for (std::size_t k = 0; k < num_masks(); ++k) masked_storage(k).saliency.resize(0, 0);
  }
  void clear_saliency(std::size_t k) { masked_storage(check_k(k, "clear_saliency")).saliency.resize(0, 0); }

  using Module<Scalar>::reset_parameters;
  /// reset_parameters with a fresh generator seeded by `seed`.
  void reset_parameters(std::uint64_t seed, bool keep_mask = false) {
    Generator gen(seed);
    this->reset_parameters(gen, keep_mask);
  }

  // ---- execution path --------------------------------------------------------------------------

  /// (virtual: a layer made of other layers passes the setting on)
  virtual void set_execution(Execution execution) { execution_ = execution; }
  Execution execution() const { return execution_; }
  /// The density at or below which Execution::automatic takes the sparse path.
  double sparse_threshold() const { return sparse_threshold_; }
  virtual void set_sparse_threshold(double threshold) {
    if (!(threshold >= 0.0 && threshold <= 1.0))
      DEEPSTRUCT_THROW(value_error, std::string(this->type_name()) + "::set_sparse_threshold: expected a density in [0, 1], found " +
                                        detail::number_str(threshold));
    sparse_threshold_ = threshold;
  }
  /// True if the products with masked weight k run the sparse kernels.
  bool uses_sparse_path(std::size_t k) const {
    return execution_ == Execution::sparse || (execution_ == Execution::automatic && density(k) <= sparse_threshold_);
  }
  /// While on, backward also keeps the gradient of every entry of the masked weights, active or
  /// not (dense_gradient(k)), for sparse training's growth criterion (RigL); the parameter
  /// gradients stay zero behind the masks. Costs one dense product per masked weight and backward.
  /// A layer type that cannot throws state_error.
  virtual void set_dense_gradient(bool on) {
    if (on)
      DEEPSTRUCT_THROW(state_error, std::string(this->type_name()) + "::set_dense_gradient: this layer type keeps no dense gradient");
  }
  /// The dense gradient of masked weight k accumulated since zero_grad() while set_dense_gradient
  /// was on, or nullptr when it was off or no backward (of a nonempty batch) has added to it since
  /// it was turned on or since zero_grad().
  virtual const Matrix* dense_gradient(std::size_t) const { return nullptr; }

  /// The logical shape of masked weight k: {rows, cols} of its matrix by default; a layer whose
  /// matrix flattens more dimensions says so ({out, in, kh, kw} for a convolution), so that
  /// ERK density allocation (sparse_training.hpp) counts the kernel dimensions.
  virtual std::vector<Index> weight_shape(std::size_t k) const {
    const Mask& m = mask(k);
    return {m.rows(), m.cols()};
  }

  /// True if any masked weight of the layer runs the sparse kernels.
  bool uses_sparse_path() const {
    for (std::size_t k = 0; k < num_masks(); ++k)
      if (uses_sparse_path(k)) return true;
    return false;
  }

 protected:
  MaskedLayer() = default;
  MaskedLayer(const MaskedLayer&) = default;
  MaskedLayer(MaskedLayer&&) noexcept = default;
  MaskedLayer& operator=(const MaskedLayer&) = default;
  MaskedLayer& operator=(MaskedLayer&&) noexcept = default;

  /// Mutable storage of masked weight k; every change through it is followed by a hook call.
  virtual MaskedWeight<Scalar>& masked_storage(std::size_t k) = 0;
  /// The values of masked weight k changed (the layer marks its caches stale).
  virtual void weight_changed(std::size_t k) = 0;
  /// Mask k changed, nnz already recounted (the layer refreshes its caches and clears gradients
  /// at positions that became inactive).
  virtual void mask_changed(std::size_t k) = 0;
  /// Mask k changed at these positions only (sorted, disjoint; nnz already updated): by default
  /// mask_changed(k); a layer with costly caches updates them in place.
  virtual void mask_entries_changed(std::size_t k, const std::vector<Index>& removed, const std::vector<Index>& added) {
    (void)removed;
    (void)added;
    mask_changed(k);
  }
  /// What the rows and columns of masked weight k are, for messages ("out_features x in_features").
  virtual std::string shape_note(std::size_t) const { return "rows x cols"; }

  // A layer made of other masked layers (a recurrent layer of two MaskedLinear products) reaches
  // their storage and hooks through these: access to protected members of another object goes
  // through the class that declares them.
  static MaskedWeight<Scalar>& storage_of(MaskedLayer& part, std::size_t k) { return part.masked_storage(k); }
  static void weight_changed_of(MaskedLayer& part, std::size_t k) { part.weight_changed(k); }
  static void mask_changed_of(MaskedLayer& part, std::size_t k) { part.mask_changed(k); }
  static void mask_entries_changed_of(MaskedLayer& part, std::size_t k, const std::vector<Index>& removed, const std::vector<Index>& added) {
    part.mask_entries_changed(k, removed, added);
  }
  static void tensors_loaded_of(MaskedLayer& part) { part.tensors_loaded(); }

  std::size_t single(const char* where) const {
    if (num_masks() != 1)
      DEEPSTRUCT_THROW(index_error, std::string(this->type_name()) + "::" + where + ": expected a layer with one masked weight, found " +
                                        std::to_string(num_masks()) + "; pass the index of the masked weight");
    return 0;
  }
  std::size_t check_k(std::size_t k, const char* where) const {
    if (k >= num_masks())
      DEEPSTRUCT_THROW(index_error, std::string(this->type_name()) + "::" + where + ": expected a masked weight index below " +
                                        std::to_string(num_masks()) + ", found " + std::to_string(k));
    return k;
  }
  void check_shape(std::size_t k, Index rows, Index cols, const char* where, const char* what) const {
    const MaskedWeight<Scalar>& mw = masked(check_k(k, where));
    if (rows != mw.mask.rows() || cols != mw.mask.cols())
      DEEPSTRUCT_THROW(shape_error, std::string(this->type_name()) + "::" + where + ": expected a " + what + " of shape " +
                                        detail::shape_str(mw.mask.rows(), mw.mask.cols()) + " (" + shape_note(k) +
                                        "), found " + detail::shape_str(rows, cols));
  }

 private:
  Execution execution_ = Execution::automatic;
  double sparse_threshold_ = default_sparse_threshold;
};

}  // namespace deepstruct

// Compiled mode (detail/compiled_mode.hpp): the instantiations that instantiate.hpp compiles.
#define DEEPSTRUCT_INSTANTIATIONS_MASKED_LAYER(prefix, S) prefix template class ::deepstruct::MaskedLayer<S>;
DEEPSTRUCT_DECLARE_EXTERN(DEEPSTRUCT_INSTANTIATIONS_MASKED_LAYER)
