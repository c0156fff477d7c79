//===- ZeroWeightElimination.h - delete the work of zero weights ----------===//
//
// Uses the WeightMap of an annotated kernel: each multiply-add of a weight
// that is zero, fma(x, 0, acc), becomes its accumulator `acc`. A worklist
// then deletes what that left unused: the weight's load, the input loads and
// selects only it needed, and their address arithmetic. Nothing replaces
// them: no index arrays, no per-weight branches. The nonzero positions stay
// as constant offsets in the code.
//
// Semantics: x * 0 is dropped, so an inf or NaN input under a zero weight no
// longer propagates (the dense result would be NaN there), and a -0.0 sum can
// become +0.0. Everything else is bit-identical to the dense chain.
//
// Run: constructed with the layer's OIHW weights (only zero vs nonzero
// matters); `convgen-zero-weight-elimination`. The generator runs it after
// SparseUnroll, which applies the same rule while unrolling, so there it
// deletes only weights whose offset the unroll could not place.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

#include <memory>
#include <vector>

namespace convgen {

class ZeroWeightEliminationPass : public llvm::PassInfoMixin<ZeroWeightEliminationPass> {
public:
  explicit ZeroWeightEliminationPass(std::shared_ptr<const std::vector<float>> weights)
      : Weights(std::move(weights)) {}
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);

private:
  std::shared_ptr<const std::vector<float>> Weights;
};

} // namespace convgen
