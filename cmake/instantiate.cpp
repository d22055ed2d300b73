// SPDX-License-Identifier: MIT
// The translation unit of deepstruct::compiled (the compiled mode; see
// include/deepstruct/extern_templates.hpp): the masked layers, networks and optimizers for float
// and double, compiled once for the whole program.
#include <deepstruct/instantiate.hpp>
