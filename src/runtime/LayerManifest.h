// A generated layer as the runtime needs it, read from its NAME.json
// manifest (convgen-kernel-manifest/2, written by codegen/LayerGenerator)
// and checked for consistency before anything touches the GPU.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace convgen {

struct ManifestKernel {
  std::string symbol;
  int64_t gridY = 0;
  std::string weightsSymbol; ///< constant-bank array, empty on the other paths
  int64_t weightsOffsetBytes = 0;
  int64_t weightsCount = 0;
};

struct LayerManifest {
  std::filesystem::path path; ///< the manifest itself
  std::string layer;
  std::string mode;        ///< "sparse" or "dense"
  std::string weightPath;  ///< "constant", "global" or "baked"
  std::filesystem::path ptxFile, weightsFile; ///< beside the manifest
  int64_t weightsCount = 0;       ///< floats before the bias in the weights file
  int64_t biasCount = 0;
  int64_t threadsPerBlock = 0;
  int64_t threadsPerImage = 0;    ///< grid x covers N x this many threads
  int64_t outChannels = 0, outHeight = 0, outWidth = 0;
  int64_t inChannels = 0, inHeight = 0, inWidth = 0;
  std::string maskHash, valuesHash;
  std::vector<ManifestKernel> kernels;

  /// Grid x for a batch of \p batch images.
  int64_t gridX(int64_t batch) const {
    return (batch * threadsPerImage + threadsPerBlock - 1) / threadsPerBlock;
  }
};

/// Reads and checks \p path. Throws InputError naming the file and field
/// for a missing or malformed field, another format, or kernels whose
/// weight slices do not tile the packed array.
LayerManifest readLayerManifest(const std::filesystem::path &path);

} // namespace convgen
