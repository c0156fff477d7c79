#include "ZeroWeightElimination.h"

#include "WeightMap.h"

#include <llvm/ADT/Statistic.h>
#include <llvm/IR/Instructions.h>
#include <llvm/Transforms/Utils/Local.h>

#define DEBUG_TYPE "convgen-zero-weight-elimination"

STATISTIC(NumZeroWeights, "Number of zero weight positions eliminated");
STATISTIC(NumMultiplyAddsDeleted, "Number of multiply-adds of zero weights deleted");

using namespace llvm;

namespace convgen {

/// Replaces each multiply-add by its accumulator and queues the operands
/// that may now be dead.
static void bypassMultiplyAdds(const WeightUses &uses, SmallVectorImpl<WeakTrackingVH> &maybeDead) {
  for (CallInst *multiplyAdd : uses.multiplyAdds) {
    multiplyAdd->replaceAllUsesWith(multiplyAdd->getArgOperand(2));
    for (Value *operand : multiplyAdd->args())
      if (isa<Instruction>(operand))
        maybeDead.push_back(operand);
    multiplyAdd->eraseFromParent();
    ++NumMultiplyAddsDeleted;
  }
}

PreservedAnalyses ZeroWeightEliminationPass::run(Function &function,
                                                 FunctionAnalysisManager &analyses) {
  const WeightMap &map = analyses.getResult<WeightMapAnalysis>(function);
  const auto &shape = map.shape();
  if (!map.annotated() || !Weights ||
      static_cast<int64_t>(Weights->size()) != shape[0] * shape[1] * shape[2] * shape[3])
    return PreservedAnalyses::all(); // TemplateSpecializer checks the sizes beforehand

  SmallVector<WeakTrackingVH, 64> maybeDead;
  for (const auto &[index, uses] : map.positions()) {
    if ((*Weights)[static_cast<size_t>(index)] != 0.0f)
      continue;
    bypassMultiplyAdds(uses, maybeDead);
    ++NumZeroWeights;
  }
  if (maybeDead.empty())
    return PreservedAnalyses::all();
  // The weight loads, the selects and input loads behind the multiplicands,
  // and their address arithmetic, as far as nothing else uses them.
  RecursivelyDeleteTriviallyDeadInstructionsPermissive(maybeDead);
  PreservedAnalyses preserved;
  preserved.preserveSet<CFGAnalyses>();
  return preserved;
}

} // namespace convgen
