// SPDX-License-Identifier: MIT
#pragma once

/// \file deepstruct.hpp
/// Umbrella header of the models (Eigen only). The graph side is <deepstruct/graph.hpp>,
/// which needs Boost's headers.

#include "deepstruct/errors.hpp"
#include "deepstruct/masked_linear.hpp"
#include "deepstruct/random.hpp"
#include "deepstruct/version.hpp"
