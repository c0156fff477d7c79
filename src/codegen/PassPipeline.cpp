#include "codegen/PassPipeline.h"

#include "FullUnroll.h"
#include "WeightMap.h"
#include "ZeroWeightElimination.h"
#include "support/Error.h"

#include <cstdlib>
#include <llvm/IR/Module.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Passes/StandardInstrumentations.h>
#include <llvm/Support/Error.h>

namespace convgen {

bool verifyEachPassRequested() {
  const char *value = std::getenv("CONVGEN_VERIFY_EACH_PASS");
  return value && std::string(value) == "1";
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
        if (name == "convgen-full-unroll") {
          passes.addPass(FullUnrollPass());
          return true;
        }
        if (name == "convgen-zero-weight-elimination") {
          if (!context.weights)
            missing = name.str() + " needs the layer's weights";
          passes.addPass(ZeroWeightEliminationPass(context.weights));
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
