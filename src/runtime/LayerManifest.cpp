#include "runtime/LayerManifest.h"

#include "support/Error.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace convgen {

namespace {

using Json = nlohmann::json;

class ManifestReader {
public:
  explicit ManifestReader(const std::filesystem::path &path) : Path(path.string()) {}

  [[noreturn]] void fail(const std::string &field, const std::string &problem) const {
    throw InputError({Path, "", field}, problem);
  }
  const Json &at(const Json &object, const std::string &key, const std::string &field) const {
    if (!object.is_object() || !object.contains(key))
      fail(field, "missing");
    return object.at(key);
  }
  std::string text(const Json &object, const std::string &key, const std::string &field) const {
    const Json &value = at(object, key, field);
    if (!value.is_string())
      fail(field, "must be a string");
    return value.get<std::string>();
  }
  int64_t count(const Json &object, const std::string &key, const std::string &field) const {
    const Json &value = at(object, key, field);
    if (!value.is_number_integer() || value.get<int64_t>() < 0)
      fail(field, "must be a non-negative integer");
    return value.get<int64_t>();
  }

private:
  std::string Path;
};

Json parseFile(const std::filesystem::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError({path.string(), "", ""}, "cannot open the manifest");
  std::stringstream buffer;
  buffer << in.rdbuf();
  Json document = Json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded())
    throw InputError({path.string(), "", ""}, "not valid JSON");
  return document;
}

/// A file named in the manifest: a plain name beside it, never a path out.
std::filesystem::path besideManifest(const ManifestReader &reader, const std::filesystem::path &manifest,
                                     const std::string &name, const std::string &field) {
  std::filesystem::path file(name);
  if (name.empty() || file.has_parent_path() || file.is_absolute() || name == "." || name == "..")
    reader.fail(field, "must be a file name beside the manifest, not '" + name + "'");
  return manifest.parent_path() / file;
}

} // namespace

LayerManifest readLayerManifest(const std::filesystem::path &path) {
  Json document = parseFile(path);
  ManifestReader r(path);
  LayerManifest m;
  m.path = path;
  std::string format = r.text(document, "format", "format");
  if (format != "convgen-kernel-manifest/3")
    r.fail("format", "'" + format + "' is not convgen-kernel-manifest/3: regenerate the layer");
  m.layer = r.text(document, "layer", "layer");
  m.mode = r.text(document, "mode", "mode");
  // The modules with their kernels; a manifest from before modules names
  // its one module's files at the top (and one from before fatbinaries,
  // only its PTX, which is loaded). Which image of a fatbinary runs is the
  // fatbinary's to say (runtime/FatbinaryImage), not the manifest's.
  auto moduleFiles = [&](const Json &object, const std::string &prefix) {
    ManifestModule module;
    module.ptxFile = besideManifest(r, path, r.text(object, "ptx", prefix + "ptx"), prefix + "ptx");
    if (object.contains("fatbin") && !object.at("fatbin").is_null())
      module.fatbinFile =
          besideManifest(r, path, r.text(object, "fatbin", prefix + "fatbin"), prefix + "fatbin");
    return module;
  };
  std::vector<std::vector<std::string>> moduleKernels;
  if (document.contains("modules")) {
    const Json &modules = document.at("modules");
    if (!modules.is_array() || modules.empty())
      r.fail("modules", "must be a non-empty list");
    for (size_t i = 0; i < modules.size(); ++i) {
      const std::string field = "modules[" + std::to_string(i) + "]";
      m.modules.push_back(moduleFiles(modules[i], field + "."));
      const Json &kernels = r.at(modules[i], "kernels", field + ".kernels");
      if (!kernels.is_array() || kernels.empty())
        r.fail(field + ".kernels", "must be a non-empty list of kernel symbols");
      moduleKernels.emplace_back();
      for (const Json &symbol : kernels) {
        if (!symbol.is_string())
          r.fail(field + ".kernels", "must be a non-empty list of kernel symbols");
        moduleKernels.back().push_back(symbol.get<std::string>());
      }
    }
  } else {
    m.modules.push_back(moduleFiles(document, ""));
  }
  const Json &weights = r.at(document, "weights", "weights");
  m.weightsFile = besideManifest(r, path, r.text(weights, "file", "weights.file"), "weights.file");
  m.weightPath = r.text(weights, "path", "weights.path");
  if (m.weightPath != "constant" && m.weightPath != "global" && m.weightPath != "baked")
    r.fail("weights.path", "must be constant, global or baked");
  m.weightsCount = r.count(weights, "count", "weights.count");
  m.biasCount = r.count(weights, "bias_count", "weights.bias_count");
  if (r.count(weights, "bias_offset_bytes", "weights.bias_offset_bytes") != m.weightsCount * 4)
    r.fail("weights.bias_offset_bytes", "must be 4 x weights.count");

  m.dtype = r.text(document, "dtype", "dtype");
  if (m.dtype != "f32" && m.dtype != "f16")
    r.fail("dtype", "must be f32 or f16");
  const Json &launch = r.at(document, "launch", "launch");
  m.elementBytes = r.count(launch, "element_bytes", "launch.element_bytes");
  if (m.elementBytes != (m.dtype == "f16" ? 2 : 4))
    r.fail("launch.element_bytes", "must be 4 for f32 and 2 for f16");
  const Json &block = r.at(launch, "block", "launch.block");
  auto positive = [](const Json &value) {
    return value.is_number_integer() && value.get<int64_t>() >= 1;
  };
  if (!block.is_array() || block.size() != 3 || !positive(block[0]) || !positive(block[1]) ||
      block[2] != 1 || block[0].get<int64_t>() * block[1].get<int64_t>() > 1024)
    r.fail("launch.block", "must be [x, y, 1] with 1..1024 threads in all");
  m.blockX = block[0].get<int64_t>();
  m.blockY = block[1].get<int64_t>();
  m.threadsPerBlock = m.blockX * m.blockY;
  const Json &grid = r.at(launch, "grid", "launch.grid");
  m.imagesPerThread = r.count(grid, "images_per_thread", "launch.grid.images_per_thread");
  if (m.imagesPerThread < 1)
    r.fail("launch.grid.images_per_thread", "must be at least 1");
  m.threadsPerImageGroup =
      r.count(grid, "x_threads_per_image_group", "launch.grid.x_threads_per_image_group");

  const Json &geometry = r.at(document, "geometry", "geometry");
  auto readShape = [&](const char *key, int64_t &channels, int64_t &height, int64_t &width) {
    const std::string field = std::string("geometry.") + key;
    const Json &shape = r.at(geometry, key, field);
    if (!shape.is_array() || shape.size() != 4)
      r.fail(field, "must be [N, C, H, W]");
    for (size_t i = 1; i < 4; ++i)
      if (!shape[i].is_number_integer() || shape[i].get<int64_t>() < 1)
        r.fail(field, "sizes must be positive integers");
    channels = shape[1].get<int64_t>();
    height = shape[2].get<int64_t>();
    width = shape[3].get<int64_t>();
  };
  readShape("input", m.inChannels, m.inHeight, m.inWidth);
  readShape("output", m.outChannels, m.outHeight, m.outWidth);
  if (m.biasCount != 0 && m.biasCount != m.outChannels)
    r.fail("weights.bias_count", "must be 0 or the output channels");

  const Json &kernels = r.at(document, "kernels", "kernels");
  if (!kernels.is_array() || kernels.empty())
    r.fail("kernels", "must be a non-empty list");
  int64_t nextOffset = 0;
  for (size_t i = 0; i < kernels.size(); ++i) {
    const std::string field = "kernels[" + std::to_string(i) + "]";
    ManifestKernel kernel;
    kernel.symbol = r.text(kernels[i], "symbol", field + ".symbol");
    kernel.gridY = r.count(kernels[i], "grid_y", field + ".grid_y");
    if (kernel.gridY < 1 || kernel.gridY > 65535)
      r.fail(field + ".grid_y", "must be in 1..65535");
    const Json &slice = r.at(kernels[i], "weights", field + ".weights");
    kernel.weightsSymbol = r.text(slice, "symbol", field + ".weights.symbol");
    kernel.weightsOffsetBytes = r.count(slice, "offset_bytes", field + ".weights.offset_bytes");
    kernel.weightsCount = r.count(slice, "count", field + ".weights.count");
    // The slices tile the packed array in order (the dense fallback's one
    // kernel reads the whole tensor).
    if (kernel.weightsOffsetBytes != nextOffset * 4)
      r.fail(field + ".weights.offset_bytes", "slices must follow one another");
    nextOffset += kernel.weightsCount;
    if (m.weightPath == "constant" && kernel.weightsCount > 0 && kernel.weightsSymbol.empty())
      r.fail(field + ".weights.symbol", "missing on the constant path");
    m.kernels.push_back(kernel);
  }
  // Each kernel in exactly one module (a manifest of one module without a
  // list: all of them).
  if (!moduleKernels.empty()) {
    std::vector<int> placed(m.kernels.size(), 0);
    for (size_t module = 0; module < moduleKernels.size(); ++module)
      for (const std::string &symbol : moduleKernels[module]) {
        auto kernel = std::find_if(m.kernels.begin(), m.kernels.end(),
                                   [&](const ManifestKernel &k) { return k.symbol == symbol; });
        if (kernel == m.kernels.end())
          r.fail("modules[" + std::to_string(module) + "].kernels", "names '" + symbol +
                                                                    "', which is not a kernel");
        kernel->module = module;
        ++placed[size_t(kernel - m.kernels.begin())];
      }
    for (size_t i = 0; i < placed.size(); ++i)
      if (placed[i] != 1)
        r.fail("modules", "must hold kernel '" + m.kernels[i].symbol + "' once, not " +
                              std::to_string(placed[i]) + " times");
  }
  if (nextOffset != m.weightsCount)
    r.fail("kernels", "the kernels' weight slices cover " + std::to_string(nextOffset) +
                          " values, the file " + std::to_string(m.weightsCount));
  m.maskHash = r.text(document, "mask_hash", "mask_hash");
  m.valuesHash = r.text(document, "values_hash", "values_hash");
  if (document.contains("channels")) {
    const Json &unread = r.at(r.at(document, "channels", "channels"), "unread_outputs",
                              "channels.unread_outputs");
    if (!unread.is_array())
      r.fail("channels.unread_outputs", "must be a list of output channels");
    for (const Json &channel : unread) {
      if (!channel.is_number_integer() || channel.get<int64_t>() < 0 ||
          channel.get<int64_t>() >= m.outChannels)
        r.fail("channels.unread_outputs", "must hold output channels, 0 to " +
                                              std::to_string(m.outChannels - 1));
      m.unreadOutputChannels.push_back(channel.get<int64_t>());
    }
  }
  return m;
}

} // namespace convgen
