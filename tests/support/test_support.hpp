// Helpers shared by the tests: Catch2 v2/v3, fixture loading, matrix comparison.
#pragma once

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>  // Catch2 v3
using Catch::Approx;
#else
#include <catch2/catch.hpp>  // Catch2 v2
#endif

#include <Eigen/Core>
#include <deepstruct/dan_description.hpp>
#include <deepstruct/random.hpp>
#include <deepstruct/state_dict.hpp>
#include <deepstruct/threads.hpp>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <cstdlib>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace test {

/// Whether deepstruct may use 2 threads here, so that a 1-against-2-threads test can tell
/// anything (with one thread - no OpenMP, or OMP_NUM_THREADS=1 - both runs are the same run);
/// otherwise a WARN naming the build that checks it (`build`, e.g. "unit-optim-openmp"), and false.
inline bool two_threads_available(const char* build) {
  if (deepstruct::num_threads() >= 2) return true;
  WARN(std::string("one thread: the check needs deepstruct::num_threads() >= 2 (") + build + ")");
  return false;
}

/// A rows x cols matrix of standard normal entries drawn from gen.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> random_matrix(Eigen::Index rows, Eigen::Index cols, deepstruct::Generator& gen) {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<Scalar>(deepstruct::random::normal(gen));
  return m;
}

/// A string matcher "contains this substring" under either Catch2 (v3 renamed it).
inline auto contains(const std::string& part) {
#if __has_include(<catch2/catch_all.hpp>)
  return Catch::Matchers::ContainsSubstring(part);
#else
  return Catch::Contains(part);
#endif
}

inline std::string data_path(const std::string& name) { return std::string(DEEPSTRUCT_TEST_DATA_DIR) + "/" + name; }

inline nlohmann::json load_json(const std::string& name) {
  std::ifstream in(data_path(name));
  if (!in) throw std::runtime_error("cannot open fixture " + data_path(name));
  return nlohmann::json::parse(in);
}

/// A nested list [rows][cols] as a matrix of the same orientation.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> matrix(const nlohmann::json& rows) {
  const auto r = static_cast<Eigen::Index>(rows.size());
  const auto c = r == 0 ? Eigen::Index{0} : static_cast<Eigen::Index>(rows[0].size());
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(r, c);
  for (Eigen::Index i = 0; i < r; ++i)
    for (Eigen::Index j = 0; j < c; ++j) m(i, j) = rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)].get<Scalar>();
  return m;
}

template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, 1> vector(const nlohmann::json& values) {
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> v(static_cast<Eigen::Index>(values.size()));
  for (Eigen::Index i = 0; i < v.size(); ++i) v[i] = values[static_cast<std::size_t>(i)].get<Scalar>();
  return v;
}

inline Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> mask(const nlohmann::json& rows) {
  const auto r = static_cast<Eigen::Index>(rows.size());
  const auto c = r == 0 ? Eigen::Index{0} : static_cast<Eigen::Index>(rows[0].size());
  Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> m(r, c);
  for (Eigen::Index i = 0; i < r; ++i)
    for (Eigen::Index j = 0; j < c; ++j) {
      const auto& v = rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
      m(i, j) = v.is_boolean() ? v.get<bool>() : v.get<double>() != 0.0;  // float masks (deepstruct's DAN)
    }
  return m;
}

/// A nested list of any depth in C order: its values in that order and its shape.
template <typename Scalar>
void flatten_into(const nlohmann::json& v, std::vector<Scalar>& values, std::vector<Eigen::Index>& dims, std::size_t depth) {
  if (!v.is_array()) {
    values.push_back(v.is_boolean() ? Scalar(v.get<bool>()) : v.get<Scalar>());
    return;
  }
  if (dims.size() == depth) dims.push_back(static_cast<Eigen::Index>(v.size()));
  for (const auto& e : v) flatten_into(e, values, dims, depth + 1);
}

/// A tensor [d0][d1]...[dn] as the d0 x (d1 * ... * dn) matrix whose row i is tensor[i] in C
/// order (a convolution weight as MaskedConv2d keeps it); `dims` receives the shape.
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> flattened(const nlohmann::json& t, std::vector<Eigen::Index>& dims) {
  std::vector<Scalar> values;
  dims.clear();
  flatten_into(t, values, dims, 0);
  const Eigen::Index rows = dims.empty() ? 1 : dims[0], cols = rows == 0 ? 0 : static_cast<Eigen::Index>(values.size()) / rows;
  return Eigen::Map<Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(values.data(), rows, cols);
}

/// Images [batch][channel][row][col] as a (C * H * W) x batch matrix (one image per column).
template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> images(const nlohmann::json& t) {
  std::vector<Eigen::Index> dims;
  return flattened<Scalar>(t, dims).transpose();
}

/// The same for a mask tensor.
inline Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic> flattened_mask(const nlohmann::json& t) {
  std::vector<Eigen::Index> dims;
  return flattened<double>(t, dims).cast<bool>();
}

/// A state_dict given as JSON (PyTorch layout: nested lists; keys ending in "._mask" are masks,
/// bool or 0/1 numbers) as a StateDict.
template <typename Scalar>
deepstruct::StateDict<Scalar> state_dict(const nlohmann::json& sd) {
  deepstruct::StateDict<Scalar> out;
  for (auto it = sd.begin(); it != sd.end(); ++it) {
    const std::string& k = it.key();
    if (deepstruct::is_mask_key(k)) out.masks[k] = mask(it.value());
    else if (it.value().is_number()) out.counts[k] = it.value().get<std::int64_t>();
    else if (it.value()[0].is_array() && !it.value()[0].empty() && it.value()[0][0].is_array()) {
      std::vector<Eigen::Index> dims;
      out.matrices[k] = flattened<Scalar>(it.value(), dims);
      out.shapes[k] = dims;
    } else if (it.value()[0].is_array()) out.matrices[k] = matrix<Scalar>(it.value());
    else out.vectors[k] = vector<Scalar>(it.value());
  }
  return out;
}

/// The DanDescription of a masked_dan.json case, built from its edge list and layers
/// (independently of the graph side): masks follow the vertex order of each layer.
inline deepstruct::DanDescription dan_description(const nlohmann::json& c) {
  deepstruct::DanDescription d;
  const std::size_t L = c["layers"].size();
  std::vector<std::size_t> layer_of(c["num_nodes"].get<std::size_t>()), pos(layer_of.size());
  for (std::size_t t = 0; t < L; ++t) {
    std::vector<std::size_t> vs;
    for (const auto& v : c["layers"][std::to_string(t)]) vs.push_back(v.get<std::size_t>());
    for (std::size_t i = 0; i < vs.size(); ++i) {
      layer_of[vs[i]] = t;
      pos[vs[i]] = i;
    }
    d.layer_sizes.push_back(vs.size());
    d.layer_vertices.push_back(vs);
  }
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;
  auto empty = [&](std::size_t s, std::size_t t) {
    return Mask::Constant(static_cast<Eigen::Index>(d.layer_sizes[t]), static_cast<Eigen::Index>(d.layer_sizes[s]), false);
  };
  std::map<std::pair<std::size_t, std::size_t>, Mask> masks;
  for (std::size_t t = 1; t < L; ++t) masks.emplace(std::make_pair(t - 1, t), empty(t - 1, t));
  for (const auto& e : c["edges"]) {
    const std::size_t u = e[0].get<std::size_t>(), v = e[1].get<std::size_t>();
    auto it = masks.emplace(std::make_pair(layer_of[u], layer_of[v]), empty(layer_of[u], layer_of[v])).first;
    it->second(static_cast<Eigen::Index>(pos[v]), static_cast<Eigen::Index>(pos[u])) = true;
  }
  for (std::size_t t = 1; t < L; ++t)  // target ascending, then source ascending
    for (std::size_t s = 0; s < t; ++s) {
      const auto it = masks.find({s, t});
      if (it != masks.end()) d.connections.push_back({s, t, it->second});
    }
  return d;
}

/// True when DEEPSTRUCT_PYTHON runs and imports `modules` (e.g. "numpy"); warns otherwise.
inline bool python_with(const std::string& modules) {
  const std::string python = DEEPSTRUCT_PYTHON;
  if (!python.empty() && std::system((python + " -c 'import " + modules + "' 2>/dev/null").c_str()) == 0) return true;
  WARN("skipped: no Python with " << modules << " (" << (python.empty() ? "none found" : python) << ")");
  return false;
}

/// Largest |a - b| relative to max(1, |b|), elementwise; shapes must agree.
template <typename A, typename B>
double max_rel_diff(const Eigen::MatrixBase<A>& a, const Eigen::MatrixBase<B>& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  double worst = 0.0;
  for (Eigen::Index j = 0; j < a.cols(); ++j)
    for (Eigen::Index i = 0; i < a.rows(); ++i) {
      const double x = static_cast<double>(a(i, j)), y = static_cast<double>(b(i, j));
      worst = std::max(worst, std::abs(x - y) / std::max(1.0, std::abs(y)));
    }
  return worst;
}

/// A tolerance of `ulps_factor` machine epsilons of Scalar.
template <typename Scalar>
double tol(double factor = 100.0) {
  return factor * static_cast<double>(std::numeric_limits<Scalar>::epsilon());
}

/// Restores the thread setting (deepstruct's and Eigen's) at the end of a test that changes it.
struct RestoreThreads {
  int eigen = Eigen::nbThreads();
  RestoreThreads() = default;
  RestoreThreads(const RestoreThreads&) = delete;
  RestoreThreads& operator=(const RestoreThreads&) = delete;
  ~RestoreThreads() {
    deepstruct::detail::thread_setting().store(0);
    Eigen::setNbThreads(eigen);
  }
};

}  // namespace test
