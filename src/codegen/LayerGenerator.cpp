#include "codegen/LayerGenerator.h"

#include "WeightMap.h"
#include "WeightPacking.h"
#include "codegen/LayerFiles.h"
#include "codegen/PassPipeline.h"
#include "codegen/PtxEmitter.h"
#include "codegen/TemplateSpecializer.h"
#include "support/Error.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Linker/Linker.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Transforms/Utils/Cloning.h>

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

/// Whether \p nonzeros packed weights fit one module's constant bank.
static bool fitsConstantBank(int64_t nonzeros, const GenerateOptions &options) {
  return size_t(nonzeros) * 4 <= options.constantBankLimitBytes;
}

/// Whether \p layer's kernels under \p tiling can each have a module and a
/// constant bank of their own: the plan with each kernel's nonzeros capped
/// at one bank stays sparse within the kernel limit.
static bool fitsBankPerKernel(const ConvLayer &layer, const Tiling &tiling,
                              const GenerateOptions &options) {
  const int64_t bankFloats = int64_t(options.constantBankLimitBytes / 4);
  return bankFloats > 0 && !tiling.dense &&
         !planLayer(layer, tiling, options.dtype,
                    {options.maxMultiplyAdds, options.maxKernelsPerLayer, bankFloats})
              .dense();
}

TilingInputs tilingInputs(const ConvLayer &layer, const GenerateOptions &options) {
  TilingInputs inputs;
  inputs.nonzeros = std::count_if(layer.weights.begin(), layer.weights.end(),
                                  [](float w) { return w != 0.0f; });
  inputs.batch = options.batch.value_or(layer.geometry.batch);
  inputs.codeBudgetMultiplyAdds = options.maxMultiplyAdds * options.maxKernelsPerLayer;
  inputs.halfPrecision = options.dtype == DType::F16;
  inputs.multiprocessors = referenceMultiprocessors(options.arch.computeVersion);
  // As weights=auto resolves (decideTiling, and the generator's constant
  // bank check; decideTiling tries a bank per kernel); an explicit weights=
  // in --tiling is not known yet here.
  inputs.weightsAreOperands = options.bakeValues || options.arch.computeVersion >= 90 ||
                              fitsConstantBank(inputs.nonzeros, options);
  return inputs;
}

TilingDecision decideTiling(const ConvLayer &layer, const GenerateOptions &options,
                            std::string *source) {
  const TilingInputs inputs = tilingInputs(layer, options);
  TilingDecision decision = chooseTiling(layer.geometry, inputs);
  if (!inputs.weightsAreOperands) {
    // Past one bank, a bank per kernel makes the weights operands again,
    // where the kernels of the tiling chosen for operands can be cut small
    // enough (build() makes the same plan).
    TilingInputs banked = inputs;
    banked.weightsAreOperands = true;
    TilingDecision candidate = chooseTiling(layer.geometry, banked);
    if (fitsBankPerKernel(layer, candidate.tiling, options))
      decision = std::move(candidate);
  }
  std::string from = "heuristic";
  if (auto tuned = options.tunedTilings.find(layer.name); tuned != options.tunedTilings.end()) {
    decision.tiling = tuned->second;
    decision.reasons = {"tuned: the fastest correct candidate measured by convbench --tune at batch " +
                        std::to_string(inputs.batch)};
    from = "tuned";
  }
  if (!options.tilingOverride.empty()) {
    decision.tiling = parseTiling(options.tilingOverride, decision.tiling);
    decision.reasons.push_back("--tiling " + options.tilingOverride);
    from = "user";
  }
  if (options.bakeValues)
    decision.tiling.weightPath = WeightPathChoice::Baked;
  if (decision.tiling.weightPath == WeightPathChoice::Auto && options.arch.computeVersion >= 90) {
    // Decided here, not at code generation, so the cache key sees it: baked
    // code changes with the values.
    decision.tiling.weightPath = WeightPathChoice::Baked;
    decision.reasons.push_back(
        "weights=baked: on sm_90 ptxas reads constant-bank operands through ULDC, one per two "
        "weights (example F_0 at 90 %: 1.89 machine instructions per fma against 1.48 with "
        "immediates); a new value then regenerates the code");
  } else if (decision.tiling.weightPath == WeightPathChoice::Auto) {
    decision.reasons.push_back(
        "weights=auto: the constant bank where the nonzeros fit in 64 KiB (an fma operand on "
        "sm_70 and sm_80), else ld.global.nc");
  }
  checkTiling(layer.geometry, decision.tiling, layer.name);
  if (source)
    *source = from;
  return decision;
}

void describeTilingChoice(GeneratedLayer &info, const ConvLayer &layer,
                          const GenerateOptions &options) {
  info.tilingReasons = decideTiling(layer, options, &info.tilingSource).reasons;
  if (info.mode == "dense")
    info.tilingReasons.push_back(DenseTilingReason);
}

KernelGenerator::KernelGenerator(GenerateOptions options)
    : KernelGenerator(options, options.runPtxas ? findPtxas() : std::nullopt) {}

std::vector<std::string> cubinArchs(const GenerateOptions &options) {
  if (!options.runPtxas)
    return {};
  std::vector<std::string> archs = {options.arch.name};
  for (const std::string &arch : options.binaryArchs)
    if (std::find(archs.begin(), archs.end(), arch) == archs.end())
      archs.push_back(arch);
  return archs;
}

KernelGenerator::KernelGenerator(GenerateOptions options, std::optional<Ptxas> ptxas)
    : Options(std::move(options)), PtxasTool(std::move(ptxas)),
      FatbinaryPacker(PtxasTool ? findFatbinaryTool(*PtxasTool) : std::nullopt),
      Context(std::make_unique<llvm::LLVMContext>()),
      Specializer(std::make_unique<TemplateSpecializer>(*Context, directConvTemplate())) {}

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

static double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
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

/// Adds module \p report to the layer's \p into: the kernels of each, the
/// largest of the per-kernel figures, the instructions and time summed.
static void mergePtxasReport(std::optional<PtxasReport> &into, const PtxasReport &report) {
  if (!into) {
    into = report;
    return;
  }
  into->kernels.insert(report.kernels.begin(), report.kernels.end());
  into->registers = std::max(into->registers, report.registers);
  into->spillStoreBytes = std::max(into->spillStoreBytes, report.spillStoreBytes);
  into->spillLoadBytes = std::max(into->spillLoadBytes, report.spillLoadBytes);
  into->stackFrameBytes = std::max(into->stackFrameBytes, report.stackFrameBytes);
  into->sharedBytes = std::max(into->sharedBytes, report.sharedBytes);
  into->constantBytes = std::max(into->constantBytes, report.constantBytes); // per module's bank
  into->instructions += report.instructions;
  into->seconds += report.seconds;
}

std::string moduleFileSuffix(size_t module, size_t modules, const std::string &suffix) {
  return modules > 1 ? ".m" + std::to_string(module) + suffix : suffix;
}

BuiltKernel::BuiltKernel() = default;
BuiltKernel::BuiltKernel(BuiltKernel &&) noexcept = default;
BuiltKernel &BuiltKernel::operator=(BuiltKernel &&) noexcept = default;
BuiltKernel::~BuiltKernel() = default;

/// Specialises, eliminates, packs and cleans up one kernel of a sparse
/// layer as \p plan says; its packed values are appended to \p built's
/// array, and \p kernel gets its multiply-adds and weight slice.
std::unique_ptr<llvm::Module>
KernelGenerator::buildSparseKernel(const ConvLayer &layer, const LayerPlan &layerPlan,
                                   const KernelPlan &plan,
                                   const std::shared_ptr<const std::vector<float>> &weights,
                                   LayerKernel &kernel, BuiltKernel &built) {
  const std::string what = "layer '" + layer.name + "'";
  PhaseClock clock(built.info.phaseSeconds);

  // 1. Specialise: the layer's constants in, the reduction loops rolled.
  // 2. Unroll them, leaving out the zero weights' work as it goes: every
  //    surviving weight load at a constant position. Input channels a
  //    channel block never reads are not even copied.
  TemplateSpecializer::SparseOptions sparse;
  sparse.weights = weights;
  sparse.beforeUnroll = [&](const llvm::Module &rolled) {
    if (Options.emit.count("ll"))
      built.specialisedIr.push_back(printModule(rolled));
    clock.mark("specialise");
  };
  std::unique_ptr<llvm::Module> module =
      Specializer->specialize(plan.spec, plan.inputChannelsUsed, kernel.symbol, what, sparse);
  if (layerPlan.sharedFloats > 0)
    TemplateSpecializer::fitSharedMemory(*module, layerPlan.sharedFloats, what);

  // 3. Whatever zero weight the unroll could not place, ZeroWeightElimination
  //    deletes; then the weight map must show exactly this kernel's
  //    nonzeros, each read at a constant position and feeding nothing but
  //    its BN x BH x BW multiply-adds: none lost, none left over.
  llvm::raw_string_ostream weightMapStream(built.weightMapText);
  PipelineContext context;
  context.weights = weights;
  context.packedWeights = std::make_shared<PackedWeights>();
  context.packedWeightsSymbol = kernel.weightsSymbol;
  context.weightMapOut = &weightMapStream;
  runPipeline(*module,
              "function(convgen-zero-weight-elimination" +
                  std::string(Options.emit.count("weightmap") ? ",print<convgen-weight-map>" : "") +
                  ")",
              context);
  WeightMapSummary weightMap = summarizeWeightMap(*module->getFunction(kernel.symbol));
  if (weightMap.nonConstantLoads || weightMap.loadsWithOtherUses ||
      weightMap.positions != plan.sparsePositions ||
      weightMap.multiplyAdds != plan.sparseMultiplyAdds)
    throw CheckFailure(what + ": weight map after elimination: " +
                       std::to_string(weightMap.positions) + " positions of the " +
                       std::to_string(plan.sparsePositions) + " nonzeros, " +
                       std::to_string(weightMap.nonConstantLoads) + " non-constant loads, " +
                       std::to_string(weightMap.loadsWithOtherUses) + " loads with other uses, " +
                       std::to_string(weightMap.multiplyAdds) + " of " +
                       std::to_string(plan.sparseMultiplyAdds) + " multiply-adds linked");
  clock.mark("eliminate");

  // 4. Pack the survivors, 5. clean up.
  runPipeline(*module, "function(convgen-pack-weights<" + built.info.weightPath + ">)", context);
  clock.mark("pack");
  runPipeline(*module, TemplateSpecializer::cleanupPipeline());
  clock.mark("cleanup");
  kernel.multiplyAdds = countMultiplyAdds(*module);
  kernel.weightsOffset = int64_t(built.arrayValues.size());
  const PackedWeights &packed = *context.packedWeights;
  kernel.weightsCount = int64_t(packed.values.size());
  built.arrayValues.insert(built.arrayValues.end(), packed.values.begin(), packed.values.end());
  built.arrayIndices.insert(built.arrayIndices.end(), packed.indices.begin(), packed.indices.end());
  return module;
}

BuiltKernel KernelGenerator::build(const ConvLayer &layer) {
  const std::string what = "layer '" + layer.name + "'";
  const ConvGeometry &geometry = layer.geometry;
  BuiltKernel built;
  GeneratedLayer &result = built.info;
  result.name = layer.name;
  result.dtype = Options.dtype;
  TilingDecision decision = decideTiling(layer, Options, &result.tilingSource);
  result.tiling = decision.tiling;
  result.tilingReasons = decision.reasons;
  result.nonzeros = std::count_if(layer.weights.begin(), layer.weights.end(),
                                  [](float w) { return w != 0.0f; });
  result.denseMultiplyAdds = int64_t(layer.weights.size()) * result.tiling.spatialPerThread();

  // The plan: sparse or dense, the kernels and their launch, computed once.
  LayerPlan plan = planLayer(layer, result.tiling, Options.dtype,
                             {Options.maxMultiplyAdds, Options.maxKernelsPerLayer});
  result.tiling = plan.tiling;
  result.tilesPerImageGroup = plan.tilesPerImageGroup;
  result.denseReason = plan.denseReason;
  result.mode = plan.dense() ? "dense" : "sparse";
  if (plan.dense()) {
    result.tilingReasons.push_back(DenseTilingReason);
    checkTiling(geometry, result.tiling, layer.name);
    PhaseClock clock(result.phaseSeconds);
    const KernelPlan &kernelPlan = plan.kernels.front();
    LayerKernel kernel;
    kernel.symbol = kernelPlan.symbol;
    kernel.channelBlocks = kernelPlan.channelBlocks;
    kernel.gridY = kernelPlan.gridY;
    kernel.weightsCount = int64_t(layer.weights.size());
    built.module = Specializer->specializeDense(kernelPlan.spec, kernel.symbol, what);
    clock.mark("specialise");
    result.weightPath = "global";
    built.arrayValues = layer.weights; // the whole OIHW tensor, read by index
    built.arrayIndices.resize(layer.weights.size());
    std::iota(built.arrayIndices.begin(), built.arrayIndices.end(), int64_t{0});
    if (Options.emit.count("ll"))
      built.specialisedIr.push_back(printModule(*built.module));
    built.weightMapText = "dense fallback (" + result.denseReason + "): no weight map\n";
    kernel.multiplyAdds = countMultiplyAdds(*built.module);
    result.kernels.push_back(kernel);
  } else {
    // One constant bank (64 KiB) per module: every kernel's array fits in
    // the layer's one module; or each kernel goes in a module of its own,
    // with a bank of its own, where the kernels can be cut that small;
    // or every kernel reads through ld.global.nc.
    const bool fitsBank = fitsConstantBank(result.nonzeros, Options);
    WeightPathChoice path = result.tiling.weightPath;
    bool bankPerKernel = false;
    const int64_t bankFloats = int64_t(Options.constantBankLimitBytes / 4);
    if (!fitsBank && bankFloats > 0 &&
        (path == WeightPathChoice::Constant || path == WeightPathChoice::Auto)) {
      LayerPlan banked = planLayer(layer, result.tiling, Options.dtype,
                                   {Options.maxMultiplyAdds, Options.maxKernelsPerLayer, bankFloats});
      if (!banked.dense()) {
        plan = std::move(banked);
        bankPerKernel = true;
        path = WeightPathChoice::Constant;
        result.tilingReasons.push_back(
            "weights=constant, a module per kernel: " + std::to_string(result.nonzeros) +
            " nonzeros pass one module's " + std::to_string(Options.constantBankLimitBytes) +
            "-byte constant bank, so each of the " + std::to_string(plan.kernels.size()) +
            " kernels (at most " + std::to_string(bankFloats) +
            " nonzeros each) is a module with a bank of its own: its weights stay fma operands, "
            "where ld.global.nc would add a load per weight");
      } else if (path == WeightPathChoice::Constant) {
        throw UnsupportedError(what + ": weights=constant: " + std::to_string(result.nonzeros) +
                               " nonzeros do not fit the " +
                               std::to_string(Options.constantBankLimitBytes) +
                               "-byte constant bank, nor a bank per kernel (" + banked.denseReason +
                               "); use weights=global or auto");
      }
    }
    if (path == WeightPathChoice::Auto)
      path = fitsBank ? WeightPathChoice::Constant : WeightPathChoice::Global;
    result.weightPath = weightPathName(path);
    auto weights = std::make_shared<const std::vector<float>>(layer.weights);
    for (size_t part = 0; part < plan.kernels.size(); ++part) {
      const KernelPlan &kernelPlan = plan.kernels[part];
      LayerKernel kernel;
      kernel.symbol = kernelPlan.symbol;
      kernel.channelBlocks = kernelPlan.channelBlocks;
      kernel.gridY = kernelPlan.gridY;
      if (result.weightPath == "constant")
        kernel.weightsSymbol = plan.kernels.size() > 1
                                   ? std::string(PackedWeightsSymbol) + "_k" + std::to_string(part)
                                   : std::string(PackedWeightsSymbol);
      std::unique_ptr<llvm::Module> module =
          buildSparseKernel(layer, plan, kernelPlan, weights, kernel, built);
      if (kernel.weightsCount == 0)
        kernel.weightsSymbol.clear(); // nothing survived: no array
      if (bankPerKernel) {
        // Its own PTX module; the host executor still runs them linked.
        kernel.module = part;
        built.kernelModules.push_back(llvm::CloneModule(*module));
      }
      if (!built.module)
        built.module = std::move(module);
      else if (llvm::Linker::linkModules(*built.module, std::move(module)))
        throw CheckFailure(what + ": linking kernel " + kernel.symbol + " into the module failed");
      result.kernels.push_back(kernel);
    }
    if (result.weightPath != "baked" && int64_t(built.arrayValues.size()) != result.nonzeros)
      throw CheckFailure(what + ": packed " + std::to_string(built.arrayValues.size()) +
                         " weights, but the layer has " + std::to_string(result.nonzeros) +
                         " nonzeros");
  }
  result.modules.resize(built.kernelModules.empty() ? 1 : built.kernelModules.size());
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
  CompiledLayer compiled = compile(layer, kept);
  PhaseClock clock(compiled.info.phaseSeconds);
  // Written only now that every step has succeeded.
  writeLayerFiles(layer, compiled, Options, templateId());
  clock.mark("write");
  compiled.info.seconds = secondsSince(start);
  if (kept)
    kept->info = compiled.info;
  return compiled.info;
}

CompiledLayer KernelGenerator::compile(const ConvLayer &layer, BuiltKernel *kept) {
  auto start = std::chrono::steady_clock::now();
  const std::string what = "layer '" + layer.name + "'";
  BuiltKernel built = build(layer);
  if (kept) {
    // A copy taken now: PTX emission runs the backend's passes on the module.
    kept->module = llvm::CloneModule(*built.module);
    kept->arrayValues = built.arrayValues;
    kept->arrayIndices = built.arrayIndices;
  }
  CompiledLayer compiled;
  compiled.info = std::move(built.info);
  GeneratedLayer &result = compiled.info;
  PhaseClock clock(result.phaseSeconds);

  // 5. PTX, checked by ptxas where the CUDA toolkit is installed.
  if (Options.emit.count("ll"))
    compiled.finalIr = printModule(*built.module);
  // A module per kernel where each has its own constant bank; else one.
  std::vector<llvm::Module *> sources;
  for (const auto &module : built.kernelModules)
    sources.push_back(module.get());
  if (sources.empty())
    sources.push_back(built.module.get());
  compiled.modules.resize(sources.size());
  result.ptxBytes = 0;
  for (size_t m = 0; m < sources.size(); ++m) {
    compiled.modules[m].ptx = emitPtx(*sources[m], Options.arch, what);
    result.modules[m].ptxBytes = compiled.modules[m].ptx.size();
    result.ptxBytes += result.modules[m].ptxBytes;
  }
  clock.mark("ptx");
  if (PtxasTool && Options.runPtxas) {
    // ptxas's cubins are the product: kept in the fatbinary the runtime
    // loads, so the driver has nothing left to compile.
    if (!FatbinaryPacker)
      throw UnsupportedError(what + ": the CUDA toolkit's fatbinary tool is not beside " +
                             PtxasTool->path + ", so the cubins cannot be packed; install it, "
                             "or use --ptx-only");
    const std::vector<std::string> archs = cubinArchs(Options);
    result.cubins.assign(archs.size(), CubinInfo{});
    double fatbinSeconds = 0;
    for (size_t m = 0; m < compiled.modules.size(); ++m) {
      ModuleCode &code = compiled.modules[m];
      std::vector<ArchCubin> cubins;
      for (size_t a = 0; a < archs.size(); ++a) {
        ArchCubin cubin{archs[a], {}};
        PtxasReport report = runPtxas(*PtxasTool, code.ptx, archs[a], what, &cubin.bytes);
        CubinInfo &image = result.cubins[a];
        image.arch = archs[a];
        image.bytes += int64_t(cubin.bytes.size());
        image.instructions += report.instructions;
        image.registers = std::max(image.registers, report.registers);
        image.spillBytes = std::max(image.spillBytes, report.spillStoreBytes + report.spillLoadBytes);
        if (a == 0)
          mergePtxasReport(result.ptxas, report);
        else
          result.ptxas->seconds += report.seconds;
        cubins.push_back(std::move(cubin));
      }
      auto packStart = std::chrono::steady_clock::now();
      code.fatbin = makeFatbinary(*FatbinaryPacker, cubins, code.ptx, Options.arch.name, what);
      fatbinSeconds += secondsSince(packStart);
      result.modules[m].fatbinBytes = code.fatbin.size();
      result.fatbinBytes += code.fatbin.size();
    }
    clock.mark("ptxas");
    result.phaseSeconds.back().second -= fatbinSeconds;
    result.phaseSeconds.emplace_back("fatbinary", fatbinSeconds);
  }
  compiled.arrayValues = std::move(built.arrayValues);
  compiled.arrayIndices = std::move(built.arrayIndices);
  compiled.specialisedIr = std::move(built.specialisedIr);
  compiled.weightMapText = std::move(built.weightMapText);
  result.seconds = secondsSince(start);
  return compiled;
}

const std::string &KernelGenerator::templateId() const { return Specializer->source().id; }

} // namespace convgen
