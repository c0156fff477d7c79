#include "codegen/TemplateSpecializer.h"

#include "WeightMap.h"
#include "codegen/PassPipeline.h"
#include "support/Error.h"

#include <atomic>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Transforms/Utils/Cloning.h>

namespace convgen {

static std::atomic<unsigned> TemplateParses{0};

unsigned TemplateSpecializer::parseCount() { return TemplateParses.load(); }

const char *TemplateSpecializer::pipeline() {
  // 1. inline, promote, fold the constants in (instcombine folds loads from
  //    the now-constant spec global), and put loops in canonical rotated form;
  // 2. LLVM's own full unroll for the small loops (the BK x BW tile loops
  //    and the taps of one input channel, within its size threshold), then
  //    SROA: the accumulator arrays have constant indices now and become
  //    registers while the code is small;
  // 3. canonical form again for the reduction loops that remain (over
  //    channel blocks, parts and input channels): unrollPipeline() unrolls
  //    them, consulting the mask.
  return "always-inline,"
         "function(sroa<preserve-cfg>,simplifycfg,early-cse,instcombine<no-verify-fixpoint>,sccp,simplifycfg,"
         "loop-simplify,lcssa,loop(loop-rotate,indvars,loop-unroll-full),"
         "sroa<preserve-cfg>,instcombine<no-verify-fixpoint>,simplifycfg,"
         "loop-simplify,lcssa)";
}

const char *TemplateSpecializer::unrollPipeline() {
  // 1. unroll the reduction loops completely, never copying a zero weight's
  //    work (convgen-sparse-unroll): each copy's weight offsets are
  //    constants, the channel table's reads fold and the input channels it
  //    skips are not copied;
  // 2. send each code section's end past the section checks it decides
  //    (convgen-section-exits), so the dispatch stays one chain.
  // The general cleanup waits until packing (cleanupPipeline).
  return "function(convgen-sparse-unroll,instsimplify,simplifycfg,convgen-section-exits)";
}

const char *TemplateSpecializer::densePipeline() {
  return "always-inline,"
         "function(sroa<preserve-cfg>,simplifycfg,early-cse,instcombine<no-verify-fixpoint>,sccp,"
         "simplifycfg,loop-simplify,lcssa,loop(loop-rotate,indvars,loop-unroll-full),"
         "sroa<preserve-cfg>,instcombine<no-verify-fixpoint>,early-cse,simplifycfg,adce),"
         "globaldce";
}

const char *TemplateSpecializer::cleanupPipeline() {
  // globaldce: the folded convgen_spec constant has no uses left; without
  // it the PTX would still carry it as a .global array.
  // convgen-hoist-input-bases: every code section's copy of an input base
  // address moves to their common dominator, where early-cse keeps one.
  // convgen-schedule-loads, last: each read-only load issued ahead of its
  // first use, within a register budget (NVPTX keeps the order).
  return "function(instcombine<no-verify-fixpoint>,early-cse,convgen-hoist-input-bases,early-cse,"
         "simplifycfg,adce,convgen-schedule-loads),globaldce";
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

/// Gives the channel table its constants: a new internal constant array of
/// the table's size takes the place of the template's unsized declaration,
/// so the unrolled reads of it fold.
static void substituteChannelTable(llvm::Module &module, const std::string &globalName,
                                   const std::vector<uint8_t> &table, const std::string &what) {
  llvm::GlobalVariable *declared = module.getGlobalVariable(globalName);
  if (!declared)
    throw CheckFailure(what + ": operator template has no channel table '" + globalName + "'");
  llvm::Constant *values = llvm::ConstantDataArray::get(module.getContext(), llvm::ArrayRef(table));
  auto *table_ = new llvm::GlobalVariable(module, values->getType(), /*isConstant=*/true,
                                          llvm::GlobalValue::InternalLinkage, values, "",
                                          nullptr, llvm::GlobalValue::NotThreadLocal,
                                          declared->getAddressSpace());
  declared->replaceAllUsesWith(table_);
  declared->eraseFromParent();
  table_->setName(globalName);
}

/// Gives the zero page its size: one image of the layer's input (C x H x W
/// elements), so every channel offset a padded position adds stays inside
/// it. It is constant (NVPTX then reads it, like the input, through
/// ld.global.nc) but never folded: the loads select between it and the input.
/// A layer without padding never reads it and globaldce drops it.
static void substituteZeroPage(llvm::Module &module, const std::string &globalName,
                               const TemplateSpec &spec, const std::string &what) {
  llvm::GlobalVariable *declared = module.getGlobalVariable(globalName);
  if (!declared)
    throw CheckFailure(what + ": operator template has no zero page '" + globalName + "'");
  const uint64_t bytes = uint64_t(spec[SpecInChannels]) * uint64_t(spec[SpecInHeight]) *
                         uint64_t(spec[SpecInWidth]) * (spec[SpecHalfPrecision] ? 2 : 4);
  auto *type = llvm::ArrayType::get(llvm::Type::getInt8Ty(module.getContext()), bytes);
  auto *page = new llvm::GlobalVariable(module, type, /*isConstant=*/true,
                                        llvm::GlobalValue::InternalLinkage,
                                        llvm::ConstantAggregateZero::get(type), "", nullptr,
                                        llvm::GlobalValue::NotThreadLocal,
                                        declared->getAddressSpace());
  page->setAlignment(llvm::Align(16));
  declared->replaceAllUsesWith(page);
  declared->eraseFromParent();
  page->setName(globalName);
}

void TemplateSpecializer::fitSharedMemory(llvm::Module &module, int64_t floats,
                                          const std::string &what) {
  llvm::GlobalVariable *declared = nullptr;
  for (llvm::GlobalVariable &global : module.globals())
    if (global.getAddressSpace() == 3 && global.getName().ends_with("staged"))
      declared = &global;
  auto *type = declared ? llvm::dyn_cast<llvm::ArrayType>(declared->getValueType()) : nullptr;
  if (!type || floats < 1 || uint64_t(floats) > type->getNumElements())
    throw CheckFailure(what + ": the template's staging array cannot hold " +
                       std::to_string(floats) + " floats");
  auto *fitted = llvm::ArrayType::get(type->getElementType(), uint64_t(floats));
  auto *replacement = new llvm::GlobalVariable(
      module, fitted, false, declared->getLinkage(), llvm::UndefValue::get(fitted), "", declared,
      llvm::GlobalValue::NotThreadLocal, 3);
  replacement->setAlignment(declared->getAlign());
  replacement->takeName(declared);
  declared->replaceAllUsesWith(replacement);
  declared->eraseFromParent();
}

/// The template was compiled for the lowest supported target; --arch decides.
static void dropTargetAttributes(llvm::Module &module) {
  for (llvm::Function &function : module) {
    function.removeFnAttr("target-cpu");
    function.removeFnAttr("target-features");
  }
}

/// True if every use of \p pointer, through address arithmetic, is a load.
static bool onlyLoadedThrough(const llvm::Value *pointer) {
  llvm::SmallVector<const llvm::Value *, 16> worklist = {pointer};
  llvm::SmallPtrSet<const llvm::Value *, 32> seen;
  while (!worklist.empty()) {
    const llvm::Value *value = worklist.pop_back_val();
    if (!seen.insert(value).second)
      continue;
    for (const llvm::User *user : value->users()) {
      if (llvm::isa<llvm::LoadInst>(user))
        continue;
      if (llvm::isa<llvm::GetElementPtrInst>(user) || llvm::isa<llvm::SelectInst>(user) ||
          llvm::isa<llvm::PHINode>(user)) {
        worklist.push_back(user);
        continue;
      }
      return false; // a store, a call, a cast to integer...
    }
  }
  return true;
}

/// Pointer arguments the kernel only reads (the template declares them
/// `const __restrict__`) become `readonly`: with `noalias`, NVPTX then reads
/// them through the read-only data path (ld.global.nc).
static void markReadOnlyPointers(llvm::Function &kernel) {
  for (llvm::Argument &argument : kernel.args())
    if (argument.getType()->isPointerTy() && argument.hasNoAliasAttr() &&
        onlyLoadedThrough(&argument))
      argument.addAttr(llvm::Attribute::ReadOnly);
}

/// Every `#pragma unroll` loop must be gone, or weight positions are not constant.
static void checkFullyUnrolled(llvm::Function &kernel, const std::string &what) {
  llvm::DominatorTree dominators(kernel);
  llvm::LoopInfo loops(dominators);
  if (!loops.empty())
    throw CheckFailure(what + ": " + std::to_string(loops.getLoopsInPreorder().size()) +
                       " loop(s) of the operator template were not fully unrolled");
}

/// Clone, constants in, target attributes out, kernel renamed.
static std::unique_ptr<llvm::Module> cloneWithSpec(const llvm::Module &templateModule,
                                                   const OperatorTemplate &source,
                                                   const TemplateSpec &spec,
                                                   const std::vector<uint8_t> &channelsUsed,
                                                   const std::string &kernelName,
                                                   const std::string &what) {
  std::unique_ptr<llvm::Module> module = llvm::CloneModule(templateModule);
  substituteSpec(*module, source.specGlobal, spec, what);
  substituteChannelTable(*module, source.channelTableGlobal, channelsUsed, what);
  substituteZeroPage(*module, source.zeroPageGlobal, spec, what);
  dropTargetAttributes(*module);
  llvm::Function *kernel = module->getFunction(source.kernelName);
  if (!kernel)
    throw CheckFailure(what + ": operator template has no kernel '" + source.kernelName + "'");
  kernel->setName(kernelName);
  return module;
}

std::unique_ptr<llvm::Module> TemplateSpecializer::specializeDense(
    const TemplateSpec &spec, const std::string &kernelName, const std::string &what) const {
  // The dense kernel reads every input channel (its spec turns the table
  // off); a one-entry table keeps the declaration defined.
  std::unique_ptr<llvm::Module> module =
      cloneWithSpec(*Template, Source, spec, {1}, kernelName, what);
  runPipeline(*module, densePipeline());
  markReadOnlyPointers(*module->getFunction(kernelName));
  return module;
}

std::unique_ptr<llvm::Module> TemplateSpecializer::specialize(const TemplateSpec &spec,
                                                              const std::string &kernelName,
                                                              const std::string &what) const {
  return specialize(spec,
                    std::vector<uint8_t>(size_t(spec[SpecChannelBlocks]) *
                                             size_t(spec[SpecInChannels] / spec[SpecGroups]),
                                         1),
                    kernelName, what);
}

std::unique_ptr<llvm::Module>
TemplateSpecializer::specialize(const TemplateSpec &spec, const std::vector<uint8_t> &channelsUsed,
                                const std::string &kernelName, const std::string &what,
                                const SparseOptions &sparse) const {
  std::unique_ptr<llvm::Module> module =
      cloneWithSpec(*Template, Source, spec, channelsUsed, kernelName, what);
  llvm::Function *kernel = module->getFunction(kernelName);
  runPipeline(*module, pipeline());
  annotateWeights(*kernel, WeightsArgument,
                  {spec[SpecOutChannels], spec[SpecInChannels] / spec[SpecGroups],
                   spec[SpecKernelH], spec[SpecKernelW]});
  if (sparse.beforeUnroll)
    sparse.beforeUnroll(*module);
  PipelineContext context;
  context.weights = sparse.weights;
  runPipeline(*module, unrollPipeline(), context);
  checkFullyUnrolled(*kernel, what);
  markReadOnlyPointers(*kernel);
  return module;
}

} // namespace convgen
