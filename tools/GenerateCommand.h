// `convgen --layer NAME | --all`: generates layers through the cache on
// --jobs workers (pipeline/ModelGenerator). It shows progress on stderr, as a
// bar with an ETA on a terminal, else as one plain line per layer. At the end
// it prints a per-layer summary table on stdout. --all also writes the model
// manifest, convgen-model.json, beside the layers.
#pragma once

#include "model/ModelFile.h"
#include "pipeline/ModelGenerator.h"

#include <ostream>
#include <vector>

namespace convgen {

/// Generates \p layers; returns the exit code: 0, or the first failure's.
int generateLayers(const std::vector<ConvLayer> &layers, const ModelGenerateOptions &options,
                   bool verbose, std::ostream &out);

/// The summary table, one row per layer, and a totals line.
void printSummaryTable(const std::vector<LayerOutcome> &outcomes, std::ostream &out);

} // namespace convgen
