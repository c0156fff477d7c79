// A generated layer as the runtime needs it, read from its NAME.json
// manifest (convgen-kernel-manifest/3, written by codegen/LayerFiles)
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
  size_t module = 0; ///< index into LayerManifest::modules
};

/// One module's files: a layer is one module, or one per kernel where each
/// kernel has a constant bank of its own.
struct ManifestModule {
  std::filesystem::path ptxFile;
  std::filesystem::path fatbinFile; ///< empty for a --ptx-only layer: the PTX is loaded
};

struct LayerManifest {
  std::filesystem::path path; ///< the manifest itself
  std::string layer;
  std::string mode;        ///< "sparse" or "dense"
  std::string weightPath;  ///< "constant", "global" or "baked"
  std::filesystem::path weightsFile; ///< beside the manifest, as every file it names
  /// The modules, each with its PTX and the fatbinary (cubins and PTX) the
  /// runtime loads; without one (--ptx-only), the PTX is loaded.
  std::vector<ManifestModule> modules;
  int64_t weightsCount = 0;       ///< floats before the bias in the weights file
  int64_t biasCount = 0;
  std::string dtype;              ///< "f32" or "f16": the input and output elements
  int64_t elementBytes = 4;       ///< of the input and output
  int64_t blockX = 0, blockY = 1; ///< threads per block: spatial x channel blocks
  int64_t threadsPerBlock = 0;    ///< blockX x blockY
  int64_t imagesPerThread = 1;
  int64_t threadsPerImageGroup = 0; ///< grid x covers ceil(N / imagesPerThread) x this many threads
  int64_t outChannels = 0, outHeight = 0, outWidth = 0;
  int64_t inChannels = 0, inHeight = 0, inWidth = 0;
  std::string maskHash, valuesHash;
  std::vector<ManifestKernel> kernels;
  /// Output channels the kernels do not compute, because nobody in the
  /// model's graph reads them (channels.unread_outputs): they hold no data.
  std::vector<int64_t> unreadOutputChannels;

  /// Grid x for a batch of \p batch images.
  int64_t gridX(int64_t batch) const {
    const int64_t groups = (batch + imagesPerThread - 1) / imagesPerThread;
    return (groups * threadsPerImageGroup + blockX - 1) / blockX;
  }
};

/// Reads and checks \p path. Throws InputError naming the file and field
/// for a missing or malformed field, another format, or kernels whose
/// weight slices do not tile the packed array.
LayerManifest readLayerManifest(const std::filesystem::path &path);

} // namespace convgen
