#include "codegen/LayerFiles.h"

#include "support/AtomicFile.h"
#include "support/Error.h"
#include "support/Hash.h"

#include <cmath>
#include <cstring>
#include <llvm/ADT/StringExtras.h>
#include <llvm/Support/SHA256.h>
#include <nlohmann/json.hpp>

namespace convgen {

namespace fs = std::filesystem;

std::string maskHash(const std::vector<float> &weights) {
  std::vector<unsigned char> mask(weights.size());
  for (size_t i = 0; i < weights.size(); ++i)
    mask[i] = weights[i] != 0.0f;
  return hexDigest(fnv1a64(mask));
}

std::string valuesHash(const std::vector<float> &values) {
  return hexDigest(
      fnv1a64({reinterpret_cast<const unsigned char *>(values.data()), values.size() * 4}));
}

/// SHA-256 of the model's own weights (OIHW) and then the bias, as
/// little-endian f32: what the layer was generated from, before the graph
/// removed anything, so that a PyTorch model can check that its layer is
/// the one generated (python/convgen/torch.py hashes the same bytes).
static std::string modelWeightsSha256(const ConvLayer &layer) {
  llvm::SHA256 hash;
  const std::vector<float> &weights = layer.referenceWeights();
  hash.update(llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(weights.data()),
                                      weights.size() * 4));
  hash.update(llvm::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t *>(layer.bias.data()),
                                      layer.bias.size() * 4));
  return llvm::toHex(hash.final(), /*LowerCase=*/true);
}

/// Packed nonzeros, then the bias: little-endian f32 (the hosts convgen
/// runs on are little-endian, as is every CUDA device).
static std::string weightsFile(const std::vector<float> &packed, const std::vector<float> &bias) {
  std::string bytes((packed.size() + bias.size()) * 4, '\0');
  std::memcpy(bytes.data(), packed.data(), packed.size() * 4);
  std::memcpy(bytes.data() + packed.size() * 4, bias.data(), bias.size() * 4);
  return bytes;
}

static nlohmann::json geometryJson(const ConvGeometry &g) {
  HW out = g.outSize();
  return {{"input", {g.batch, g.inChannels, g.inSize.h, g.inSize.w}},
          {"output", {g.batch, g.outChannels, out.h, out.w}},
          {"weight_shape", {g.outChannels, g.inChannelsPerGroup(), g.kernel.h, g.kernel.w}},
          {"stride", {g.stride.h, g.stride.w}},
          {"padding", {g.padding.h, g.padding.w}},
          {"dilation", {g.dilation.h, g.dilation.w}},
          {"groups", g.groups},
          {"activation", activationName(g.activation)},
          {"bias", g.hasBias}};
}

/// Machine instructions per fma in the code: the share of issue slots that
/// is not useful work. Null without a measurement or without fma.
static nlohmann::json sassPerMultiplyAdd(int64_t instructions, int64_t multiplyAdds) {
  if (instructions <= 0 || multiplyAdds <= 0)
    return nullptr;
  return std::round(1000.0 * double(instructions) / double(multiplyAdds)) / 1000.0;
}

static nlohmann::json ptxasKernelJson(const std::optional<PtxasReport> &ptxas,
                                      const LayerKernel &layerKernel) {
  if (!ptxas || !ptxas->kernels.count(layerKernel.symbol))
    return nullptr;
  const PtxasKernelReport &kernel = ptxas->kernels.at(layerKernel.symbol);
  return {{"registers", kernel.registers},
          {"spill_store_bytes", kernel.spillStoreBytes},
          {"spill_load_bytes", kernel.spillLoadBytes},
          {"stack_frame_bytes", kernel.stackFrameBytes},
          {"shared_bytes", kernel.sharedBytes},
          {"sass_instructions", kernel.instructions},
          {"sass_per_fma", sassPerMultiplyAdd(kernel.instructions, layerKernel.multiplyAdds)}};
}

/// The fatbinary's images: a cubin per arch, with ptxas's figures, then the
/// PTX, which a device with no cubin of its major version JIT-compiles.
/// Without a fatbinary, the PTX file alone.
static nlohmann::json imagesJson(const GeneratedLayer &result, const GenerateOptions &options) {
  nlohmann::json images = nlohmann::json::array();
  for (const CubinInfo &cubin : result.cubins)
    images.push_back({{"kind", "cubin"},
                      {"arch", cubin.arch},
                      {"bytes", cubin.bytes},
                      {"sass_instructions", cubin.instructions},
                      {"registers", cubin.registers},
                      {"spill_bytes", cubin.spillBytes}});
  images.push_back({{"kind", "ptx"}, {"arch", options.arch.name}, {"bytes", result.ptxBytes}});
  return images;
}

/// The layer's modules, each with its files and kernels: one, or one per
/// kernel where each kernel has a constant bank of its own.
static nlohmann::json modulesJson(const GeneratedLayer &result, const std::string &stem) {
  nlohmann::json modules = nlohmann::json::array();
  const size_t count = result.modules.size();
  for (size_t m = 0; m < count; ++m) {
    nlohmann::json kernels = nlohmann::json::array();
    for (const LayerKernel &kernel : result.kernels)
      if (kernel.module == m)
        kernels.push_back(kernel.symbol);
    modules.push_back({{"ptx", stem + moduleFileSuffix(m, count, ".ptx")},
                       {"fatbin", result.modules[m].fatbinBytes
                                      ? nlohmann::json(stem + moduleFileSuffix(m, count, ".fatbin"))
                                      : nlohmann::json(nullptr)},
                       {"ptx_bytes", result.modules[m].ptxBytes},
                       {"fatbin_bytes", result.modules[m].fatbinBytes},
                       {"kernels", kernels}});
  }
  return modules;
}

/// The NAME.json manifest: everything a runtime needs to load and launch
/// the layer's kernels, and what the generation produced.
static nlohmann::json buildManifest(const ConvLayer &layer, const GeneratedLayer &result,
                                    const GenerateOptions &options, const std::string &templateId,
                                    const std::vector<float> &packed) {
  const ConvGeometry &geometry = layer.geometry;
  const std::string stem = outputStemFor(layer.name);
  const Tiling &tiling = result.tiling;
  const int64_t tilesPerGroup = result.tilesPerImageGroup;
  nlohmann::json kernels = nlohmann::json::array();
  for (const LayerKernel &kernel : result.kernels)
    kernels.push_back(
        {{"symbol", kernel.symbol},
         {"channel_blocks", {{"first", kernel.channelBlocks.first}, {"count", kernel.channelBlocks.count}}},
         {"grid_y", kernel.gridY},
         {"multiply_adds", kernel.multiplyAdds},
         {"weights",
          {{"symbol", kernel.weightsSymbol},
           {"offset_bytes", kernel.weightsOffset * 4},
           {"count", kernel.weightsCount}}},
         {"module", kernel.module},
         {"ptxas", ptxasKernelJson(result.ptxas, kernel)}});
  nlohmann::json manifest = {
      {"format", "convgen-kernel-manifest/3"},
      {"layer", layer.name},
      // One module: its files here too, as before modules were listed.
      {"ptx", result.modules.size() == 1 ? nlohmann::json(stem + ".ptx") : nlohmann::json(nullptr)},
      {"fatbin", result.modules.size() == 1 && result.fatbinBytes
                     ? nlohmann::json(stem + ".fatbin")
                     : nlohmann::json(nullptr)},
      {"modules", modulesJson(result, stem)},
      {"images", imagesJson(result, options)},
      {"template", templateId},
      {"arch", options.arch.name},
      {"dtype", dtypeName(result.dtype)},
      {"mode", result.mode},
      {"dense_reason", result.denseReason},
      {"code_budget",
       {{"multiply_adds_per_kernel", options.maxMultiplyAdds},
        {"kernels_per_layer", options.maxKernelsPerLayer}}},
      {"geometry", geometryJson(geometry)},
      {"tiling",
       {{"spec", tiling.describe()},
        {"source", result.tilingSource},
        {"reasons", result.tilingReasons},
        {"channels_per_thread", tiling.channelsPerThread},
        {"outputs_per_thread", tiling.outputsPerThread},
        {"rows_per_thread", tiling.rowsPerThread},
        {"images_per_thread", tiling.imagesPerThread},
        {"threads_x", tiling.threadsX},
        {"channel_blocks_per_block", tiling.channelBlocksPerCta},
        {"reduction_splits", tiling.reductionSplits},
        {"stage_input", tiling.stageInput},
        {"skip_unused_inputs", tiling.skipUnusedInputs}}},
      {"launch",
       {{"parameters", {"input", "weights", "bias", "output", "batch"}},
        {"weights_argument", "the packed weights file + the kernel's weights.offset_bytes"},
        {"element_bytes", dtypeBytes(result.dtype)},
        {"block", {tiling.threadsX, tiling.blockY(), 1}},
        {"grid",
         {{"x", "ceil(ceil(N / " + std::to_string(tiling.imagesPerThread) + ") * " +
                    std::to_string(tilesPerGroup) + " / " + std::to_string(tiling.threadsX) + ")"},
          {"images_per_thread", tiling.imagesPerThread},
          {"x_threads_per_image_group", tilesPerGroup},
          {"y", "the kernel's grid_y"},
          {"z", 1}}},
        {"shared_memory_bytes", result.ptxas ? result.ptxas->sharedBytes : 0}}},
      {"kernels", kernels},
      {"weights",
       {{"file", stem + ".weights.bin"},
        {"path", result.weightPath},
        {"count", packed.size()},
        {"bias_offset_bytes", packed.size() * 4},
        {"bias_count", layer.bias.size()},
        {"source", layer.weightSource}}},
      {"nonzeros", result.nonzeros},
      {"weights_total", layer.weights.size()},
      {"multiply_adds_in_code", result.multiplyAdds},
      {"dense_multiply_adds_in_template", result.denseMultiplyAdds},
      {"mask_hash", maskHash(layer.weights)},
      {"values_hash", valuesHash(packed) + valuesHash(layer.bias)},
      {"model_weights_sha256", modelWeightsSha256(layer)},
      {"ptx_bytes", result.ptxBytes},
  };
  if (!layer.channels.empty()) {
    const HW out = geometry.outSize();
    manifest["channels"] = {
        {"zero_inputs", layer.channels.zeroInputChannels},
        {"zero_outputs", layer.channels.zeroOutputChannels},
        {"unread_outputs", layer.channels.unreadOutputChannels},
        {"removed_nonzeros", layer.removedNonzeros},
        {"removed_multiply_adds_per_image", layer.removedNonzeros * out.h * out.w},
        // Each nonzero is one fma per output of a thread's tile in sparse
        // code; dense code keeps every multiply-add whatever the values.
        {"removed_fma_in_code", result.mode == "sparse"
                                    ? layer.removedNonzeros * tiling.imagesPerThread *
                                          tiling.rowsPerThread * tiling.outputsPerThread
                                    : 0},
        {"note", "from the graph: input channels known zero and output channels nobody reads "
                 "have no code; unread outputs are not computed (they hold the activation of "
                 "the bias), so nothing may read them as data"}};
  }
  if (result.ptxas)
    manifest["ptxas"] = {{"version", result.ptxas->version},
                         {"registers", result.ptxas->registers},
                         {"spill_store_bytes", result.ptxas->spillStoreBytes},
                         {"spill_load_bytes", result.ptxas->spillLoadBytes},
                         {"stack_frame_bytes", result.ptxas->stackFrameBytes},
                         {"shared_bytes", result.ptxas->sharedBytes},
                         {"constant_bytes", result.ptxas->constantBytes},
                         {"sass_instructions", result.ptxas->instructions},
                         {"sass_per_fma", sassPerMultiplyAdd(result.ptxas->instructions,
                                                             result.multiplyAdds)}};
  else
    manifest["ptxas"] = "not run"; // --ptx-only, or no CUDA toolkit: the driver compiles at load
  return manifest;
}

std::vector<float> gatherPackedValues(const std::vector<float> &weights,
                                      const std::vector<int64_t> &indices, bool denseTensor,
                                      const std::string &layer) {
  std::vector<float> values(indices.size());
  for (size_t slot = 0; slot < indices.size(); ++slot) {
    const int64_t index = indices[slot];
    if (index < 0 || size_t(index) >= weights.size() || (!denseTensor && weights[size_t(index)] == 0))
      throw CheckFailure("layer '" + layer + "': packed slot " + std::to_string(slot) +
                         " holds weight " + std::to_string(index) +
                         ", which this round's mask does not have");
    values[slot] = weights[size_t(index)];
  }
  return values;
}

fs::path layerFilePath(const GenerateOptions &options, const std::string &layer,
                       const std::string &suffix) {
  return options.outputDir / (outputStemFor(layer) + suffix);
}

/// Removes the code files an earlier round with another number of modules
/// left: NAME.ptx and NAME.fatbin beside NAME.m<k>.*, or the reverse, or
/// modules past the last. True if it removed any.
static bool removeOtherModulesFiles(const GenerateOptions &options, const std::string &layer,
                                    size_t modules) {
  bool removed = false;
  std::error_code ec;
  auto remove = [&](const std::string &suffix) {
    removed |= fs::remove(layerFilePath(options, layer, suffix), ec);
  };
  if (modules > 1) {
    remove(".ptx");
    remove(".fatbin");
  }
  for (size_t m = modules > 1 ? modules : 0;; ++m) {
    const std::string stem = ".m" + std::to_string(m);
    if (!fs::exists(layerFilePath(options, layer, stem + ".ptx"), ec) &&
        !fs::exists(layerFilePath(options, layer, stem + ".fatbin"), ec))
      break;
    remove(stem + ".ptx");
    remove(stem + ".fatbin");
  }
  return removed;
}

LayerFilesWritten writeLayerFiles(const ConvLayer &layer, CompiledLayer &compiled,
                                  const GenerateOptions &options, const std::string &templateId,
                                  CodeFilesUpToDate upToDate) {
  GeneratedLayer &info = compiled.info;
  auto path = [&](const std::string &suffix) { return layerFilePath(options, layer.name, suffix); };
  LayerFilesWritten written;
  const size_t modules = info.modules.size();
  compiled.modules.resize(modules); // a cache hit leaves out what the output holds
  for (size_t m = 0; m < modules; ++m) {
    const std::string ptx = moduleFileSuffix(m, modules, ".ptx");
    const std::string fatbin = moduleFileSuffix(m, modules, ".fatbin");
    written.ptx |= !upToDate.ptx && writeFileIfChanged(path(ptx), compiled.modules[m].ptx);
    if (info.modules[m].fatbinBytes > 0) {
      written.fatbin |=
          !upToDate.fatbin && writeFileIfChanged(path(fatbin), compiled.modules[m].fatbin);
    } else {
      std::error_code ec;
      written.fatbin |= std::filesystem::remove(path(fatbin), ec);
    }
  }
  written.ptx |= removeOtherModulesFiles(options, layer.name, modules);
  written.weights = writeFileIfChanged(path(".weights.bin"), weightsFile(compiled.arrayValues, layer.bias));
  if (options.emit.count("ll")) {
    // A split layer's kernels were specialised as separate modules: one file each.
    for (size_t i = 0; i < compiled.specialisedIr.size(); ++i)
      writeFileAtomically(path(compiled.specialisedIr.size() > 1
                                   ? ".k" + std::to_string(i) + ".specialised.ll"
                                   : std::string(".specialised.ll")),
                          compiled.specialisedIr[i]);
    writeFileAtomically(path(".ll"), compiled.finalIr);
  }
  if (options.emit.count("weightmap"))
    writeFileAtomically(path(".weightmap.txt"), compiled.weightMapText);
  // The manifest last: a reader that sees it sees the files it describes.
  info.manifestPath = path(".json");
  nlohmann::json manifest = buildManifest(layer, info, options, templateId, compiled.arrayValues);
  written.manifest = writeFileIfChanged(info.manifestPath, manifest.dump(2) + "\n");
  return written;
}

} // namespace convgen
