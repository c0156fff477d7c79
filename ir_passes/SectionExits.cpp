#include "SectionExits.h"

#include <llvm/ADT/Statistic.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/Instructions.h>

#include <optional>
#include <utility>
#include <vector>

#define DEBUG_TYPE "convgen-section-exits"

STATISTIC(NumSectionsRedirected, "Number of section ends sent past the decided checks");
STATISTIC(NumChecksSkipped, "Number of decided checks skipped by them");

using namespace llvm;

namespace convgen {

/// A section check: `br (icmp eq|ne %selector, k)`, taking `match` when
/// the selector is k and `miss` otherwise.
struct SectionCheck {
  Value *selector = nullptr;
  ConstantInt *value = nullptr;
  BasicBlock *match = nullptr;
  BasicBlock *miss = nullptr;
};

/// The check \p block ends in, whatever else it holds.
static std::optional<SectionCheck> checkAtEnd(BasicBlock &block) {
  auto *branch = dyn_cast<BranchInst>(block.getTerminator());
  if (!branch || !branch->isConditional())
    return std::nullopt;
  auto *compare = dyn_cast<ICmpInst>(branch->getCondition());
  if (!compare || !compare->isEquality())
    return std::nullopt;
  SectionCheck check;
  check.value = dyn_cast<ConstantInt>(compare->getOperand(1));
  check.selector = compare->getOperand(0);
  if (!check.value) { // the unrolled template compares `k == %selector`
    check.value = dyn_cast<ConstantInt>(compare->getOperand(0));
    check.selector = compare->getOperand(1);
  }
  if (!check.value || isa<Constant>(check.selector))
    return std::nullopt;
  const bool equal = compare->getPredicate() == ICmpInst::ICMP_EQ;
  check.match = branch->getSuccessor(equal ? 0 : 1);
  check.miss = branch->getSuccessor(equal ? 1 : 0);
  if (check.match == check.miss)
    return std::nullopt;
  return check;
}

/// A check that does nothing else: no phi, and at most its own compare
/// (used by the branch alone) before the branch. Skipping it skips no work.
static std::optional<SectionCheck> pureCheck(BasicBlock &block) {
  std::optional<SectionCheck> check = checkAtEnd(block);
  if (!check)
    return std::nullopt;
  auto *compare = cast<Instruction>(cast<BranchInst>(block.getTerminator())->getCondition());
  for (Instruction &inst : block) {
    if (&inst == block.getTerminator())
      break;
    if (&inst != compare || !compare->hasOneUse())
      return std::nullopt;
  }
  return check;
}

/// The value of \p selector wherever \p block runs, if a dominating check
/// edge decides it: \p block lies under the match successor of a check on
/// \p selector, a successor entered from that check alone.
static ConstantInt *knownSelectorValue(BasicBlock *block, Value *selector, DominatorTree &dominators) {
  for (DomTreeNode *node = dominators.getNode(block); node && node->getIDom();
       node = node->getIDom()) {
    BasicBlock *dominated = node->getBlock();
    std::optional<SectionCheck> check = checkAtEnd(*node->getIDom()->getBlock());
    if (check && check->selector == selector && check->match == dominated &&
        dominated->getSinglePredecessor())
      return check->value;
  }
  return nullptr;
}

PreservedAnalyses SectionExitsPass::run(Function &function, FunctionAnalysisManager &analyses) {
  auto &dominators = analyses.getResult<DominatorTreeAnalysis>(function);

  // Decide every redirection on the unchanged CFG, then apply them.
  std::vector<std::pair<BranchInst *, BasicBlock *>> redirections;
  for (BasicBlock &block : function) {
    auto *branch = dyn_cast<BranchInst>(block.getTerminator());
    if (!branch || branch->isConditional())
      continue;
    std::optional<SectionCheck> next = pureCheck(*branch->getSuccessor(0));
    if (!next)
      continue;
    ConstantInt *known = knownSelectorValue(&block, next->selector, dominators);
    if (!known)
      continue;
    BasicBlock *target = branch->getSuccessor(0);
    int skipped = 0;
    // (The bound only guards against a cycle of checks, which the unrolled
    // template never has.)
    for (std::optional<SectionCheck> check = next;
         check && check->selector == next->selector && check->value != known &&
         skipped < int(function.size());
         check = pureCheck(*target)) {
      target = check->miss;
      ++skipped;
    }
    if (skipped == 0 || !target->phis().empty())
      continue;
    redirections.emplace_back(branch, target);
    NumChecksSkipped += skipped;
  }
  for (auto &[branch, target] : redirections)
    branch->setSuccessor(0, target);
  NumSectionsRedirected += redirections.size();

  if (redirections.empty())
    return PreservedAnalyses::all();
  return PreservedAnalyses::none();
}

} // namespace convgen
