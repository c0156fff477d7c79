#include "codegen/LayerGenerator.h"

#include "WeightMap.h"
#include "WeightPacking.h"
#include "codegen/KernelSplit.h"
#include "codegen/PassPipeline.h"
#include "codegen/PtxEmitter.h"
#include "codegen/TemplateSpecializer.h"
#include "support/AtomicFile.h"
#include "support/Error.h"
#include "support/Hash.h"

#include <chrono>
#include <cstring>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Linker/Linker.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Transforms/Utils/Cloning.h>
#include <nlohmann/json.hpp>

namespace convgen {

namespace fs = std::filesystem;

std::string outputStemFor(const std::string &layerName) {
  std::string stem = layerName;
  for (char &c : stem)
    if (c == '/' || c == '\\')
      c = '_';
  if (stem.empty() || stem[0] == '.')
    stem.insert(0, "_");
  return stem;
}

std::string kernelSymbolFor(const std::string &layerName, size_t part, size_t parts) {
  std::string symbol = "convgen_";
  for (char c : layerName)
    symbol += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (parts > 1)
    symbol += "_k" + std::to_string(part);
  return symbol;
}

KernelGenerator::KernelGenerator(GenerateOptions options)
    : Options(std::move(options)), Context(std::make_unique<llvm::LLVMContext>()),
      Specializer(std::make_unique<TemplateSpecializer>(*Context, directConvTemplate())) {
  if (Options.runPtxas)
    PtxasTool = findPtxas();
}

KernelGenerator::~KernelGenerator() = default;

static std::string printModule(const llvm::Module &module) {
  std::string text;
  llvm::raw_string_ostream out(text);
  module.print(out, nullptr);
  return text;
}

static int64_t countMultiplyAdds(const llvm::Module &module) {
  int64_t count = 0;
  for (const llvm::Function &function : module)
    for (const llvm::Instruction &inst : llvm::instructions(function))
      if (auto *call = llvm::dyn_cast<llvm::IntrinsicInst>(&inst))
        count += call->getIntrinsicID() == llvm::Intrinsic::fma ||
                 call->getIntrinsicID() == llvm::Intrinsic::fmuladd;
  return count;
}

static std::string maskHash(const std::vector<float> &weights) {
  std::vector<unsigned char> mask(weights.size());
  for (size_t i = 0; i < weights.size(); ++i)
    mask[i] = weights[i] != 0.0f;
  return hexDigest(fnv1a64(mask));
}

static std::string valuesHash(const std::vector<float> &values) {
  return hexDigest(
      fnv1a64({reinterpret_cast<const unsigned char *>(values.data()), values.size() * 4}));
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

static nlohmann::json ptxasKernelJson(const std::optional<PtxasReport> &ptxas,
                                      const std::string &symbol) {
  if (!ptxas || !ptxas->kernels.count(symbol))
    return nullptr;
  const PtxasKernelReport &kernel = ptxas->kernels.at(symbol);
  return {{"registers", kernel.registers},
          {"spill_store_bytes", kernel.spillStoreBytes},
          {"spill_load_bytes", kernel.spillLoadBytes},
          {"stack_frame_bytes", kernel.stackFrameBytes},
          {"shared_bytes", kernel.sharedBytes}};
}

/// The NAME.json manifest: everything a runtime needs to load and launch
/// the layer's kernels, and what the generation produced.
static nlohmann::json buildManifest(const ConvLayer &layer, const GeneratedLayer &result,
                                    const GenerateOptions &options, const std::string &templateId,
                                    const std::vector<float> &packed) {
  const ConvGeometry &geometry = layer.geometry;
  const std::string stem = outputStemFor(layer.name);
  HW out = geometry.outSize();
  int64_t columnTiles = (out.w + result.tiling.outputsPerThread - 1) / result.tiling.outputsPerThread;
  nlohmann::json kernels = nlohmann::json::array();
  for (const LayerKernel &kernel : result.kernels)
    kernels.push_back(
        {{"symbol", kernel.symbol},
         {"channel_blocks", {{"first", kernel.channelBlocks.first}, {"count", kernel.channelBlocks.count}}},
         {"grid_y", kernel.channelBlocks.count},
         {"multiply_adds", kernel.multiplyAdds},
         {"weights",
          {{"symbol", kernel.weightsSymbol},
           {"offset_bytes", kernel.weightsOffset * 4},
           {"count", kernel.weightsCount}}},
         {"ptxas", ptxasKernelJson(result.ptxas, kernel.symbol)}});
  nlohmann::json manifest = {
      {"format", "convgen-kernel-manifest/2"},
      {"layer", layer.name},
      {"ptx", stem + ".ptx"},
      {"template", templateId},
      {"arch", options.arch.name},
      {"mode", result.mode},
      {"dense_reason", result.denseReason},
      {"code_budget",
       {{"multiply_adds_per_kernel", options.maxMultiplyAdds},
        {"kernels_per_layer", options.maxKernelsPerLayer},
        {"template_multiply_adds_per_kernel", options.maxTemplateMultiplyAdds}}},
      {"geometry", geometryJson(geometry)},
      {"tiling",
       {{"channels_per_thread", result.tiling.channelsPerThread},
        {"outputs_per_thread", result.tiling.outputsPerThread},
        {"threads_per_block", result.tiling.threadsPerBlock}}},
      {"launch",
       {{"parameters", {"input", "weights", "bias", "output", "batch"}},
        {"weights_argument", "the packed weights file + the kernel's weights.offset_bytes"},
        {"block", {result.tiling.threadsPerBlock, 1, 1}},
        {"grid",
         {{"x", "ceil(N * " + std::to_string(out.h * columnTiles) + " / " +
                    std::to_string(result.tiling.threadsPerBlock) + ")"},
          {"x_threads_per_image", out.h * columnTiles},
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
      {"ptx_bytes", result.ptxBytes},
  };
  if (result.ptxas)
    manifest["ptxas"] = {{"version", result.ptxas->version},
                         {"registers", result.ptxas->registers},
                         {"spill_store_bytes", result.ptxas->spillStoreBytes},
                         {"spill_load_bytes", result.ptxas->spillLoadBytes},
                         {"stack_frame_bytes", result.ptxas->stackFrameBytes},
                         {"shared_bytes", result.ptxas->sharedBytes},
                         {"constant_bytes", result.ptxas->constantBytes}};
  else
    manifest["ptxas"] = nullptr;
  return manifest;
}

/// Records the wall time since the previous mark under a phase name.
class PhaseClock {
public:
  explicit PhaseClock(std::vector<std::pair<std::string, double>> &phases) : Phases(phases) {}
  void mark(const char *phase) {
    auto now = std::chrono::steady_clock::now();
    Phases.emplace_back(phase, std::chrono::duration<double>(now - Last).count());
    Last = now;
  }

private:
  std::vector<std::pair<std::string, double>> &Phases;
  std::chrono::steady_clock::time_point Last = std::chrono::steady_clock::now();
};

BuiltKernel::BuiltKernel() = default;
BuiltKernel::BuiltKernel(BuiltKernel &&) noexcept = default;
BuiltKernel &BuiltKernel::operator=(BuiltKernel &&) noexcept = default;
BuiltKernel::~BuiltKernel() = default;

/// Specialises, eliminates, packs and cleans up one kernel of a sparse
/// layer; its packed values are appended to \p built's array, and \p kernel
/// gets its multiply-adds and weight slice.
std::unique_ptr<llvm::Module>
KernelGenerator::buildSparseKernel(const ConvLayer &layer,
                                   const std::shared_ptr<const std::vector<float>> &weights,
                                   LayerKernel &kernel, BuiltKernel &built) {
  const std::string what = "layer '" + layer.name + "'";
  const Tiling &tiling = built.info.tiling;
  const ConvGeometry &geometry = layer.geometry;
  PhaseClock clock(built.info.phaseSeconds);

  // 1. Specialise and unroll: every weight load at a constant position.
  std::unique_ptr<llvm::Module> module = Specializer->specialize(
      makeTemplateSpec(geometry, tiling, kernel.channelBlocks), kernel.symbol, what);
  // Elimination is sound only if every weight this kernel computes with is
  // read at a constant position and feeds nothing but its BW multiply-adds.
  const int64_t positions = int64_t(layer.weights.size()) /
                            (geometry.outChannels / tiling.channelsPerThread) *
                            kernel.channelBlocks.count;
  const int64_t templateMultiplyAdds = positions * tiling.outputsPerThread;
  WeightMapSummary weightMap = summarizeWeightMap(*module->getFunction(kernel.symbol));
  if (weightMap.nonConstantLoads || weightMap.loadsWithOtherUses ||
      weightMap.positions != positions || weightMap.multiplyAdds != templateMultiplyAdds)
    throw CheckFailure(what + ": weight map incomplete: " + std::to_string(weightMap.positions) +
                       " of " + std::to_string(positions) + " positions, " +
                       std::to_string(weightMap.nonConstantLoads) + " non-constant loads, " +
                       std::to_string(weightMap.loadsWithOtherUses) + " loads with other uses, " +
                       std::to_string(weightMap.multiplyAdds) + " of " +
                       std::to_string(templateMultiplyAdds) + " multiply-adds linked");
  if (Options.emit.count("ll"))
    built.specialisedIr.push_back(printModule(*module));
  clock.mark("specialise");

  // 2. Delete the zero weights' work, 3. pack the survivors, 4. clean up.
  llvm::raw_string_ostream weightMapStream(built.weightMapText);
  PipelineContext context;
  context.weights = weights;
  context.packedWeights = std::make_shared<std::vector<float>>();
  context.packedWeightsSymbol = kernel.weightsSymbol;
  context.weightMapOut = &weightMapStream;
  std::string passes =
      "function(" +
      std::string(Options.emit.count("weightmap") ? "print<convgen-weight-map>," : "") +
      "convgen-zero-weight-elimination,convgen-pack-weights<" + built.info.weightPath + ">)";
  runPipeline(*module, passes, context);
  clock.mark("eliminate");
  runPipeline(*module, TemplateSpecializer::cleanupPipeline());
  clock.mark("cleanup");
  kernel.multiplyAdds = countMultiplyAdds(*module);
  kernel.weightsOffset = int64_t(built.arrayValues.size());
  kernel.weightsCount = int64_t(context.packedWeights->size());
  built.arrayValues.insert(built.arrayValues.end(), context.packedWeights->begin(),
                           context.packedWeights->end());
  return module;
}

BuiltKernel KernelGenerator::build(const ConvLayer &layer) {
  const std::string what = "layer '" + layer.name + "'";
  const ConvGeometry &geometry = layer.geometry;
  BuiltKernel built;
  GeneratedLayer &result = built.info;
  result.name = layer.name;
  result.tiling = chooseTiling(geometry);
  checkTiling(geometry, result.tiling, layer.name);
  result.nonzeros = std::count_if(layer.weights.begin(), layer.weights.end(),
                                  [](float w) { return w != 0.0f; });
  result.denseMultiplyAdds = int64_t(layer.weights.size()) * result.tiling.outputsPerThread;

  // Past the code-size budget the layer is split across kernels by channel
  // blocks; past the kernel limit, the dense fallback from the same template.
  KernelPlan plan = planKernels(geometry, result.tiling, layer.weights,
                                {Options.maxMultiplyAdds, Options.maxTemplateMultiplyAdds,
                                 Options.maxKernelsPerLayer});
  result.denseReason = plan.denseReason;
  result.mode = result.denseReason.empty() ? "sparse" : "dense";
  if (result.mode == "dense") {
    PhaseClock clock(result.phaseSeconds);
    LayerKernel kernel;
    kernel.symbol = kernelSymbolFor(layer.name);
    kernel.channelBlocks = allChannelBlocks(geometry, result.tiling);
    kernel.weightsCount = int64_t(layer.weights.size());
    built.module = Specializer->specializeDense(makeTemplateSpec(geometry, result.tiling),
                                                kernel.symbol, what);
    clock.mark("specialise");
    result.weightPath = "global";
    built.arrayValues = layer.weights; // the whole OIHW tensor, read by index
    if (Options.emit.count("ll"))
      built.specialisedIr.push_back(printModule(*built.module));
    built.weightMapText = "dense fallback (" + result.denseReason + "): no weight map\n";
    kernel.multiplyAdds = countMultiplyAdds(*built.module);
    result.kernels.push_back(kernel);
  } else {
    // One constant bank (64 KiB) per module: every kernel's array fits, or
    // every kernel reads through ld.global.nc.
    result.weightPath = Options.bakeValues ? "baked"
                        : size_t(result.nonzeros) * 4 <= Options.constantBankLimitBytes ? "constant"
                                                                                         : "global";
    auto weights = std::make_shared<const std::vector<float>>(layer.weights);
    for (size_t part = 0; part < plan.kernels.size(); ++part) {
      LayerKernel kernel;
      kernel.symbol = kernelSymbolFor(layer.name, part, plan.kernels.size());
      kernel.channelBlocks = plan.kernels[part];
      if (result.weightPath == "constant")
        kernel.weightsSymbol = plan.kernels.size() > 1
                                   ? std::string(PackedWeightsSymbol) + "_k" + std::to_string(part)
                                   : std::string(PackedWeightsSymbol);
      std::unique_ptr<llvm::Module> module = buildSparseKernel(layer, weights, kernel, built);
      if (kernel.weightsCount == 0)
        kernel.weightsSymbol.clear(); // nothing survived: no array
      if (!built.module)
        built.module = std::move(module);
      else if (llvm::Linker::linkModules(*built.module, std::move(module)))
        throw CheckFailure(what + ": linking kernel " + kernel.symbol + " into the module failed");
      result.kernels.push_back(kernel);
    }
    if (!Options.bakeValues && int64_t(built.arrayValues.size()) != result.nonzeros)
      throw CheckFailure(what + ": packed " + std::to_string(built.arrayValues.size()) +
                         " weights, but the layer has " + std::to_string(result.nonzeros) +
                         " nonzeros");
  }
  result.multiplyAdds = countMultiplyAdds(*built.module);
  return built;
}

GeneratedLayer KernelGenerator::generate(const ConvLayer &layer) {
  return generateKeeping(layer, nullptr);
}

GeneratedLayer KernelGenerator::generate(const ConvLayer &layer, BuiltKernel &kept) {
  return generateKeeping(layer, &kept);
}

GeneratedLayer KernelGenerator::generateKeeping(const ConvLayer &layer, BuiltKernel *kept) {
  auto start = std::chrono::steady_clock::now();
  const std::string what = "layer '" + layer.name + "'";
  BuiltKernel built = build(layer);
  if (kept) {
    // A copy taken now: PTX emission runs the backend's passes on the module.
    kept->module = llvm::CloneModule(*built.module);
    kept->arrayValues = built.arrayValues;
  }
  GeneratedLayer result = std::move(built.info);
  llvm::Module &module = *built.module;
  PhaseClock clock(result.phaseSeconds);
  const std::vector<float> &packed = built.arrayValues;

  // 5. PTX, checked by ptxas where the CUDA toolkit is installed.
  std::string finalIr = Options.emit.count("ll") ? printModule(module) : "";
  std::string ptx = emitPtx(module, Options.arch, what);
  result.ptxBytes = ptx.size();
  clock.mark("ptx");
  if (PtxasTool) {
    result.ptxas = runPtxas(*PtxasTool, ptx, Options.arch.name, what);
    clock.mark("ptxas");
  }

  // 6. The manifest.
  nlohmann::json manifest =
      buildManifest(layer, result, Options, Specializer->source().id, packed);

  // 7. Write everything, only now that every step has succeeded.
  fs::path base = Options.outputDir / outputStemFor(layer.name);
  auto path = [&base](const std::string &suffix) { return fs::path(base.string() + suffix); };
  writeFileAtomically(path(".ptx"), ptx);
  writeFileAtomically(path(".weights.bin"), weightsFile(packed, layer.bias));
  if (Options.emit.count("ll")) {
    // A split layer's kernels were specialised as separate modules: one file each.
    for (size_t i = 0; i < built.specialisedIr.size(); ++i)
      writeFileAtomically(path(built.specialisedIr.size() > 1
                                   ? ".k" + std::to_string(i) + ".specialised.ll"
                                   : std::string(".specialised.ll")),
                          built.specialisedIr[i]);
    writeFileAtomically(path(".ll"), finalIr);
  }
  if (Options.emit.count("weightmap"))
    writeFileAtomically(path(".weightmap.txt"), built.weightMapText);
  result.manifestPath = path(".json");
  writeFileAtomically(result.manifestPath, manifest.dump(2) + "\n");
  clock.mark("write");
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (kept)
    kept->info = result;
  return result;
}

} // namespace convgen
