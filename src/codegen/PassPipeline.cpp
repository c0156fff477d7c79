#include "codegen/PassPipeline.h"

#include "InputBaseHoisting.h"
#include "LoadScheduling.h"
#include "SectionExits.h"
#include "SparseUnroll.h"
#include "WeightMap.h"
#include "WeightPacking.h"
#include "ZeroWeightElimination.h"
#include "support/Error.h"

#include <cstdlib>
#include <optional>
#include <llvm/IR/Module.h>
#include <llvm/Pass.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Passes/StandardInstrumentations.h>
#include <llvm/Support/Error.h>

namespace convgen {

bool verifyEachPassRequested() {
  const char *value = std::getenv("CONVGEN_VERIFY_EACH_PASS");
  return value && std::string(value) == "1";
}

/// CONVGEN_TIME_PASSES=1: LLVM's pass timing report on stderr for every
/// pipeline run, to see where a layer's generation time goes.
static bool timePassesRequested() {
  const char *value = std::getenv("CONVGEN_TIME_PASSES");
  return value && std::string(value) == "1";
}

WeightMapSummary summarizeWeightMap(llvm::Function &kernel) {
  llvm::FunctionAnalysisManager analyses;
  analyses.registerPass([] { return WeightMapAnalysis(); });
  analyses.registerPass([] { return llvm::PassInstrumentationAnalysis(); });
  const WeightMap &map = analyses.getResult<WeightMapAnalysis>(kernel);
  WeightMapSummary summary;
  summary.annotated = map.annotated();
  summary.positions = static_cast<int64_t>(map.positions().size());
  summary.multiplyAdds = static_cast<int64_t>(map.multiplyAddCount());
  summary.nonConstantLoads = static_cast<int64_t>(map.nonConstantLoads().size());
  summary.loadsWithOtherUses = static_cast<int64_t>(map.loadsWithOtherUses().size());
  return summary;
}

/// convgen-schedule-loads or convgen-schedule-loads<budget=N;distance=M>;
/// nullopt for another name, an error for bad parameters.
static std::optional<llvm::Expected<LoadSchedulingOptions>> parseLoadScheduling(llvm::StringRef name) {
  const llvm::StringRef passName = "convgen-schedule-loads";
  if (!name.consume_front(passName))
    return std::nullopt;
  LoadSchedulingOptions options;
  if (name.empty())
    return llvm::Expected<LoadSchedulingOptions>(options);
  if (!name.consume_front("<") || !name.consume_back(">"))
    return std::nullopt;
  while (!name.empty()) {
    auto [item, rest] = name.split(';');
    name = rest;
    auto [key, value] = item.split('=');
    int number = 0;
    if (value.getAsInteger(10, number) || number < 0 || (key != "budget" && key != "distance"))
      return llvm::Expected<LoadSchedulingOptions>(llvm::createStringError(
          llvm::inconvertibleErrorCode(),
          "convgen-schedule-loads: '" + item.str() + "' is not budget=N or distance=N"));
    (key == "budget" ? options.budget : options.distance) = number;
  }
  return llvm::Expected<LoadSchedulingOptions>(options);
}

/// convgen-pack-weights<constant|global|baked>
static std::optional<WeightPath> parseWeightPath(llvm::StringRef name) {
  if (name == "convgen-pack-weights<constant>")
    return WeightPath::ConstantBank;
  if (name == "convgen-pack-weights<global>")
    return WeightPath::GlobalReadOnly;
  if (name == "convgen-pack-weights<baked>")
    return WeightPath::Baked;
  return std::nullopt;
}

void runPipeline(llvm::Module &module, const std::string &pipelineText,
                 const PipelineContext &context) {
  llvm::LoopAnalysisManager loopAnalyses;
  llvm::FunctionAnalysisManager functionAnalyses;
  llvm::CGSCCAnalysisManager sccAnalyses;
  llvm::ModuleAnalysisManager moduleAnalyses;
  // With verifyEach, LLVM's standard instrumentation runs the verifier after
  // every pass and aborts naming the pass that broke the IR.
  llvm::PassInstrumentationCallbacks callbacks;
  if (timePassesRequested())
    llvm::TimePassesIsEnabled = true; // read by StandardInstrumentations; it prints when destroyed
  llvm::StandardInstrumentations instrumentations(module.getContext(), /*DebugLogging=*/false,
                                                  context.verifyEach);
  instrumentations.registerCallbacks(callbacks, &moduleAnalyses);
  llvm::PassBuilder builder(nullptr, llvm::PipelineTuningOptions(), std::nullopt, &callbacks);

  std::string missing;
  builder.registerAnalysisRegistrationCallback([](llvm::FunctionAnalysisManager &analyses) {
    analyses.registerPass([] { return WeightMapAnalysis(); });
  });
  builder.registerPipelineParsingCallback(
      [&](llvm::StringRef name, llvm::FunctionPassManager &passes,
          llvm::ArrayRef<llvm::PassBuilder::PipelineElement>) {
        if (name == "convgen-sparse-unroll") {
          // Without weights, a plain full unroll.
          passes.addPass(SparseUnrollPass(context.weights));
          return true;
        }
        if (name == "convgen-section-exits") {
          passes.addPass(SectionExitsPass());
          return true;
        }
        if (name == "convgen-hoist-input-bases") {
          passes.addPass(InputBaseHoistingPass());
          return true;
        }
        if (name == "convgen-zero-weight-elimination") {
          if (!context.weights)
            missing = name.str() + " needs the layer's weights";
          passes.addPass(ZeroWeightEliminationPass(context.weights));
          return true;
        }
        if (auto scheduling = parseLoadScheduling(name)) {
          if (!*scheduling) {
            missing = llvm::toString(scheduling->takeError());
            return true;
          }
          passes.addPass(LoadSchedulingPass(**scheduling));
          return true;
        }
        if (auto path = parseWeightPath(name)) {
          if (!context.weights || !context.packedWeights)
            missing = name.str() + " needs the layer's weights and a vector for the packed values";
          passes.addPass(WeightPackingPass(*path, context.weights, context.packedWeights,
                                           context.packedWeightsSymbol));
          return true;
        }
        if (name == "print<convgen-weight-map>") {
          if (!context.weightMapOut)
            missing = name.str() + " needs an output stream";
          else
            passes.addPass(WeightMapPrinterPass(*context.weightMapOut));
          return true;
        }
        return false;
      });
  builder.registerModuleAnalyses(moduleAnalyses);
  builder.registerCGSCCAnalyses(sccAnalyses);
  builder.registerFunctionAnalyses(functionAnalyses);
  builder.registerLoopAnalyses(loopAnalyses);
  builder.crossRegisterProxies(loopAnalyses, functionAnalyses, sccAnalyses, moduleAnalyses);

  llvm::ModulePassManager passes;
  if (llvm::Error error = builder.parsePassPipeline(passes, pipelineText))
    throw CheckFailure("LLVM pass pipeline '" + pipelineText +
                       "': " + llvm::toString(std::move(error)));
  if (!missing.empty())
    throw CheckFailure("LLVM pass pipeline '" + pipelineText + "': " + missing);
  passes.run(module, moduleAnalyses);
}

} // namespace convgen
