//===- SparseUnroll.h - unroll the template, leaving out zero weights -----===//
//
// Fully unrolls every loop the template marks (`#pragma unroll`: the
// reduction over channel blocks, parts and input channels) once its trip
// count is a constant, however large the result, and never materialises the
// work of a zero weight.
//
// Loops are unrolled outermost first. An outer loop is unrolled as LLVM's
// UnrollLoop does it: its body, with the inner loops still rolled, is small.
// Between levels, constants are folded, so each copy's inner loops see their
// channel block, part and channel as constants, and the channel table
// (convgen_input_channel_used) drops unused channels before they are copied.
//
// The innermost loop of each nest is unrolled by copying its body iteration
// by iteration. In the rolled body, each weight load's position in the OIHW
// weights is an affine function of the loop counter (scalar evolution gives
// start + i * step once the outer counters are constants), so for iteration i
// it is known, before anything is copied, which weights are zero. A
// multiply-add of a zero weight, fma(x, 0, acc), is not copied: its value is
// its accumulator. What only such multiply-adds needed (the weight load, the
// input loads and selects behind the other multiplicand, their addresses)
// is not copied either: an iteration copies only what its stores, barriers,
// branches and carried values depend on. So the unrolled code is
// proportional to the nonzeros, not to the dense layer; the walk that
// decides costs one visit per dense multiply-add, no copy.
//
// This is ZeroWeightElimination's rule (and its semantics: an inf or NaN
// input under a zero weight no longer propagates) applied while unrolling.
// A weight load whose position is not affine in the counter is copied and
// left to ZeroWeightElimination, which runs afterwards; the WeightMap of the
// result then shows every nonzero position and nothing else.
//
// Without weights (no annotation, or constructed without them) it is a plain
// full unroll: nothing is left out.
//
// Run: `convgen-sparse-unroll` (function pass) on an annotated kernel (see
// WeightMap.h), after loop-simplify and lcssa.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

#include <memory>
#include <vector>

namespace llvm {
class Loop;
}

namespace convgen {

class SparseUnrollPass : public llvm::PassInfoMixin<SparseUnrollPass> {
public:
  explicit SparseUnrollPass(std::shared_ptr<const std::vector<float>> weights = nullptr)
      : Weights(std::move(weights)) {}
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);

  /// Whether the loop asks to be unrolled (`#pragma unroll`).
  static bool isMarkedForUnroll(const llvm::Loop &loop);

private:
  std::shared_ptr<const std::vector<float>> Weights;
};

} // namespace convgen
