// SPDX-License-Identifier: MIT
#pragma once

/// \file optim.hpp
/// Optimizers with PyTorch's update rules (torch.optim.SGD, Adam, AdamW, single-tensor
/// implementations). They work on any model that hands out its parameters through
/// for_each_parameter (MaskedLinear, MaskedDeepFFN, MaskedDeepDAN) and keep their state in the
/// order the model visits its parameters.
///
/// Masked weights have exactly zero gradient, so an update without weight decay leaves a weight
/// that was masked from the start as it is; weight decay shrinks it as PyTorch would. A weight
/// pruned mid-training may still move under SGD's momentum buffer or Adam's moments, as in
/// PyTorch. No update changes a mask: a weight behind the mask stays inactive.
///
/// A step is all or nothing: the model's parameters (their number and sizes) are checked against
/// the first step's before any value or optimizer state changes, so handing an optimizer another
/// model throws shape_error and leaves both the model and the optimizer as they were.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "deepstruct/detail/compiled_mode.hpp"
#include "deepstruct/detail/exact_sqrt.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/parameter.hpp"
#include "deepstruct/threads.hpp"

namespace deepstruct {

namespace detail {

/// Per-parameter state, allocated on the first step and checked on every later one: `buffers`
/// vectors of the parameter's size (momentum; Adam's moments), a step count, and where the
/// parameter's values were at the last step (to find it again for reset_state()).
template <typename Scalar>
class OptimizerState {
 public:
  struct Slot {
    std::vector<std::vector<Scalar>> buffers;
    long step = 0;              ///< steps this parameter took since its state was (re)set
    const Scalar* value = nullptr;
    // Active-only steps that keep PyTorch's values (see exact_skip_plan): the active positions
    // of the last such step, and the inactive entries whose state is not zero yet.
    bool tracking = false;
    std::vector<Eigen::Index> active_seen;
    std::vector<Eigen::Index> dirty;
  };

  /// Checks, before any parameter changes, that `model` hands out the parameters of the first
  /// step (their number and sizes); on the first step allocates `buffers` vectors per parameter.
  /// Throws shape_error and changes nothing when the model is another one.
  template <typename Model>
  void prepare(Model& model, std::size_t buffers) {
    std::vector<Eigen::Index>& sizes = seen_;  // reused: no allocation per step
    sizes.clear();
    values_.clear();
    for_each_parameter(model, [&](const ParameterRef<Scalar>& p) {
      sizes.push_back(p.size);
      values_.push_back(p.value);
    });
    if (!initialized_) {
      for (const Eigen::Index size : sizes) {
        Slot slot;
        slot.buffers.assign(buffers, std::vector<Scalar>(static_cast<std::size_t>(size), Scalar(0)));
        slots_.push_back(std::move(slot));
      }
      sizes_ = sizes;
      initialized_ = true;
    } else {
      for (std::size_t k = 0; k < std::max(sizes.size(), sizes_.size()); ++k)
        if (k >= sizes.size() || k >= sizes_.size() || sizes[k] != sizes_[k])
          DEEPSTRUCT_THROW(shape_error, "optimizer step: expected the model the optimizer was first used with (" +
                                            std::to_string(sizes_.size()) + " parameters; parameter " +
                                            std::to_string(k) + " of size " + size_or_none(sizes_, k) +
                                            "), found a model with " + std::to_string(sizes.size()) +
                                            " parameters; parameter " + std::to_string(k) + " of size " +
                                            size_or_none(sizes, k));
    }
    for (std::size_t k = 0; k < slots_.size(); ++k) slots_[k].value = values_[k];
  }
  /// True before the first step.
  bool empty() const { return !initialized_; }
  std::size_t size() const { return slots_.size(); }
  Slot& slot(std::size_t k) { return slots_[k]; }

  /// The index of the parameter whose values start at `value` (as of the last step).
  std::size_t find(const Scalar* value, const char* where) const {
    for (std::size_t k = 0; k < slots_.size(); ++k)
      if (slots_[k].value == value) return k;
    DEEPSTRUCT_THROW(value_error, std::string(where) + ": expected the values of a parameter this optimizer stepped, found " +
                                      (slots_.empty() ? std::string("an optimizer that has not stepped yet")
                                                      : "none of its " + std::to_string(slots_.size()) +
                                                            " parameters at that address (was the model moved since the last step?)"));
  }
  /// Zeroes the buffers of parameter k at `entries` (step count unchanged).
  void reset_entries(std::size_t k, const std::vector<Eigen::Index>& entries, const char* where) {
    Slot& s = slots_[k];
    const auto size = static_cast<Eigen::Index>(sizes_[k]);
    for (const Eigen::Index i : entries)
      if (i < 0 || i >= size)
        DEEPSTRUCT_THROW(index_error, std::string(where) + ": expected entries in [0, " + std::to_string(size) + "), found " +
                                          std::to_string(i));
    for (auto& b : s.buffers)
      for (const Eigen::Index i : entries) b[static_cast<std::size_t>(i)] = Scalar(0);
  }
  /// Zeroes all buffers of parameter k and its step count (as if it had never stepped).
  void reset_parameter(std::size_t k) {
    for (auto& b : slots_[k].buffers) std::fill(b.begin(), b.end(), Scalar(0));
    slots_[k].step = 0;
    slots_[k].tracking = false;
  }
  /// Forgets everything: the next step starts as the first.
  void clear() {
    slots_.clear();
    sizes_.clear();
    initialized_ = false;
  }

 private:
  static std::string size_or_none(const std::vector<Eigen::Index>& sizes, std::size_t k) {
    return k < sizes.size() ? std::to_string(sizes[k]) : std::string("none");
  }

  std::vector<Eigen::Index> sizes_;  // the parameters of the first step
  std::vector<Eigen::Index> seen_;   // those of the current step (scratch)
  std::vector<const Scalar*> values_;
  std::vector<Slot> slots_;
  bool initialized_ = false;
};

/// The common part of every optimizer: its state, and the public ways to reset it.
template <typename Scalar>
class OptimizerBase {
 public:
  /// Zeroes the state (SGD's momentum buffer, Adam's moments) of chosen entries of one parameter,
  /// e.g. weights regrown by sparse training: the parameter is the one whose values start at
  /// `value` (a layer's weight().data()), entries are positions into it (column-major). The
  /// parameter's step count (Adam's bias correction) stays, as PyTorch keeps one per tensor.
  /// Throws value_error for a pointer that is no parameter of the last step, index_error for an
  /// entry out of range.
  void reset_state(const Scalar* value, const std::vector<Eigen::Index>& entries) {
    state_.reset_entries(state_.find(value, "reset_state"), entries, "reset_state");
  }
  /// Resets the whole state of one parameter, step count included (a fresh tensor in PyTorch).
  void reset_state(const Scalar* value) { state_.reset_parameter(state_.find(value, "reset_state")); }
  /// Forgets the state of every parameter: the next step is a first step (another model may then
  /// be used).
  void reset_state() { state_.clear(); }
  /// Number of parameters with state (0 before the first step).
  std::size_t num_states() const { return state_.size(); }
  /// State buffer `b` of the parameter whose values start at `value` (SGD: 0 the momentum buffer;
  /// Adam: 0 the first moment, 1 the second), for inspection. Throws value_error for an unknown
  /// parameter, index_error for a buffer it does not have.
  const std::vector<Scalar>& state_buffer(const Scalar* value, std::size_t b) {
    auto& slot = state_.slot(state_.find(value, "state_buffer"));
    if (b >= slot.buffers.size())
      DEEPSTRUCT_THROW(index_error, "state_buffer: expected a buffer index below " + std::to_string(slot.buffers.size()) + ", found " +
                                        std::to_string(b));
    return slot.buffers[b];
  }

 protected:
  OptimizerState<Scalar> state_;
};

/// Calls fn(first, n) on consecutive chunks of [0, size), `flops_per_entry` work each: in
/// parallel on up to num_threads() threads when the work is large enough to pay for it even on a
/// shared machine (detail::threads_for, threads.hpp), in one call otherwise. The chunks go
/// through for_each_piece, a run of consecutive chunks per thread (an exception reaches the
/// caller).
template <typename Fn>
void parallel_chunks(Eigen::Index size, double flops_per_entry, Fn&& fn) {
  const int threads = threads_for(static_cast<double>(size) * flops_per_entry);
  if (threads > 1) {
    constexpr Eigen::Index chunk = 16384;
    const Eigen::Index chunks = (size + chunk - 1) / chunk;
    for_each_piece<false>(chunks, threads, [&](Eigen::Index c, int) { fn(c * chunk, std::min(chunk, size - c * chunk)); });
    return;
  }
  fn(Eigen::Index{0}, size);
}

/// Calls fn(first, count) for every run of consecutive active entries of p, ascending: from the
/// positions it lists, or from its mask.
template <typename Scalar, typename Fn>
void for_each_active_run(const ParameterRef<Scalar>& p, Fn&& fn) {
  if (p.active != nullptr) {
    const std::vector<Eigen::Index>& a = *p.active;
    for (std::size_t k = 0; k < a.size();) {
      std::size_t end = k + 1;
      while (end < a.size() && a[end] == a[end - 1] + 1) ++end;
      fn(a[k], static_cast<Eigen::Index>(end - k));
      k = end;
    }
  } else {
    for (Eigen::Index i = 0; i < p.size;) {
      if (!p.mask[i]) {
        ++i;
        continue;
      }
      Eigen::Index end = i + 1;
      while (end < p.size && p.mask[end]) ++end;
      fn(i, end - i);
      i = end;
    }
  }
}

/// Calls fn(i) for every active entry of p: the positions it lists, or the true entries of its
/// mask.
template <typename Scalar, typename Fn>
void for_each_active(const ParameterRef<Scalar>& p, Fn&& fn) {
  if (p.active != nullptr) {
    for (const Eigen::Index i : *p.active) fn(i);
  } else {
    for (Eigen::Index i = 0; i < p.size; ++i)
      if (p.mask[i]) fn(i);
  }
}

/// Drops the dirty entries whose state is zero (after a step that updated them, or before a full
/// update: such an entry stays zero).
template <typename Scalar, typename Slot>
void prune_dirty(Slot& slot) {
  if (slot.dirty.empty()) return;
  slot.dirty.erase(std::remove_if(slot.dirty.begin(), slot.dirty.end(),
                                  [&](Eigen::Index i) {
                                    for (const auto& b : slot.buffers)
                                      if (!(b[static_cast<std::size_t>(i)] == Scalar(0))) return false;
                                    return true;
                                  }),
                   slot.dirty.end());
}

/// Whether a step may update only the active entries of a masked parameter and still compute
/// PyTorch's values, and which inactive entries it must update as well. An inactive entry has
/// gradient exactly 0 (the layer contract), so without weight decay its update is a no-op once
/// its state (momentum buffer; Adam's m and v) is zero: SGD moves it by lr * buf, Adam by
/// lr * m / (sqrt(v) + eps) with eps > 0, and the state only decays. The entries whose state is
/// not zero yet - weights pruned while they had momentum - are kept in slot.dirty and updated
/// with PyTorch's arithmetic until their state reaches zero. Returns that list, or nullptr when
/// the step must update every entry: no mask, or more than a third of the entries active or
/// dirty (the gather and scatter of scattered entries then cost more than streaming all of them:
/// bench_dan, docs/benchmarks.md). The caller has checked that the options allow it (no weight decay).
/// Costs O(active entries) per step (a comparison with the last step's positions), O(size) on the
/// first such step and O(changes) after a mask change.
template <typename Scalar, typename Slot>
const std::vector<Eigen::Index>* exact_skip_plan(const ParameterRef<Scalar>& p, Slot& slot, std::vector<Eigen::Index>& scratch) {
  if (p.mask == nullptr) return nullptr;
  const std::vector<Eigen::Index>* active = p.active;
  if (active == nullptr) {
    scratch.clear();
    for (Eigen::Index i = 0; i < p.size; ++i)
      if (p.mask[i]) scratch.push_back(i);
    active = &scratch;
  }
  if (static_cast<Eigen::Index>(active->size()) * 3 > p.size) {
    slot.tracking = false;  // every entry is updated: nothing to track
    return nullptr;
  }
  auto state_nonzero = [&](Eigen::Index i) {
    for (const auto& b : slot.buffers)
      if (!(b[static_cast<std::size_t>(i)] == Scalar(0))) return true;  // NaN counts as not zero
    return false;
  };
  if (!slot.tracking) {
    slot.dirty.clear();
    if (!slot.buffers.empty())
      for (Eigen::Index i = 0; i < p.size; ++i)
        if (!p.mask[i] && state_nonzero(i)) slot.dirty.push_back(i);
    slot.active_seen = *active;
    slot.tracking = true;
  } else if (*active != slot.active_seen) {
    // Entries that left the active set since the last step carry their state with them.
    const std::vector<Eigen::Index>& old = slot.active_seen;
    std::size_t j = 0;
    for (const Eigen::Index i : old) {
      while (j < active->size() && (*active)[j] < i) ++j;
      if ((j == active->size() || (*active)[j] != i) && !slot.buffers.empty() && state_nonzero(i)) slot.dirty.push_back(i);
    }
    // Dirty entries that became active are updated as active ones.
    slot.dirty.erase(std::remove_if(slot.dirty.begin(), slot.dirty.end(), [&](Eigen::Index i) { return p.mask[i]; }),
                     slot.dirty.end());
    slot.active_seen = *active;
  }
  // Adam's v decays by beta2 per step: after a pruning almost every pruned entry stays dirty for
  // tens of thousands of steps, and gathering them all costs more than the full update (issue 15:
  // iterative magnitude pruning in examples/sparse_training went from 1.16x to 1.74x the dense
  // time). Above a third of the entries, the step streams every entry; the list stays tracked (a
  // dirty entry whose state reached zero is a no-op to update).
  if ((active->size() + slot.dirty.size()) * 3 > static_cast<std::size_t>(p.size)) {
    if (slot.step % 64 == 0) prune_dirty<Scalar>(slot);  // SGD's momentum dies out in ~1,000 steps
    return nullptr;
  }
  return &slot.dirty;
}

/// Whether an exact active-only step may be planned: `zero_is_fixed` tells that the rule leaves an
/// entry with zero gradient and zero state exactly as it is in Scalar arithmetic (no infinite
/// coefficient times that zero, no 0 / 0). When it does not, the step updates every entry, as
/// PyTorch's, and the slot stops tracking: the active sets of such steps are not compared, so the
/// next planned step scans the tensor again for entries that carry state.
template <typename Scalar, typename Slot>
const std::vector<Eigen::Index>* exact_skip_plan_if(bool zero_is_fixed, const ParameterRef<Scalar>& p, Slot& slot,
                                                    std::vector<Eigen::Index>& scratch) {
  if (!zero_is_fixed) {
    slot.tracking = false;
    return nullptr;
  }
  return exact_skip_plan(p, slot, scratch);
}

inline void check_non_negative(double value, const char* optimizer, const char* name) {
  if (!(value >= 0.0))
    DEEPSTRUCT_THROW(value_error, std::string(optimizer) + ": expected " + name + " >= 0, found " + detail::number_str(value));
}

}  // namespace detail

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  /// Update only the active entries of masked weights: entries behind the mask keep their value
  /// and momentum. Off (PyTorch's semantics): every entry is updated, so weight decay shrinks a
  /// masked weight and momentum keeps moving a weight pruned mid-training. Without weight decay
  /// and for weights masked since the first step both give the same values.
  bool skip_inactive = false;
  /// PyTorch's rule (skip_inactive off) in O(active entries): without weight decay, a masked
  /// weight with at most a third of its entries active is stepped over its active entries and
  /// those inactive ones whose momentum is not zero yet (weights pruned mid-training) - the same
  /// values as updating every entry, since the others have zero gradient and zero state (and lr,
  /// momentum and dampening are finite as Scalars: inf * 0 is NaN). Off: every entry on every step.
  bool sparse_steps = true;
};

/// torch.optim.SGD.
template <typename Scalar>
class SGD : public detail::OptimizerBase<Scalar> {
 public:
  explicit SGD(const SGDOptions& options = {}) : options_(options) {
    detail::check_non_negative(options.lr, "SGD", "lr");
    detail::check_non_negative(options.momentum, "SGD", "momentum");
    detail::check_non_negative(options.weight_decay, "SGD", "weight_decay");
    if (options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0))
      DEEPSTRUCT_THROW(value_error, "SGD: nesterov expects momentum > 0 and dampening 0, found momentum " +
                                        detail::number_str(options.momentum) + " and dampening " +
                                        detail::number_str(options.dampening));
  }
  const SGDOptions& options() const { return options_; }
  void set_lr(double lr) {
    detail::check_non_negative(lr, "SGD", "lr");
    options_.lr = lr;
  }

  template <typename Model>
  void step(Model& model) {
    this->state_.prepare(model, options_.momentum != 0.0 ? 1 : 0);  // throws before anything changes
    std::size_t k = 0;
    for_each_parameter(model, [&](const ParameterRef<Scalar>& p) { update(p, this->state_.slot(k++)); });
  }

 private:
  void update(const ParameterRef<Scalar>& p, typename detail::OptimizerState<Scalar>::Slot& slot) {
    const auto lr = static_cast<Scalar>(options_.lr), wd = static_cast<Scalar>(options_.weight_decay),
               mom = static_cast<Scalar>(options_.momentum), damp = static_cast<Scalar>(options_.dampening);
    Scalar* buf = options_.momentum != 0.0 ? slot.buffers[0].data() : nullptr;
    const bool first = slot.step == 0;  // PyTorch: the momentum buffer starts as the gradient
    ++slot.step;
    auto entry = [&](Eigen::Index i) {
      Scalar g = p.grad[i];
      if (wd != Scalar(0)) g += wd * p.value[i];
      if (buf != nullptr) {
        Scalar& b = buf[i];
        b = first ? g : mom * b + (Scalar(1) - damp) * g;
        g = options_.nesterov ? g + mom * b : b;
      }
      p.value[i] -= lr * g;
    };
    if (options_.skip_inactive && p.mask != nullptr) {
      detail::for_each_active(p, entry);
      return;
    }
    // PyTorch's rule, active entries only where that gives the same values (no weight decay).
    // A zero entry stays put unless lr, momentum or dampening is infinite as a Scalar (inf * 0 is
    // NaN in PyTorch's update too).
    const bool zero_is_fixed = std::isfinite(lr) && std::isfinite(mom) && std::isfinite(damp);
    if (options_.sparse_steps && options_.weight_decay == 0.0)
      if (const std::vector<Eigen::Index>* dirty = detail::exact_skip_plan_if(zero_is_fixed, p, slot, scratch_)) {
        detail::for_each_active(p, entry);
        for (const Eigen::Index i : *dirty) entry(i);
        detail::prune_dirty<Scalar>(slot);
        return;
      }
    for (Eigen::Index i = 0; i < p.size; ++i) entry(i);
  }

  SGDOptions options_;
  std::vector<Eigen::Index> scratch_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< L2 added to the gradient (Adam); decoupled decay (AdamW)
  /// Update only the active entries of masked weights (see SGDOptions::skip_inactive). Off:
  /// PyTorch's semantics, every entry is updated.
  bool skip_inactive = false;
  /// PyTorch's rule in O(active entries) where it gives the same values (see
  /// SGDOptions::sparse_steps; also needs eps > 0 as a Scalar and a finite step size: with eps 0
  /// PyTorch turns a weight with zero moments into NaN).
  bool sparse_steps = true;
};

namespace detail {

/// torch.optim.Adam (decoupled = false) and AdamW (decoupled = true).
template <typename Scalar, bool Decoupled>
class AdamBase : public OptimizerBase<Scalar> {
 public:
  explicit AdamBase(const AdamOptions& options) : options_(options) {
    const char* name = Decoupled ? "AdamW" : "Adam";
    check_non_negative(options.lr, name, "lr");
    check_non_negative(options.weight_decay, name, "weight_decay");
    if (!(options.beta1 >= 0.0 && options.beta1 < 1.0 && options.beta2 >= 0.0 && options.beta2 < 1.0))
      DEEPSTRUCT_THROW(value_error, std::string(name) + ": expected betas in [0, 1), found (" +
                                        detail::number_str(options.beta1) + ", " + detail::number_str(options.beta2) + ")");
    if (!(options.eps >= 0.0))
      DEEPSTRUCT_THROW(value_error, std::string(name) + ": expected eps >= 0, found " + detail::number_str(options.eps));
  }
  const AdamOptions& options() const { return options_; }
  void set_lr(double lr) {
    check_non_negative(lr, Decoupled ? "AdamW" : "Adam", "lr");
    options_.lr = lr;
  }
  /// Number of steps taken since construction or the last reset_state().
  long steps() const { return t_; }

  using OptimizerBase<Scalar>::reset_state;
  /// Forgets the state of every parameter and the step count: as a new optimizer.
  void reset_state() {
    OptimizerBase<Scalar>::reset_state();
    t_ = 0;
  }

  template <typename Model>
  void step(Model& model) {
    this->state_.prepare(model, 2);  // throws before anything changes (t_ included)
    ++t_;
    std::size_t k = 0;
    for_each_parameter(model, [&](const ParameterRef<Scalar>& p) { update(p, this->state_.slot(k++)); });
  }

 private:
  void update(const ParameterRef<Scalar>& p, typename OptimizerState<Scalar>::Slot& slot) {
    Scalar* m = slot.buffers[0].data();
    Scalar* v = slot.buffers[1].data();
    const long t = ++slot.step;  // per parameter, as PyTorch's state['step']
    const auto b1 = static_cast<Scalar>(options_.beta1), b2 = static_cast<Scalar>(options_.beta2);
    const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(t));
    const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(t));
    const auto step_size = static_cast<Scalar>(options_.lr / bias_correction1);
    const auto sqrt_bc2 = static_cast<Scalar>(std::sqrt(bias_correction2));
    const auto eps = static_cast<Scalar>(options_.eps), wd = static_cast<Scalar>(options_.weight_decay);
    const auto decay = static_cast<Scalar>(1.0 - options_.lr * options_.weight_decay);
    // Eigen array expressions: vectorised (sqrt included) whatever the caller's math flags. The
    // square root is correctly rounded (detail/exact_sqrt.hpp), as PyTorch's: Eigen's own is an
    // approximation under EIGEN_FAST_MATH, and an entry's bits would depend on its address.
    using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
    auto adam = [&](auto&& value, const auto& grad, auto&& m_map, auto&& v_map) {
      if (Decoupled) value *= decay;
      if (!Decoupled && wd != Scalar(0)) {
        m_map = b1 * m_map + (Scalar(1) - b1) * (grad + wd * value);
        v_map = b2 * v_map + (Scalar(1) - b2) * (grad + wd * value).square();
      } else {
        m_map = b1 * m_map + (Scalar(1) - b1) * grad;
        v_map = b2 * v_map + (Scalar(1) - b2) * grad.square();
      }
      value -= step_size * m_map / (v_map.unaryExpr(exact_sqrt_op<Scalar>()) / sqrt_bc2 + eps);
    };
    const std::vector<Eigen::Index>* dirty = nullptr;
    // A zero entry stays put when eps is positive as a Scalar (1e-50 is 0 in float: 0 / 0) and the
    // step size finite (an infinite one times 0 is NaN), as in PyTorch's arithmetic.
    if (!options_.skip_inactive && options_.sparse_steps && options_.weight_decay == 0.0)
      dirty = exact_skip_plan_if(eps > Scalar(0) && std::isfinite(step_size), p, slot, scratch_);
    if ((options_.skip_inactive && p.mask != nullptr) || dirty != nullptr) {
      // The active entries only, in ascending order (and, on PyTorch's rule, the dirty ones). Runs of consecutive positions are updated in
      // place; isolated entries are gathered in chunks into contiguous buffers, updated with the
      // same vectorised arithmetic and scattered back.
      constexpr Eigen::Index chunk = 256, min_run = 32;
      alignas(64) Scalar buffer[4][chunk];  // the same packets wherever the stack is
      Eigen::Index position[chunk];
      Eigen::Index n = 0;
      auto flush = [&] {
        for (Eigen::Index j = 0; j < n; ++j) buffer[0][j] = p.value[position[j]];
        for (Eigen::Index j = 0; j < n; ++j) buffer[1][j] = p.grad[position[j]];
        for (Eigen::Index j = 0; j < n; ++j) buffer[2][j] = m[position[j]];
        for (Eigen::Index j = 0; j < n; ++j) buffer[3][j] = v[position[j]];
        adam(Eigen::Map<Array>(buffer[0], n), Eigen::Map<const Array>(buffer[1], n), Eigen::Map<Array>(buffer[2], n),
             Eigen::Map<Array>(buffer[3], n));
        for (Eigen::Index j = 0; j < n; ++j) p.value[position[j]] = buffer[0][j];
        for (Eigen::Index j = 0; j < n; ++j) m[position[j]] = buffer[2][j];
        for (Eigen::Index j = 0; j < n; ++j) v[position[j]] = buffer[3][j];
        n = 0;
      };
      auto run = [&](Eigen::Index first, Eigen::Index count) {
        if (count >= min_run) {
          adam(Eigen::Map<Array>(p.value + first, count), Eigen::Map<const Array>(p.grad + first, count),
               Eigen::Map<Array>(m + first, count), Eigen::Map<Array>(v + first, count));
          return;
        }
        for (Eigen::Index i = first; i < first + count; ++i) {
          position[n] = i;
          if (++n == chunk) flush();
        }
      };
      detail::for_each_active_run(p, run);
      if (dirty != nullptr)
        for (const Eigen::Index i : *dirty) run(i, 1);
      if (n > 0) flush();
      if (dirty != nullptr) prune_dirty<Scalar>(slot);
      return;
    }
    // With OpenMP, large tensors are split into chunks across threads (elementwise: same result).
    auto update_range = [&](Eigen::Index first, Eigen::Index count) {
      adam(Eigen::Map<Array>(p.value + first, count), Eigen::Map<const Array>(p.grad + first, count),
             Eigen::Map<Array>(m + first, count), Eigen::Map<Array>(v + first, count));
    };
    // Work per entry in flops at 100 GF/s (threads.hpp): one thread updates about 1e6 entries in
    // 1.3 ms (two moments, a square root and a division, four arrays through memory), 130 flops.
    detail::parallel_chunks(p.size, 130.0, update_range);
  }

  AdamOptions options_;
  long t_ = 0;
  std::vector<Eigen::Index> scratch_;
};

}  // namespace detail

/// torch.optim.Adam: weight_decay adds wd * p to the gradient.
template <typename Scalar>
class Adam : public detail::AdamBase<Scalar, false> {
 public:
  explicit Adam(const AdamOptions& options = {}) : detail::AdamBase<Scalar, false>(options) {}
};

/// torch.optim.AdamW: decoupled weight decay p *= 1 - lr * wd (PyTorch's default wd is 1e-2).
template <typename Scalar>
class AdamW : public detail::AdamBase<Scalar, true> {
 public:
  static AdamOptions default_options() {
    AdamOptions o;
    o.weight_decay = 1e-2;
    return o;
  }
  explicit AdamW(const AdamOptions& options = default_options()) : detail::AdamBase<Scalar, true>(options) {}
};

}  // namespace deepstruct

// Compiled mode (detail/compiled_mode.hpp): the instantiations that instantiate.hpp compiles.
#define DEEPSTRUCT_INSTANTIATIONS_OPTIM(prefix, S) \
  prefix template class ::deepstruct::detail::OptimizerBase<S>; \
  prefix template class ::deepstruct::SGD<S>; \
  prefix template class ::deepstruct::detail::AdamBase<S, false>; \
  prefix template class ::deepstruct::detail::AdamBase<S, true>; \
  prefix template class ::deepstruct::Adam<S>; \
  prefix template class ::deepstruct::AdamW<S>;
DEEPSTRUCT_DECLARE_EXTERN(DEEPSTRUCT_INSTANTIATIONS_OPTIM)
