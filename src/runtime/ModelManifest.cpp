#include "runtime/ModelManifest.h"

#include "support/Error.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace convgen {

ModelManifest readModelManifest(const std::filesystem::path &path) {
  auto fail = [&path](const std::string &field, const std::string &problem) {
    throw InputError({path.string(), "", field}, problem);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError({path.string(), "", ""}, "cannot open the model manifest");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json document = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded() || !document.is_object())
    fail("", "not a JSON object");
  auto string = [&](const nlohmann::json &object, const char *key, const std::string &field) {
    if (!object.contains(key) || !object.at(key).is_string())
      fail(field, "missing, or not a string");
    return object.at(key).get<std::string>();
  };
  if (string(document, "format", "format") != "convgen-model-manifest/1")
    fail("format", "is not convgen-model-manifest/1: regenerate with this convgen");
  ModelManifest model;
  model.path = path;
  model.weights = string(document, "weights", "weights");
  model.arch = string(document, "arch", "arch");
  if (!document.contains("layers") || !document.at("layers").is_array())
    fail("layers", "missing, or not an array");
  std::set<std::string> names;
  for (size_t i = 0; i < document.at("layers").size(); ++i) {
    const nlohmann::json &entry = document.at("layers").at(i);
    const std::string field = "layers[" + std::to_string(i) + "]";
    if (!entry.is_object())
      fail(field, "not an object");
    ModelManifest::Layer layer;
    layer.name = string(entry, "name", field + ".name");
    if (!names.insert(layer.name).second)
      fail(field + ".name", "layer '" + layer.name + "' is listed twice");
    const std::string file = string(entry, "manifest", field + ".manifest");
    std::filesystem::path name(file);
    if (file.empty() || name.has_parent_path() || name.is_absolute() || file == "." || file == "..")
      fail(field + ".manifest", "must be a file name beside the model manifest");
    layer.manifest = path.parent_path() / name;
    layer.manifestSha256 = string(entry, "manifest_sha256", field + ".manifest_sha256");
    model.layers.push_back(std::move(layer));
  }
  return model;
}

} // namespace convgen
