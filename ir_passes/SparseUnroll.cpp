#include "SparseUnroll.h"

#include "WeightMap.h"

#include <llvm/ADT/DenseMap.h>
#include <llvm/ADT/Statistic.h>
#include <llvm/Analysis/AssumptionCache.h>
#include <llvm/Analysis/InstructionSimplify.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/Analysis/LoopIterator.h>
#include <llvm/Analysis/OptimizationRemarkEmitter.h>
#include <llvm/Analysis/ScalarEvolution.h>
#include <llvm/Analysis/ScalarEvolutionExpressions.h>
#include <llvm/Analysis/TargetLibraryInfo.h>
#include <llvm/Analysis/TargetTransformInfo.h>
#include <llvm/Analysis/ValueTracking.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/Operator.h>
#include <llvm/Support/KnownBits.h>
#include <llvm/Transforms/Utils/Local.h>
#include <llvm/Transforms/Utils/LoopSimplify.h>
#include <llvm/Transforms/Utils/LoopUtils.h>
#include <llvm/Transforms/Utils/UnrollLoop.h>

#include <optional>

#define DEBUG_TYPE "convgen-sparse-unroll"

STATISTIC(NumOuterLoopsUnrolled, "Number of outer loops unrolled by LLVM's UnrollLoop");
STATISTIC(NumInnermostLoopsUnrolled, "Number of innermost loops unrolled iteration by iteration");
STATISTIC(NumMultiplyAddsLeftOut, "Number of zero weights' multiply-adds never copied");
STATISTIC(NumLoopsLeft, "Number of marked loops without a constant trip count");

using namespace llvm;

namespace convgen {

bool SparseUnrollPass::isMarkedForUnroll(const Loop &loop) {
  return findOptionMDForLoop(&loop, "llvm.loop.unroll.enable") ||
         findOptionMDForLoop(&loop, "llvm.loop.unroll.full");
}

namespace {

/// A weight load's byte offset from the weights: start + i * step in
/// iteration i of the loop.
struct AffineOffset {
  int64_t start = 0;
  int64_t step = 0;
};

/// What unrolling an innermost loop needs, read while the analyses are
/// valid, before any loop of the round is changed.
struct InnermostLoop {
  BasicBlock *preheader = nullptr;
  BasicBlock *header = nullptr;
  BasicBlock *latch = nullptr;
  BasicBlock *exit = nullptr;
  unsigned tripCount = 0;
  std::vector<BasicBlock *> blocks; ///< reverse post-order, header first
  std::vector<PHINode *> headerPhis;
  DenseMap<const Instruction *, unsigned> number; ///< the body's instructions, numbered
  /// Needed in every iteration: terminators, side effects, carried values
  /// and values used after the loop.
  std::vector<Instruction *> roots;
  /// Each multiply-add whose multiplicand is a weight load at an affine
  /// position: that position.
  DenseMap<const Instruction *, AffineOffset> weightOffsetOf;
};

/// Marks `or`s of the body `disjoint` where the loop's ranges prove that
/// their operands share no bit. The template's index arithmetic writes
/// `row | c` for `row + c`, and scalar evolution reads an `or` as an add only
/// when it is marked so; instcombine marks what known bits prove, but not
/// what needs the loop counter's range (c < trip count). Unmarked, a 1x1
/// layer's weight offsets were opaque, so its channel loop was copied
/// densely and ZeroWeightElimination deleted 90 % of it afterwards.
void markDisjointOrs(const std::vector<BasicBlock *> &blocks, ScalarEvolution &evolution) {
  for (BasicBlock *block : blocks) // in reverse post-order: operands first
    for (Instruction &inst : *block) {
      auto *disjoint = dyn_cast<PossiblyDisjointInst>(&inst);
      if (!disjoint || disjoint->isDisjoint() || !inst.getType()->isIntegerTy())
        continue;
      auto bitsOf = [&](Value *value) {
        return evolution.getUnsignedRange(evolution.getSCEV(value)).toKnownBits();
      };
      if (!KnownBits::haveNoCommonBitsSet(bitsOf(inst.getOperand(0)), bitsOf(inst.getOperand(1))))
        continue;
      // Forget the `or` (an opaque value so far) and whatever was built on it.
      evolution.forgetValue(&inst);
      disjoint->setIsDisjoint(true);
    }
}

/// The multiply-adds of each weight load of the body whose offset from
/// \p weights is an affine function of the loop counter with constant
/// coefficients.
void findAffineWeights(Loop &loop, ScalarEvolution &evolution, const Argument &weights,
                       InnermostLoop &plan) {
  const SCEV *base = evolution.getSCEV(const_cast<Argument *>(&weights));
  for (BasicBlock *block : plan.blocks)
    for (Instruction &inst : *block) {
      auto *load = dyn_cast<LoadInst>(&inst);
      if (!load || !load->getType()->isFloatTy() ||
          getUnderlyingObject(load->getPointerOperand()) != &weights)
        continue;
      const SCEV *address = evolution.getSCEV(load->getPointerOperand());
      if (evolution.getPointerBase(address) != base)
        continue;
      const SCEV *offset = evolution.removePointerBase(address);
      std::optional<AffineOffset> affine;
      if (auto *constant = dyn_cast<SCEVConstant>(offset)) {
        affine = AffineOffset{constant->getAPInt().getSExtValue(), 0};
      } else if (auto *recurrence = dyn_cast<SCEVAddRecExpr>(offset)) {
        auto *start = dyn_cast<SCEVConstant>(recurrence->getStart());
        auto *step = dyn_cast<SCEVConstant>(recurrence->getStepRecurrence(evolution));
        if (recurrence->getLoop() == &loop && recurrence->isAffine() && start && step)
          affine = AffineOffset{start->getAPInt().getSExtValue(), step->getAPInt().getSExtValue()};
      }
      if (!affine)
        continue; // copied; ZeroWeightElimination decides later
      for (User *user : load->users()) {
        auto *call = dyn_cast<CallInst>(user);
        if (call && isMultiplyAdd(call) && call->getArgOperand(2) != load)
          plan.weightOffsetOf[call] = *affine;
      }
    }
}

/// The plan for an innermost loop in rotated, LCSSA form with one latch
/// that is its only exit; nullopt for any other shape.
std::optional<InnermostLoop> readInnermostLoop(Loop &loop, LoopInfo &loops,
                                               ScalarEvolution &evolution, unsigned tripCount,
                                               const Argument *weights) {
  InnermostLoop plan;
  plan.preheader = loop.getLoopPreheader();
  plan.header = loop.getHeader();
  plan.latch = loop.getLoopLatch();
  plan.exit = loop.getUniqueExitBlock();
  plan.tripCount = tripCount;
  if (!plan.preheader || !plan.latch || !plan.exit || loop.getExitingBlock() != plan.latch ||
      !isa<BranchInst>(plan.latch->getTerminator()))
    return std::nullopt;
  LoopBlocksRPO order(&loop);
  order.perform(&loops);
  plan.blocks.assign(order.begin(), order.end());
  for (PHINode &phi : plan.header->phis())
    plan.headerPhis.push_back(&phi);
  for (BasicBlock *block : plan.blocks)
    for (Instruction &inst : *block) {
      plan.number[&inst] = unsigned(plan.number.size());
      bool usedAfter = any_of(inst.users(), [&](User *user) {
        return !loop.contains(cast<Instruction>(user));
      });
      if (inst.isTerminator() || inst.mayHaveSideEffects() || usedAfter)
        plan.roots.push_back(&inst);
    }
  for (PHINode *phi : plan.headerPhis)
    if (auto *carried = dyn_cast<Instruction>(phi->getIncomingValueForBlock(plan.latch)))
      if (loop.contains(carried))
        plan.roots.push_back(carried);
  if (weights) {
    markDisjointOrs(plan.blocks, evolution);
    findAffineWeights(loop, evolution, *weights, plan);
  }
  return plan;
}

/// Copies an innermost loop's body once per iteration, each copy holding
/// only what that iteration needs, then deletes the loop.
class IterationCopier {
public:
  IterationCopier(const InnermostLoop &plan, const std::vector<float> *weights)
      : Plan(plan), Weights(weights), Marks(plan.number.size(), 0) {}

  void run() {
    Function &function = *Plan.header->getParent();
    LLVMContext &context = function.getContext();
    SimplifyQuery query(function.getDataLayout());
    DenseMap<PHINode *, Value *> carried;
    for (PHINode *phi : Plan.headerPhis)
      carried[phi] = phi->getIncomingValueForBlock(Plan.preheader);
    BasicBlock *header = BasicBlock::Create(context, "", &function, Plan.exit);
    Plan.preheader->getTerminator()->replaceSuccessorWith(Plan.header, header);
    for (unsigned i = 0; i < Plan.tripCount; ++i) {
      markNeeded(i);
      Map.clear();
      Copies.clear();
      for (PHINode *phi : Plan.headerPhis)
        Map[phi] = carried[phi];
      Copies[Plan.header] = header;
      const bool last = i + 1 == Plan.tripCount;
      BasicBlock *next = last ? Plan.exit : BasicBlock::Create(context, "", &function, Plan.exit);
      for (BasicBlock *block : Plan.blocks)
        if (auto found = Copies.find(block); found != Copies.end())
          copyBlock(*block, *found->second, i, next, query);
      for (PHINode *phi : Plan.headerPhis)
        carried[phi] = mapped(phi->getIncomingValueForBlock(Plan.latch));
      if (last)
        rewireExit();
      header = next;
    }
    for (BasicBlock *block : Plan.blocks)
      block->dropAllReferences();
    for (BasicBlock *block : Plan.blocks)
      block->eraseFromParent();
  }

private:
  const InnermostLoop &Plan;
  const std::vector<float> *Weights;
  std::vector<unsigned> Marks; ///< the iteration (+1) that last marked it needed
  DenseMap<const Value *, Value *> Map;
  DenseMap<BasicBlock *, BasicBlock *> Copies;
  std::vector<Instruction *> Worklist;

  Value *mapped(Value *value) const {
    auto found = Map.find(value);
    return found == Map.end() ? value : found->second;
  }

  /// Whether \p inst is the multiply-add of a weight that is zero in iteration \p i.
  bool isZeroMultiplyAdd(const Instruction *inst, unsigned i) const {
    if (!Weights)
      return false;
    auto found = Plan.weightOffsetOf.find(inst);
    if (found == Plan.weightOffsetOf.end())
      return false;
    const int64_t offset = found->second.start + int64_t(i) * found->second.step;
    if (offset < 0 || offset % 4 != 0 || uint64_t(offset / 4) >= Weights->size())
      return false; // the WeightMap reports it
    return (*Weights)[size_t(offset / 4)] == 0.0f;
  }

  /// Marks what iteration \p i needs: everything the roots depend on, where
  /// a zero weight's multiply-add depends on its accumulator alone.
  void markNeeded(unsigned i) {
    const unsigned epoch = i + 1;
    Worklist.assign(Plan.roots.begin(), Plan.roots.end());
    while (!Worklist.empty()) {
      Instruction *inst = Worklist.back();
      Worklist.pop_back();
      auto number = Plan.number.find(inst);
      if (number == Plan.number.end() || Marks[number->second] == epoch)
        continue;
      Marks[number->second] = epoch;
      if (isa<PHINode>(inst) && inst->getParent() == Plan.header)
        continue; // its value is the carried one
      if (isZeroMultiplyAdd(inst, i)) {
        if (auto *accumulator = dyn_cast<Instruction>(cast<CallInst>(inst)->getArgOperand(2)))
          Worklist.push_back(accumulator);
        continue;
      }
      for (Value *operand : inst->operands())
        if (auto *operandInst = dyn_cast<Instruction>(operand))
          Worklist.push_back(operandInst);
    }
  }

  bool needed(const Instruction &inst, unsigned i) const {
    return Marks[Plan.number.find(&inst)->second] == i + 1;
  }

  /// The copy of \p successor in this iteration, created when first reached.
  BasicBlock *copyOf(BasicBlock *successor) {
    auto [found, inserted] = Copies.try_emplace(successor, nullptr);
    if (inserted)
      found->second = BasicBlock::Create(successor->getContext(), "", successor->getParent(),
                                         Plan.exit);
    return found->second;
  }

  void copyBlock(BasicBlock &block, BasicBlock &copy, unsigned i, BasicBlock *next,
                 const SimplifyQuery &query) {
    for (Instruction &inst : block) {
      if (auto *phi = dyn_cast<PHINode>(&inst)) {
        if (&block != Plan.header)
          Map[phi] = mergeReached(*phi, copy);
        continue;
      }
      if (inst.isTerminator()) {
        copyTerminator(block, copy, next);
        continue;
      }
      if (!needed(inst, i))
        continue;
      if (isZeroMultiplyAdd(&inst, i)) {
        Map[&inst] = mapped(cast<CallInst>(inst).getArgOperand(2));
        ++NumMultiplyAddsLeftOut;
        continue;
      }
      Instruction *clone = inst.clone();
      bool constantOperand = false;
      for (Use &operand : clone->operands()) {
        operand.set(mapped(operand.get()));
        constantOperand |= isa<Constant>(operand.get());
      }
      clone->insertInto(&copy, copy.end());
      // The counter is a constant in each copy: fold what it decides (the
      // channel table's reads, the branches on them) as it is copied.
      if (constantOperand)
        if (Value *folded = simplifyInstruction(clone, query)) {
          Map[&inst] = folded;
          clone->eraseFromParent();
          continue;
        }
      Map[&inst] = clone;
    }
  }

  /// A phi of a merge inside the body, over the predecessors this
  /// iteration reached; one value if they agree.
  Value *mergeReached(PHINode &phi, BasicBlock &copy) {
    SmallVector<std::pair<Value *, BasicBlock *>, 4> incoming;
    for (unsigned k = 0; k < phi.getNumIncomingValues(); ++k) {
      auto found = Copies.find(phi.getIncomingBlock(k));
      if (found == Copies.end() || !found->second->getTerminator())
        continue;
      BasicBlock *predecessor = found->second;
      if (any_of(incoming, [&](auto &entry) { return entry.second == predecessor; }))
        continue; // one entry per edge, added below
      Value *value = mapped(phi.getIncomingValue(k));
      for (BasicBlock *successor : successors(predecessor))
        if (successor == &copy)
          incoming.push_back({value, predecessor});
    }
    if (!incoming.empty() &&
        all_of(incoming, [&](auto &entry) { return entry.first == incoming.front().first; }))
      return incoming.front().first;
    PHINode *merged = PHINode::Create(phi.getType(), unsigned(incoming.size()), "");
    merged->insertInto(&copy, copy.begin());
    for (auto &[value, predecessor] : incoming)
      merged->addIncoming(value, predecessor);
    return merged;
  }

  void copyTerminator(BasicBlock &block, BasicBlock &copy, BasicBlock *next) {
    Instruction *terminator = block.getTerminator();
    // The trip count decides where the latch goes, not its compare.
    if (&block == Plan.latch) {
      BranchInst::Create(next, &copy);
      return;
    }
    if (auto *branch = dyn_cast<BranchInst>(terminator)) {
      if (branch->isUnconditional()) {
        BranchInst::Create(copyOf(branch->getSuccessor(0)), &copy);
        return;
      }
      Value *condition = mapped(branch->getCondition());
      if (auto *constant = dyn_cast<ConstantInt>(condition)) {
        BranchInst::Create(copyOf(branch->getSuccessor(constant->isZero() ? 1 : 0)), &copy);
        return;
      }
      BasicBlock *taken = copyOf(branch->getSuccessor(0));
      BasicBlock *notTaken = copyOf(branch->getSuccessor(1));
      BranchInst::Create(taken, notTaken, condition, &copy);
      return;
    }
    if (auto *switchInst = dyn_cast<SwitchInst>(terminator)) {
      Value *condition = mapped(switchInst->getCondition());
      if (auto *constant = dyn_cast<ConstantInt>(condition)) {
        BranchInst::Create(copyOf(switchInst->findCaseValue(constant)->getCaseSuccessor()), &copy);
        return;
      }
    }
    Instruction *clone = terminator->clone();
    for (Use &operand : clone->operands())
      if (!isa<BasicBlock>(operand.get()))
        operand.set(mapped(operand.get()));
    for (unsigned k = 0; k < clone->getNumSuccessors(); ++k)
      clone->setSuccessor(k, copyOf(terminator->getSuccessor(k)));
    clone->insertInto(&copy, copy.end());
  }

  /// The exit's phis take the last iteration's values from its latch copy.
  void rewireExit() {
    auto latchCopy = Copies.find(Plan.latch);
    for (PHINode &phi : Plan.exit->phis()) {
      int k = phi.getBasicBlockIndex(Plan.latch);
      if (k < 0)
        continue;
      if (latchCopy == Copies.end()) {
        phi.removeIncomingValue(unsigned(k), /*DeletePHIIfEmpty=*/false);
        continue;
      }
      phi.setIncomingValue(unsigned(k), mapped(phi.getIncomingValue(unsigned(k))));
      phi.setIncomingBlock(unsigned(k), latchCopy->second);
    }
  }
};

/// Folds what the last level's constants decide: the next level's trip
/// counts, table reads and branches.
void foldConstants(Function &function) {
  SimplifyQuery query(function.getDataLayout());
  for (BasicBlock &block : function)
    for (Instruction &inst : make_early_inc_range(block)) {
      if (isInstructionTriviallyDead(&inst)) {
        inst.eraseFromParent();
        continue;
      }
      if (Value *folded = simplifyInstruction(&inst, query)) {
        inst.replaceAllUsesWith(folded);
        inst.eraseFromParent();
      }
    }
  for (BasicBlock &block : function)
    ConstantFoldTerminator(&block, /*DeleteDeadConditions=*/true);
  removeUnreachableBlocks(function);
}

} // namespace

PreservedAnalyses SparseUnrollPass::run(Function &function, FunctionAnalysisManager &analyses) {
  const Argument *weightsArgument = nullptr;
  std::array<int64_t, 4> shape{};
  const bool sparse = Weights && readWeightsAnnotation(function, weightsArgument, shape) &&
                      int64_t(Weights->size()) == shape[0] * shape[1] * shape[2] * shape[3];
  auto &libraryInfo = analyses.getResult<TargetLibraryAnalysis>(function);
  auto &targetInfo = analyses.getResult<TargetIRAnalysis>(function);
  auto &assumptions = analyses.getResult<AssumptionAnalysis>(function);

  bool changed = false;
  // One level of the nests per round; fresh analyses each round.
  for (;;) {
    DominatorTree dominators(function);
    LoopInfo loops(dominators);
    ScalarEvolution evolution(function, libraryInfo, assumptions, dominators, loops);
    OptimizationRemarkEmitter remarks(&function);
    std::vector<Loop *> outer, innermost;
    for (Loop *loop : loops)
      if (isMarkedForUnroll(*loop))
        (loop->isInnermost() ? innermost : outer).push_back(loop);

    auto prepare = [&](Loop *loop) -> unsigned {
      changed |= simplifyLoop(loop, &dominators, &loops, &evolution, &assumptions, nullptr,
                              /*PreserveLCSSA=*/true);
      changed |= formLCSSARecursively(*loop, dominators, &loops, &evolution);
      unsigned tripCount = evolution.getSmallConstantTripCount(loop);
      if (tripCount == 0)
        ++NumLoopsLeft; // TemplateSpecializer reports the loop
      return tripCount;
    };
    auto unrollWithLlvm = [&](Loop *loop, unsigned tripCount) {
      UnrollLoopOptions options;
      options.Count = tripCount;
      options.Force = true;
      options.Runtime = false;
      options.AllowExpensiveTripCount = false;
      options.UnrollRemainder = false;
      options.ForgetAllSCEV = false;
      return UnrollLoop(loop, options, &loops, &evolution, &dominators, &assumptions, &targetInfo,
                        &remarks, /*PreserveLCSSA=*/true) == LoopUnrollResult::FullyUnrolled;
    };

    bool progress = false;
    for (Loop *loop : outer)
      if (unsigned tripCount = prepare(loop); tripCount && unrollWithLlvm(loop, tripCount)) {
        ++NumOuterLoopsUnrolled;
        progress = true;
      }
    // Innermost loops of an unexpected shape: LLVM's unroller, before any
    // plan is read (it may change the blocks around them).
    std::vector<std::pair<Loop *, unsigned>> copied;
    for (Loop *loop : innermost) {
      unsigned tripCount = prepare(loop);
      if (!tripCount)
        continue;
      if (loop->getLoopPreheader() && loop->getLoopLatch() && loop->getUniqueExitBlock() &&
          loop->getExitingBlock() == loop->getLoopLatch())
        copied.push_back({loop, tripCount});
      else
        progress |= unrollWithLlvm(loop, tripCount);
    }
    std::vector<InnermostLoop> plans;
    for (auto &[loop, tripCount] : copied)
      if (auto plan = readInnermostLoop(*loop, loops, evolution, tripCount,
                                        sparse ? weightsArgument : nullptr))
        plans.push_back(std::move(*plan));
    for (const InnermostLoop &plan : plans) {
      IterationCopier(plan, sparse ? Weights.get() : nullptr).run();
      ++NumInnermostLoopsUnrolled;
      progress = true;
    }
    changed |= progress;
    if (!progress)
      break;
    foldConstants(function);
  }
  return changed ? PreservedAnalyses::none() : PreservedAnalyses::all();
}

} // namespace convgen
