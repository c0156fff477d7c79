//===- FullUnroll.h - fully unroll every loop the template marks ----------===//
//
// Fully unrolls each loop that carries `llvm.loop.unroll.enable` or
// `llvm.loop.unroll.full` (what clang emits for `#pragma unroll`) once its
// trip count is a constant, however large the result.
//
// LLVM's own LoopFullUnrollPass stops at a size threshold; a convgen
// template must unroll completely, because only then does every weight load
// have a constant position that ZeroWeightElimination can act on. Loops are
// unrolled innermost first. A marked loop whose trip count is not a constant
// is left alone; TemplateSpecializer reports it.
//
// Run: in a pipeline as `convgen-full-unroll` (function pass), after
// loop-simplify, lcssa and loop(loop-rotate,indvars).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

namespace llvm {
class Loop;
}

namespace convgen {

class FullUnrollPass : public llvm::PassInfoMixin<FullUnrollPass> {
public:
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);

  /// Whether the loop asks to be unrolled (`#pragma unroll`).
  static bool isMarkedForUnroll(const llvm::Loop &loop);
};

} // namespace convgen
