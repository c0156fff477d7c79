// A generated model on the GPU: every layer of a model manifest loaded
// (LayerRuntime) on parallel threads, as the Driver API allows: a model
// whose layers lack a cubin for the device is JIT-compiled a layer per
// thread. reload() after a new pruning round touches only the layers whose
// kernel manifest changed: by values alone where the code is the same, else
// with a new module.
#pragma once

#include "runtime/LayerRuntime.h"
#include "runtime/ModelManifest.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace convgen {

/// What loading a model took.
struct ModelLoadReport {
  double seconds = 0;   ///< wall time, manifest to the last layer loaded
  unsigned threads = 1; ///< layers loaded at once
  size_t layers = 0;
  std::string deviceArch; ///< "sm_90"
  /// The layers whose PTX the driver JIT-compiled (no cubin for the device),
  /// with why, in the manifest's order.
  std::vector<std::pair<std::string, std::string>> jitCompiled;
  /// One line saying which layers were JIT-compiled and how to avoid it;
  /// empty when none was.
  std::string notice() const;
};

class ModelRuntime {
public:
  /// Loads every layer of the model manifest at \p path, up to \p threads
  /// at once (0: one per core, at most 8). The first failing layer's error
  /// propagates.
  ModelRuntime(const CudaContext &context, const std::filesystem::path &path, unsigned threads = 0);

  const ModelLoadReport &loadReport() const { return LoadReport; }

  /// The loaded layer \p name; InputError if the model has none.
  const LayerRuntime &layer(const std::string &name) const;
  std::vector<std::string> layerNames() const;

  /// Which layers a reload touched, and how.
  struct ReloadReport {
    std::vector<std::string> unchanged, valuesOnly, newModule, added, removed;
  };
  /// Re-reads the model manifest. A layer whose manifest hash is unchanged
  /// is not touched; a changed one is reloaded in place; new layers are
  /// loaded and missing ones dropped. If a layer fails, the exception
  /// propagates: layers done so far stay reloaded (a retry redoes only the
  /// rest), and the failing one keeps running its previous round.
  ReloadReport reload();

private:
  struct Loaded {
    std::unique_ptr<LayerRuntime> runtime;
    std::string manifestSha256; ///< of the round it runs
  };
  const CudaContext &Context;
  std::filesystem::path Path;
  ModelLoadReport LoadReport;
  std::map<std::string, Loaded> Layers;
};

} // namespace convgen
