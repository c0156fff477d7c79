#include "codegen/TemplateSpecializer.h"

#include "FullUnroll.h"
#include "support/Error.h"

#include <atomic>
#include <cstdlib>
#include <llvm/Passes/StandardInstrumentations.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Transforms/Utils/Cloning.h>

namespace convgen {

static std::atomic<unsigned> TemplateParses{0};

unsigned TemplateSpecializer::parseCount() { return TemplateParses.load(); }

const char *TemplateSpecializer::pipeline() {
  // 1. inline, promote, fold the constants in (instcombine folds loads from
  //    the now-constant spec global), and put loops in canonical rotated form;
  // 2. LLVM's own full unroll for the small loops (the BK x BW tile loops,
  //    within its size threshold), then SROA: the accumulator arrays have
  //    constant indices now and become registers while the code is small.
  //    (SROA after the big unroll took most of the time);
  // 3. force the remaining (reduction) loops to unroll completely;
  // 4. clean up.
  return "always-inline,"
         "function(sroa<modify-cfg>,early-cse,instcombine,sccp,simplifycfg,"
         "loop-simplify,lcssa,loop(loop-rotate,indvars,loop-unroll-full),"
         "sroa<modify-cfg>,instcombine,simplifycfg,"
         "loop-simplify,lcssa,convgen-full-unroll,"
         "instcombine,early-cse,simplifycfg,adce)";
}

bool verifyEachPassRequested() {
  const char *value = std::getenv("CONVGEN_VERIFY_EACH_PASS");
  return value && std::string(value) == "1";
}

void runPipeline(llvm::Module &module, const std::string &pipelineText, bool verifyEach) {
  llvm::LoopAnalysisManager loopAnalyses;
  llvm::FunctionAnalysisManager functionAnalyses;
  llvm::CGSCCAnalysisManager sccAnalyses;
  llvm::ModuleAnalysisManager moduleAnalyses;
  // With verifyEach, LLVM's standard instrumentation runs the verifier after
  // every pass and aborts naming the pass that broke the IR.
  llvm::PassInstrumentationCallbacks callbacks;
  llvm::StandardInstrumentations instrumentations(module.getContext(), /*DebugLogging=*/false,
                                                  verifyEach);
  instrumentations.registerCallbacks(callbacks, &moduleAnalyses);
  llvm::PassBuilder builder(nullptr, llvm::PipelineTuningOptions(), std::nullopt, &callbacks);
  builder.registerPipelineParsingCallback(
      [](llvm::StringRef name, llvm::FunctionPassManager &passes,
         llvm::ArrayRef<llvm::PassBuilder::PipelineElement>) {
        if (name == "convgen-full-unroll") {
          passes.addPass(FullUnrollPass());
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
  passes.run(module, moduleAnalyses);
}

TemplateSpecializer::TemplateSpecializer(llvm::LLVMContext &context, const OperatorTemplate &source)
    : Source(source) {
  llvm::SMDiagnostic diagnostic;
  Template = llvm::parseAssemblyString(source.irText, diagnostic, context);
  if (!Template)
    throw CheckFailure("operator template " + source.id + ": embedded IR does not parse: " +
                       diagnostic.getMessage().str());
  ++TemplateParses;
}

TemplateSpecializer::~TemplateSpecializer() = default;

/// Gives the spec global its constant initializer and makes it internal, so
/// the optimiser folds every read of it.
static void substituteSpec(llvm::Module &module, const std::string &globalName,
                           const TemplateSpec &spec, const std::string &what) {
  llvm::GlobalVariable *global = module.getGlobalVariable(globalName);
  auto *type = global ? llvm::dyn_cast<llvm::StructType>(global->getValueType()) : nullptr;
  if (!type || type->getNumElements() != spec.size())
    throw CheckFailure(what + ": operator template has no " + std::to_string(spec.size()) +
                       "-field spec global '" + globalName + "'");
  std::vector<llvm::Constant *> fields;
  for (size_t i = 0; i < spec.size(); ++i)
    fields.push_back(llvm::ConstantInt::get(type->getElementType(i), spec[i], /*signed=*/true));
  global->setInitializer(llvm::ConstantStruct::get(type, fields));
  global->setConstant(true);
  global->setLinkage(llvm::GlobalValue::InternalLinkage);
  global->setExternallyInitialized(false);
}

/// The template was compiled for the lowest supported target; --arch decides.
static void dropTargetAttributes(llvm::Module &module) {
  for (llvm::Function &function : module) {
    function.removeFnAttr("target-cpu");
    function.removeFnAttr("target-features");
  }
}

/// Every `#pragma unroll` loop must be gone, or weight positions are not constant.
static void checkFullyUnrolled(llvm::Function &kernel, const std::string &what) {
  llvm::DominatorTree dominators(kernel);
  llvm::LoopInfo loops(dominators);
  if (!loops.empty())
    throw CheckFailure(what + ": " + std::to_string(loops.getLoopsInPreorder().size()) +
                       " loop(s) of the operator template were not fully unrolled");
}

std::unique_ptr<llvm::Module> TemplateSpecializer::specialize(const TemplateSpec &spec,
                                                              const std::string &kernelName,
                                                              const std::string &what) const {
  std::unique_ptr<llvm::Module> module = llvm::CloneModule(*Template);
  substituteSpec(*module, Source.specGlobal, spec, what);
  dropTargetAttributes(*module);
  llvm::Function *kernel = module->getFunction(Source.kernelName);
  if (!kernel)
    throw CheckFailure(what + ": operator template has no kernel '" + Source.kernelName + "'");
  kernel->setName(kernelName);
  runPipeline(*module, pipeline(), verifyEachPassRequested());
  checkFullyUnrolled(*kernel, what);
  return module;
}

} // namespace convgen
