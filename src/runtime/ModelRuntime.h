// A generated model on the GPU: every layer of a model manifest loaded
// (LayerRuntime), and reload() after a new pruning round, which touches
// only the layers whose kernel manifest changed: by values alone where the
// code is the same, else with a new module.
#pragma once

#include "runtime/LayerRuntime.h"
#include "runtime/ModelManifest.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace convgen {

class ModelRuntime {
public:
  /// Loads every layer of the model manifest at \p path.
  ModelRuntime(const CudaContext &context, const std::filesystem::path &path);

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
  std::map<std::string, Loaded> Layers;
};

} // namespace convgen
