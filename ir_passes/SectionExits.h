//===- SectionExits.h - leave a code section straight for the exit --------===//
//
// The unrolled template is a chain of code sections, one per channel block
// (and, inside one, per reduction part). A thread runs one of them, picked
// by a chain of checks `icmp eq %selector, k`: check k branches to section
// k or to check k + 1, and section k ends by branching to check k + 1.
// After section k the selector is known to be k, so every later check
// fails; but the code still runs them, and simplifycfg turns the rest of
// the chain behind each section into a search tree of its own (a
// depthwise layer of 192 channel blocks: about 30 compares per block in
// the PTX, for 7 fma).
//
// This pass sends the end of each section past the checks its own
// selector value decides: to the block after the chain. The chain itself
// then has one predecessor per check, and simplifycfg makes it one switch.
//
// A section's selector value comes from the dominator tree: a block whose
// dominating check edge is `%selector == k` (the check's match successor,
// entered from the check alone). Only pure checks are skipped: blocks
// holding nothing but the compare and the branch, without phis, so no work
// is skipped, only decided compares. A target with phis is left alone.
//
// Run: `convgen-section-exits` (function pass), after the template is
// fully unrolled, before the simplifycfg that forms switches.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

namespace convgen {

class SectionExitsPass : public llvm::PassInfoMixin<SectionExitsPass> {
public:
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);
};

} // namespace convgen
