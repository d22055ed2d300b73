// SPDX-License-Identifier: MIT
#pragma once

/// \file deepstruct.hpp
/// Umbrella header of the models (Eigen only): every header that needs nothing but Eigen and the
/// standard library. The graph side is <deepstruct/graph.hpp>, which needs Boost's headers.
/// Compressed files need zlib: define DEEPSTRUCT_WITH_ZLIB and link it (see io/npz.hpp).

#include "deepstruct/activation.hpp"
#include "deepstruct/batch_norm2d.hpp"
#include "deepstruct/compact.hpp"
#include "deepstruct/dan_description.hpp"
#include "deepstruct/deep_cell_dan.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/image.hpp"
#include "deepstruct/io/idx.hpp"
#include "deepstruct/io/npz.hpp"
#include "deepstruct/layer_norm.hpp"
#include "deepstruct/loss.hpp"
#include "deepstruct/masked_conv2d.hpp"
#include "deepstruct/masked_deep_dan.hpp"
#include "deepstruct/masked_deep_ffn.hpp"
#include "deepstruct/masked_deep_rnn.hpp"
#include "deepstruct/masked_layer.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/masked_recurrent.hpp"
#include "deepstruct/model.hpp"
#include "deepstruct/model_io.hpp"
#include "deepstruct/module.hpp"
#include "deepstruct/optim.hpp"
#include "deepstruct/parameter.hpp"
#include "deepstruct/pooling.hpp"
#include "deepstruct/prune.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/scalable.hpp"
#include "deepstruct/sparse_training.hpp"
#include "deepstruct/state_dict.hpp"
#include "deepstruct/threads.hpp"
#include "deepstruct/train.hpp"
#include "deepstruct/version.hpp"

// Last: declares the compiled mode's extern templates when DEEPSTRUCT_EXTERN_TEMPLATES is defined.
#include "deepstruct/extern_templates.hpp"
