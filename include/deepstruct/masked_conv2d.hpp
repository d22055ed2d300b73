// SPDX-License-Identifier: MIT
#pragma once

/// \file masked_conv2d.hpp
/// MaskedConv2d<Scalar>: torch.nn.Conv2d whose weight [out][in/groups][kh][kw] carries a boolean
/// mask of the same shape. Kernel, stride, zero padding, dilation, groups and bias as in PyTorch,
/// and PyTorch's initialisation (Kaiming-uniform with a = sqrt(5): weights and bias uniform in
/// +-1/sqrt(fan_in), fan_in = in/groups * kh * kw). Images follow image.hpp: a batch is a
/// (C * H * W) x batch matrix, one image per column in (channel, row, col) order.
///
/// The weight is kept as an out x (in/groups * kh * kw) matrix: row o is output channel o's
/// kernel in PyTorch's (channel, row, col) order, so the matrix holds the same bytes as PyTorch's
/// tensor read row by row, rows are what channel pruning removes, and files carry the 4-d shape.
///
/// Two execution paths give the same results. Dense: im2col (each output position's receptive
/// field as a row) and one GEMM per group and chunk of images. Sparse (mask density at most the
/// threshold, as MaskedLinear): the same rows, and for every active weight one axpy over the
/// output positions - work in proportion to the active weights. With OpenMP the chunks of images
/// are shared among threads (see "threads" below): 1 and 2 threads give the same bits.

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "deepstruct/detail/alias.hpp"
#include "deepstruct/detail/gemm.hpp"
#include "deepstruct/detail/memory.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/image.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/random.hpp"

namespace deepstruct {

/// The hyper-parameters of a convolution; pairs are (height, width) as PyTorch's tuples.
struct Conv2dOptions {
  std::array<Eigen::Index, 2> kernel{3, 3};
  std::array<Eigen::Index, 2> stride{1, 1};
  std::array<Eigen::Index, 2> padding{0, 0};   ///< zeros added on both sides
  std::array<Eigen::Index, 2> dilation{1, 1};
  Eigen::Index groups = 1;
  bool bias = true;

  /// A square kernel k with the same stride and padding on both axes.
  static Conv2dOptions square(Eigen::Index k, Eigen::Index stride = 1, Eigen::Index padding = 0, bool bias = true) {
    Conv2dOptions o;
    o.kernel = {k, k};
    o.stride = {stride, stride};
    o.padding = {padding, padding};
    o.bias = bias;
    return o;
  }
};

template <typename Scalar_>
class MaskedConv2d : public MaskedLayer<Scalar_> {
  static_assert(std::is_floating_point<Scalar_>::value, "MaskedConv2d<Scalar>: Scalar must be float or double");
  using Base = MaskedLayer<Scalar_>;

 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;
  using ConstMatrixRef = Eigen::Ref<const Matrix>;

  /// in_channels -> out_channels with PyTorch's initialisation drawn from `gen` (weights in the
  /// storage order of the out x (in/groups * kh * kw) matrix, then the bias). Throws shape_error
  /// for channels < 1 or not divisible by groups, value_error for a kernel, stride or dilation
  /// < 1 or a negative padding.
  MaskedConv2d(Index in_channels, Index out_channels, const Conv2dOptions& options, Generator& gen) {
    init_shape(in_channels, out_channels, options);
    reset_parameters(gen, false);
  }
  explicit MaskedConv2d(Index in_channels, Index out_channels, const Conv2dOptions& options = {}, std::uint64_t seed = 0) {
    init_shape(in_channels, out_channels, options);
    Generator gen(seed);
    reset_parameters(gen, false);
  }

  // ---- the contract (Module, MaskedLayer) ------------------------------------------------------

  const char* type_name() const override { return "MaskedConv2d"; }
  std::size_t num_masks() const override { return 1; }
  const char* weight_name(std::size_t) const override { return "weight"; }
  const MaskedWeight<Scalar>& masked(std::size_t k) const override {
    this->check_k(k, "masked");
    return w_;
  }
  std::vector<Index> weight_shape(std::size_t k) const override {
    this->check_k(k, "weight_shape");
    return {dims_[0], dims_[1], dims_[2], dims_[3]};
  }
  void for_each_parameter(ParameterVisitor<Scalar> fn) override {
    ensure_grad_buffers();
    const Scalar* weight_grad = weight_grad_.data();
    const bool* mask_data = w_.mask.data();
    this->update_weight([&](Matrix& w) { fn(ParameterRef<Scalar>{w.data(), weight_grad, w.size(), mask_data, nullptr}); });
    if (options_.bias) {
      fn(ParameterRef<Scalar>{bias_.data(), bias_grad_.data(), bias_.size(), nullptr});
    }
  }
  /// PyTorch's state_dict entries: weight [out][in/groups][kh][kw], bias [out]; and "_mask" of the
  /// weight's shape, only while some weight is masked (a file of an unpruned layer is PyTorch's,
  /// and a file without "_mask" loads as all weights active).
  void for_each_tensor(TensorVisitor<Scalar> fn) const override {
    TensorRef<Scalar> w{"weight", TensorKind::matrix, w_.value.rows(), w_.value.cols(), w_.value.data(), nullptr};
    w.dims = dims_.data();
    w.ndim = 4;
    fn(w);
    if (options_.bias) fn(TensorRef<Scalar>{"bias", TensorKind::vector, bias_.size(), 1, bias_.data(), nullptr});
    TensorRef<Scalar> m{"_mask", TensorKind::mask, w_.mask.rows(), w_.mask.cols(), nullptr, w_.mask.data()};
    m.dims = dims_.data();
    m.ndim = 4;
    m.optional = true;
    fn(m);
  }
  Index num_parameters() const override { return w_.value.size() + bias_.size(); }
  void zero_grad() override {
    dense_.zero(w_.value.rows(), w_.value.cols());
    if (weight_grad_.size() == 0) return;
    weight_grad_.setZero();
    bias_grad_.setZero();
  }
  void set_dense_gradient(bool on) override {
    dense_.set(on, w_.value.rows(), w_.value.cols());
  }
  const Matrix* dense_gradient(std::size_t k) const override {
    this->check_k(k, "dense_gradient");
    return dense_.get();
  }

  // ---- shape and parameters -----------------------------------------------------------------

  Index in_channels() const { return in_channels_; }
  Index out_channels() const { return w_.value.rows(); }
  const Conv2dOptions& options() const { return options_; }
  bool has_bias() const { return options_.bias; }
  /// Weights per output channel: in_channels / groups * kh * kw (PyTorch's fan_in).
  Index fan_in() const { return w_.value.cols(); }
  const Vector& bias() const { return bias_; }
  void set_bias(const Eigen::Ref<const Vector>& bias) {
    if (bias.size() != bias_.size())
      DEEPSTRUCT_THROW(shape_error, "MaskedConv2d::set_bias: expected a bias of size " + std::to_string(bias_.size()) + ", found " +
                                        std::to_string(bias.size()));
    bias_ = bias;
  }
  /// dL/dW accumulated since zero_grad() (out x fan_in; zero behind the mask).
  const Matrix& weight_grad() const {
    ensure_grad_buffers();
    return weight_grad_;
  }
  const Vector& bias_grad() const {
    ensure_grad_buffers();
    return bias_grad_;
  }

  using Base::mask;
  using Base::set_mask;
  using Base::set_weight;
  using Base::weight;

  /// The output shape for inputs of shape `in`: (out_channels, floor((H + 2p - d(k-1) - 1)/s) + 1,
  /// likewise for W). shape_error for another channel count or an empty output.
  ImageShape output_shape(const ImageShape& in) const {
    detail::check_image_shape(in, "MaskedConv2d");
    if (in.channels != in_channels_)
      DEEPSTRUCT_THROW(shape_error, "MaskedConv2d: expected images of " + std::to_string(in_channels_) + " channels, found " + to_string(in));
    ImageShape out{out_channels(), 0, 0};
    const Index size[2] = {in.height, in.width};
    Index result[2];
    for (int a = 0; a < 2; ++a) {
      // In doubles first: a dilation or padding near 2^62 would overflow Index (and wrap to a
      // negative output size) where no image could hold the kernel anyway.
      const double reach_d = double(options_.dilation[a]) * double(options_.kernel[a] - 1) + 1.0,
                   padded_d = double(size[a]) + 2.0 * double(options_.padding[a]);
      if (reach_d > 9.0e18 || padded_d > 9.0e18)
        DEEPSTRUCT_THROW(shape_error, std::string("MaskedConv2d: expected a dilated kernel and a padded input ") + (a == 0 ? "height" : "width") +
                                          " below 2^63, found a kernel reach of " + detail::number_str(reach_d) + " and a padded size of " +
                                          detail::number_str(padded_d) + " for " + to_string(in));
      const Index reach = options_.dilation[a] * (options_.kernel[a] - 1) + 1, padded = size[a] + 2 * options_.padding[a];
      if (reach > padded)
        DEEPSTRUCT_THROW(shape_error, std::string("MaskedConv2d: expected an input ") + (a == 0 ? "height" : "width") +
                                          " whose padded size holds the dilated kernel (" + std::to_string(reach) + "), found " +
                                          to_string(in) + " with padding " + std::to_string(options_.padding[a]));
      result[a] = (padded - reach) / options_.stride[a] + 1;
    }
    out.height = result[0];
    out.width = result[1];
    detail::check_image_shape(out, "MaskedConv2d (output)");  // channels * height * width must fit
    return out;
  }

  // ---- initialisation -------------------------------------------------------------------------

  using Base::reset_parameters;
  /// PyTorch's initialisation again; the mask becomes all true unless keep_mask.
  void reset_parameters(Generator& gen, bool keep_mask = false) override {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in()));
    for (Index i = 0; i < w_.value.size(); ++i) w_.value.data()[i] = static_cast<Scalar>(random::uniform(gen, -bound, bound));
    for (Index i = 0; i < bias_.size(); ++i) bias_[i] = static_cast<Scalar>(random::uniform(gen, -bound, bound));
    if (!keep_mask) {
      w_.mask.setConstant(w_.value.rows(), w_.value.cols(), true);
      w_.nnz = w_.mask.size();
      mask_changed(0);
    }
    weight_changed(0);
    this->clear_saliency();
  }

  // ---- forward and backward -------------------------------------------------------------------

  /// The convolution of the images x (shape `in`) into y (output_shape(in).size() x batch).
  /// Keeps nothing of x. y must not share memory with x (shape_error otherwise).
  void forward(const ConstMatrixRef& x, const ImageShape& in, Matrix& y) {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "MaskedConv2d::forward");
    detail::check_no_alias(x, y, "MaskedConv2d::forward", "y", "x");
    const Index batch = x.cols(), P = out.plane();
    y.resize(out.size(), batch);
    if (batch == 0) return;
    const bool sparse = this->uses_sparse_path(0);
    if (sparse) refresh_sparse();
    if (direct_sparse()) {  // stride 1: padded planes, no per-row bounds
      if (sparse) direct_forward(x, in, out, y);
      else padded_forward(x, in, out, y);
      return;
    }
    const Matrix& w = sparse ? w_.value : dense_weight();
    const Index G = options_.groups, outg = out_channels() / G, K = fan_in();
    const Index chunk = chunk_size(P, batch), chunks = (batch + chunk - 1) / chunk;
    const int threads = chunk_threads(chunks, 2.0 * double(sparse ? w_.nnz : w.size()) * double(P) * double(batch));
    prepare_scratch(threads, [&](Scratch& s) {
      buffer(s.col, chunk * P * K);
      if (chunk > 1 || G > 1) buffer(s.z, chunk * P * outg);  // (one image, one group: straight into y)
    });
    run_chunks(batch, chunk, chunks, threads, [&](Index b0, Index bc, Index, Scratch& s) {
      Eigen::Map<Matrix> col(buffer(s.col, bc * P * K), bc * P, K);
      for (Index g = 0; g < G; ++g) {
        im2col(x, in, out, b0, bc, g, sparse ? &used_[static_cast<std::size_t>(g)] : nullptr, col);
        // The group's outputs for the chunk: (bc * P) x outg, row bl * P + p.
        const bool direct = bc == 1 && G == 1;
        Eigen::Map<Matrix> z(direct ? y.col(b0).data() : buffer(s.z, bc * P * outg), bc * P, outg);
        if (sparse) {
          sparse_rows_product(col, g, outg, z);
        } else {
          detail::gemm(detail::gemm_operand(col), detail::gemm_transposed(w.middleRows(g * outg, outg)), z.data(), z.rows(), false);
        }
        for (Index bl = 0; bl < bc; ++bl)
          for (Index ol = 0; ol < outg; ++ol) {
            const Index o = g * outg + ol;
            auto dst = y.col(b0 + bl).segment(o * P, P);
            if (!direct) dst = z.col(ol).segment(bl * P, P);
            if (options_.bias) dst.array() += bias_[o];
          }
      }
    });
  }

  /// Backward for the images x (shape `in`) that forward saw: adds dL/dW (zero behind the mask)
  /// and dL/db, and writes dL/dx into *grad_x unless it is null (*grad_x must not share memory
  /// with x or grad_y: shape_error).
  void backward(const ConstMatrixRef& x, const ImageShape& in, const ConstMatrixRef& grad_y, Matrix* grad_x) {
    const ImageShape out = output_shape(in);
    detail::check_images(x, in, "MaskedConv2d::backward");
    if (grad_y.rows() != out.size() || grad_y.cols() != x.cols())
      DEEPSTRUCT_THROW(shape_error, "MaskedConv2d::backward: expected grad_y of shape " + detail::shape_str(out.size(), x.cols()) + " (" +
                                        to_string(out) + " x batch), found " + detail::shape_str(grad_y.rows(), grad_y.cols()));
    if (grad_x != nullptr) {
      detail::check_no_alias(x, *grad_x, "MaskedConv2d::backward", "grad_x", "x");
      detail::check_no_alias(grad_y, *grad_x, "MaskedConv2d::backward", "grad_x", "grad_y");
    }
    ensure_grad_buffers();
    const Index batch = x.cols(), P = out.plane();
    if (grad_x != nullptr) grad_x->setZero(in.size(), batch);
    if (batch == 0) return;
    const bool sparse = this->uses_sparse_path(0);
    if (sparse) refresh_sparse();
    if (direct_sparse()) {
      if (sparse && !dense_.on) direct_backward(x, in, out, grad_y, grad_x);
      else padded_backward(x, in, out, grad_y, grad_x);
      return;
    }
    const Matrix& w = sparse ? w_.value : dense_weight();
    const Index G = options_.groups, outg = out_channels() / G, K = fan_in();
    const Index chunk = chunk_size(P, batch), chunks = (batch + chunk - 1) / chunk;
    // Dense weight gradients: GEMMs into dW (masked at the end), or into the dense gradient.
    const bool dense_grad = !sparse || dense_.on;
    Matrix& dw = dense_grad ? dense_weight_grad() : weight_grad_;
    const double flops = 2.0 * double(sparse ? w_.nnz : w.size()) * double(P) * double(batch) * (grad_x != nullptr ? 2.0 : 1.0);
    const int groups = prepare_gradient_groups(chunks, flops), threads = chunk_threads(groups, flops);
    prepare_scratch(threads, [&](Scratch& s) {
      buffer(s.col, chunk * P * K);
      buffer(s.gz, chunk * P * outg);
    });
    run_chunks(batch, chunk, groups, threads, [&](Index b0, Index bc, Index group, Scratch& s) {
      Matrix& wsum = group == 0 ? dw : sums_[static_cast<std::size_t>(group - 1)].w;
      Vector& bsum = group == 0 ? bias_grad_ : sums_[static_cast<std::size_t>(group - 1)].b;
      Eigen::Map<Matrix> col(buffer(s.col, bc * P * K), bc * P, K);
      for (Index g = 0; g < G; ++g) {
        im2col(x, in, out, b0, bc, g, dense_grad ? nullptr : &used_[static_cast<std::size_t>(g)], col);
        Eigen::Map<Matrix> gz(buffer(s.gz, bc * P * outg), bc * P, outg);
        for (Index bl = 0; bl < bc; ++bl)
          for (Index ol = 0; ol < outg; ++ol) gz.col(ol).segment(bl * P, P) = grad_y.col(b0 + bl).segment((g * outg + ol) * P, P);
        if (options_.bias)
          for (Index ol = 0; ol < outg; ++ol) bsum[g * outg + ol] += gz.col(ol).sum();
        if (dense_grad) {
          detail::gemm(detail::gemm_transposed(gz), detail::gemm_operand(col), wsum.data() + g * outg, wsum.rows(), true);
        } else {
          for (Index ol = 0; ol < outg; ++ol) {
            const Index o = g * outg + ol;
            for (Index e = csr_row_[static_cast<std::size_t>(o)]; e < csr_row_[static_cast<std::size_t>(o + 1)]; ++e)
              wsum.data()[csr_pos_[static_cast<std::size_t>(e)]] += gz.col(ol).dot(col.col(csr_col_[static_cast<std::size_t>(e)]));
          }
        }
        if (grad_x == nullptr) continue;
        if (sparse) {
          const std::vector<char>& used = used_[static_cast<std::size_t>(g)];
          for (Index k = 0; k < K; ++k)
            if (used[static_cast<std::size_t>(k)]) col.col(k).setZero();
          for (Index ol = 0; ol < outg; ++ol) {
            const Index o = g * outg + ol;
            for (Index e = csr_row_[static_cast<std::size_t>(o)]; e < csr_row_[static_cast<std::size_t>(o + 1)]; ++e)
              col.col(csr_col_[static_cast<std::size_t>(e)]).noalias() += csr_value_[static_cast<std::size_t>(e)] * gz.col(ol);
          }
          col2im(*grad_x, in, out, b0, bc, g, &used, col);
        } else {
          detail::gemm(detail::gemm_operand(gz), detail::gemm_operand(w.middleRows(g * outg, outg)), col.data(), col.rows(), false);
          col2im(*grad_x, in, out, b0, bc, g, nullptr, col);
        }
      }
    });
    add_gradient_sums(groups, dw, bias_grad_);
    finish_weight_grad(sparse);
  }

 protected:
  MaskedWeight<Scalar>& masked_storage(std::size_t k) override {
    this->check_k(k, "masked_storage");
    return w_;
  }
  void weight_changed(std::size_t) override {
    dense_stale_ = true;
    sparse_values_stale_ = true;
  }
  void mask_changed(std::size_t) override {
    dense_stale_ = true;
    sparse_pattern_stale_ = true;
    if (weight_grad_.size() != 0) weight_grad_ = w_.mask.select(weight_grad_, Scalar(0));
  }
  void tensors_loaded() override {
    w_.nnz = w_.mask.count();
    mask_changed(0);
    weight_changed(0);
  }
  std::string shape_note(std::size_t) const override { return "out_channels x in_channels/groups*kh*kw"; }

 private:
  void init_shape(Index in, Index out, const Conv2dOptions& o) {
    if (in < 1 || out < 1 || o.groups < 1)
      DEEPSTRUCT_THROW(shape_error, "MaskedConv2d: expected in_channels, out_channels and groups >= 1, found " + std::to_string(in) + ", " +
                                        std::to_string(out) + ", " + std::to_string(o.groups));
    if (in % o.groups != 0 || out % o.groups != 0)
      DEEPSTRUCT_THROW(shape_error, "MaskedConv2d: expected in_channels and out_channels divisible by groups = " + std::to_string(o.groups) +
                                        ", found " + std::to_string(in) + " and " + std::to_string(out));
    for (int a = 0; a < 2; ++a) {
      const char* axis = a == 0 ? " height" : " width";
      if (o.kernel[a] < 1 || o.stride[a] < 1 || o.dilation[a] < 1 || o.padding[a] < 0)
        DEEPSTRUCT_THROW(value_error, std::string("MaskedConv2d: expected kernel, stride and dilation >= 1 and padding >= 0 (") + axis +
                                          "), found " + std::to_string(o.kernel[a]) + ", " + std::to_string(o.stride[a]) + ", " +
                                          std::to_string(o.dilation[a]) + ", " + std::to_string(o.padding[a]));
    }
    const double fan = static_cast<double>(in / o.groups) * static_cast<double>(o.kernel[0]) * static_cast<double>(o.kernel[1]);
    detail::check_fits_memory<shape_error>("MaskedConv2d", std::to_string(out) + " x " + std::to_string(in / o.groups) + " x " +
                                                               std::to_string(o.kernel[0]) + " x " + std::to_string(o.kernel[1]) +
                                                               " weights and their mask",
                                           static_cast<double>(out) * fan * static_cast<double>(sizeof(Scalar) + 1));
    in_channels_ = in;
    options_ = o;
    dims_ = {out, in / o.groups, o.kernel[0], o.kernel[1]};
    w_.resize(out, (in / o.groups) * o.kernel[0] * o.kernel[1]);
    bias_.resize(o.bias ? out : 0);
  }

  // ---- the sparse path without im2col (stride 1) ----------------------------------------------
  //
  // With stride 1 an output row and the input row it reads are the same distance apart for every
  // position: in a zero-padded copy of an image plane (Hp x Wp, row-major) the tap (i, j) of output
  // (oy, ox) reads position (oy + i*d0) * Wp + ox + j*d1 = q + off with q = oy * Wp + ox. So each
  // active weight is one axpy of length L = (Ho - 1) * Wp + Wo over contiguous memory, in an
  // output buffer with rows Wp wide (columns from Wo on are ignored). No receptive fields are
  // copied: the work is the active weights' FMAs and one padded copy of each image.

  bool direct_sparse() const { return options_.stride[0] == 1 && options_.stride[1] == 1; }

  using StridedMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
  using ConstStridedMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;

  /// The H x W plane at src (row-major) into the (H + 2 p0) x (W + 2 p1) plane at dst, zeros
  /// around it. (A row-major plane is a column-major W x H matrix: one column per row.)
  void pad_plane(const Scalar* src, Index H, Index W, Scalar* dst) const {
    const Index p0 = options_.padding[0], p1 = options_.padding[1], Hp = H + 2 * p0, Wp = W + 2 * p1;
    Eigen::Map<Matrix> d(dst, Wp, Hp);
    if (p0 > 0) {
      d.leftCols(p0).setZero();
      d.rightCols(p0).setZero();
    }
    if (p1 > 0) {
      d.middleCols(p0, H).topRows(p1).setZero();
      d.middleCols(p0, H).bottomRows(p1).setZero();
    }
    d.block(p1, p0, W, H) = Eigen::Map<const Matrix>(src, W, H);
  }
  /// The output rows (Wp wide, L long) at src into an Ho x Wo plane at dst, plus `bias`.
  static void crop_rows(const Scalar* src, Index Ho, Index Wo, Index Wp, Scalar bias, Scalar* dst) {
    Eigen::Map<Matrix>(dst, Wo, Ho) = (ConstStridedMap(src, Wo, Ho, Eigen::OuterStride<>(Wp)).array() + bias).matrix();
  }
  /// An Ho x Wo plane at src into rows Wp wide at dst (L long), zeros in the columns from Wo on.
  static void widen_rows(const Scalar* src, Index Ho, Index Wo, Index Wp, Scalar* dst) {
    StridedMap(dst, Wo, Ho, Eigen::OuterStride<>(Wp)) = Eigen::Map<const Matrix>(src, Wo, Ho);
    if (Wp > Wo && Ho > 1) StridedMap(dst + Wo, Wp - Wo, Ho - 1, Eigen::OuterStride<>(Wp)).setZero();
  }

  /// Zero-padded planes of images b0..b0+bc-1 of x, C planes of Hp x Wp each, one image after
  /// another (in.channels * Hp * Wp apart) at dst.
  void pad_images(const ConstMatrixRef& x, const ImageShape& in, Index b0, Index bc, Index Hp, Index Wp, Scalar* dst) const {
    const Index plane = in.channels * Hp * Wp;
    for (Index bl = 0; bl < bc; ++bl)
      for (Index c = 0; c < in.channels; ++c)
        pad_plane(x.col(b0 + bl).data() + c * in.plane(), in.height, in.width, dst + bl * plane + c * Hp * Wp);
  }
  /// Offsets of every active weight's tap into the padded planes.
  void tap_offsets(Index Hp, Index Wp) {
    const Index kh = options_.kernel[0], kw = options_.kernel[1], Cg = in_channels_ / options_.groups, outg = out_channels() / options_.groups;
    offset_.resize(csr_col_.size());
    for (Index o = 0; o < out_channels(); ++o) {
      const Index c0 = (o / outg) * Cg;
      for (Index e = csr_row_[static_cast<std::size_t>(o)]; e < csr_row_[static_cast<std::size_t>(o + 1)]; ++e) {
        const Index k = csr_col_[static_cast<std::size_t>(e)], c = c0 + k / (kh * kw), i = (k / kw) % kh, j = k % kw;
        offset_[static_cast<std::size_t>(e)] = c * Hp * Wp + i * options_.dilation[0] * Wp + j * options_.dilation[1];
      }
    }
  }

  void direct_forward(const ConstMatrixRef& x, const ImageShape& in, const ImageShape& out, Matrix& y) {
    const Index Hp = in.height + 2 * options_.padding[0], Wp = in.width + 2 * options_.padding[1];
    const Index L = (out.height - 1) * Wp + out.width, P = out.plane(), plane = in.channels * Hp * Wp, batch = x.cols();
    tap_offsets(Hp, Wp);
    const int threads = chunk_threads(batch, 2.0 * double(w_.nnz) * double(P) * double(batch));
    prepare_scratch(threads, [&](Scratch& s) {
      buffer(s.image, plane);
      buffer(s.acc, L);
    });
    run_chunks(batch, 1, batch, threads, [&](Index b, Index, Index, Scratch& s) {
      Scalar* xp = buffer(s.image, plane);
      pad_images(x, in, b, 1, Hp, Wp, xp);
      direct_forward_image(xp, out, Wp, L, buffer(s.acc, L), y.col(b).data());
    });
  }
  /// z = the receptive-field rows col times group g's active weights (transposed), one axpy per
  /// active weight.
  void sparse_rows_product(const Eigen::Map<Matrix>& col, Index g, Index outg, Eigen::Map<Matrix>& z) const {
    z.setZero();
    for (Index ol = 0; ol < outg; ++ol) {
      const Index o = g * outg + ol;
      for (Index e = csr_row_[static_cast<std::size_t>(o)]; e < csr_row_[static_cast<std::size_t>(o + 1)]; ++e)
        z.col(ol).noalias() += csr_value_[static_cast<std::size_t>(e)] * col.col(csr_col_[static_cast<std::size_t>(e)]);
    }
  }
  /// direct_forward of one image, padded at xp, into its output column y (acc: L scalars).
  void direct_forward_image(const Scalar* xp, const ImageShape& out, Index Wp, Index L, Scalar* acc_data, Scalar* y) const {
    const Index P = out.plane();
    Eigen::Map<Vector> acc(acc_data, L);
    for (Index o = 0; o < out_channels(); ++o) {
      acc.setZero();
      for (Index e = csr_row_[static_cast<std::size_t>(o)]; e < csr_row_[static_cast<std::size_t>(o + 1)]; ++e)
        acc.noalias() += csr_value_[static_cast<std::size_t>(e)] * Eigen::Map<const Vector>(xp + offset_[static_cast<std::size_t>(e)], L);
      crop_rows(acc.data(), out.height, out.width, Wp, options_.bias ? bias_[o] : Scalar(0), y + o * P);
    }
  }

  void direct_backward(const ConstMatrixRef& x, const ImageShape& in, const ImageShape& out, const ConstMatrixRef& grad_y, Matrix* grad_x) {
    const Index Hp = in.height + 2 * options_.padding[0], Wp = in.width + 2 * options_.padding[1];
    const Index L = (out.height - 1) * Wp + out.width, P = out.plane(), plane = in.channels * Hp * Wp, batch = x.cols();
    tap_offsets(Hp, Wp);
    const double flops = 2.0 * double(w_.nnz) * double(P) * double(batch) * (grad_x != nullptr ? 2.0 : 1.0);
    const int groups = prepare_gradient_groups(batch, flops), threads = chunk_threads(groups, flops);
    prepare_scratch(threads, [&](Scratch& s) {
      buffer(s.image, plane);
      buffer(s.gpad, L * out_channels());
      if (grad_x != nullptr) buffer(s.dimage, plane);
    });
    run_chunks(batch, 1, groups, threads, [&](Index b, Index, Index group, Scratch& s) {
      Scalar* xp = buffer(s.image, plane);
      pad_images(x, in, b, 1, Hp, Wp, xp);
      direct_backward_image(xp, in, out, Hp, Wp, L, grad_y.col(b).data(), buffer(s.gpad, L * out_channels()),
                            grad_x != nullptr ? buffer(s.dimage, plane) : nullptr, grad_x != nullptr ? grad_x->col(b).data() : nullptr,
                            group == 0 ? weight_grad_ : sums_[static_cast<std::size_t>(group - 1)].w,
                            group == 0 ? bias_grad_ : sums_[static_cast<std::size_t>(group - 1)].b);
    });
    add_gradient_sums(groups, weight_grad_, bias_grad_);
  }
  /// direct_backward of one image, padded at xp, with output gradient g: its weight and bias
  /// gradients added to wsum and bsum, its input gradient into gx unless null (gpad: L x out
  /// scalars, dxpad: the padded image's size).
  void direct_backward_image(const Scalar* xp, const ImageShape& in, const ImageShape& out, Index Hp, Index Wp, Index L, const Scalar* g,
                             Scalar* gpad_data, Scalar* dxpad_data, Scalar* gx, Matrix& wsum, Vector& bsum) const {
    const Index P = out.plane();
    // The output gradients in rows Wp wide, zeros beyond Wo (they must not contribute).
    Eigen::Map<Matrix> gpad(gpad_data, L, out_channels());
    for (Index o = 0; o < out_channels(); ++o) widen_rows(g + o * P, out.height, out.width, Wp, gpad.col(o).data());
    if (options_.bias) bsum += gpad.colwise().sum().transpose();
    for (Index o = 0; o < out_channels(); ++o)
      for (Index e = csr_row_[static_cast<std::size_t>(o)]; e < csr_row_[static_cast<std::size_t>(o + 1)]; ++e)
        wsum.data()[csr_pos_[static_cast<std::size_t>(e)]] += gpad.col(o).dot(Eigen::Map<const Vector>(xp + offset_[static_cast<std::size_t>(e)], L));
    if (gx == nullptr) return;
    Eigen::Map<Vector> dxpad(dxpad_data, in.channels * Hp * Wp);
    dxpad.setZero();
    Scalar* dp = dxpad.data();
    for (Index o = 0; o < out_channels(); ++o)
      for (Index e = csr_row_[static_cast<std::size_t>(o)]; e < csr_row_[static_cast<std::size_t>(o + 1)]; ++e)
        Eigen::Map<Vector>(dp + offset_[static_cast<std::size_t>(e)], L).noalias() += csr_value_[static_cast<std::size_t>(e)] * gpad.col(o);
    const Index first = options_.padding[0] * Wp + options_.padding[1];
    for (Index c = 0; c < in.channels; ++c) crop_rows(dp + c * Hp * Wp + first, in.height, in.width, Wp, Scalar(0), gx + c * in.plane());
  }

  // ---- the dense path with stride 1 ---------------------------------------------------------
  //
  // The receptive-field rows come from the padded planes too: column k of the rows of one image
  // is the L contiguous values from the tap's offset (rows Wp wide, as the direct sparse path), so
  // building them is K copies per image, and their transpose K vector additions.

  /// Offset of column k's tap into a group's padded planes.
  Index tap_offset(Index k, Index Hp, Index Wp) const {
    const Index kh = options_.kernel[0], kw = options_.kernel[1];
    return (k / (kh * kw)) * Hp * Wp + ((k / kw) % kh) * options_.dilation[0] * Wp + (k % kw) * options_.dilation[1];
  }
  /// col (bc * L x K) for group g from the padded images at xpads (plane apart).
  void padded_rows(Index bc, Index g, Index Hp, Index Wp, Index L, Index plane, const Scalar* xpads, Eigen::Map<Matrix>& col) const {
    const Index K = fan_in(), g0 = g * (in_channels_ / options_.groups) * Hp * Wp;
    for (Index k = 0; k < K; ++k) {
      const Index off = g0 + tap_offset(k, Hp, Wp);
      for (Index bl = 0; bl < bc; ++bl) col.col(k).segment(bl * L, L) = Eigen::Map<const Vector>(xpads + bl * plane + off, L);
    }
  }

  void padded_forward(const ConstMatrixRef& x, const ImageShape& in, const ImageShape& out, Matrix& y) {
    const Index Hp = in.height + 2 * options_.padding[0], Wp = in.width + 2 * options_.padding[1];
    const Index L = (out.height - 1) * Wp + out.width, P = out.plane(), plane = in.channels * Hp * Wp;
    const Index G = options_.groups, outg = out_channels() / G, K = fan_in(), batch = x.cols();
    const Matrix& w = dense_weight();
    const Index chunk = chunk_size(L, batch), chunks = (batch + chunk - 1) / chunk;
    const int threads = chunk_threads(chunks, 2.0 * double(w.size()) * double(P) * double(batch));
    prepare_scratch(threads, [&](Scratch& s) {
      buffer(s.xpad, plane * chunk);
      buffer(s.col, chunk * L * K);
      buffer(s.z, chunk * L * outg);
    });
    run_chunks(batch, chunk, chunks, threads, [&](Index b0, Index bc, Index, Scratch& s) {
      Scalar* xpads = buffer(s.xpad, plane * bc);
      pad_images(x, in, b0, bc, Hp, Wp, xpads);
      Eigen::Map<Matrix> col(buffer(s.col, bc * L * K), bc * L, K);
      for (Index g = 0; g < G; ++g) {
        padded_rows(bc, g, Hp, Wp, L, plane, xpads, col);
        Eigen::Map<Matrix> z(buffer(s.z, bc * L * outg), bc * L, outg);
        detail::gemm(detail::gemm_operand(col), detail::gemm_transposed(w.middleRows(g * outg, outg)), z.data(), z.rows(), false);
        for (Index bl = 0; bl < bc; ++bl)
          for (Index ol = 0; ol < outg; ++ol) {
            const Index o = g * outg + ol;
            crop_rows(z.col(ol).data() + bl * L, out.height, out.width, Wp, options_.bias ? bias_[o] : Scalar(0), y.col(b0 + bl).data() + o * P);
          }
      }
    });
  }

  void padded_backward(const ConstMatrixRef& x, const ImageShape& in, const ImageShape& out, const ConstMatrixRef& grad_y, Matrix* grad_x) {
    const Index Hp = in.height + 2 * options_.padding[0], Wp = in.width + 2 * options_.padding[1];
    const Index L = (out.height - 1) * Wp + out.width, P = out.plane(), plane = in.channels * Hp * Wp;
    const Index G = options_.groups, outg = out_channels() / G, K = fan_in(), batch = x.cols();
    const Matrix& w = dense_weight();
    Matrix& dw = dense_weight_grad();
    const Index chunk = chunk_size(L, batch), chunks = (batch + chunk - 1) / chunk;
    const double flops = 2.0 * double(w.size()) * double(P) * double(batch) * (grad_x != nullptr ? 2.0 : 1.0);
    const int groups = prepare_gradient_groups(chunks, flops), threads = chunk_threads(groups, flops);
    prepare_scratch(threads, [&](Scratch& s) {
      buffer(s.xpad, plane * chunk);
      buffer(s.col, chunk * L * K);
      buffer(s.gz, chunk * L * outg);
      if (grad_x != nullptr) buffer(s.dxpad, plane * chunk);
    });
    run_chunks(batch, chunk, groups, threads, [&](Index b0, Index bc, Index group, Scratch& s) {
      Matrix& wsum = group == 0 ? dw : sums_[static_cast<std::size_t>(group - 1)].w;
      Vector& bsum = group == 0 ? bias_grad_ : sums_[static_cast<std::size_t>(group - 1)].b;
      Scalar* xpads = buffer(s.xpad, plane * bc);
      pad_images(x, in, b0, bc, Hp, Wp, xpads);
      Eigen::Map<Vector> dxpads(grad_x != nullptr ? buffer(s.dxpad, plane * bc) : nullptr, grad_x != nullptr ? plane * bc : 0);
      dxpads.setZero();
      Eigen::Map<Matrix> col(buffer(s.col, bc * L * K), bc * L, K);
      for (Index g = 0; g < G; ++g) {
        // The output gradients in rows Wp wide, zeros beyond Wo.
        Eigen::Map<Matrix> gz(buffer(s.gz, bc * L * outg), bc * L, outg);
        for (Index bl = 0; bl < bc; ++bl)
          for (Index ol = 0; ol < outg; ++ol)
            widen_rows(grad_y.col(b0 + bl).data() + (g * outg + ol) * P, out.height, out.width, Wp, gz.col(ol).data() + bl * L);
        if (options_.bias) bsum.segment(g * outg, outg) += gz.colwise().sum().transpose();
        padded_rows(bc, g, Hp, Wp, L, plane, xpads, col);
        detail::gemm(detail::gemm_transposed(gz), detail::gemm_operand(col), wsum.data() + g * outg, wsum.rows(), true);
        if (grad_x == nullptr) continue;
        detail::gemm(detail::gemm_operand(gz), detail::gemm_operand(w.middleRows(g * outg, outg)), col.data(), col.rows(), false);
        const Index g0 = g * (in_channels_ / G) * Hp * Wp;
        for (Index k = 0; k < K; ++k) {
          const Index off = g0 + tap_offset(k, Hp, Wp);
          for (Index bl = 0; bl < bc; ++bl) Eigen::Map<Vector>(dxpads.data() + bl * plane + off, L) += col.col(k).segment(bl * L, L);
        }
      }
      if (grad_x == nullptr) return;
      const Index first = options_.padding[0] * Wp + options_.padding[1];
      for (Index bl = 0; bl < bc; ++bl)
        for (Index c = 0; c < in.channels; ++c)
          crop_rows(dxpads.data() + bl * plane + c * Hp * Wp + first, in.height, in.width, Wp, Scalar(0),
                    grad_x->col(b0 + bl).data() + c * in.plane());
    });
    add_gradient_sums(groups, dw, bias_grad_);
    finish_weight_grad(false);
  }

  /// Where a dense path's weight-gradient products go: the dense gradient's step (zeroed) while
  /// RigL wants it, otherwise the parameter gradient (masked afterwards by finish_weight_grad).
  Matrix& dense_weight_grad() {
    if (!dense_.on) return weight_grad_;
    dense_.step.setZero(w_.value.rows(), w_.value.cols());
    return dense_.step;
  }
  /// After a backward: the dense gradient's step into place, or the products behind the mask
  /// cleared (a sparse path writes only active positions).
  void finish_weight_grad(bool sparse) {
    if (dense_.on) dense_.finish(w_.mask, weight_grad_);
    else if (!sparse && w_.nnz != w_.value.size()) weight_grad_ = w_.mask.select(weight_grad_, Scalar(0));
  }

  /// Images per im2col chunk: enough output rows for an efficient product (about 512), at least 1.
  static Index chunk_size(Index P, Index batch) { return std::max<Index>(1, std::min<Index>(batch, (512 + P - 1) / P)); }

  static Scalar* buffer(Matrix& m, Index size) {
    if (m.size() < size) m.resize(size, 1);
    return m.data();
  }

  // ---- threads ----------------------------------------------------------------------------------
  //
  // The images of a batch are cut into chunks (chunk_size), and the chunks, not the products,
  // are shared among threads: each chunk's products are single-threaded GEMMs (detail::gemm,
  // with buffers each thread keeps), so a call opens at most one parallel region, with one
  // wait at its end, and none below the work threshold (threads.hpp). The outputs and input gradients of
  // a chunk are its own columns. The weight and bias gradients are summed per group of
  // consecutive chunks (detail::gradient_groups: fixed by the work alone up to 2 threads), and the
  // groups' sums added in order, so 1 and 2 threads give the same bits.

  /// One thread's scratch, grown and never shrunk. The dense paths': the receptive-field rows of a
  /// chunk (col), its outputs (z) and output gradients (gz), its padded images (xpad) and their
  /// gradients (dxpad). The stride-1 sparse path's, apart: one padded image (image), its output
  /// rows (acc), widened output gradients (gpad) and padded input gradient (dimage). (With the
  /// sparse path sharing the dense paths' buffers, grown large while a layer was still dense, the
  /// training step of bench_cell_dan at 10% of weights took 43.5 ms instead of 38.5 ms.)
  struct Scratch {
    Matrix col, z, gz, xpad, dxpad, image, acc, gpad, dimage;
  };
  /// The weight and bias gradients summed by one group of chunks after the first.
  struct GradientSum {
    Matrix w;
    Vector b;
  };

  /// Threads for `pieces` pieces of work of `flops` operations in all.
  static int chunk_threads(Index pieces, double flops) {
    return static_cast<int>(std::max<Index>(1, std::min<Index>(pieces, detail::threads_for(flops))));
  }
  /// Scratch for `threads` threads, each grown by grow(scratch) here, before any thread starts: an
  /// allocation that fails throws from the calling thread, not inside a parallel region.
  template <typename Grow>
  void prepare_scratch(int threads, Grow&& grow) {
    if (scratch_.size() < static_cast<std::size_t>(threads)) scratch_.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) grow(scratch_[static_cast<std::size_t>(t)]);
  }
  /// Groups of chunks for a backward of `flops` operations over `chunks` chunks, with the sums of
  /// the groups after the first zeroed.
  int prepare_gradient_groups(Index chunks, double flops) {
    const int groups = detail::gradient_groups(flops, chunks);
    if (sums_.size() < static_cast<std::size_t>(groups - 1)) sums_.resize(static_cast<std::size_t>(groups - 1));
    for (int g = 1; g < groups; ++g) {
      sums_[static_cast<std::size_t>(g - 1)].w.setZero(w_.value.rows(), w_.value.cols());
      sums_[static_cast<std::size_t>(g - 1)].b.setZero(bias_.size());
    }
    return groups;
  }
  /// Adds the sums of groups 1..groups-1 to w and b, in order.
  void add_gradient_sums(int groups, Matrix& w, Vector& b) const {
    for (int g = 1; g < groups; ++g) {
      w += sums_[static_cast<std::size_t>(g - 1)].w;
      if (b.size() != 0) b += sums_[static_cast<std::size_t>(g - 1)].b;
    }
  }
  /// body(b0, bc, piece, scratch) for the chunks of `chunk` images (the last may have fewer) of a
  /// batch, cut into `pieces` runs of consecutive chunks, on up to `threads` threads.
  template <typename Body>
  void run_chunks(Index batch, Index chunk, Index pieces, int threads, Body&& body) {
    const Index chunks = (batch + chunk - 1) / chunk;
    detail::for_each_piece(pieces, threads, [&](Index p, int tid) {
      Scratch& s = scratch_[static_cast<std::size_t>(tid)];
      for (Index c = chunks * p / pieces, c1 = chunks * (p + 1) / pieces; c < c1; ++c) body(c * chunk, std::min(chunk, batch - c * chunk), p, s);
    });
  }

  /// col (bc * P x K): row bl * P + p is the receptive field of output position p of image b0 + bl
  /// in group g's input channels, column (c, i, j) = c * kh * kw + i * kw + j; zeros where the
  /// kernel reads padding. With `used`, only the columns it marks are filled.
  void im2col(const ConstMatrixRef& x, const ImageShape& in, const ImageShape& out, Index b0, Index bc, Index g,
              const std::vector<char>* used, Eigen::Map<Matrix>& col) const {
    const Index P = out.plane(), Cg = in_channels_ / options_.groups;
    const Index kh = options_.kernel[0], kw = options_.kernel[1];
    for (Index cl = 0; cl < Cg; ++cl)
      for (Index i = 0; i < kh; ++i)
        for (Index j = 0; j < kw; ++j) {
          const Index k = (cl * kh + i) * kw + j;
          if (used != nullptr && !(*used)[static_cast<std::size_t>(k)]) continue;
          Scalar* dst = col.col(k).data();
          const Index off = j * options_.dilation[1] - options_.padding[1];
          Index lo, hi;
          valid_range(off, in.width, out.width, lo, hi);
          for (Index bl = 0; bl < bc; ++bl) {
            const Scalar* plane = x.col(b0 + bl).data() + (g * Cg + cl) * in.plane();
            for (Index oy = 0; oy < out.height; ++oy) {
              Scalar* row = dst + bl * P + oy * out.width;
              const Index iy = oy * options_.stride[0] - options_.padding[0] + i * options_.dilation[0];
              if (iy < 0 || iy >= in.height || hi < lo) {
                std::fill(row, row + out.width, Scalar(0));
                continue;
              }
              std::fill(row, row + lo, Scalar(0));
              const Scalar* src = plane + iy * in.width;
              if (options_.stride[1] == 1) {
                std::copy(src + (lo + off), src + (hi + off) + 1, row + lo);
              } else {
                for (Index ox = lo; ox <= hi; ++ox) row[ox] = src[ox * options_.stride[1] + off];
              }
              std::fill(row + hi + 1, row + out.width, Scalar(0));
            }
          }
        }
  }

  /// The transpose of im2col, accumulated: grad_x += col2im(col) for the chunk and group.
  void col2im(Matrix& grad_x, const ImageShape& in, const ImageShape& out, Index b0, Index bc, Index g, const std::vector<char>* used,
              const Eigen::Map<Matrix>& col) const {
    const Index P = out.plane(), Cg = in_channels_ / options_.groups;
    const Index kh = options_.kernel[0], kw = options_.kernel[1];
    for (Index cl = 0; cl < Cg; ++cl)
      for (Index i = 0; i < kh; ++i)
        for (Index j = 0; j < kw; ++j) {
          const Index k = (cl * kh + i) * kw + j;
          if (used != nullptr && !(*used)[static_cast<std::size_t>(k)]) continue;
          const Scalar* srcc = col.col(k).data();
          const Index off = j * options_.dilation[1] - options_.padding[1];
          Index lo, hi;
          valid_range(off, in.width, out.width, lo, hi);
          if (hi < lo) continue;
          for (Index bl = 0; bl < bc; ++bl) {
            Scalar* plane = grad_x.col(b0 + bl).data() + (g * Cg + cl) * in.plane();
            for (Index oy = 0; oy < out.height; ++oy) {
              const Index iy = oy * options_.stride[0] - options_.padding[0] + i * options_.dilation[0];
              if (iy < 0 || iy >= in.height) continue;
              const Scalar* row = srcc + bl * P + oy * out.width;
              Scalar* dst = plane + iy * in.width;
              for (Index ox = lo; ox <= hi; ++ox) dst[ox * options_.stride[1] + off] += row[ox];
            }
          }
        }
  }

  /// The output columns [lo, hi] whose input column ox * stride + off lies inside [0, width).
  void valid_range(Index off, Index width, Index out_width, Index& lo, Index& hi) const {
    const Index s = options_.stride[1];
    lo = off >= 0 ? 0 : (-off + s - 1) / s;
    hi = width - 1 - off < 0 ? -1 : std::min(out_width - 1, (width - 1 - off) / s);
  }

  const Matrix& dense_weight() {
    if (w_.nnz == w_.value.size()) return w_.value;
    if (dense_stale_) {
      masked_weight_ = w_.mask.select(w_.value, Scalar(0));  // a NaN behind the mask stays out
      dense_stale_ = false;
    }
    return masked_weight_;
  }
  void refresh_sparse() {
    const Index out = w_.value.rows(), K = w_.value.cols();
    if (sparse_pattern_stale_) {
      csr_row_.assign(static_cast<std::size_t>(out + 1), 0);
      csr_col_.clear();
      csr_pos_.clear();
      const Index G = options_.groups, outg = out / G;
      used_.assign(static_cast<std::size_t>(G), std::vector<char>(static_cast<std::size_t>(K), 0));
      for (Index o = 0; o < out; ++o) {
        for (Index k = 0; k < K; ++k)
          if (w_.mask(o, k)) {
            csr_col_.push_back(k);
            csr_pos_.push_back(o + k * out);
            used_[static_cast<std::size_t>(o / outg)][static_cast<std::size_t>(k)] = 1;
          }
        csr_row_[static_cast<std::size_t>(o + 1)] = static_cast<Index>(csr_col_.size());
      }
      sparse_pattern_stale_ = false;
      sparse_values_stale_ = true;
    }
    if (sparse_values_stale_) {
      csr_value_.resize(csr_pos_.size());
      for (std::size_t e = 0; e < csr_pos_.size(); ++e) csr_value_[e] = w_.value.data()[csr_pos_[e]];
      sparse_values_stale_ = false;
    }
  }
  void ensure_grad_buffers() const {
    if (weight_grad_.size() == 0) {
      weight_grad_.setZero(w_.value.rows(), w_.value.cols());
      bias_grad_.setZero(bias_.size());
    }
  }

  Index in_channels_ = 1;
  Conv2dOptions options_;
  std::array<Index, 4> dims_{1, 1, 1, 1};
  MaskedWeight<Scalar> w_;
  Vector bias_;
  mutable Matrix weight_grad_;
  mutable Vector bias_grad_;
  Matrix masked_weight_;
  bool dense_stale_ = true;
  // The sparse path: active weights row by row (output channel), their column and position, and
  // per group which columns any active weight reads.
  std::vector<Index> csr_row_, csr_col_, csr_pos_;
  std::vector<Scalar> csr_value_;
  std::vector<std::vector<char>> used_;
  bool sparse_pattern_stale_ = true, sparse_values_stale_ = true;
  // Scratch of each thread (see Scratch), the gradient sums of the groups of chunks after the
  // first, and the stride-1 sparse path's tap offsets.
  std::vector<Scratch> scratch_;
  std::vector<GradientSum> sums_;
  std::vector<Index> offset_;
  detail::DenseGradient<Scalar> dense_;
};

}  // namespace deepstruct
