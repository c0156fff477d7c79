#include "InputBaseHoisting.h"

#include <llvm/ADT/SetVector.h>
#include <llvm/ADT/Statistic.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Operator.h>

#define DEBUG_TYPE "convgen-hoist-input-bases"

STATISTIC(NumBasesHoisted, "Number of input load bases moved to the common dominator");
STATISTIC(NumInstructionsHoisted, "Number of instructions moved with them");

using namespace llvm;

namespace convgen {

/// The base of a load's address: its pointer without a trailing GEP of
/// constant indices.
static Value *baseOf(LoadInst *load) {
  Value *pointer = load->getPointerOperand();
  if (auto *gep = dyn_cast<GetElementPtrInst>(pointer); gep && gep->hasAllConstantIndices())
    return gep->getPointerOperand();
  return pointer;
}

/// Instructions that may run where the original did not: no memory access,
/// no side effect, no trap (no division).
static bool isSpeculatable(const Instruction *inst) {
  if (auto *call = dyn_cast<IntrinsicInst>(inst))
    switch (call->getIntrinsicID()) {
    case Intrinsic::smin:
    case Intrinsic::smax:
    case Intrinsic::umin:
    case Intrinsic::umax:
      return true;
    default:
      return false;
    }
  if (auto *binary = dyn_cast<BinaryOperator>(inst))
    return !binary->isIntDivRem();
  return isa<CastInst>(inst) || isa<GetElementPtrInst>(inst) || isa<SelectInst>(inst) ||
         isa<ICmpInst>(inst);
}

/// Collects, operands first, the instructions of \p value's tree that must
/// move to \p point; false if one of them cannot.
static bool collectTree(Value *value, Instruction *point, const DominatorTree &dominators,
                        SetVector<Instruction *> &tree, SmallPtrSetImpl<Value *> &visiting) {
  auto *inst = dyn_cast<Instruction>(value);
  if (!inst || dominators.dominates(inst, point) || tree.count(inst))
    return true;
  if (!isSpeculatable(inst) || !visiting.insert(inst).second)
    return false;
  for (Value *operand : inst->operands())
    if (!collectTree(operand, point, dominators, tree, visiting))
      return false;
  tree.insert(inst);
  return true;
}

PreservedAnalyses InputBaseHoistingPass::run(Function &function, FunctionAnalysisManager &analyses) {
  auto &dominators = analyses.getResult<DominatorTreeAnalysis>(function);
  SmallVector<LoadInst *, 64> loads;
  BasicBlock *common = nullptr;
  for (Instruction &inst : instructions(function))
    if (auto *load = dyn_cast<LoadInst>(&inst); load && isa<Instruction>(baseOf(load))) {
      loads.push_back(load);
      common = common ? dominators.findNearestCommonDominator(common, load->getParent())
                      : load->getParent();
    }
  if (!common)
    return PreservedAnalyses::all();

  Instruction *point = common->getTerminator();
  bool changed = false;
  for (LoadInst *load : loads) {
    // Only input bases: a select or GEP tree over the thread's position.
    auto *base = dyn_cast<Instruction>(baseOf(load));
    if (!base || base->getParent() == common || !(isa<SelectInst>(base) || isa<GetElementPtrInst>(base)))
      continue;
    SetVector<Instruction *> tree;
    SmallPtrSet<Value *, 16> visiting;
    if (!collectTree(base, point, dominators, tree, visiting))
      continue;
    for (Instruction *inst : tree) {
      inst->moveBefore(point);
      // The flags and metadata held where it ran; elsewhere they need not.
      inst->dropPoisonGeneratingFlags();
      inst->dropUBImplyingAttrsAndMetadata();
      ++NumInstructionsHoisted;
    }
    ++NumBasesHoisted;
    changed = true;
  }
  if (!changed)
    return PreservedAnalyses::all();
  PreservedAnalyses preserved;
  preserved.preserveSet<CFGAnalyses>();
  return preserved;
}

} // namespace convgen
