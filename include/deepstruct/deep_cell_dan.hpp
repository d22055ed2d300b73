// SPDX-License-Identifier: MIT
#pragma once

/// \file deep_cell_dan.hpp
/// DeepCellDAN<Scalar>: deepstruct's network of cells on a directed acyclic graph (RandWire-like
/// networks). Every vertex of the graph is a cell - a small image network such as conv -> ReLU ->
/// BatchNorm - and the edges say which cells feed which:
///
/// - an input node (in-degree 0) sees the image;
/// - every other node sees its predecessors' outputs, each zero-padded at the bottom and right to
///   the largest height and width among them and concatenated along channels in predecessor
///   order (the order of its in-edges in CellGraph::edges);
/// - the output nodes (out-degree 0), ascending, are concatenated the same way, then a 1x1
///   convolution to 100 channels (`_last_convolution`), BatchNorm2d (`_last_batch_norm`), adaptive
///   average pooling to 1x1 and a linear layer to the classes (`_last_fc`).
///
/// Cells come from a callable make_cell(const CellInfo&, Generator&) that returns any type
/// following the Cell concept below; deepstruct fixes one output channel per cell, here
/// options.width channels (default 1), so a cell's input has width * in-degree channels. Built
/// in: ReductionCell (deepstruct's test cell: Conv 5x5 stride 2 padding 2 -> ReLU -> BatchNorm2d)
/// and KeepSizeCell (ReLU -> Conv 3x3 padding 1 -> BatchNorm2d), with reduction_cells() and
/// keep_size_cells().
///
/// The Cell concept (C a cell type, Matrix its Eigen matrix, x images of shape `in`):
///
///   ImageShape output_shape(const ImageShape& in) const;       // options.width channels
///   void forward(const Eigen::Ref<const Matrix>& x, const ImageShape& in, Matrix& y, bool training);
///                                                             // keeps what backward needs, never x
///   void backward(const Eigen::Ref<const Matrix>& x, const ImageShape& in,
///                 const Eigen::Ref<const Matrix>& grad_y, Matrix* grad_x);   // adds parameter
///                                                             // gradients; dL/dx if asked
///   void predict(const Eigen::Ref<const Matrix>& x, const ImageShape& in, Matrix& y);
///                                                             // evaluation mode; changes nothing
///                                                             // backward uses
///   template <typename Fn> void visit_modules(Fn&& fn);       // fn(Module<Scalar>&, const char* name)
///                                                             // in state_dict order
///
/// Parameters, state_dict keys (`_nodes.<i>.<module name>.<key>`), masks, pruning, optimizers and
/// files come from the modules a cell visits, through the model contract (model.hpp).

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deepstruct/batch_norm2d.hpp"
#include "deepstruct/detail/alias.hpp"
#include "deepstruct/detail/input_probe.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/image.hpp"
#include "deepstruct/masked_conv2d.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/model.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/pooling.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

/// The DAG of a DeepCellDAN without Boost: vertices 0..num_nodes-1 and edges (u, v). A node's
/// inputs are concatenated in the order its in-edges appear in `edges` (cell_graph(dag) on the
/// graph side lists them in the Dag's in-edge order, which is networkx's for a graph built from
/// the same edge list).
struct CellGraph {
  std::size_t num_nodes = 0;
  std::vector<std::pair<std::size_t, std::size_t>> edges;
};

/// What make_cell learns about the cell it makes (deepstruct's constructor arguments, and the
/// channels this library adds).
struct CellInfo {
  std::size_t node = 0;        ///< the vertex
  bool is_input = false;       ///< in-degree 0: the cell sees the image
  bool is_output = false;      ///< out-degree 0: the cell feeds the last convolution
  std::size_t in_degree = 0;
  std::size_t out_degree = 0;
  std::size_t layer = 0;       ///< longest path from an input node (deepstruct's layer index)
  Eigen::Index input_channel_size = 1;  ///< the image's channels (deepstruct's input_channel_size)
  Eigen::Index in_channels = 1;         ///< the channels this cell receives: input_channel_size, or width * in_degree
  Eigen::Index width = 1;               ///< the channels every cell emits
};

namespace detail {

/// The cell graph's derived structure: predecessors in edge order, successors, input and output
/// nodes ascending, a topological order and the layers. Throws value_error for an empty graph,
/// an endpoint out of range, a self loop, a repeated edge or a cycle.
struct CellGraphInfo {
  std::vector<std::vector<std::size_t>> preds, succs;
  std::vector<std::size_t> inputs, outputs, order, layer;
};

inline CellGraphInfo analyze_cell_graph(const CellGraph& g) {
  const std::size_t n = g.num_nodes;
  if (n == 0) DEEPSTRUCT_THROW(value_error, "DeepCellDAN: expected a cell graph with at least one node, found none");
  CellGraphInfo info;
  info.preds.resize(n);
  info.succs.resize(n);
  for (const auto& e : g.edges) {
    if (e.first >= n || e.second >= n)
      DEEPSTRUCT_THROW(value_error, "DeepCellDAN: expected edges between nodes 0.." + std::to_string(n - 1) + ", found (" +
                                        std::to_string(e.first) + ", " + std::to_string(e.second) + ")");
    if (e.first == e.second) DEEPSTRUCT_THROW(value_error, "DeepCellDAN: expected no self loops, found one at node " + std::to_string(e.first));
    if (std::find(info.succs[e.first].begin(), info.succs[e.first].end(), e.second) != info.succs[e.first].end())
      DEEPSTRUCT_THROW(value_error, "DeepCellDAN: expected each edge once, found (" + std::to_string(e.first) + ", " +
                                        std::to_string(e.second) + ") twice");
    info.preds[e.second].push_back(e.first);
    info.succs[e.first].push_back(e.second);
  }
  std::vector<std::size_t> remaining(n);
  for (std::size_t v = 0; v < n; ++v) {
    remaining[v] = info.preds[v].size();
    if (info.preds[v].empty()) info.inputs.push_back(v);
    if (info.succs[v].empty()) info.outputs.push_back(v);
  }
  info.layer.assign(n, 0);
  std::vector<std::size_t> ready = info.inputs;  // Kahn's algorithm, smallest ready node first
  std::make_heap(ready.begin(), ready.end(), std::greater<std::size_t>());
  while (!ready.empty()) {
    std::pop_heap(ready.begin(), ready.end(), std::greater<std::size_t>());
    const std::size_t u = ready.back();
    ready.pop_back();
    info.order.push_back(u);
    for (const std::size_t v : info.succs[u]) {
      info.layer[v] = std::max(info.layer[v], info.layer[u] + 1);
      if (--remaining[v] == 0) {
        ready.push_back(v);
        std::push_heap(ready.begin(), ready.end(), std::greater<std::size_t>());
      }
    }
  }
  if (info.order.size() != n) {
    std::size_t on_cycle = 0;
    while (remaining[on_cycle] == 0) ++on_cycle;
    DEEPSTRUCT_THROW(value_error, "DeepCellDAN: expected a directed acyclic graph, found a cycle through node " + std::to_string(on_cycle));
  }
  return info;
}

/// The shape concat_padded gives images of these shapes.
inline ImageShape concat_shape(const std::vector<ImageShape>& shapes) {
  ImageShape s{0, 0, 0};
  for (const ImageShape& p : shapes) {
    s.channels += p.channels;
    s.height = std::max(s.height, p.height);
    s.width = std::max(s.width, p.width);
  }
  return s;
}

/// Concatenates images along channels, each zero-padded at the bottom and right to the largest
/// height and width among them (deepstruct's DeepCellDAN).
template <typename Scalar>
ImageShape concat_padded(const std::vector<const Eigen::Matrix<Scalar, -1, -1>*>& parts, const std::vector<ImageShape>& shapes,
                         Eigen::Matrix<Scalar, -1, -1>& out) {
  const ImageShape s = concat_shape(shapes);
  const Eigen::Index batch = parts.front()->cols();
  bool padded = false;
  for (const ImageShape& p : shapes) padded = padded || p.height != s.height || p.width != s.width;
  if (padded) out.setZero(s.size(), batch);
  else out.resize(s.size(), batch);
  Eigen::Index c0 = 0;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    const ImageShape& p = shapes[k];
    if (p.height == s.height && p.width == s.width) {  // no padding: one block per image
      out.middleRows(c0 * s.plane(), p.size()) = *parts[k];
    } else {
      for (Eigen::Index b = 0; b < batch; ++b)
        for (Eigen::Index c = 0; c < p.channels; ++c)
          for (Eigen::Index h = 0; h < p.height; ++h)
            out.col(b).segment(((c0 + c) * s.height + h) * s.width, p.width) = parts[k]->col(b).segment((c * p.height + h) * p.width, p.width);
    }
    c0 += p.channels;
  }
  return s;
}

/// The transpose of concat_padded: adds to *grads[k] (shape shapes[k]) its cropped channels of g.
template <typename Scalar>
void split_cropped(const Eigen::Matrix<Scalar, -1, -1>& g, const ImageShape& s, const std::vector<ImageShape>& shapes,
                   const std::vector<Eigen::Matrix<Scalar, -1, -1>*>& grads) {
  Eigen::Index c0 = 0;
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const ImageShape& p = shapes[k];
    auto& dst = *grads[k];
    if (p.height == s.height && p.width == s.width) {
      dst += g.middleRows(c0 * s.plane(), p.size());
      c0 += p.channels;
      continue;
    }
    for (Eigen::Index b = 0; b < g.cols(); ++b)
      for (Eigen::Index c = 0; c < p.channels; ++c)
        for (Eigen::Index h = 0; h < p.height; ++h)
          dst.col(b).segment((c * p.height + h) * p.width, p.width) += g.col(b).segment(((c0 + c) * s.height + h) * s.width, p.width);
    c0 += p.channels;
  }
}

}  // namespace detail

/// A cell of any type behind one interface (a value: copies clone the cell).
template <typename Scalar>
class AnyCell {
 public:
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;
  using ModuleVisitor = std::function<void(Module<Scalar>&, const char*)>;

  template <typename Cell, typename = std::enable_if_t<!std::is_same<std::decay_t<Cell>, AnyCell>::value>>
  AnyCell(Cell&& cell) : self_(std::make_unique<Model<std::decay_t<Cell>>>(std::forward<Cell>(cell))) {}  // NOLINT: implicit on purpose
  AnyCell(const AnyCell& o) : self_(o.self_ ? o.self_->clone() : nullptr) {}
  AnyCell(AnyCell&&) noexcept = default;
  AnyCell& operator=(const AnyCell& o) {
    if (this != &o) self_ = o.self_ ? o.self_->clone() : nullptr;
    return *this;
  }
  AnyCell& operator=(AnyCell&&) noexcept = default;

  ImageShape output_shape(const ImageShape& in) const { return self_->output_shape(in); }
  void forward(const ConstMatrixRef& x, const ImageShape& in, Matrix& y, bool training) { self_->forward(x, in, y, training); }
  void backward(const ConstMatrixRef& x, const ImageShape& in, const ConstMatrixRef& grad_y, Matrix* grad_x) {
    self_->backward(x, in, grad_y, grad_x);
  }
  void predict(const ConstMatrixRef& x, const ImageShape& in, Matrix& y) { self_->predict(x, in, y); }
  void visit_modules(const ModuleVisitor& fn) { self_->visit_modules(fn); }
  /// The cell as its own type, or nullptr for another type.
  template <typename Cell>
  Cell* as() {
    auto* m = dynamic_cast<Model<Cell>*>(self_.get());
    return m ? &m->cell : nullptr;
  }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual std::unique_ptr<Concept> clone() const = 0;
    virtual ImageShape output_shape(const ImageShape& in) const = 0;
    virtual void forward(const ConstMatrixRef& x, const ImageShape& in, Matrix& y, bool training) = 0;
    virtual void backward(const ConstMatrixRef& x, const ImageShape& in, const ConstMatrixRef& grad_y, Matrix* grad_x) = 0;
    virtual void predict(const ConstMatrixRef& x, const ImageShape& in, Matrix& y) = 0;
    virtual void visit_modules(const ModuleVisitor& fn) = 0;
  };
  template <typename Cell>
  struct Model final : Concept {
    template <typename C>
    explicit Model(C&& c) : cell(std::forward<C>(c)) {}
    std::unique_ptr<Concept> clone() const override { return std::make_unique<Model>(cell); }
    ImageShape output_shape(const ImageShape& in) const override { return cell.output_shape(in); }
    void forward(const ConstMatrixRef& x, const ImageShape& in, Matrix& y, bool training) override { cell.forward(x, in, y, training); }
    void backward(const ConstMatrixRef& x, const ImageShape& in, const ConstMatrixRef& grad_y, Matrix* grad_x) override {
      cell.backward(x, in, grad_y, grad_x);
    }
    void predict(const ConstMatrixRef& x, const ImageShape& in, Matrix& y) override { cell.predict(x, in, y); }
    void visit_modules(const ModuleVisitor& fn) override { cell.visit_modules(fn); }
    Cell cell;
  };
  std::unique_ptr<Concept> self_;
};

/// deepstruct's test cell: Conv2d(in, out, 5, stride 2, padding 2) -> ReLU -> BatchNorm2d(out);
/// modules "conv_reduce" and "batch_norm". Halves the height and width (rounding up).
template <typename Scalar_>
class ReductionCell {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;

  ReductionCell(Eigen::Index in_channels, Eigen::Index out_channels, Generator& gen)
      : conv_reduce(in_channels, out_channels, Conv2dOptions::square(5, 2, 2), gen), batch_norm(out_channels) {}

  ImageShape output_shape(const ImageShape& in) const { return conv_reduce.output_shape(in); }
  void forward(const ConstMatrixRef& x, const ImageShape& in, Matrix& y, bool training) {
    conv_reduce.forward(x, in, pre_);
    relu_ = pre_.cwiseMax(Scalar(0));
    batch_norm.forward(relu_, output_shape(in), y, training);
  }
  void backward(const ConstMatrixRef& x, const ImageShape& in, const ConstMatrixRef& grad_y, Matrix* grad_x) {
    batch_norm.backward(relu_, output_shape(in), grad_y, &g_);
    g_ = (pre_.array() <= Scalar(0)).select(Scalar(0), g_);
    conv_reduce.backward(x, in, g_, grad_x);
  }
  void predict(const ConstMatrixRef& x, const ImageShape& in, Matrix& y) {
    // Straight into y, then ReLU and batch norm in place: no temporary. Unless y is x's memory
    // (predict(m, in, m)), which the convolution refuses: then through a temporary.
    Matrix buffer;
    Matrix& reduced = detail::shares_memory(x, y) ? buffer : y;
    conv_reduce.forward(x, in, reduced);
    if (&reduced == &buffer) y = std::move(buffer);
    y = y.cwiseMax(Scalar(0));
    batch_norm.predict(y, output_shape(in), y);
  }
  template <typename Fn>
  void visit_modules(Fn&& fn) {
    fn(conv_reduce, "conv_reduce");
    fn(batch_norm, "batch_norm");
  }

  MaskedConv2d<Scalar> conv_reduce;
  BatchNorm2d<Scalar> batch_norm;

 private:
  Matrix pre_, relu_, g_;
};

/// A cell that keeps the size: ReLU -> Conv2d(in, out, 3, padding 1) -> BatchNorm2d(out) (the
/// ReLU-conv-BN unit of RandWire's nodes); modules "conv" and "batch_norm".
template <typename Scalar_>
class KeepSizeCell {
 public:
  using Scalar = Scalar_;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;

  KeepSizeCell(Eigen::Index in_channels, Eigen::Index out_channels, Generator& gen)
      : conv(in_channels, out_channels, Conv2dOptions::square(3, 1, 1), gen), batch_norm(out_channels) {}

  ImageShape output_shape(const ImageShape& in) const { return conv.output_shape(in); }
  void forward(const ConstMatrixRef& x, const ImageShape& in, Matrix& y, bool training) {
    relu_ = x.cwiseMax(Scalar(0));
    conv.forward(relu_, in, pre_);
    batch_norm.forward(pre_, output_shape(in), y, training);
  }
  void backward(const ConstMatrixRef& x, const ImageShape& in, const ConstMatrixRef& grad_y, Matrix* grad_x) {
    batch_norm.backward(pre_, output_shape(in), grad_y, &g_);
    if (grad_x == nullptr) {
      conv.backward(relu_, in, g_, nullptr);
      return;
    }
    conv.backward(relu_, in, g_, grad_x);
    *grad_x = (x.array() <= Scalar(0)).select(Scalar(0), *grad_x);
  }
  void predict(const ConstMatrixRef& x, const ImageShape& in, Matrix& y) {
    // The ReLU into a, the convolution into y, the batch norm in place: one temporary, not two
    // (each the images of a whole evaluation batch).
    Matrix a = x.cwiseMax(Scalar(0));
    conv.forward(a, in, y);
    batch_norm.predict(y, output_shape(in), y);
  }
  template <typename Fn>
  void visit_modules(Fn&& fn) {
    fn(conv, "conv");
    fn(batch_norm, "batch_norm");
  }

  MaskedConv2d<Scalar> conv;
  BatchNorm2d<Scalar> batch_norm;

 private:
  Matrix relu_, pre_, g_;
};

/// make_cell for deepstruct's test cell: ReductionCell(info.in_channels, info.width).
template <typename Scalar>
auto reduction_cells() {
  return [](const CellInfo& info, Generator& gen) { return ReductionCell<Scalar>(info.in_channels, info.width, gen); };
}
/// make_cell for KeepSizeCell(info.in_channels, info.width).
template <typename Scalar>
auto keep_size_cells() {
  return [](const CellInfo& info, Generator& gen) { return KeepSizeCell<Scalar>(info.in_channels, info.width, gen); };
}

struct DeepCellDANOptions {
  Eigen::Index width = 1;            ///< channels every cell emits (deepstruct: 1)
  Eigen::Index last_channels = 100;  ///< channels of the last 1x1 convolution (deepstruct: 100)
  std::uint64_t seed = 0;            ///< initialisation: the cells in node order, then the last layers
};

template <typename Scalar_>
class DeepCellDAN : public ModelBase<DeepCellDAN<Scalar_>, Scalar_> {
  using Base = ModelBase<DeepCellDAN<Scalar_>, Scalar_>;

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;

  /// A network of cells on `graph` for images of shape `input`, classifying into num_classes.
  /// make_cell(info, gen) is called for every node in order and returns a cell (any type of the
  /// Cell concept, or AnyCell). Throws value_error for a bad graph, shape_error for a bad input
  /// shape or width, or when a cell does not emit options.width channels for the input it gets.
  template <typename MakeCell>
  DeepCellDAN(Index num_classes, const ImageShape& input, const CellGraph& graph, MakeCell&& make_cell,
              const DeepCellDANOptions& options = {})
      : graph_(graph), info_(detail::analyze_cell_graph(graph)), input_(input), options_(options),
        last_conv_(init_check(num_classes, input, options, info_.outputs.size()), options.last_channels, Conv2dOptions::square(1), 0),
        last_bn_(options.last_channels), last_fc_(options.last_channels, num_classes, true, 0) {
    Generator gen(options.seed);
    for (std::size_t v = 0; v < graph.num_nodes; ++v) cells_.emplace_back(make_cell(cell_info(v), gen));
    last_conv_.reset_parameters(gen, false);
    last_fc_.reset_parameters(gen, false);
    last_fc_.set_optional_mask(true);  // torch.nn.Linear's keys
    (void)shapes_for(input_);          // every cell emits width channels for the shapes it sees
  }

  static const char* model_name() { return "DeepCellDAN"; }

  /// The modules in deepstruct's state_dict order: _nodes.<i>.<cell modules>, _last_convolution,
  /// _last_batch_norm, _last_fc.
  template <typename Fn>
  void visit_modules(Fn&& fn) {
    for (std::size_t v = 0; v < cells_.size(); ++v)
      cells_[v].visit_modules([&](Module<Scalar>& m, const char* name) {
        const std::string full = "_nodes." + std::to_string(v) + "." + name;
        fn(m, full.c_str(), Base::no_index);
      });
    fn(last_conv_, "_last_convolution", Base::no_index);
    fn(last_bn_, "_last_batch_norm", Base::no_index);
    fn(last_fc_, "_last_fc", Base::no_index);
  }

  // ---- structure ----------------------------------------------------------------------------

  std::size_t num_nodes() const { return cells_.size(); }
  const CellGraph& graph() const { return graph_; }
  const std::vector<std::size_t>& input_nodes() const { return info_.inputs; }
  const std::vector<std::size_t>& output_nodes() const { return info_.outputs; }
  /// Node v's predecessors in the order their outputs are concatenated.
  const std::vector<std::size_t>& predecessors(std::size_t v) const { return info_.preds.at(check_node(v)); }
  std::size_t layer(std::size_t v) const { return info_.layer.at(check_node(v)); }
  CellInfo cell_info(std::size_t v) const {
    check_node(v);
    CellInfo c;
    c.node = v;
    c.in_degree = info_.preds[v].size();
    c.out_degree = info_.succs[v].size();
    c.is_input = c.in_degree == 0;
    c.is_output = c.out_degree == 0;
    c.layer = info_.layer[v];
    c.input_channel_size = input_.channels;
    c.width = options_.width;
    c.in_channels = c.is_input ? input_.channels : options_.width * static_cast<Index>(c.in_degree);
    return c;
  }
  AnyCell<Scalar>& cell(std::size_t v) { return cells_.at(check_node(v)); }
  /// Parameters of node v's cell, and its masked weights: active, all.
  Index cell_parameters(std::size_t v) {
    Index n = 0;
    cell(v).visit_modules([&](Module<Scalar>& m, const char*) { n += m.num_parameters(); });
    return n;
  }
  std::pair<Index, Index> cell_weights(std::size_t v) {
    Index active = 0, all = 0;
    cell(v).visit_modules([&](Module<Scalar>& m, const char*) {
      if (auto* l = m.as_masked()) {
        active += l->nnz();
        all += l->numel();
      }
    });
    return {active, all};
  }
  const ImageShape& input_shape() const { return input_; }
  /// Images of another size (the cells and the adaptive pooling take any size that the cells
  /// accept; shape_error otherwise, and nothing changes). A new size ends the last forward:
  /// backward then needs a forward of the new images (state_error otherwise).
  void set_input_shape(const ImageShape& input) {
    if (input.channels != input_.channels)
      DEEPSTRUCT_THROW(shape_error, "DeepCellDAN::set_input_shape: expected " + std::to_string(input_.channels) + " channels, found " +
                                        to_string(input));
    (void)shapes_for(input);
    if (input == input_) return;
    input_ = input;
    batch_ = -1;  // the last forward saw images of the old size
    grad_in_.clear();  // buffers sized for the old images
    eval_pool_.clear();
  }
  /// The image shape every node emits for the current input shape.
  std::vector<ImageShape> node_output_shapes() { return shapes_for(input_); }

  MaskedConv2d<Scalar>& last_convolution() { return last_conv_; }
  BatchNorm2d<Scalar>& last_batch_norm() { return last_bn_; }
  MaskedLinear<Scalar>& last_fc() { return last_fc_; }

  /// Training mode (default): forward normalises with batch statistics and updates the running
  /// ones; off: forward uses the running statistics (PyTorch's eval()). predict always evaluates.
  void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }

  // ---- forward, backward, predict ------------------------------------------------------------

  /// The logits (num_classes x batch) of images x (input_shape().size() x batch).
  const Matrix& forward(const ConstMatrixRef& x) {
    check_input(x, "forward");
    batch_ = -1;  // a forward that throws part way leaves nothing for backward
    probe_ = detail::InputProbe<Scalar>::of(x);  // before the run, as MaskedDeepDAN does
    run(x, training_, outputs_, out_shape_, inputs_, in_shape_, final_in_, final_shape_, conv_out_, bn_out_, pooled_, logits_, false);
    batch_ = x.cols();
    return logits_;
  }

  /// Backward for the images of the last forward: adds every parameter gradient, writes dL/dx.
  void backward(const ConstMatrixRef& x, const ConstMatrixRef& grad_logits, Matrix* grad_input = nullptr) {
    check_input(x, "backward");
    if (batch_ < 0) DEEPSTRUCT_THROW(state_error, "DeepCellDAN::backward: expected a forward before backward, found none");
    if (x.cols() != batch_)
      DEEPSTRUCT_THROW(shape_error, "DeepCellDAN::backward: expected the batch of the last forward (" + std::to_string(batch_) +
                                        " images), found " + std::to_string(x.cols()));
    // The input cells' weight gradients read x: another matrix of the same shape would give
    // gradients of neither input without a word.
    if (!probe_.matches(x))
      DEEPSTRUCT_THROW(state_error, "DeepCellDAN::backward: expected the input of the last forward, found another " +
                                        detail::shape_str(x.rows(), x.cols()) + " matrix (its values differ)");
    if (grad_logits.rows() != last_fc_.out_features() || grad_logits.cols() != x.cols())
      DEEPSTRUCT_THROW(shape_error, "DeepCellDAN::backward: expected grad_logits of shape " +
                                        detail::shape_str(last_fc_.out_features(), x.cols()) + ", found " +
                                        detail::shape_str(grad_logits.rows(), grad_logits.cols()));
    if (grad_input != nullptr) {  // before any gradient is added: the input cells read x after *grad_input is zeroed
      detail::check_no_alias(x, *grad_input, "DeepCellDAN::backward", "grad_input", "x");
      detail::check_no_alias(grad_logits, *grad_input, "DeepCellDAN::backward", "grad_input", "grad_logits");
    }
    // The gradients go through members kept from step to step (same shapes, no allocation):
    // freed and allocated again, megabytes of them came back from the system every step, a page
    // fault per 4 KiB (see docs/benchmarks.md, "Image layers and DeepCellDAN").
    last_fc_.backward(pooled_, grad_logits, &g_pooled_);
    const ImageShape conv_shape = last_conv_.output_shape(final_shape_);
    pool_.backward(bn_out_, conv_shape, g_pooled_, g_bn_);
    last_bn_.backward(conv_out_, conv_shape, g_bn_, &g_conv_);
    last_conv_.backward(final_in_, final_shape_, g_conv_, &g_final_);
    const std::size_t n = cells_.size();
    grad_out_.resize(n);
    for (std::size_t v = 0; v < n; ++v) grad_out_[v].setZero(out_shape_[v].size(), x.cols());
    {
      std::vector<ImageShape> shapes;
      std::vector<Matrix*> grads;
      for (const std::size_t v : info_.outputs) {
        shapes.push_back(out_shape_[v]);
        grads.push_back(&grad_out_[v]);
      }
      detail::split_cropped(g_final_, final_shape_, shapes, grads);
    }
    if (grad_input != nullptr) grad_input->setZero(x.rows(), x.cols());
    for (auto it = info_.order.rbegin(); it != info_.order.rend(); ++it) {
      const std::size_t v = *it;
      const bool input = info_.preds[v].empty();
      const bool want = !input || grad_input != nullptr;
      Matrix& g_in = input_grad_buffer(input ? x.rows() : in_shape_[v].size());
      if (input) cells_[v].backward(x, input_, grad_out_[v], want ? &g_in : nullptr);
      else cells_[v].backward(inputs_[v], in_shape_[v], grad_out_[v], &g_in);
      if (!want) continue;
      if (input) {
        *grad_input += g_in;
        continue;
      }
      std::vector<ImageShape> shapes;
      std::vector<Matrix*> grads;
      for (const std::size_t u : info_.preds[v]) {
        shapes.push_back(out_shape_[u]);
        grads.push_back(&grad_out_[u]);
      }
      detail::split_cropped(g_in, in_shape_[v], shapes, grads);
    }
  }

  /// Evaluation (running statistics) into a caller-owned matrix; changes nothing backward uses.
  /// A node's output is given back as soon as its last successor has read it, and the buffers
  /// are kept for the next call of the same batch size (about as many images' worth as are
  /// alive at once in the graph, not one per node): allocated afresh on every call, they came
  /// back from the system one page fault per 4 KiB (docs/benchmarks.md, "Image layers and
  /// DeepCellDAN").
  void predict(const ConstMatrixRef& x, Matrix& logits) {
    check_input(x, "predict");
    if (x.cols() != eval_batch_) eval_pool_.clear();  // keep one batch size's buffers, not every one's
    eval_batch_ = x.cols();
    std::vector<Matrix> outputs, inputs;
    std::vector<ImageShape> out_shape, in_shape;
    Matrix final_in, conv_out, bn_out, pooled;
    ImageShape final_shape;
    run(x, false, outputs, out_shape, inputs, in_shape, final_in, final_shape, conv_out, bn_out, pooled, logits, true, &eval_pool_);
  }
  Matrix predict(const ConstMatrixRef& x) {
    Matrix logits;
    predict(x, logits);
    return logits;
  }

 private:
  static Index init_check(Index num_classes, const ImageShape& input, const DeepCellDANOptions& o, std::size_t outputs) {
    detail::check_image_shape(input, "DeepCellDAN");
    if (num_classes < 1) DEEPSTRUCT_THROW(shape_error, "DeepCellDAN: expected num_classes >= 1, found " + std::to_string(num_classes));
    if (o.width < 1 || o.last_channels < 1)
      DEEPSTRUCT_THROW(shape_error, "DeepCellDAN: expected width and last_channels >= 1, found " + std::to_string(o.width) + " and " +
                                        std::to_string(o.last_channels));
    return static_cast<Index>(outputs) * o.width;
  }
  std::size_t check_node(std::size_t v) const {
    if (v >= graph_.num_nodes)
      DEEPSTRUCT_THROW(index_error, "DeepCellDAN: expected a node below " + std::to_string(graph_.num_nodes) + ", found " + std::to_string(v));
    return v;
  }
  void check_input(const ConstMatrixRef& x, const char* where) const {
    detail::check_images(x, input_, std::string("DeepCellDAN::") + where);
  }

  /// Every node's output shape for images of shape `input`; shape_error naming the node when a
  /// cell does not emit options.width channels or cannot take its input.
  std::vector<ImageShape> shapes_for(const ImageShape& input) {
    std::vector<ImageShape> out(cells_.size());
    for (const std::size_t v : info_.order) {
      ImageShape in = input;
      if (!info_.preds[v].empty()) {
        in = ImageShape{0, 0, 0};
        for (const std::size_t u : info_.preds[v]) {
          in.channels += out[u].channels;
          in.height = std::max(in.height, out[u].height);
          in.width = std::max(in.width, out[u].width);
        }
      }
      try {
        out[v] = cells_[v].output_shape(in);
      } catch (const std::exception& e) {
        DEEPSTRUCT_THROW(shape_error, "DeepCellDAN: node " + std::to_string(v) + "'s cell cannot take its input of " + to_string(in) + ": " +
                                          e.what());
      }
      if (out[v].channels != options_.width)
        DEEPSTRUCT_THROW(shape_error, "DeepCellDAN: expected node " + std::to_string(v) + "'s cell to emit " + std::to_string(options_.width) +
                                          " channels (options.width), found " + to_string(out[v]));
    }
    return out;
  }

  /// backward's buffer for an input gradient of `rows` rows: the one of that size from earlier
  /// nodes or steps, else a new one.
  Matrix& input_grad_buffer(Eigen::Index rows) {
    for (Matrix& m : grad_in_)
      if (m.rows() == rows) return m;
    grad_in_.emplace_back(rows, Eigen::Index(0));
    return grad_in_.back();
  }

  /// Forward through the graph into the given buffers (the members for forward, locals for
  /// predict). With `buffers` (predict's pool), every intermediate matrix is taken from the pool
  /// and given back: a node's input once its cell has run, its output once its last successor
  /// has read it, the outputs of the sinks and the head's images at the end.
  void run(const ConstMatrixRef& x, bool training, std::vector<Matrix>& outputs, std::vector<ImageShape>& out_shape,
           std::vector<Matrix>& inputs, std::vector<ImageShape>& in_shape, Matrix& final_in, ImageShape& final_shape, Matrix& conv_out,
           Matrix& bn_out, Matrix& pooled, Matrix& logits, bool evaluate, std::vector<Matrix>* buffers = nullptr) {
    const std::size_t n = cells_.size();
    const Index batch = x.cols();
    outputs.resize(n);
    out_shape.resize(n);
    inputs.resize(n);
    in_shape.resize(n);
    std::vector<std::size_t> unread;  // successors yet to read each node's output (with buffers)
    if (buffers != nullptr)
      for (std::size_t v = 0; v < n; ++v) unread.push_back(info_.succs[v].size());
    for (const std::size_t v : info_.order) {
      const bool input = info_.preds[v].empty();
      if (!input) {
        std::vector<const Matrix*> parts;
        std::vector<ImageShape> shapes;
        for (const std::size_t u : info_.preds[v]) {
          parts.push_back(&outputs[u]);
          shapes.push_back(out_shape[u]);
        }
        if (buffers != nullptr) inputs[v] = take_buffer(*buffers, detail::concat_shape(shapes).size() * batch);
        in_shape[v] = detail::concat_padded(parts, shapes, inputs[v]);
      } else {
        in_shape[v] = input_;
      }
      const ImageShape& in = in_shape[v];
      out_shape[v] = cells_[v].output_shape(in);
      if (buffers != nullptr) outputs[v] = take_buffer(*buffers, out_shape[v].size() * batch);
      if (evaluate) {
        if (input) cells_[v].predict(x, in, outputs[v]);
        else cells_[v].predict(inputs[v], in, outputs[v]);
      } else {
        if (input) cells_[v].forward(x, in, outputs[v], training);
        else cells_[v].forward(inputs[v], in, outputs[v], training);
      }
      if (buffers == nullptr) continue;
      give_buffer(*buffers, inputs[v]);
      for (const std::size_t u : info_.preds[v])
        if (--unread[u] == 0) give_buffer(*buffers, outputs[u]);
    }
    std::vector<const Matrix*> parts;
    std::vector<ImageShape> shapes;
    for (const std::size_t v : info_.outputs) {
      parts.push_back(&outputs[v]);
      shapes.push_back(out_shape[v]);
    }
    if (buffers != nullptr) {
      const ImageShape joined = detail::concat_shape(shapes);
      final_in = take_buffer(*buffers, joined.size() * batch);
      conv_out = take_buffer(*buffers, last_conv_.output_shape(joined).size() * batch);
      bn_out = take_buffer(*buffers, conv_out.size());
    }
    final_shape = detail::concat_padded(parts, shapes, final_in);
    last_conv_.forward(final_in, final_shape, conv_out);
    const ImageShape conv_shape = last_conv_.output_shape(final_shape);
    if (evaluate) last_bn_.predict(conv_out, conv_shape, bn_out);
    else last_bn_.forward(conv_out, conv_shape, bn_out, training);
    pool_.forward(bn_out, conv_shape, pooled);
    last_fc_.forward(pooled, logits);
    if (buffers == nullptr) return;
    for (const std::size_t v : info_.outputs) give_buffer(*buffers, outputs[v]);
    for (Matrix* m : {&final_in, &conv_out, &bn_out}) give_buffer(*buffers, *m);
  }

  /// A buffer of `size` entries from `buffers` (moved out), else an empty matrix.
  static Matrix take_buffer(std::vector<Matrix>& buffers, Index size) {
    for (auto it = buffers.begin(); it != buffers.end(); ++it)
      if (it->size() == size) {
        Matrix m = std::move(*it);
        buffers.erase(it);
        return m;
      }
    return Matrix();
  }
  static void give_buffer(std::vector<Matrix>& buffers, Matrix& m) {
    if (m.size() > 0) buffers.push_back(std::move(m));
    m = Matrix();
  }

  CellGraph graph_;
  detail::CellGraphInfo info_;
  ImageShape input_;
  DeepCellDANOptions options_;
  std::vector<AnyCell<Scalar>> cells_;
  MaskedConv2d<Scalar> last_conv_;
  BatchNorm2d<Scalar> last_bn_;
  AdaptiveAvgPool2d pool_{1, 1};
  MaskedLinear<Scalar> last_fc_;
  bool training_ = true;
  // What backward needs from the last forward.
  Eigen::Index batch_ = -1;
  detail::InputProbe<Scalar> probe_;  // 16 entries of the last forward's input (backward compares them)
  std::vector<Matrix> outputs_, inputs_, grad_out_;
  std::vector<ImageShape> out_shape_, in_shape_;
  Matrix final_in_, conv_out_, bn_out_, pooled_, logits_;
  // backward's buffers, kept for the next step: a node's input gradient (one per size; each is
  // split among the predecessors before the next node needs one), and the head's gradients.
  std::vector<Matrix> grad_in_;
  Matrix g_pooled_, g_bn_, g_conv_, g_final_;
  // predict's buffers, kept for the next call of the same batch size (run() takes and gives
  // them back).
  std::vector<Matrix> eval_pool_;
  Eigen::Index eval_batch_ = -1;
  ImageShape final_shape_;
};

}  // namespace deepstruct
