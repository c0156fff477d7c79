// Generating a whole model, round after pruning round: every layer through
// the content-addressed cache (cache/KernelCache), the misses compiled on
// --jobs worker threads within a memory budget, and a model manifest that
// lists each layer's kernel manifest with a hash of its content, so a
// runtime reloads only the layers that changed.
//
// A hit writes the cached PTX and this round's packed values (gathered at
// the cached indices). Files are rewritten only where their content
// changed, so an unchanged round writes nothing.
#pragma once

#include "codegen/LayerFiles.h"
#include "codegen/LayerGenerator.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace convgen {

struct ModelGenerateOptions {
  GenerateOptions generate;
  /// Worker threads for the layers that miss the cache; 0: one per core.
  unsigned jobs = 0;
  /// The cache's root; nullopt: no cache. --emit extras need the IR, so a
  /// run that asks for them compiles every layer (and still stores it).
  std::optional<std::filesystem::path> cacheDir;
  /// Layers run together only while their estimated peak memory
  /// (estimateGenerationBytes) fits; a layer over it alone runs by itself.
  /// 0: 3/4 of the memory available when the run starts.
  uint64_t memoryBudgetBytes = 0;
  /// Where the model manifest goes; empty: no model manifest.
  std::filesystem::path modelManifest;
  std::string weightsFile; ///< recorded in the model manifest
};

enum class CacheOutcome { Hit, Miss, Corrupt, Off };
const char *cacheOutcomeName(CacheOutcome outcome);

/// What happened to one layer.
struct LayerOutcome {
  const ConvLayer *layer = nullptr;
  GeneratedLayer info;       ///< as generated, or as cached (times are this run's)
  CacheOutcome cache = CacheOutcome::Off;
  LayerFilesWritten written; ///< none: the outputs were already up to date
  double seconds = 0;        ///< this run's, for this layer
  std::string error;         ///< why it failed; empty on success
  int exitCode = 0;          ///< the failure's (support/Error.h)
  std::string note;          ///< e.g. a corrupt cache entry that was replaced
};

/// Progress, called on the calling thread of generateModel as layers
/// start and finish.
struct ModelProgress {
  std::function<void(const ConvLayer &)> started;
  std::function<void(const LayerOutcome &, size_t done, size_t total, double etaSeconds)> finished;
};

/// Rough peak memory of generating \p layer, with its ptxas, from the code
/// it will hold (about 14 KiB per multiply-add, measured on ResNet-50
/// layers) and the template it unrolls: for scheduling, not a promise.
uint64_t estimateGenerationBytes(const ConvLayer &layer, const GenerateOptions &options);

/// Generates \p layers. A failing layer does not stop the others: its
/// outcome carries the error. The model manifest is written only when every
/// layer succeeded.
std::vector<LayerOutcome> generateModel(const std::vector<ConvLayer> &layers,
                                        const ModelGenerateOptions &options,
                                        const ModelProgress &progress = {});

} // namespace convgen
