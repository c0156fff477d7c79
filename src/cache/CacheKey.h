// The content address of a layer's generated code: a SHA-256 over
// everything the code depends on. Two layers with the same key have the
// same PTX, kernels and packing order, so a cached entry can stand in for
// generation, with this round's values gathered at the cached indices.
//
// The key covers: the cache format; the tool (convgen's version and a hash
// of the running executable, so any rebuild misses); the operator
// template's content hash; the layer's name (it names the kernels); the
// geometry; the tiling decided for it (heuristic, tuned or --tiling) and
// the activation type; the target arch, the weight path options and code
// budgets; ptxas's version (its figures go into the manifest); and the
// mask. In baked-values mode the values are in the code, so they go in too.
#pragma once

#include "codegen/LayerGenerator.h"

#include <string>

namespace convgen {

/// "0.1.0+<16 hex digits of the executable's SHA-256>", computed once.
const std::string &toolFingerprint();

/// The 64 hex digits of \p layer's key under \p options. Throws what
/// decideTiling throws for a tiling that does not fit the layer.
std::string layerCacheKey(const ConvLayer &layer, const GenerateOptions &options,
                          const std::string &templateId, const std::string &ptxasVersion);

/// The key of \p layer's tuning record: what the best tiling depends on
/// (the template, the layer's name, geometry and mask, the arch, the
/// activation type, the batch planned for, the weight-path options and the
/// code budgets), not the tool build or the values.
std::string layerTuningKey(const ConvLayer &layer, const GenerateOptions &options,
                           const std::string &templateId);

} // namespace convgen
