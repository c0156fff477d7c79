// A generated layer's files: NAME.ptx, NAME.weights.bin (the packed array,
// then the bias) and the NAME.json manifest, plus the --emit extras. Made
// from a CompiledLayer, whether it was just compiled or came from the cache,
// and written atomically, each only if its content changed: a round that
// changes nothing leaves every file (and its time stamp) alone.
#pragma once

#include "codegen/LayerGenerator.h"

#include <filesystem>
#include <string>
#include <vector>

namespace convgen {

/// Which of a layer's files a write changed.
struct LayerFilesWritten {
  bool ptx = false, weights = false, manifest = false;
  bool any() const { return ptx || weights || manifest; }
};

/// Writes \p compiled's files for \p layer into options.outputDir and sets
/// compiled.info.manifestPath. With \p ptxUpToDate the caller has checked
/// that NAME.ptx already holds the PTX, and compiled.ptx may be empty.
LayerFilesWritten writeLayerFiles(const ConvLayer &layer, CompiledLayer &compiled,
                                  const GenerateOptions &options, const std::string &templateId,
                                  bool ptxUpToDate = false);

/// Where writeLayerFiles puts \p layer's file with \p suffix (".ptx").
std::filesystem::path layerFilePath(const GenerateOptions &options, const std::string &layer,
                                    const std::string &suffix);

/// The packed array of a new round from the indices of an earlier one with
/// the same mask: values[i] = weights[indices[i]]. Throws CheckFailure if an
/// index is out of range or picks a zero (the mask is not the same).
std::vector<float> gatherPackedValues(const std::vector<float> &weights,
                                      const std::vector<int64_t> &indices, bool denseTensor,
                                      const std::string &layer);

/// Hashes of the mask and the values, as the manifest records them.
std::string maskHash(const std::vector<float> &weights);
std::string valuesHash(const std::vector<float> &values);

} // namespace convgen
