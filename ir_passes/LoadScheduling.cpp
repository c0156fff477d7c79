#include "LoadScheduling.h"

#include <llvm/ADT/DenseMap.h>
#include <llvm/ADT/DenseSet.h>
#include <llvm/ADT/STLExtras.h>
#include <llvm/ADT/SmallVector.h>
#include <llvm/ADT/Statistic.h>
#include <llvm/Analysis/ValueTracking.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/GlobalVariable.h>
#include <llvm/IR/Instructions.h>
#include <llvm/Support/Debug.h>

#include <algorithm>
#include <deque>

#define DEBUG_TYPE "convgen-schedule-loads"

STATISTIC(NumLoadsScheduled, "Number of read-only loads issued ahead of their first use");
STATISTIC(NumLoadsForced, "Number of read-only loads held back until a use needed them");

using namespace llvm;

namespace convgen {

namespace {

/// NVPTX's generic (0) and global (1) address spaces: where the input and
/// ld.global.nc weights live. Shared (3) is written by the kernel; constant
/// (4) loads are FFMA operands after ptxas.
constexpr unsigned GenericAddressSpace = 0;
constexpr unsigned GlobalAddressSpace = 1;

/// Memory that nothing in the kernel writes.
bool isReadOnlyObject(const Value *object) {
  if (auto *argument = dyn_cast<Argument>(object))
    return argument->hasNoAliasAttr() && argument->onlyReadsMemory();
  if (auto *global = dyn_cast<GlobalVariable>(object))
    return global->isConstant();
  return false;
}

bool isReadOnlyLoad(const Instruction &inst) {
  auto *load = dyn_cast<LoadInst>(&inst);
  if (!load || !load->isSimple())
    return false;
  const unsigned space = load->getPointerAddressSpace();
  if (space != GenericAddressSpace && space != GlobalAddressSpace)
    return false;
  SmallVector<const Value *, 4> objects;
  getUnderlyingObjects(load->getPointerOperand(), objects, nullptr, /*MaxLookup=*/0);
  return !objects.empty() && all_of(objects, isReadOnlyObject);
}

/// One stretch of a block that loads may move within: no instruction in it
/// may fail to pass execution on (a barrier, a call that might not return),
/// and it holds no phi and no terminator.
class RegionScheduler {
public:
  RegionScheduler(ArrayRef<Instruction *> region, const LoadSchedulingOptions &options)
      : Region(region), Options(options) {
    for (size_t position = 0; position < Region.size(); ++position)
      Position[Region[position]] = int(position);
  }

  /// The new order of the region's instructions; false if it is the old one.
  bool schedule(SmallVectorImpl<Instruction *> &order);

private:
  bool inRegion(const Value *value) const {
    auto *inst = dyn_cast<Instruction>(value);
    return inst && Position.count(inst);
  }
  int firstUse(Instruction *load) const;
  bool collectTree(Instruction *inst, SmallVectorImpl<Instruction *> &tree,
                   SmallPtrSetImpl<Instruction *> &visiting) const;
  bool emitWithTree(Instruction *load, SmallVectorImpl<Instruction *> &order);
  /// Emits \p inst after those of its operands in the region not yet out
  /// (loads the budget held back): the original order, as late as it was.
  void emitInOrder(Instruction *inst, SmallVectorImpl<Instruction *> &order);

  ArrayRef<Instruction *> Region;
  const LoadSchedulingOptions &Options;
  DenseMap<Instruction *, int> Position;
  DenseSet<Instruction *> Loads;
  DenseSet<Instruction *> Emitted;
};

/// The position of \p load's first user in the region; the region's end
/// if none is in it.
int RegionScheduler::firstUse(Instruction *load) const {
  int first = int(Region.size());
  for (User *user : load->users())
    if (auto *inst = dyn_cast<Instruction>(user); inst && inRegion(inst))
      first = std::min(first, Position.lookup(inst));
  return first;
}

/// Collects, operands first, the instructions of the region not yet
/// emitted that \p inst needs, \p inst included (emitWithTree decides
/// whether they may move up).
bool RegionScheduler::collectTree(Instruction *inst, SmallVectorImpl<Instruction *> &tree,
                                  SmallPtrSetImpl<Instruction *> &visiting) const {
  if (!inRegion(inst) || Emitted.count(inst) || is_contained(tree, inst))
    return true;
  if (!visiting.insert(inst).second)
    return false;
  for (Value *operand : inst->operands())
    if (auto *operandInst = dyn_cast<Instruction>(operand))
      if (!collectTree(operandInst, tree, visiting))
        return false;
  tree.push_back(inst);
  return true;
}

bool RegionScheduler::emitWithTree(Instruction *load, SmallVectorImpl<Instruction *> &order) {
  SmallVector<Instruction *, 8> tree;
  SmallPtrSet<Instruction *, 8> visiting;
  if (!collectTree(load, tree, visiting))
    return false;
  // Everything but the load itself must be pure arithmetic.
  for (Instruction *inst : tree)
    if (inst != load && (Loads.count(inst) || inst->mayReadOrWriteMemory() ||
                         !isSafeToSpeculativelyExecute(inst)))
      return false;
  for (Instruction *inst : tree) {
    order.push_back(inst);
    Emitted.insert(inst);
  }
  return true;
}

void RegionScheduler::emitInOrder(Instruction *inst, SmallVectorImpl<Instruction *> &order) {
  if (!inRegion(inst) || Emitted.count(inst))
    return;
  for (Value *operand : inst->operands())
    if (auto *operandInst = dyn_cast<Instruction>(operand))
      emitInOrder(operandInst, order);
  if (Loads.count(inst))
    ++NumLoadsForced;
  order.push_back(inst);
  Emitted.insert(inst);
}

bool RegionScheduler::schedule(SmallVectorImpl<Instruction *> &order) {
  SmallVector<Instruction *, 64> pending;
  for (Instruction *inst : Region)
    if (isReadOnlyLoad(*inst)) {
      Loads.insert(inst);
      pending.push_back(inst);
    }
  if (pending.empty())
    return false;
  DenseMap<Instruction *, int> first;
  for (Instruction *load : pending)
    first[load] = firstUse(load);
  std::stable_sort(pending.begin(), pending.end(),
                   [&](Instruction *a, Instruction *b) { return first[a] < first[b]; });

  size_t next = 0;
  std::deque<int> inFlight; // first-use positions of the loads issued ahead, ascending
  for (int position = 0; position < int(Region.size()); ++position) {
    Instruction *inst = Region[position];
    // Issue the loads whose first use is near enough, as the budget allows.
    while (next < pending.size()) {
      Instruction *load = pending[next];
      if (Emitted.count(load)) {
        ++next;
        continue;
      }
      const int use = first[load];
      if (use - position > Options.distance || int(inFlight.size()) >= Options.budget)
        break;
      if (!emitWithTree(load, order))
        break;
      ++NumLoadsScheduled;
      if (use > position)
        inFlight.push_back(use);
      ++next;
    }
    if (Emitted.count(inst) || Loads.count(inst))
      continue; // moved up already, or a load waiting for its turn
    // A use reached before its load was issued (the budget held it): the
    // load goes out now, after whatever of its own operands is not out yet.
    emitInOrder(inst, order);
    while (!inFlight.empty() && inFlight.front() <= position)
      inFlight.pop_front();
  }
  // Loads whose users all lie past the region.
  for (Instruction *load : pending)
    emitInOrder(load, order);
  return !equal(order, Region);
}

/// Splits \p block into regions and reorders each; true if any moved.
bool scheduleBlock(BasicBlock &block, const LoadSchedulingOptions &options) {
  bool changed = false;
  SmallVector<Instruction *, 256> region;
  auto flush = [&](Instruction *boundary) {
    if (region.size() > 1) {
      SmallVector<Instruction *, 256> order;
      RegionScheduler scheduler(region, options);
      if (scheduler.schedule(order)) {
        for (Instruction *inst : order)
          inst->moveBefore(boundary);
        changed = true;
      }
    }
    region.clear();
  };
  for (Instruction &inst : make_early_inc_range(block)) {
    if (isa<PHINode>(inst) || inst.isEHPad())
      continue;
    if (inst.isTerminator() || !isGuaranteedToTransferExecutionToSuccessor(&inst)) {
      flush(&inst);
      continue;
    }
    region.push_back(&inst);
  }
  return changed;
}

} // namespace

PreservedAnalyses LoadSchedulingPass::run(Function &function, FunctionAnalysisManager &) {
  bool changed = false;
  for (BasicBlock &block : function)
    changed |= scheduleBlock(block, Options);
  if (!changed)
    return PreservedAnalyses::all();
  PreservedAnalyses preserved;
  preserved.preserveSet<CFGAnalyses>();
  return preserved;
}

} // namespace convgen
