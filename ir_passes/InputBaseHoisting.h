//===- InputBaseHoisting.h - compute each input base address once ---------===//
//
// The template gives every input load the address `base + constant`, where
// the base (the input position, or the zero page for padding) depends only
// on the thread's tile, never on the input channel or the weight. After
// unrolling, each code section (channel block, reduction part) still
// computes its own copy of every base. This pass moves each base's
// expression tree (pure, non-trapping arithmetic, selects and GEPs whose
// leaves are available there) to the end of the block that dominates all
// input loads; CSE then keeps one copy per base. A load keeps its constant
// offset, which NVPTX folds into the instruction.
//
// Only bases move, not the final `base + constant`: hoisting those would
// keep one address per load live across the kernel.
//
// Run: `convgen-hoist-input-bases` (function pass), after zero-weight
// elimination, followed by early-cse.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

namespace convgen {

class InputBaseHoistingPass : public llvm::PassInfoMixin<InputBaseHoistingPass> {
public:
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);
};

} // namespace convgen
