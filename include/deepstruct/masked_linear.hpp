// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_linear.hpp
/// MaskedLinear<Scalar>: y = (W o M) x + b, a linear layer whose out x in weight matrix carries a
/// boolean mask of the same shape (deepstruct's MaskedLinearLayer). Samples are columns: a batch
/// is a features x batch column-major matrix, the same memory as PyTorch's batch-first tensor.
///
/// Two execution paths give the same results: dense (Eigen GEMM on the cached product W o M) and
/// sparse (CSR of the active weights, tiled over the batch). The path follows the density of the
/// mask and a threshold (see sparse_threshold()), or is forced with set_execution().

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/detail/sparse_kernels.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

/// Which kernels a layer runs.
enum class Execution {
  automatic,  ///< sparse when density() <= sparse_threshold(), dense otherwise
  dense,      ///< always Eigen GEMM on W o M
  sparse      ///< always the CSR kernels
};

/// deepstruct's default threshold of MaskedLinearLayer.recompute_mask.
inline constexpr double default_layer_theta = 1e-3;

/// The density at or below which Execution::automatic takes the sparse path. Measured on a
/// 2-core AVX2 machine (docs/benchmarks.md, 1000x1000 layers, batch 128 to 1024): the sparse
/// kernels stop paying off between densities 0.37 and 0.48 with -march=native (0.66 to 0.90
/// without); 0.2 stays below every measured crossover, single runs at 0.2-0.3 being noisy.
inline constexpr double default_sparse_threshold = 0.2;

template <typename Scalar_>
class MaskedLinear {
  static_assert(std::is_floating_point<Scalar_>::value, "MaskedLinear<Scalar>: Scalar must be float or double");

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;

  /// in_features -> out_features with PyTorch's default initialisation: weights and bias uniform
  /// in [-1/sqrt(in_features), 1/sqrt(in_features)), drawn from `gen`. The mask is all true.
  MaskedLinear(Index in_features, Index out_features, bool bias, Generator& gen) {
    init_shape(in_features, out_features, bias, "MaskedLinear");
    reset_parameters(gen, false);
  }

  /// As above with a fresh generator seeded by `seed`: the same seed gives the same layer.
  explicit MaskedLinear(Index in_features, Index out_features, bool bias = true, std::uint64_t seed = 0) {
    init_shape(in_features, out_features, bias, "MaskedLinear");
    Generator gen(seed);
    reset_parameters(gen, false);
  }

  /// From given parameters. `bias` of size 0 means no bias; `mask` defaults to all true.
  MaskedLinear(const ConstMatrixRef& weight, const Eigen::Ref<const Vector>& bias, const Mask& mask) {
    init_shape(weight.cols(), weight.rows(), bias.size() != 0, "MaskedLinear(weight, bias, mask)");
    if (bias.size() != 0 && bias.size() != weight.rows())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear(weight, bias, mask): expected a bias of size " +
                                        std::to_string(weight.rows()) + " (out_features) or 0, found " +
                                        std::to_string(bias.size()));
    weight_ = weight;
    bias_ = bias;
    set_mask(mask);
  }
  MaskedLinear(const ConstMatrixRef& weight, const Eigen::Ref<const Vector>& bias)
      : MaskedLinear(weight, bias, Mask::Constant(weight.rows(), weight.cols(), true)) {}

  // Copies would share a stale pointer to the last forward input; moves are fine.
  MaskedLinear(const MaskedLinear& other) { *this = other; }
  MaskedLinear& operator=(const MaskedLinear& other) {
    if (this != &other) {
      copy_state(other);
      saved_input_ = nullptr;
    }
    return *this;
  }
  MaskedLinear(MaskedLinear&&) noexcept = default;
  MaskedLinear& operator=(MaskedLinear&&) noexcept = default;

  // ---- shape and parameters -----------------------------------------------------------------

  Index in_features() const { return weight_.cols(); }
  Index out_features() const { return weight_.rows(); }
  bool has_bias() const { return has_bias_; }

  /// The weights W (out x in), including the ones behind the mask.
  const Matrix& weight() const { return weight_; }
  /// The bias (size out_features; size 0 without bias).
  const Vector& bias() const { return bias_; }
  /// The effective weights W o M (what forward multiplies with).
  Matrix effective_weight() const { return weight_.cwiseProduct(mask_.template cast<Scalar>()); }

  void set_weight(const ConstMatrixRef& weight) {
    check_matrix_shape(weight.rows(), weight.cols(), "set_weight", "weight");
    weight_ = weight;
    weights_changed();
  }
  void set_bias(const Eigen::Ref<const Vector>& bias) {
    if (bias.size() != bias_.size())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::set_bias: expected a bias of size " + std::to_string(bias_.size()) +
                                        ", found " + std::to_string(bias.size()));
    bias_ = bias;
  }
  /// Changes W in place: `fn(Matrix& weight)`. Caches are refreshed before the next forward, also
  /// when fn throws halfway (forward then sees whatever fn changed). fn must keep the shape: if it
  /// resizes W, W is reset to zeros of the layer's shape and shape_error is thrown (or fn's own
  /// exception passes through, W reset the same way).
  template <typename Fn>
  void update_weight(Fn&& fn) {
    const Index out = mask_.rows(), in = mask_.cols();
    weights_changed();  // before fn: a throw from fn leaves the caches marked stale
    try {
      fn(weight_);
    } catch (...) {
      if (weight_.rows() != out || weight_.cols() != in) weight_.setZero(out, in);
      throw;
    }
    weights_changed();  // and after, in case fn ran a forward of this layer
    if (weight_.rows() != out || weight_.cols() != in) {
      const std::string found = detail::shape_str(weight_.rows(), weight_.cols());
      weight_.setZero(out, in);
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::update_weight: expected fn to keep the weight's shape " +
                                        detail::shape_str(out, in) + " (out_features x in_features), found " + found +
                                        " (the weight was reset to zeros of the expected shape)");
    }
  }
  /// Changes the bias in place: `fn(Vector& bias)`. fn must keep the size: if it resizes the bias,
  /// the bias is reset to zeros of the layer's size and shape_error is thrown.
  template <typename Fn>
  void update_bias(Fn&& fn) {
    const Index size = bias_.size();
    try {
      fn(bias_);
    } catch (...) {
      if (bias_.size() != size) bias_.setZero(size);
      throw;
    }
    if (bias_.size() != size) {
      const Index found = bias_.size();
      bias_.setZero(size);
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::update_bias: expected fn to keep the bias size " +
                                        std::to_string(size) + (has_bias_ ? " (out_features)" : " (a layer without bias)") +
                                        ", found " + std::to_string(found) +
                                        " (the bias was reset to zeros of the expected size)");
    }
  }

  // ---- the mask -------------------------------------------------------------------------------

  const Mask& mask() const { return mask_; }
  void set_mask(const Mask& mask) {
    check_matrix_shape(mask.rows(), mask.cols(), "set_mask", "mask");
    mask_ = mask;
    mask_changed();
  }
  /// Zeroes the weights behind the mask for good (deepstruct's apply_mask).
  void apply_mask() {
    weight_ = weight_.cwiseProduct(mask_.template cast<Scalar>());
    weights_changed();
  }
  /// Sets the mask to |W| >= theta (deepstruct's recompute_mask; default theta 1e-3).
  void recompute_mask(double theta = default_layer_theta) {
    if (!(theta >= 0.0))
      DEEPSTRUCT_THROW(value_error, "MaskedLinear::recompute_mask: expected theta >= 0, found " + std::to_string(theta));
    mask_ = (weight_.array().abs() >= static_cast<Scalar>(theta)).matrix();
    mask_changed();
  }

  /// Number of active weights (true entries of the mask).
  Index nnz() const { return nnz_; }
  /// Number of weights, active or not.
  Index numel() const { return weight_.size(); }
  /// nnz() / numel().
  double density() const { return static_cast<double>(nnz_) / static_cast<double>(weight_.size()); }

  // ---- saliency -------------------------------------------------------------------------------

  /// The pruning score of each weight: |W| unless set_saliency() gave one.
  Matrix saliency() const { return has_saliency_ ? saliency_ : Matrix(weight_.cwiseAbs()); }
  void set_saliency(const ConstMatrixRef& saliency) {
    check_matrix_shape(saliency.rows(), saliency.cols(), "set_saliency", "saliency");
    saliency_ = saliency;
    has_saliency_ = true;
  }
  /// Back to the default saliency |W|.
  void clear_saliency() {
    saliency_.resize(0, 0);
    has_saliency_ = false;
  }
  bool has_custom_saliency() const { return has_saliency_; }

  // ---- initialisation -------------------------------------------------------------------------

  /// PyTorch's default initialisation again; the mask becomes all true unless keep_mask.
  void reset_parameters(Generator& gen, bool keep_mask = false) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features()));
    for (Index i = 0; i < weight_.size(); ++i)
      weight_.data()[i] = static_cast<Scalar>(random::uniform(gen, -bound, bound));
    for (Index i = 0; i < bias_.size(); ++i) bias_[i] = static_cast<Scalar>(random::uniform(gen, -bound, bound));
    if (!keep_mask) {
      mask_.setConstant(weight_.rows(), weight_.cols(), true);
      mask_changed();
    }
    weights_changed();
    clear_saliency();
  }
  void reset_parameters(std::uint64_t seed, bool keep_mask = false) {
    Generator gen(seed);
    reset_parameters(gen, keep_mask);
  }

  // ---- execution path -------------------------------------------------------------------------

  void set_execution(Execution execution) { execution_ = execution; }
  Execution execution() const { return execution_; }
  /// The density at or below which Execution::automatic takes the sparse path.
  double sparse_threshold() const { return sparse_threshold_; }
  void set_sparse_threshold(double threshold) {
    if (!(threshold >= 0.0 && threshold <= 1.0))
      DEEPSTRUCT_THROW(value_error, "MaskedLinear::set_sparse_threshold: expected a density in [0, 1], found " +
                                        std::to_string(threshold));
    sparse_threshold_ = threshold;
  }
  /// True if the next forward/backward runs the sparse kernels.
  bool uses_sparse_path() const {
    return execution_ == Execution::sparse ||
           (execution_ == Execution::automatic && density() <= sparse_threshold_);
  }

  // ---- forward --------------------------------------------------------------------------------

  /// y = (W o M) x + b into a caller-owned out x batch matrix (no allocation once y has its size).
  /// Keeps nothing of x, and forgets the input an earlier forward(const Matrix&) remembered:
  /// backward(grad_output) then throws. y must not share memory with x (shape_error otherwise).
  void forward(const ConstMatrixRef& x, Matrix& y) {
    saved_input_ = nullptr;
    check_input(x, "forward");
    check_no_alias(x, y, "forward", "y", "x");
    y.resize(out_features(), x.cols());
    if (x.cols() == 0) return;
    if (uses_sparse_path()) {
      refresh_sparse();
      x_tile_.resize(in_features() * detail::batch_tile<Scalar>);
      detail::csr_forward<Scalar>(csr_, has_bias_ ? bias_.data() : nullptr, x.data(), x.outerStride(), in_features(),
                                  out_features(), x.cols(), y.data(), y.outerStride(), x_tile_.data());
    } else {
      const Matrix& w = dense_weight();
      if (has_bias_) {
        // GEMM accumulates into the bias: one pass over y instead of two.
        y.colwise() = bias_;
        y.noalias() += w * x;
      } else {
        y.noalias() = w * x;
      }
    }
  }

  /// y = (W o M) x + b. Remembers `x` by address (no copy) for backward(grad_output): x must stay
  /// alive and unchanged until then, as a tensor autograd saved.
  Matrix forward(const Matrix& x) {
    Matrix y;
    forward(x, y);
    saved_input_ = &x;
    return y;
  }
  /// y = (W o M) x + b for a temporary input, which cannot be remembered: backward(grad_output)
  /// then throws; use backward(x, grad_output, grad_input).
  template <typename Derived>
  Matrix forward(const Eigen::MatrixBase<Derived>& x) {
    Matrix y;
    forward(x, y);
    saved_input_ = nullptr;
    return y;
  }
  Matrix forward(Matrix&& x) { return forward(static_cast<const Eigen::MatrixBase<Matrix>&>(x)); }

  // ---- backward -------------------------------------------------------------------------------

  /// Backward through the layer for the input `x` that forward saw: adds dL/dW (zero behind the
  /// mask) and dL/db to the gradients, and writes dL/dx into *grad_input unless it is null
  /// (the first layer of a network needs no input gradient). *grad_input must not share memory
  /// with x or grad_output (shape_error otherwise).
  void backward(const ConstMatrixRef& x, const ConstMatrixRef& grad_output, Matrix* grad_input) {
    check_input(x, "backward");
    if (grad_output.rows() != out_features() || grad_output.cols() != x.cols())
      DEEPSTRUCT_THROW(shape_error, "MaskedLinear::backward: expected grad_output of shape " +
                                        detail::shape_str(out_features(), x.cols()) +
                                        " (out_features x batch), found " +
                                        detail::shape_str(grad_output.rows(), grad_output.cols()));
    if (grad_input != nullptr) {
      check_no_alias(x, *grad_input, "backward", "grad_input", "x");
      check_no_alias(grad_output, *grad_input, "backward", "grad_input", "grad_output");
    }
    ensure_grad_buffers();
    if (grad_input != nullptr) grad_input->resize(in_features(), x.cols());
    if (x.cols() == 0) {
      if (grad_input != nullptr) grad_input->setZero();
      return;
    }
    if (uses_sparse_path()) {
      refresh_sparse();
      const Index T = detail::batch_tile<Scalar>;
      x_tile_.resize(in_features() * T);
      g_tile_.resize(out_features() * T);
      grad_values_.assign(csr_.value.size(), Scalar(0));
      detail::csr_backward<Scalar>(csr_, x.data(), x.outerStride(), grad_output.data(), grad_output.outerStride(),
                                   in_features(), out_features(), x.cols(), grad_values_.data(),
                                   has_bias_ ? bias_grad_.data() : nullptr,
                                   grad_input != nullptr ? grad_input->data() : nullptr,
                                   grad_input != nullptr ? grad_input->outerStride() : 0, x_tile_.data(),
                                   g_tile_.data());
      Scalar* gw = weight_grad_.data();
      for (std::size_t k = 0; k < grad_values_.size(); ++k) gw[csr_.dense_pos[k]] += grad_values_[k];
    } else {
      const Matrix& w = dense_weight();
      // dL/db = g 1: a matrix-vector product reads g column by column, once.
      if (has_bias_) bias_grad_.noalias() += grad_output * Vector::Ones(x.cols());
      // GEMM accumulates straight into the gradient, which is zero behind the mask; one pass of
      // the mask then clears what landed there (none to clear when every weight is active).
      weight_grad_.noalias() += grad_output * x.transpose();
      if (nnz_ != weight_.size()) weight_grad_.array() *= mask_scalar_.array();
      grad_touched_outside_pattern_ = true;
      if (grad_input != nullptr) grad_input->noalias() = w.transpose() * grad_output;
    }
  }

  /// Backward for the input of the last forward(const Matrix&); returns dL/dx. Throws
  /// std::logic_error when no input is remembered (see forward).
  Matrix backward(const ConstMatrixRef& grad_output) {
    if (saved_input_ == nullptr)
      DEEPSTRUCT_THROW(std::logic_error, "MaskedLinear::backward(grad_output): expected a preceding forward(x) of a "
                                         "matrix that is still alive, found none (no forward, a temporary input, a "
                                         "forward(x, y) or a failed forward since, or the layer was copied since)");
    Matrix grad_input;
    backward(*saved_input_, grad_output, &grad_input);
    return grad_input;
  }

  /// dL/dW accumulated since zero_grad() (out x in; exactly zero behind the mask).
  const Matrix& weight_grad() const {
    ensure_grad_buffers();
    return weight_grad_;
  }
  /// dL/db accumulated since zero_grad() (size 0 without bias).
  const Vector& bias_grad() const {
    ensure_grad_buffers();
    return bias_grad_;
  }
  /// Sets the gradients to zero. After sparse-only backward passes this touches only the active
  /// positions.
  void zero_grad() {
    if (weight_grad_.size() == 0) return;
    if (grad_touched_outside_pattern_) {
      weight_grad_.setZero();
      grad_touched_outside_pattern_ = false;
    } else {
      refresh_sparse_pattern();
      Scalar* gw = weight_grad_.data();
      for (const Index pos : csr_.dense_pos) gw[pos] = Scalar(0);
    }
    bias_grad_.setZero();
  }

  /// Positions (o + i * out_features, column-major) of the active weights, row by row.
  const std::vector<Index>& active_positions() const {
    refresh_sparse_pattern();
    return csr_.dense_pos;
  }

 private:
  void init_shape(Index in, Index out, bool bias, const char* where) {
    if (in <= 0 || out <= 0)
      DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected in_features >= 1 and out_features >= 1, found " +
                                        std::to_string(in) + " -> " + std::to_string(out));
    // The sparse index stores input and output features as int32 (CSR columns, CSC rows).
    if (in > std::numeric_limits<std::int32_t>::max())
      DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected in_features < 2^31, found " + std::to_string(in));
    if (out > std::numeric_limits<std::int32_t>::max())
      DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected out_features < 2^31, found " + std::to_string(out));
    has_bias_ = bias;
    weight_.resize(out, in);
    bias_.resize(bias ? out : 0);
    mask_.setConstant(out, in, true);
    nnz_ = out * in;
  }

  void check_matrix_shape(Index rows, Index cols, const char* where, const char* what) const {
    if (rows != out_features() || cols != in_features())
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedLinear::") + where + ": expected a " + what + " of shape " +
                                        detail::shape_str(out_features(), in_features()) +
                                        " (out_features x in_features), found " + detail::shape_str(rows, cols));
  }

  void check_input(const ConstMatrixRef& x, const char* where) const {
    if (x.rows() != in_features())
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedLinear::") + where + ": expected input with " +
                                        std::to_string(in_features()) +
                                        " rows (in_features x batch, one sample per column), found " +
                                        detail::shape_str(x.rows(), x.cols()));
  }

  /// Throws shape_error if the memory of `out` overlaps that of `in` (the columns of `in` and the
  /// gaps between them, a conservative and O(1) test). Writing `out` would then change `in` while
  /// it is read, or resizing `out` would free it.
  static void check_no_alias(const ConstMatrixRef& in, const Matrix& out, const char* where, const char* out_name,
                             const char* in_name) {
    if (in.size() == 0 || out.size() == 0) return;
    const Scalar* in_begin = in.data();
    const Scalar* in_end = in.data() + (in.cols() - 1) * in.outerStride() + in.rows();
    const Scalar* out_begin = out.data();
    const Scalar* out_end = out.data() + out.size();
    const std::less<const Scalar*> before;  // a total order, also for pointers into different arrays
    if (before(in_begin, out_end) && before(out_begin, in_end))
      DEEPSTRUCT_THROW(shape_error, std::string("MaskedLinear::") + where + ": expected " + out_name +
                                        " not to share memory with " + in_name + ", found " + out_name + " (" +
                                        detail::shape_str(out.rows(), out.cols()) + ") overlapping " + in_name + " (" +
                                        detail::shape_str(in.rows(), in.cols()) +
                                        "); in-place calls are not supported, pass a separate matrix");
  }

  void weights_changed() {
    dense_stale_ = true;
    sparse_values_stale_ = true;
  }
  void mask_changed() {
    nnz_ = mask_.count();
    dense_stale_ = true;
    sparse_pattern_stale_ = true;
    sparse_values_stale_ = true;
    // Gradients may sit at positions that just became inactive.
    if (weight_grad_.size() != 0) weight_grad_ = weight_grad_.cwiseProduct(mask_.template cast<Scalar>());
    grad_touched_outside_pattern_ = true;
  }

  /// The weights the dense path multiplies with: W itself when every weight is active (no copy),
  /// otherwise the cached W o M (refreshed when W or M changed).
  const Matrix& dense_weight() {
    if (nnz_ == weight_.size()) return weight_;
    if (dense_stale_) {
      mask_scalar_ = mask_.template cast<Scalar>();
      masked_weight_ = weight_.cwiseProduct(mask_scalar_);
      dense_stale_ = false;
    }
    return masked_weight_;
  }
  void refresh_sparse_pattern() const {
    if (!sparse_pattern_stale_) return;
    csr_.build_pattern(mask_);
    sparse_pattern_stale_ = false;
    sparse_values_stale_ = true;
  }
  void refresh_sparse() const {
    refresh_sparse_pattern();
    if (!sparse_values_stale_) return;
    csr_.gather_values(weight_.data(), out_features());
    sparse_values_stale_ = false;
  }
  /// Allocates the (zero) gradients on first use: layers that only run forward carry none.
  void ensure_grad_buffers() const {
    if (weight_grad_.size() == 0) {
      weight_grad_.setZero(out_features(), in_features());
      bias_grad_.setZero(bias_.size());
    }
  }

  void copy_state(const MaskedLinear& o) {
    weight_ = o.weight_;
    bias_ = o.bias_;
    mask_ = o.mask_;
    saliency_ = o.saliency_;
    has_saliency_ = o.has_saliency_;
    has_bias_ = o.has_bias_;
    nnz_ = o.nnz_;
    execution_ = o.execution_;
    sparse_threshold_ = o.sparse_threshold_;
    weight_grad_ = o.weight_grad_;
    bias_grad_ = o.bias_grad_;
    grad_touched_outside_pattern_ = o.grad_touched_outside_pattern_;
    dense_stale_ = sparse_pattern_stale_ = sparse_values_stale_ = true;
  }

  Matrix weight_;
  Vector bias_;
  Mask mask_;
  Matrix saliency_;
  bool has_saliency_ = false;
  bool has_bias_ = true;
  Index nnz_ = 0;
  Execution execution_ = Execution::automatic;
  double sparse_threshold_ = default_sparse_threshold;

  // Allocated lazily (all zero until then), also by the const accessors.
  mutable Matrix weight_grad_;
  mutable Vector bias_grad_;
  bool grad_touched_outside_pattern_ = false;

  // Caches, refreshed lazily when W or M changed (the sparse ones also by active_positions() const).
  Matrix mask_scalar_;
  Matrix masked_weight_;
  bool dense_stale_ = true;
  mutable detail::CsrWeights<Scalar> csr_;
  mutable bool sparse_pattern_stale_ = true;
  mutable bool sparse_values_stale_ = true;

  // Scratch reused across calls.
  detail::TileBuffer<Scalar> x_tile_, g_tile_;  // cache-line aligned: see detail::CacheAlignedAllocator
  std::vector<Scalar> grad_values_;
  const Matrix* saved_input_ = nullptr;
};

using MaskedLinearf = MaskedLinear<float>;
using MaskedLineard = MaskedLinear<double>;

}  // namespace deepstruct
