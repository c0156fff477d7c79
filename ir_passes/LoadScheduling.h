//===- LoadScheduling.h - issue read-only loads ahead of their use -------===//
//
// After unrolling, a code section is one long basic block in which each
// input load sits a few instructions before the first multiply-add that
// needs it. A GPU warp runs its instructions in order: at batch 1, with a
// warp or two per scheduler, nothing covers the load's latency (about 200
// cycles from L2), and the warp waits for each one.
//
// This pass reorders each basic block so that every load of memory the
// kernel never writes is issued ahead of its first use, as CUTLASS's
// mainloop fetches the next tile while it computes the current one:
//   - a load is issued once its first use is at most `distance` original
//     instructions ahead (the latency to cover: no further, since an early
//     load only holds a register longer);
//   - at most `budget` loads are in flight at any point (issued, first use
//     not yet reached): the registers the lookahead may add. A load that
//     the budget holds back is issued when its use comes, as before.
// Loads go in the order of their first use; the address arithmetic only a
// load needs (pure, non-trapping) moves up with it. Every other instruction
// keeps its order.
//
// Which loads: simple loads from the global address space whose every
// underlying object is a `noalias readonly` argument or a constant global
// (the input, the zero page, weights read through ld.global.nc). Nothing
// in the kernel writes them, so they may cross stores; they never cross an
// instruction that might not return (a barrier, a call). Constant-bank
// loads (address space 4) stay where they are: ptxas folds them into the
// FFMA as operands, so moving them would only change the PTX.
//
// NVPTX's SelectionDAG schedules each block in source order, so the order
// set here is the order of the PTX (checked by a PTX text test).
//
// Run: `convgen-schedule-loads` or `convgen-schedule-loads<budget=N;distance=M>`
// (function pass), last before code generation.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

namespace convgen {

struct LoadSchedulingOptions {
  /// At most this many loads issued ahead and not yet used: about the
  /// registers the pass may add to a thread.
  int budget = 32;
  /// A load is issued when its first use is this many (original)
  /// instructions ahead, or nearer.
  int distance = 256;
};

class LoadSchedulingPass : public llvm::PassInfoMixin<LoadSchedulingPass> {
public:
  explicit LoadSchedulingPass(LoadSchedulingOptions options = {}) : Options(options) {}
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);

private:
  LoadSchedulingOptions Options;
};

} // namespace convgen
