#include "runtime/ModelRuntime.h"

#include "support/Error.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

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

std::string ModelLoadReport::notice() const {
  if (jitCompiled.empty())
    return "";
  std::string names;
  for (size_t i = 0; i < jitCompiled.size() && i < 3; ++i)
    names += (i ? ", " : "") + jitCompiled[i].first;
  if (jitCompiled.size() > 3)
    names += ", ...";
  return std::to_string(jitCompiled.size()) + " of " + std::to_string(layers) +
         " layers were JIT-compiled by the driver (" + names + "): " + jitCompiled.front().second +
         "; regenerate with --arch listing " + deviceArch + " to load without compiling";
}

ModelRuntime::ModelRuntime(const CudaContext &context, const std::filesystem::path &path,
                           unsigned threads)
    : Context(context), Path(path) {
  const auto start = std::chrono::steady_clock::now();
  const ModelManifest model = readModelManifest(Path);
  const size_t count = model.layers.size();
  if (threads == 0)
    threads = std::min(8u, std::max(1u, std::thread::hardware_concurrency()));
  threads = unsigned(std::max<size_t>(1, std::min<size_t>(threads, count)));
  std::vector<std::unique_ptr<LayerRuntime>> loaded(count);
  std::vector<std::exception_ptr> errors(count);
  std::atomic<size_t> next{0};
  auto loadSome = [&] {
    Context.makeCurrent(); // a new thread has no current context
    for (size_t i; (i = next.fetch_add(1)) < count;) {
      try {
        loaded[i] = loadLayer(Context, model, model.layers[i]);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  if (threads == 1) {
    loadSome();
  } else {
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back(loadSome);
    for (std::thread &thread : pool)
      thread.join();
  }
  for (const std::exception_ptr &error : errors)
    if (error)
      std::rethrow_exception(error);
  LoadReport.threads = threads;
  LoadReport.layers = count;
  LoadReport.deviceArch = "sm_" + std::to_string(Context.computeCapability());
  for (size_t i = 0; i < count; ++i) {
    const LoadedCode &code = loaded[i]->loadedCode();
    if (code.jitCompiled)
      LoadReport.jitCompiled.emplace_back(model.layers[i].name, code.description);
    Layers[model.layers[i].name] = {std::move(loaded[i]), model.layers[i].manifestSha256};
  }
  LoadReport.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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
