#include "runtime/ModelRuntime.h"

#include "support/Error.h"

namespace convgen {

namespace {

std::unique_ptr<LayerRuntime> loadLayer(const CudaContext &context, const ModelManifest &model,
                                        const ModelManifest::Layer &layer) {
  auto runtime = std::make_unique<LayerRuntime>(context, layer.manifest);
  if (runtime->manifest().layer != layer.name)
    throw InputError({model.path.string(), layer.name, "manifest"},
                     layer.manifest.filename().string() + " is the manifest of layer '" +
                         runtime->manifest().layer + "'");
  return runtime;
}

} // namespace

ModelRuntime::ModelRuntime(const CudaContext &context, const std::filesystem::path &path)
    : Context(context), Path(path) {
  ModelManifest model = readModelManifest(Path);
  for (const ModelManifest::Layer &layer : model.layers)
    Layers[layer.name] = {loadLayer(Context, model, layer), layer.manifestSha256};
}

const LayerRuntime &ModelRuntime::layer(const std::string &name) const {
  auto it = Layers.find(name);
  if (it == Layers.end())
    throw InputError({Path.string(), name, ""}, "the model has no such layer");
  return *it->second.runtime;
}

std::vector<std::string> ModelRuntime::layerNames() const {
  std::vector<std::string> names;
  for (const auto &[name, loaded] : Layers)
    names.push_back(name);
  return names;
}

ModelRuntime::ReloadReport ModelRuntime::reload() {
  ModelManifest model = readModelManifest(Path);
  ReloadReport report;
  std::map<std::string, bool> listed;
  for (const ModelManifest::Layer &layer : model.layers) {
    listed[layer.name] = true;
    auto it = Layers.find(layer.name);
    if (it == Layers.end()) {
      Layers[layer.name] = {loadLayer(Context, model, layer), layer.manifestSha256};
      report.added.push_back(layer.name);
      continue;
    }
    Loaded &loaded = it->second;
    if (loaded.manifestSha256 == layer.manifestSha256) {
      report.unchanged.push_back(layer.name);
      continue;
    }
    LayerRuntime::Reload how = loaded.runtime->reload();
    loaded.manifestSha256 = layer.manifestSha256;
    (how == LayerRuntime::Reload::ValuesOnly ? report.valuesOnly : report.newModule)
        .push_back(layer.name);
  }
  for (auto it = Layers.begin(); it != Layers.end();) {
    if (listed.count(it->first)) {
      ++it;
      continue;
    }
    report.removed.push_back(it->first);
    it = Layers.erase(it);
  }
  return report;
}

} // namespace convgen
