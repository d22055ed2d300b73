// SPDX-License-Identifier: MIT
#pragma once

/// \file sparse_training.hpp
/// Sparse training from scratch: a random sparse mask with a per-layer density allocation
/// (uniform, Erdos-Renyi, Erdos-Renyi-kernel as RigL allocates them), evolved during training by
/// dropping weak weights and regrowing others - SET (Mocanu et al. 2018: regrowth at random) and
/// RigL (Evci et al. 2020: regrowth where the dense gradient is largest). Written against the
/// maskable-layer contract: any model (MaskedDeepFFN, MaskedDeepDAN, MaskedDeepRNN, ...) and any
/// masked layer type; for a DAN every masked weight is a layer-pair matrix, so regrowth never
/// leaves it and the graph stays a DAG.
///
/// SET and RigL wrap an optimizer: `RigL<Adam<float>, Model> rigl(model, adam, options)` is itself
/// an optimizer (step(model)), so fit() and train_step() drive it and it runs inside the training
/// loop, deterministic from its seed. Per-layer densities stay constant; grown weights start at
/// zero with their optimizer state reset. Between updates the masks are sparse and the layers run
/// their sparse kernels; an update rebuilds them in O(active weights + rows) (change_mask).

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iomanip>
#include <locale>
#include <numeric>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "deepstruct/errors.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/prune.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

// ---- density allocation -------------------------------------------------------------------------

enum class DensityAllocation {
  uniform,  ///< every sparse layer at the target density
  er,       ///< Erdos-Renyi: density proportional to (rows + cols) / (rows * cols)
  erk       ///< Erdos-Renyi-kernel: proportional to sum(shape) / prod(shape) (kernel dims count; ER for 2-D), to a power
};

struct AllocationOptions {
  DensityAllocation method = DensityAllocation::erk;
  double erk_power = 1.0;            ///< RigL's erk_power_scale (ERK only)
  std::vector<std::size_t> dense;    ///< indices (in the list of masked weights) kept dense, e.g. the output layer
  /// sparse_init only: multiply the weights of a masked weight of density d by 1/sqrt(d), so that a
  /// neuron's input keeps the variance the dense initialisation gives it (fewer, larger weights).
  bool rescale_weights = false;
};

/// The density of every masked weight of the given shapes ({rows, cols} or, for a convolution,
/// {out, in, kh, kw}) so that the nonzeros total what `density` gives every sparse weight, as
/// RigL allocates them: a weight in options.dense, or whose scaled ER(K) density would exceed 1,
/// is dense (then the rest are scaled again). `dense_out` (if given) receives the indices of the
/// dense ones. Throws value_error for a density outside (0, 1], a NaN or infinite erk_power or a
/// bad index, shape_error for a shape with fewer than two dimensions or a dimension < 1.
inline std::vector<double> allocate_densities(const std::vector<std::vector<Eigen::Index>>& shapes, double density,
                                              const AllocationOptions& options = {}, std::vector<std::size_t>* dense_out = nullptr) {
  if (!(density > 0.0 && density <= 1.0))
    DEEPSTRUCT_THROW(value_error, "allocate_densities: expected a density in (0, 1], found " + detail::number_str(density));
  // A NaN or infinite power makes every raw density NaN, 0 or infinite: every layer came out dense.
  if (!std::isfinite(options.erk_power))
    DEEPSTRUCT_THROW(value_error, "allocate_densities: expected a finite erk_power, found " + detail::number_str(options.erk_power));
  std::vector<char> dense(shapes.size(), 0);
  for (const std::size_t i : options.dense) {
    if (i >= shapes.size())
      DEEPSTRUCT_THROW(value_error, "allocate_densities: expected dense indices below " + std::to_string(shapes.size()) + ", found " +
                                        std::to_string(i));
    dense[i] = 1;
  }
  std::vector<double> n(shapes.size()), raw(shapes.size());
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    if (shapes[i].size() < 2)
      DEEPSTRUCT_THROW(shape_error, "allocate_densities: expected a shape of at least 2 dimensions, found " + std::to_string(shapes[i].size()) +
                                        " at index " + std::to_string(i));
    double prod = 1, sum = 0;
    for (const Eigen::Index d : shapes[i]) {
      if (d < 1) DEEPSTRUCT_THROW(shape_error, "allocate_densities: expected dimensions >= 1, found " + std::to_string(d));
      prod *= double(d);
      sum += double(d);
    }
    n[i] = prod;
    const double rows = double(shapes[i][0]), cols = double(shapes[i][1]);
    switch (options.method) {
      case DensityAllocation::uniform: raw[i] = 1.0; break;
      case DensityAllocation::er: raw[i] = (rows + cols) / (rows * cols); break;
      case DensityAllocation::erk: raw[i] = std::pow(sum / prod, options.erk_power); break;
    }
  }
  std::vector<double> out(shapes.size(), 1.0);
  for (;;) {
    double divisor = 0, rhs = 0, max_raw = 0;
    bool any_sparse = false;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const double zeros = std::floor(n[i] * (1.0 - density));
      if (dense[i]) {
        rhs -= zeros;
      } else {
        any_sparse = true;
        rhs += n[i] - zeros;
        divisor += raw[i] * n[i];
        max_raw = std::max(max_raw, raw[i]);
      }
    }
    if (!any_sparse) break;
    const double eps = rhs / divisor;
    if (options.method != DensityAllocation::uniform && max_raw * eps > 1.0) {
      for (std::size_t i = 0; i < shapes.size(); ++i)
        if (!dense[i] && raw[i] == max_raw) dense[i] = 1;
      continue;
    }
    for (std::size_t i = 0; i < shapes.size(); ++i)
      out[i] = dense[i] ? 1.0 : (options.method == DensityAllocation::uniform ? density : std::min(1.0, eps * raw[i]));
    break;
  }
  if (dense_out != nullptr) {
    dense_out->clear();
    for (std::size_t i = 0; i < shapes.size(); ++i)
      if (dense[i]) dense_out->push_back(i);
  }
  return out;
}

/// One masked weight of a model, as sparse training sees it.
template <typename Scalar>
struct MaskedWeightRef {
  MaskedLayer<Scalar>* layer;
  std::size_t k;       ///< masked weight of the layer
  std::size_t index;   ///< among the selected masked weights of the model
};

/// The masked weights of a model the selector accepts (every one by default), in maskable_layers()
/// order.
template <typename Model, typename Select = AllWeights>
auto masked_weights(Model& model, const Select& select = Select{}) {
  using Scalar = typename Model::Scalar;
  std::vector<MaskedWeightRef<Scalar>> out;
  for (MaskedLayer<Scalar>* l : model.maskable_layers())
    for (std::size_t k = 0; k < l->num_masks(); ++k)
      if (select(*l, k)) out.push_back({l, k, out.size()});
  return out;
}

/// Sparse initialisation: the selected masked weights get random masks (seeded) with exactly
/// floor(d * n) active entries, d from allocate_densities. Returns the densities. The weights keep
/// their values (masks are soft: apply_mask() zeroes what is behind them), scaled by 1/sqrt(d)
/// with options.rescale_weights.
template <typename Model, typename Select = AllWeights>
std::vector<double> sparse_init(Model& model, double density, const AllocationOptions& options, std::uint64_t seed,
                                const Select& select = Select{}) {
  auto weights = masked_weights(model, select);
  std::vector<std::vector<Eigen::Index>> shapes;
  for (const auto& w : weights) shapes.push_back(w.layer->weight_shape(w.k));
  const std::vector<double> d = allocate_densities(shapes, density, options);
  Generator gen(seed);
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const auto& m = weights[i].layer->mask(weights[i].k);
    const Eigen::Index n = m.size();
    const auto keep = static_cast<Eigen::Index>(std::floor(d[i] * double(n) + 1e-9));
    // A partial Fisher-Yates shuffle picks `keep` distinct positions.
    std::vector<Eigen::Index> pos(static_cast<std::size_t>(n));
    std::iota(pos.begin(), pos.end(), Eigen::Index{0});
    for (Eigen::Index j = 0; j < keep; ++j) {
      const auto r = static_cast<Eigen::Index>(random::uniform_index(gen, static_cast<std::uint64_t>(n - j)));
      std::swap(pos[static_cast<std::size_t>(j)], pos[static_cast<std::size_t>(j + r)]);
    }
    typename MaskedLayer<typename Model::Scalar>::Mask mask = decltype(mask)::Constant(m.rows(), m.cols(), false);
    for (Eigen::Index j = 0; j < keep; ++j) mask.data()[pos[static_cast<std::size_t>(j)]] = true;
    weights[i].layer->set_mask(weights[i].k, mask);
    if (options.rescale_weights && d[i] < 1.0) {
      const auto s = static_cast<typename Model::Scalar>(1.0 / std::sqrt(d[i]));
      weights[i].layer->update_weight(weights[i].k, [&](auto& w) { w *= s; });
    }
  }
  return d;
}

// ---- the drop fraction over time ---------------------------------------------------------------

enum class DropSchedule {
  constant,    ///< alpha
  cosine,      ///< alpha / 2 (1 + cos(pi t / T_end)) (RigL's default)
  exponential  ///< alpha (1 - t / T_end)^power (RigL's "exponential" anneal)
};

/// The fraction to drop at step t (0 from T_end on for the annealed schedules).
inline double drop_fraction(DropSchedule schedule, double alpha, long t, long t_end, double power = 3.0) {
  if (schedule == DropSchedule::constant) return alpha;
  if (t_end <= 0 || t >= t_end) return 0.0;
  const double x = double(t) / double(t_end);
  if (schedule == DropSchedule::cosine) return alpha / 2.0 * (1.0 + std::cos(3.14159265358979323846 * x));
  return alpha * std::pow(1.0 - x, power);
}

// ---- the updates of one masked weight (the fixtures' definitions) ------------------------------

namespace detail {

/// Row-major flat index (numpy's ravel of an [out][in] array) of a column-major position: the
/// tie-breaking order of the reference implementations.
inline Eigen::Index row_major_index(Eigen::Index pos, Eigen::Index rows, Eigen::Index cols) {
  return (pos % rows) * cols + pos / rows;
}

/// The order-preserving unsigned key of a float or double (larger value, larger key; -0 < +0).
template <typename S>
auto order_key(S x) {
  using U = std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>;
  U bits;
  std::memcpy(&bits, &x, sizeof(S));
  constexpr U sign = U(1) << (8 * sizeof(S) - 1);
  return (bits & sign) ? U(~bits) : U(bits | sign);
}

/// The count-th largest of `scores` (count >= 1): for large inputs by a radix pass over the top
/// 16 bits of the order key, then a selection inside one bucket; O(n) with two passes.
template <typename S>
S kth_largest(const std::vector<S>& scores, std::size_t count) {
  if (scores.size() < 4096) {
    std::vector<S> tmp(scores);
    std::nth_element(tmp.begin(), tmp.begin() + static_cast<std::ptrdiff_t>(count - 1), tmp.end(), std::greater<S>());
    return tmp[count - 1];
  }
  constexpr int shift = 8 * static_cast<int>(sizeof(S)) - 16;
  std::vector<std::size_t> histogram(65536, 0);
  for (const S x : scores) ++histogram[static_cast<std::size_t>(order_key(x) >> shift)];
  std::size_t bucket = 65536, above = 0;  // scores in buckets above `bucket`
  while (bucket-- > 0) {
    if (above + histogram[bucket] >= count) break;
    above += histogram[bucket];
  }
  std::vector<S> in_bucket;
  in_bucket.reserve(histogram[bucket]);
  for (const S x : scores)
    if (static_cast<std::size_t>(order_key(x) >> shift) == bucket) in_bucket.push_back(x);
  const std::size_t k = count - above;  // k-th largest inside the bucket
  std::nth_element(in_bucket.begin(), in_bucket.begin() + static_cast<std::ptrdiff_t>(k - 1), in_bucket.end(), std::greater<S>());
  return in_bucket[k - 1];
}

/// The `count` positions of `candidates` with the largest scores (scores[i] belongs to
/// candidates[i]; ties by row-major index), ascending. O(candidates) expected: a selection finds
/// the count-th largest score, one pass takes everything above it, the ties below it come in
/// row-major order. A NaN score ranks below every number (the public updates refuse NaN before
/// they get here; this keeps the selection within its arrays whatever the scores).
template <typename S>
std::vector<Eigen::Index> largest(const std::vector<Eigen::Index>& candidates, const std::vector<S>& scores, std::size_t count,
                                  Eigen::Index rows, Eigen::Index cols) {
  const std::size_t n = std::min(candidates.size(), scores.size());
  count = std::min(count, n);
  std::vector<Eigen::Index> out;
  if (count == 0) return out;
  out.reserve(count);
  if (count == n) {
    out.assign(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n));
  } else {
    std::vector<S> numbers;  // the scores that are not NaN (a selection over NaN has no order)
    numbers.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isnan(scores[i])) numbers.push_back(scores[i]);
    std::vector<Eigen::Index> ties;
    if (count <= numbers.size()) {
      const S threshold = kth_largest(numbers, count);
      for (std::size_t i = 0; i < n; ++i) {
        if (scores[i] > threshold) out.push_back(candidates[i]);
        else if (scores[i] == threshold) ties.push_back(candidates[i]);
      }
    } else {  // every number, then NaN ones
      for (std::size_t i = 0; i < n; ++i) (std::isnan(scores[i]) ? ties : out).push_back(candidates[i]);
    }
    std::sort(ties.begin(), ties.end(), [&](Eigen::Index a, Eigen::Index b) { return row_major_index(a, rows, cols) < row_major_index(b, rows, cols); });
    for (std::size_t i = 0; i < ties.size() && out.size() < count; ++i) out.push_back(ties[i]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace detail

/// What one update does to a masked weight: positions (column-major) turned off and on.
struct MaskChange {
  std::vector<Eigen::Index> dropped;  ///< the active positions dropped, ascending (some may be grown back: in `grown` too)
  std::vector<Eigen::Index> grown;    ///< the positions grown, ascending (weights set to 0; may include just-dropped ones)
  Eigen::Index n_drop = 0;            ///< floor(fraction * nnz) (RigL), or the removed count (SET)
};

namespace detail {

/// "row r, column c" of a column-major position, and " of '<name>'" when a name is given: where a
/// message points.
inline std::string position_str(Eigen::Index p, Eigen::Index rows, const std::string& name) {
  std::string s = "row " + std::to_string(p % rows) + ", column " + std::to_string(p / rows);
  if (!name.empty()) s += " of '" + name + "'";
  return s;
}

/// The arguments of rigl_change and set_removal: a fraction in [0, 1], a mask (and a gradient) of
/// the weight's shape.
template <typename Scalar>
void check_update_arguments(const char* where, const char* fraction_name, double fraction, const Eigen::Matrix<Scalar, -1, -1>& w,
                            const Eigen::Matrix<bool, -1, -1>& mask, const Eigen::Matrix<Scalar, -1, -1>* dense_grad,
                            const std::string& name) {
  const std::string of = name.empty() ? std::string() : " of '" + name + "'";
  if (!(fraction >= 0.0 && fraction <= 1.0))
    DEEPSTRUCT_THROW(value_error, std::string(where) + ": expected " + fraction_name + " in [0, 1], found " + detail::number_str(fraction) + of);
  if (mask.rows() != w.rows() || mask.cols() != w.cols())
    DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected a mask of the weight's shape " + shape_str(w.rows(), w.cols()) + of +
                                      ", found " + shape_str(mask.rows(), mask.cols()));
  if (dense_grad != nullptr && (dense_grad->rows() != w.rows() || dense_grad->cols() != w.cols()))
    DEEPSTRUCT_THROW(shape_error, std::string(where) + ": expected a dense gradient of the weight's shape " + shape_str(w.rows(), w.cols()) +
                                      of + ", found " + shape_str(dense_grad->rows(), dense_grad->cols()));
}

}  // namespace detail

/// RigL's update of one masked weight (sparse_training.json's definition): n_drop = floor(frac *
/// nnz); keep the nnz - n_drop active weights of largest |w|; grow the n_drop positions of largest
/// |dense gradient| among all positions not kept (a just-dropped one may come back).
/// Throws value_error for a fraction outside [0, 1] (or NaN), for a NaN active weight or a NaN
/// dense gradient at a position not kept (a growth candidate: NaN has no rank); shape_error for a
/// mask or gradient of another shape than w. `name` (the weight's state_dict name, if given) goes
/// into the messages.
template <typename Scalar>
MaskChange rigl_change(const Eigen::Matrix<Scalar, -1, -1>& w, const Eigen::Matrix<bool, -1, -1>& mask,
                       const Eigen::Matrix<Scalar, -1, -1>& dense_grad, double fraction, const std::string& name = {}) {
  detail::check_update_arguments("rigl_change", "a drop fraction", fraction, w, mask, &dense_grad, name);
  MaskChange c;
  const Eigen::Index n = mask.size();
  std::vector<Eigen::Index> active;
  std::vector<Scalar> magnitude;
  for (Eigen::Index p = 0; p < n; ++p)
    if (mask.data()[p]) {
      if (std::isnan(w.data()[p]))
        DEEPSTRUCT_THROW(value_error, "rigl_change: expected active weights that are not NaN, found NaN at " +
                                          detail::position_str(p, w.rows(), name));
      active.push_back(p);
      magnitude.push_back(std::abs(w.data()[p]));
    }
  c.n_drop = static_cast<Eigen::Index>(std::floor(fraction * double(active.size())));
  const std::vector<Eigen::Index> keep = detail::largest(active, magnitude, active.size() - static_cast<std::size_t>(c.n_drop), w.rows(), w.cols());
  // Growth candidates: every position not kept (inactive ones and the just-dropped).
  std::vector<Eigen::Index> candidates;
  std::vector<Scalar> gradient;
  candidates.reserve(static_cast<std::size_t>(n) - keep.size());
  gradient.reserve(static_cast<std::size_t>(n) - keep.size());
  std::size_t next_kept = 0;
  for (Eigen::Index p = 0; p < n; ++p) {
    if (next_kept < keep.size() && keep[next_kept] == p) {
      ++next_kept;
      continue;
    }
    if (std::isnan(dense_grad.data()[p]))
      DEEPSTRUCT_THROW(value_error, "rigl_change: expected a dense gradient that is not NaN at the growth candidates, found NaN at " +
                                        detail::position_str(p, w.rows(), name));
    candidates.push_back(p);
    gradient.push_back(std::abs(dense_grad.data()[p]));
  }
  std::set_difference(active.begin(), active.end(), keep.begin(), keep.end(), std::back_inserter(c.dropped));
  if (c.n_drop == 0) return c;
  c.grown = detail::largest(candidates, gradient, static_cast<std::size_t>(c.n_drop), w.rows(), w.cols());
  return c;
}

/// SET's removal step of one masked weight: floor(zeta * #positive active) positive weights
/// nearest zero and floor(zeta * #negative active) negative ones (ties by row-major index).
/// Throws value_error for zeta outside [0, 1] (or NaN), shape_error for a mask of another shape
/// than w.
template <typename Scalar>
std::vector<Eigen::Index> set_removal(const Eigen::Matrix<Scalar, -1, -1>& w, const Eigen::Matrix<bool, -1, -1>& mask, double zeta) {
  detail::check_update_arguments<Scalar>("set_removal", "zeta", zeta, w, mask, nullptr, {});
  std::vector<Eigen::Index> pos, neg;
  for (Eigen::Index p = 0; p < mask.size(); ++p)
    if (mask.data()[p]) {
      if (w.data()[p] > Scalar(0)) pos.push_back(p);
      else if (w.data()[p] < Scalar(0)) neg.push_back(p);
    }
  const auto n_pos = static_cast<std::size_t>(std::floor(zeta * double(pos.size())));
  const auto n_neg = static_cast<std::size_t>(std::floor(zeta * double(neg.size())));
  std::vector<Scalar> pos_score, neg_score;  // nearest zero first: -w for positives, w for negatives
  for (const Eigen::Index p : pos) pos_score.push_back(-w.data()[p]);
  for (const Eigen::Index p : neg) neg_score.push_back(w.data()[p]);
  std::vector<Eigen::Index> out = detail::largest(pos, pos_score, n_pos, w.rows(), w.cols());
  const auto neg_out = detail::largest(neg, neg_score, n_neg, w.rows(), w.cols());
  out.insert(out.end(), neg_out.begin(), neg_out.end());
  std::sort(out.begin(), out.end());
  return out;
}

// ---- the training-loop side ---------------------------------------------------------------------

struct MaskUpdateOptions {
  double drop_fraction = 0.3;                 ///< RigL's alpha / SET's zeta
  DropSchedule schedule = DropSchedule::cosine;
  double schedule_power = 3.0;                ///< exponential schedule only
  long update_every = 100;                    ///< Delta-T: steps between updates
  long start = 0;                             ///< no update before this step
  long end = 0;                               ///< T_end: no update from this step on (0: none for SET; RigL needs it)
  std::uint64_t seed = 0;                     ///< SET's random regrowth
};

/// What one update did to one masked weight.
struct LayerUpdate {
  std::string name;  ///< state_dict name: "<layer>.<weight>"
  Eigen::Index nnz = 0, numel = 0;
  Eigen::Index dropped = 0, grown = 0, regrown = 0;  ///< regrown: dropped and grown back in the same update
};

/// One mask update: when, how much, and what happened to every masked weight.
struct UpdateRecord {
  long step = 0;
  double drop_fraction = 0.0;
  std::vector<LayerUpdate> layers;
  /// Extra fields a logger adds (name, value), e.g. the structure's dead neurons.
  std::vector<std::pair<std::string, double>> structure;
};

namespace detail {

/// s as a JSON string: quoted, with '"', '\\' and the control characters escaped (a name of a
/// user's own structure field may hold any of them).
inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace detail

/// The record as one line of JSON: {"step":..,"drop_fraction":..,"layers":[{"name":..,"nnz":..,
/// "numel":..,"density":..,"dropped":..,"grown":..,"regrown":..}, ...], <structure fields>}.
/// Names are JSON strings whatever they hold (quotes, backslashes and control characters escaped).
inline std::string to_json_line(const UpdateRecord& r) {
  std::ostringstream out;
  out.imbue(std::locale::classic());  // JSON, whatever the program's locale
  out << std::setprecision(17) << "{\"step\":" << r.step << ",\"drop_fraction\":" << r.drop_fraction << ",\"layers\":[";
  for (std::size_t i = 0; i < r.layers.size(); ++i) {
    const auto& l = r.layers[i];
    out << (i ? "," : "") << "{\"name\":" << detail::json_string(l.name) << ",\"nnz\":" << l.nnz << ",\"numel\":" << l.numel
        << ",\"density\":" << (l.numel ? double(l.nnz) / double(l.numel) : 0.0) << ",\"dropped\":" << l.dropped << ",\"grown\":" << l.grown
        << ",\"regrown\":" << l.regrown << "}";
  }
  out << "]";
  for (const auto& [name, value] : r.structure) {
    out << "," << detail::json_string(name) << ":";
    if (std::isfinite(value)) out << value;
    else out << "null";
  }
  out << "}";
  return out.str();
}

namespace detail {

/// What SET and RigL share: the optimizer they wrap, the selected masked weights, the step
/// count, the records.
template <typename Optimizer, typename Model, typename Select>
class MaskUpdaterBase {
 public:
  using Scalar = typename Model::Scalar;

  /// Called after every update with its record (e.g. a structure logger, a JSON-lines file).
  std::function<void(UpdateRecord&)> on_update;

  const MaskUpdateOptions& options() const { return options_; }
  /// Optimizer steps taken (update steps included).
  long steps() const { return t_; }
  const std::vector<UpdateRecord>& history() const { return history_; }
  Optimizer& optimizer() { return optimizer_; }
  /// True if step t updates the masks.
  bool is_update_step(long t) const {
    return options_.update_every > 0 && t % options_.update_every == 0 && t >= options_.start && (options_.end <= 0 || t < options_.end);
  }

 protected:
  MaskUpdaterBase(Model& model, Optimizer& optimizer, const MaskUpdateOptions& options, const Select& select, const char* name)
      : model_(model), optimizer_(optimizer), options_(options), select_(select) {
    if (!(options.drop_fraction >= 0.0 && options.drop_fraction <= 1.0))
      DEEPSTRUCT_THROW(value_error, std::string(name) + ": expected a drop fraction in [0, 1], found " + detail::number_str(options.drop_fraction));
    if (options.update_every < 1)
      DEEPSTRUCT_THROW(value_error, std::string(name) + ": expected update_every >= 1, found " + std::to_string(options.update_every));
  }

  /// The record's per-weight entry of a change (name: the weight's state_dict name).
  LayerUpdate entry(const MaskedWeightRef<Scalar>& w, const std::string& name, const MaskChange& c) const {
    LayerUpdate u;
    u.name = name;
    u.nnz = w.layer->nnz(w.k);
    u.numel = w.layer->numel(w.k);
    u.dropped = static_cast<Eigen::Index>(c.dropped.size());
    u.grown = static_cast<Eigen::Index>(c.grown.size());
    std::vector<Eigen::Index> both;
    std::set_intersection(c.dropped.begin(), c.dropped.end(), c.grown.begin(), c.grown.end(), std::back_inserter(both));
    u.regrown = static_cast<Eigen::Index>(both.size());
    return u;
  }

  /// Applies a change: the mask (incrementally), grown weights to 0, their optimizer state reset.
  void apply(const MaskedWeightRef<Scalar>& w, const MaskChange& c) {
    w.layer->change_mask(w.k, c.dropped, c.grown);
    if (c.grown.empty()) return;
    w.layer->update_weight(w.k, [&](auto& value) {
      for (const Eigen::Index p : c.grown) value.data()[p] = Scalar(0);
    });
    reset_optimizer_state(w.layer->weight(w.k).data(), c.grown);
  }

  /// One update at step t: change(w, fraction, name) -> MaskChange for every selected masked
  /// weight (name: its state_dict name), all computed from the model as it is before the update,
  /// then applied; then the step count is t and the record goes to on_update and the history. A
  /// change that throws (a NaN weight, no dense gradient) leaves the masks, the weights and the
  /// step count as they were. A weight without an inactive position (nnz == numel, e.g. a layer
  /// the allocation made dense) is skipped: there is nothing to rewire, and every weight dropped
  /// would be grown straight back at 0.
  template <typename Change>
  void update(long t, Change&& change) {
    UpdateRecord r;
    r.step = t;
    r.drop_fraction = drop_fraction(options_.schedule, options_.drop_fraction, t, options_.end, options_.schedule_power);
    const auto names = layer_names();
    const auto layers = model_.maskable_layers();
    const auto selected = weights();
    std::vector<std::string> weight_names;
    std::vector<MaskChange> changes;
    for (const auto& w : selected) {
      const auto li = static_cast<std::size_t>(std::find(layers.begin(), layers.end(), w.layer) - layers.begin());
      weight_names.push_back(names[li] + "." + w.layer->weight_name(w.k));
      if (w.layer->nnz(w.k) == w.layer->numel(w.k)) changes.emplace_back();
      else changes.push_back(change(w, r.drop_fraction, weight_names.back()));
    }
    t_ = t;
    for (std::size_t i = 0; i < selected.size(); ++i) {
      apply(selected[i], changes[i]);
      r.layers.push_back(entry(selected[i], weight_names[i], changes[i]));
    }
    if (on_update) on_update(r);
    history_.push_back(std::move(r));
  }

  std::vector<std::string> layer_names() const { return model_.maskable_layer_names(); }
  std::vector<MaskedWeightRef<Scalar>> weights() { return masked_weights(model_, select_); }

  Model& model_;
  Optimizer& optimizer_;
  MaskUpdateOptions options_;
  Select select_;
  long t_ = 0;
  std::vector<UpdateRecord> history_;

 private:
  template <typename O = Optimizer>
  auto reset_optimizer_state(const Scalar* value, const std::vector<Eigen::Index>& entries)
      -> decltype(std::declval<O&>().reset_state(value, entries), void()) {
    // Before the optimizer's first step there is no state to reset.
    if (optimizer_.num_states() != 0) optimizer_.reset_state(value, entries);
  }
  void reset_optimizer_state(...) {}  // an optimizer without state
};

}  // namespace detail

/// RigL (Evci et al. 2020) around an optimizer: every update_every steps between start and end,
/// for every selected masked weight, drop floor(alpha_t * nnz) active weights of smallest |w| and
/// grow as many positions of largest |dense gradient| among those not kept; grown weights start
/// at 0 and their optimizer state is reset. As in RigL's algorithm, an update step changes the
/// masks instead of taking the optimizer step. The dense gradient is computed only for the
/// backward before an update step (set_dense_gradient), the sparse kernels otherwise.
template <typename Optimizer, typename Model, typename Select = AllWeights>
class RigL : public detail::MaskUpdaterBase<Optimizer, Model, Select> {
  using Base = detail::MaskUpdaterBase<Optimizer, Model, Select>;

 public:
  using Scalar = typename Model::Scalar;

  /// Throws value_error for options.end <= 0 (RigL anneals to T_end: give it, e.g. 75% of the steps).
  RigL(Model& model, Optimizer& optimizer, const MaskUpdateOptions& options, const Select& select = Select{})
      : Base(model, optimizer, options, select, "RigL") {
    if (options.end <= 0)
      DEEPSTRUCT_THROW(value_error, "RigL: expected options.end (T_end, the last update step) > 0, found " + std::to_string(options.end));
    // Every selected layer must keep dense gradients: say so now (state_error), not at the first update.
    for (const auto& w : this->weights()) w.layer->set_dense_gradient(true);
    arm(1);
  }

  /// One training step's update: the optimizer's step, or on an update step the masks'.
  /// A step that throws (state_error: no dense gradient; value_error: a NaN weight or gradient)
  /// changes no mask, no weight and not the step count.
  template <typename M>
  void step(M& model) {
    const long t = this->t_ + 1;
    if (!this->is_update_step(t)) {
      this->optimizer_.step(model);
      this->t_ = t;
    } else {
      this->update(t, [](const MaskedWeightRef<Scalar>& w, double fraction, const std::string& name) {
        const auto* g = w.layer->dense_gradient(w.k);
        if (g == nullptr)
          DEEPSTRUCT_THROW(state_error, "RigL::step: expected the dense gradient of the backward before an update step, found none for '" +
                                            name + "' (was the model's zero_grad/forward/backward run between the steps?)");
        return rigl_change(w.layer->weight(w.k), w.layer->mask(w.k), *g, fraction, name);
      });
    }
    arm(t + 1);
  }

 private:
  /// Dense gradients on exactly for the backward before an update step.
  void arm(long next) {
    const bool on = this->is_update_step(next);
    for (const auto& w : this->weights()) w.layer->set_dense_gradient(on);
  }
};

/// SET (Mocanu et al. 2018) around an optimizer: the optimizer steps every step; every
/// update_every steps (an epoch's worth, say) from start (until end, if given), for every
/// selected masked weight, drop floor(zeta_t * #positive) positive active weights nearest zero and
/// the same share of the negative ones, and regrow as many at random inactive positions (a
/// just-dropped one may come back), with weight 0 and reset optimizer state. Deterministic from
/// options.seed.
template <typename Optimizer, typename Model, typename Select = AllWeights>
class SET : public detail::MaskUpdaterBase<Optimizer, Model, Select> {
  using Base = detail::MaskUpdaterBase<Optimizer, Model, Select>;

 public:
  using Scalar = typename Model::Scalar;

  SET(Model& model, Optimizer& optimizer, MaskUpdateOptions options, const Select& select = Select{})
      : Base(model, optimizer, with_constant_default(options), select, "SET"), gen_(options.seed) {}

  template <typename M>
  void step(M& model) {
    const long t = ++this->t_;
    this->optimizer_.step(model);
    if (!this->is_update_step(t)) return;
    this->update(t, [this](const MaskedWeightRef<Scalar>& w, double fraction, const std::string&) {
      MaskChange c;
      c.dropped = set_removal(w.layer->weight(w.k), w.layer->mask(w.k), fraction);
      c.n_drop = static_cast<Eigen::Index>(c.dropped.size());
      c.grown = random_inactive(w.layer->mask(w.k), w.layer->nnz(w.k), c.dropped, c.dropped.size());
      return c;
    });
  }

 private:
  static MaskUpdateOptions with_constant_default(MaskUpdateOptions o) {
    if (o.end <= 0 && o.schedule != DropSchedule::constant) o.schedule = DropSchedule::constant;  // nothing to anneal to
    return o;
  }
  /// `count` distinct positions, inactive once `dropped` is removed, drawn uniformly: by rejection
  /// while they are plenty (sparse masks), from the full list otherwise. O(count) expected.
  std::vector<Eigen::Index> random_inactive(const Eigen::Matrix<bool, -1, -1>& mask, Eigen::Index nnz, const std::vector<Eigen::Index>& dropped,
                                            std::size_t count) {
    const auto n = static_cast<std::uint64_t>(mask.size());
    auto inactive = [&](Eigen::Index p) { return !mask.data()[p] || std::binary_search(dropped.begin(), dropped.end(), p); };
    const std::uint64_t free = n - static_cast<std::uint64_t>(nnz) + dropped.size();
    std::vector<Eigen::Index> out;
    if (count == 0) return out;
    if (2 * count <= free && 2 * free >= n) {
      std::unordered_set<Eigen::Index> picked;
      while (out.size() < count) {
        const auto p = static_cast<Eigen::Index>(random::uniform_index(gen_, n));
        if (inactive(p) && picked.insert(p).second) out.push_back(p);
      }
    } else {
      std::vector<Eigen::Index> all;
      for (Eigen::Index p = 0; p < mask.size(); ++p)
        if (inactive(p)) all.push_back(p);
      count = std::min<std::size_t>(count, all.size());
      for (std::size_t j = 0; j < count; ++j) {
        const auto r = static_cast<std::size_t>(random::uniform_index(gen_, static_cast<std::uint64_t>(all.size() - j)));
        std::swap(all[j], all[j + r]);
        out.push_back(all[j]);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  Generator gen_;
};

}  // namespace deepstruct
