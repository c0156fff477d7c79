// A generated layer's files: NAME.ptx, NAME.fatbin (its cubins and PTX, what
// the runtime loads; not with --ptx-only) or, for a layer of several modules
// (a constant bank per kernel), NAME.m<k>.ptx and NAME.m<k>.fatbin each, NAME.weights.bin (the packed
// array, then the bias) and the NAME.json manifest, plus the --emit extras. Made
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
  bool ptx = false, fatbin = false, weights = false, manifest = false;
  bool any() const { return ptx || fatbin || weights || manifest; }
};

/// Which code files (of every module) the caller has checked the output
/// already holds: their bytes in CompiledLayer may then be left empty (a
/// cache hit reads neither from the cache).
struct CodeFilesUpToDate {
  bool ptx = false, fatbin = false;
};

/// Writes \p compiled's files for \p layer into options.outputDir and sets
/// compiled.info.manifestPath. A layer without a fatbinary (ptxas did not
/// run) removes an earlier round's NAME.fatbin, so none is left that the
/// manifest does not name.
LayerFilesWritten writeLayerFiles(const ConvLayer &layer, CompiledLayer &compiled,
                                  const GenerateOptions &options, const std::string &templateId,
                                  CodeFilesUpToDate upToDate = {});

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
