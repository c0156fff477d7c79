// `convgen verify`: generate layers in memory, run them on the host
// executor and check them against the reference convolution. Prints one
// line per layer and a summary; any FAIL makes the exit code 1.
#pragma once

#include "codegen/LayerGenerator.h"
#include "model/ModelFile.h"
#include "verify/LayerVerifier.h"

#include <ostream>
#include <vector>

namespace convgen {

/// Verifies \p layers (validated already) generated with \p generateOptions.
/// Returns ExitSuccess if every layer passes, else ExitCheckFailed.
int verifyLayers(const std::vector<ConvLayer> &layers, const GenerateOptions &generateOptions,
                 const VerifyOptions &verifyOptions, std::ostream &out);

} // namespace convgen
