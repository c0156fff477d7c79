// `convgen --list`: one row per layer with its shape, geometry, sparsity and
// dense vs sparse FLOPs, as a table or as JSON (--json).
#pragma once

#include "model/ModelFile.h"

#include <ostream>

namespace convgen {

/// Loads and validates every layer of \p model, then prints the listing.
void printLayerList(const ModelFile &model, bool asJson, std::ostream &out);

} // namespace convgen
