#include "FullUnroll.h"

#include <llvm/ADT/SmallPtrSet.h>
#include <llvm/ADT/Statistic.h>
#include <llvm/Analysis/AssumptionCache.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/Analysis/OptimizationRemarkEmitter.h>
#include <llvm/Analysis/ScalarEvolution.h>
#include <llvm/Analysis/TargetTransformInfo.h>
#include <llvm/IR/Dominators.h>
#include <llvm/Transforms/Utils/LoopSimplify.h>
#include <llvm/Transforms/Utils/LoopUtils.h>
#include <llvm/Transforms/Utils/UnrollLoop.h>

#define DEBUG_TYPE "convgen-full-unroll"

STATISTIC(NumLoopsUnrolled, "Number of loops fully unrolled");
STATISTIC(NumLoopsLeft, "Number of marked loops without a constant trip count");

using namespace llvm;

namespace convgen {

bool FullUnrollPass::isMarkedForUnroll(const Loop &loop) {
  return findOptionMDForLoop(&loop, "llvm.loop.unroll.enable") ||
         findOptionMDForLoop(&loop, "llvm.loop.unroll.full");
}

/// An innermost marked loop not yet given up on, or null.
static Loop *nextInnermostMarkedLoop(LoopInfo &loops, const SmallPtrSetImpl<Loop *> &givenUp) {
  for (Loop *loop : loops.getLoopsInPreorder())
    if (loop->isInnermost() && !givenUp.count(loop) && FullUnrollPass::isMarkedForUnroll(*loop))
      return loop;
  return nullptr;
}

PreservedAnalyses FullUnrollPass::run(Function &function, FunctionAnalysisManager &analyses) {
  auto &loops = analyses.getResult<LoopAnalysis>(function);
  auto &dominators = analyses.getResult<DominatorTreeAnalysis>(function);
  auto &scalarEvolution = analyses.getResult<ScalarEvolutionAnalysis>(function);
  auto &assumptions = analyses.getResult<AssumptionAnalysis>(function);
  auto &targetInfo = analyses.getResult<TargetIRAnalysis>(function);
  auto &remarks = analyses.getResult<OptimizationRemarkEmitterAnalysis>(function);

  bool changed = false;
  SmallPtrSet<Loop *, 8> givenUp;
  // Innermost first: once its children are gone, a parent becomes innermost
  // and its body (now straight-line code) is copied trip-count times.
  while (Loop *loop = nextInnermostMarkedLoop(loops, givenUp)) {
    changed |= simplifyLoop(loop, &dominators, &loops, &scalarEvolution, &assumptions, nullptr,
                            /*PreserveLCSSA=*/true);
    changed |= formLCSSA(*loop, dominators, &loops, &scalarEvolution);
    unsigned tripCount = scalarEvolution.getSmallConstantTripCount(loop);
    if (tripCount == 0) {
      givenUp.insert(loop);
      ++NumLoopsLeft;
      continue;
    }
    UnrollLoopOptions options;
    options.Count = tripCount;
    options.Force = true;
    options.Runtime = false;
    options.AllowExpensiveTripCount = false;
    options.UnrollRemainder = false;
    options.ForgetAllSCEV = false;
    LoopUnrollResult result = UnrollLoop(loop, options, &loops, &scalarEvolution, &dominators,
                                         &assumptions, &targetInfo, &remarks,
                                         /*PreserveLCSSA=*/true);
    if (result == LoopUnrollResult::FullyUnrolled) {
      ++NumLoopsUnrolled;
      changed = true;
    } else {
      givenUp.insert(loop);
      ++NumLoopsLeft;
      changed |= result != LoopUnrollResult::Unmodified;
    }
  }
  return changed ? PreservedAnalyses::none() : PreservedAnalyses::all();
}

} // namespace convgen
