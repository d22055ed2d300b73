// SPDX-License-Identifier: MIT
#pragma once

/// \file graph.hpp
/// Umbrella header of the graph side (needs Boost's headers, nothing to link): the DAG type,
/// layers, conversions between masks and graphs, random structural priors, files, analysis and
/// pictures. The models are in <deepstruct/deepstruct.hpp> (Eigen only).

#include "deepstruct/dan_description.hpp"
#include "deepstruct/graph/build.hpp"
#include "deepstruct/graph/conv2d.hpp"
#include "deepstruct/graph/convert.hpp"
#include "deepstruct/graph/dag.hpp"
#include "deepstruct/graph/generators.hpp"
#include "deepstruct/graph/io.hpp"
#include "deepstruct/graph/layer_index.hpp"
#include "deepstruct/graph/layered.hpp"
#include "deepstruct/graph/scalable.hpp"

#include "deepstruct/graph/models.hpp"
#include "deepstruct/graph/recurrent.hpp"
#include "deepstruct/graph/cells.hpp"
#include "deepstruct/graph/evolution.hpp"
#include "deepstruct/graph/analysis.hpp"
#include "deepstruct/graph/svg.hpp"
