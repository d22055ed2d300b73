// The models the load harnesses load into (fuzz_load_ffn, fuzz_load_dan_npz), shared with
// make_corpus.cpp so that the seed files fit them exactly.
#pragma once

#include <deepstruct/dan_description.hpp>
#include <deepstruct/masked_deep_dan.hpp>
#include <deepstruct/masked_deep_ffn.hpp>

namespace fuzz {

/// MaskedDeepFFN 6 -> [5, 4] -> 3 with LayerNorm and biases; a few weights masked.
inline deepstruct::MaskedDeepFFN<float> ffn_model() {
  deepstruct::FFNOptions options;
  options.use_layer_norm = true;
  options.seed = 14;
  deepstruct::MaskedDeepFFN<float> model(6, 3, {5, 4}, options);
  auto layers = model.maskable_layers();
  auto mask = layers.front()->mask();
  mask(0, 0) = mask(1, 2) = mask(4, 5) = false;
  layers.front()->set_mask(mask);
  return model;
}

/// A DAN 5 -> layers of 3, 4, 2 (a skip connection 0 -> 2) -> 3 with LayerNorm and biases.
inline deepstruct::DanDescription dan_structure() {
  using Mask = Eigen::Matrix<bool, Eigen::Dynamic, Eigen::Dynamic>;
  deepstruct::DanDescription d;
  d.layer_sizes = {3, 4, 2};
  Mask m01 = Mask::Constant(4, 3, true), m02 = Mask::Constant(2, 3, false), m12 = Mask::Constant(2, 4, true);
  m01(0, 1) = false;
  m02(1, 2) = true;
  m12(1, 3) = false;
  d.connections.push_back({0, 1, m01});
  d.connections.push_back({0, 2, m02});
  d.connections.push_back({1, 2, m12});
  return d;
}

inline deepstruct::MaskedDeepDAN<float> dan_model() {
  deepstruct::DANOptions options;
  options.use_layer_norm = true;
  options.seed = 14;
  return deepstruct::MaskedDeepDAN<float>(5, 3, dan_structure(), options);
}

}  // namespace fuzz
