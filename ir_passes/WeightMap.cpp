#include "WeightMap.h"

#include <llvm/Analysis/ValueTracking.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/Function.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Metadata.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/raw_ostream.h>

#include <unordered_set>

using namespace llvm;

namespace convgen {

AnalysisKey WeightMapAnalysis::Key;

void annotateWeights(Function &kernel, unsigned argument, const std::array<int64_t, 4> &shape) {
  LLVMContext &context = kernel.getContext();
  auto i32 = Type::getInt32Ty(context);
  auto i64 = Type::getInt64Ty(context);
  SmallVector<Metadata *, 5> fields = {ConstantAsMetadata::get(ConstantInt::get(i32, argument))};
  for (int64_t dim : shape)
    fields.push_back(ConstantAsMetadata::get(ConstantInt::get(i64, dim)));
  kernel.setMetadata(WeightsMetadataName, MDNode::get(context, fields));
}

bool readWeightsAnnotation(const Function &function, const Argument *&weights,
                           std::array<int64_t, 4> &shape) {
  const MDNode *node = function.getMetadata(WeightsMetadataName);
  if (!node || node->getNumOperands() != 5)
    return false;
  auto integer = [node](unsigned i) -> std::optional<int64_t> {
    if (auto *constant = mdconst::dyn_extract<ConstantInt>(node->getOperand(i)))
      return constant->getSExtValue();
    return std::nullopt;
  };
  auto argument = integer(0);
  if (!argument || *argument < 0 || uint64_t(*argument) >= function.arg_size())
    return false;
  weights = function.getArg(static_cast<unsigned>(*argument));
  for (unsigned i = 0; i < 4; ++i) {
    auto dim = integer(i + 1);
    if (!dim || *dim < 1)
      return false;
    shape[i] = *dim;
  }
  return true;
}

bool isMultiplyAdd(const Instruction *inst) {
  auto *call = dyn_cast<IntrinsicInst>(inst);
  return call && (call->getIntrinsicID() == Intrinsic::fma ||
                  call->getIntrinsicID() == Intrinsic::fmuladd);
}

/// The other multiplicand of \p multiplyAdd, the one that is not \p weight.
static Value *otherMultiplicand(CallInst *multiplyAdd, Value *weight) {
  return multiplyAdd->getArgOperand(0) == weight ? multiplyAdd->getArgOperand(1)
                                                 : multiplyAdd->getArgOperand(0);
}

/// The input loads behind a multiplicand: the value itself if it reads
/// memory, or the loads under the selects that zero padded positions and
/// the casts that widen fp16 inputs.
static void collectInputLoads(Value *value, SmallVectorImpl<Instruction *> &loads) {
  SmallVector<Value *, 4> worklist = {value};
  SmallPtrSet<Value *, 8> seen;
  while (!worklist.empty()) {
    auto *inst = dyn_cast<Instruction>(worklist.pop_back_val());
    if (!inst || !seen.insert(inst).second)
      continue;
    if (auto *select = dyn_cast<SelectInst>(inst)) {
      worklist.push_back(select->getTrueValue());
      worklist.push_back(select->getFalseValue());
    } else if (isa<CastInst>(inst)) {
      worklist.push_back(inst->getOperand(0));
    } else if (inst->mayReadFromMemory()) {
      loads.push_back(inst);
    }
  }
}

/// True if every use of \p load (through selects and casts) is one of \p multiplyAdds.
static bool onlyFeeds(Instruction *load, const std::unordered_set<const Instruction *> &multiplyAdds) {
  SmallVector<Instruction *, 4> worklist = {load};
  SmallPtrSet<Instruction *, 8> seen;
  while (!worklist.empty()) {
    Instruction *inst = worklist.pop_back_val();
    if (!seen.insert(inst).second)
      continue;
    for (User *user : inst->users()) {
      auto *userInst = cast<Instruction>(user);
      if (multiplyAdds.count(userInst))
        continue;
      if (isa<SelectInst>(userInst) || isa<CastInst>(userInst)) {
        worklist.push_back(userInst);
        continue;
      }
      return false;
    }
  }
  return true;
}

WeightMap WeightMapAnalysis::run(Function &function, FunctionAnalysisManager &) {
  WeightMap map;
  const Argument *weights = nullptr;
  if (!readWeightsAnnotation(function, weights, map.Shape))
    return map;
  map.Annotated = true;
  map.WeightsArgument = weights->getArgNo();
  const DataLayout &layout = function.getParent()->getDataLayout();
  int64_t count = map.Shape[0] * map.Shape[1] * map.Shape[2] * map.Shape[3];

  for (Instruction &inst : instructions(function)) {
    auto *load = dyn_cast<LoadInst>(&inst);
    if (!load)
      continue;
    int64_t offset = 0;
    const Value *base = GetPointerBaseWithConstantOffset(load->getPointerOperand(), offset, layout);
    if (base != weights) {
      // A load from the weights through a variable offset still has the
      // weights argument as its underlying object.
      if (getUnderlyingObject(load->getPointerOperand()) == weights)
        map.NonConstantLoads.push_back(load);
      continue;
    }
    if (!load->getType()->isFloatTy() || offset % 4 != 0 || offset < 0 || offset / 4 >= count) {
      map.NonConstantLoads.push_back(load);
      continue;
    }
    WeightUses &uses = map.Positions[offset / 4];
    if (uses.load) { // two loads of one position: keep both visible as "other"
      map.LoadsWithOtherUses.push_back(load);
      continue;
    }
    uses.load = load;
    bool otherUse = false;
    for (User *user : load->users()) {
      auto *userInst = cast<Instruction>(user);
      auto *call = dyn_cast<CallInst>(userInst);
      if (call && isMultiplyAdd(call) && call->getArgOperand(2) != load)
        uses.multiplyAdds.push_back(call);
      else
        otherUse = true;
    }
    if (otherUse)
      map.LoadsWithOtherUses.push_back(load);
  }

  // Input loads that only one weight's multiply-adds need.
  for (auto &[index, uses] : map.Positions) {
    std::unordered_set<const Instruction *> own(uses.multiplyAdds.begin(), uses.multiplyAdds.end());
    SmallVector<Instruction *, 8> inputLoads;
    for (CallInst *multiplyAdd : uses.multiplyAdds)
      collectInputLoads(otherMultiplicand(multiplyAdd, uses.load), inputLoads);
    SmallPtrSet<Instruction *, 8> added;
    for (Instruction *input : inputLoads)
      if (added.insert(input).second && onlyFeeds(input, own))
        uses.exclusiveInputLoads.push_back(input);
  }
  return map;
}

size_t WeightMap::multiplyAddCount() const {
  size_t count = 0;
  for (const auto &[index, uses] : Positions)
    count += uses.multiplyAdds.size();
  return count;
}

std::array<int64_t, 4> WeightMap::decode(int64_t index) const {
  std::array<int64_t, 4> position{};
  for (int d = 3; d >= 0; --d) {
    position[d] = index % Shape[d];
    index /= Shape[d];
  }
  return position;
}

void WeightMap::print(raw_ostream &out, const Function &function) const {
  out << "WeightMap for '" << function.getName() << "'";
  if (!Annotated) {
    out << ": no " << WeightsMetadataName << " annotation\n";
    return;
  }
  out << ": weights [" << Shape[0] << ", " << Shape[1] << ", " << Shape[2] << ", " << Shape[3]
      << "], " << Positions.size() << " positions, " << multiplyAddCount() << " multiply-adds, "
      << NonConstantLoads.size() << " non-constant loads, " << LoadsWithOtherUses.size()
      << " loads with other uses\n";
  for (const auto &[index, uses] : Positions) {
    auto p = decode(index);
    out << "  w[" << p[0] << "," << p[1] << "," << p[2] << "," << p[3] << "]: "
        << uses.multiplyAdds.size() << " multiply-adds, " << uses.exclusiveInputLoads.size()
        << " exclusive input loads\n";
  }
}

bool WeightMap::invalidate(Function &, const PreservedAnalyses &preserved,
                           FunctionAnalysisManager::Invalidator &) {
  auto checker = preserved.getChecker<WeightMapAnalysis>();
  return !checker.preserved() && !checker.preservedSet<AllAnalysesOn<Function>>();
}

PreservedAnalyses WeightMapPrinterPass::run(Function &function, FunctionAnalysisManager &analyses) {
  const WeightMap &map = analyses.getResult<WeightMapAnalysis>(function);
  if (map.annotated())
    map.print(Out, function);
  return PreservedAnalyses::all();
}

} // namespace convgen
