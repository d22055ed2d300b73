// SPDX-License-Identifier: MIT
#pragma once

/// \file deepstruct.hpp
/// Umbrella header of the models (Eigen only). The graph side is <deepstruct/graph.hpp>,
/// which needs Boost's headers.

#include "deepstruct/activation.hpp"
#include "deepstruct/dan_description.hpp"
#include "deepstruct/errors.hpp"
#include "deepstruct/layer_norm.hpp"
#include "deepstruct/loss.hpp"
#include "deepstruct/masked_deep_dan.hpp"
#include "deepstruct/masked_deep_ffn.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/optim.hpp"
#include "deepstruct/parameter.hpp"
#include "deepstruct/prune.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/scalable.hpp"
#include "deepstruct/state_dict.hpp"
#include "deepstruct/train.hpp"
#include "deepstruct/version.hpp"
