// Per-layer code generation: IR template -> specialised IR -> zero-weight
// elimination -> PTX, manifest and packed weights in the output directory.
#pragma once

#include "codegen/NvptxTarget.h"
#include "model/ModelFile.h"

#include <filesystem>
#include <set>
#include <string>

namespace convgen {

/// Extra artefacts --emit can ask for, beside the PTX, manifest and weights.
inline const std::set<std::string> EmittableArtefacts = {"ll", "weightmap"};

struct GenerateOptions {
  std::filesystem::path outputDir = "generated";
  NvptxArch arch;
  std::set<std::string> emit; ///< subset of EmittableArtefacts
  bool verbose = false;
};

/// Generates the kernel of one validated layer. Writes nothing unless the
/// whole layer succeeds.
void generateLayer(const ConvLayer &layer, const GenerateOptions &options);

} // namespace convgen
