// The model manifest (convgen-model-manifest/1) that `convgen --all`
// writes beside the layers: each layer's kernel manifest and the SHA-256 of
// its content, so a runtime can tell which layers a new round changed
// without reading them.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace convgen {

struct ModelManifest {
  struct Layer {
    std::string name;
    std::filesystem::path manifest; ///< beside the model manifest
    std::string manifestSha256;
  };
  std::filesystem::path path;
  std::string weights, arch;
  std::vector<Layer> layers;
};

/// Reads and checks \p path: InputError naming the file and field for a
/// missing or malformed field, another format, a duplicate layer, or a
/// layer manifest that is not a plain file name beside it.
ModelManifest readModelManifest(const std::filesystem::path &path);

} // namespace convgen
