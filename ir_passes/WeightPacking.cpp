#include "WeightPacking.h"

#include "WeightMap.h"

#include <llvm/ADT/DenseMap.h>
#include <llvm/ADT/Statistic.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/Module.h>
#include <llvm/Transforms/Utils/Local.h>

#define DEBUG_TYPE "convgen-pack-weights"

STATISTIC(NumWeightsPacked, "Number of weight loads rewritten to packed slots");

using namespace llvm;

namespace convgen {

/// The surviving weight loads in code order, with their OIHW index.
static std::vector<std::pair<LoadInst *, int64_t>> loadsInCodeOrder(Function &function,
                                                                    const WeightMap &map) {
  DenseMap<const LoadInst *, int64_t> indexOf;
  for (const auto &[index, uses] : map.positions())
    indexOf[uses.load] = index;
  std::vector<std::pair<LoadInst *, int64_t>> loads;
  for (Instruction &inst : instructions(function))
    if (auto *load = dyn_cast<LoadInst>(&inst))
      if (auto it = indexOf.find(load); it != indexOf.end())
        loads.emplace_back(load, it->second);
  return loads;
}

static GlobalVariable *createConstantBankArray(Module &module, size_t count,
                                               const std::string &symbol) {
  auto *type = ArrayType::get(Type::getFloatTy(module.getContext()), count);
  // Externally initialised: the runtime writes the values (cuModuleGetGlobal),
  // so LLVM must not fold loads from the zero placeholder.
  auto *global = new GlobalVariable(module, type, /*isConstant=*/false,
                                    GlobalValue::ExternalLinkage, Constant::getNullValue(type),
                                    symbol, nullptr, GlobalValue::NotThreadLocal,
                                    /*AddressSpace=*/4, /*isExternallyInitialized=*/true);
  global->setAlignment(Align(4));
  return global;
}

PreservedAnalyses WeightPackingPass::run(Function &function, FunctionAnalysisManager &analyses) {
  const WeightMap &map = analyses.getResult<WeightMapAnalysis>(function);
  if (!map.annotated() || !Weights || !Packed)
    return PreservedAnalyses::all();
  auto loads = loadsInCodeOrder(function, map);
  Packed->values.clear();
  Packed->indices.clear();
  if (loads.empty())
    return PreservedAnalyses::all();

  Module &module = *function.getParent();
  GlobalVariable *bank = Path == WeightPath::ConstantBank
                             ? createConstantBankArray(module, loads.size(), Symbol)
                             : nullptr;
  Argument *weightsArgument = function.getArg(map.weightsArgument());

  for (size_t slot = 0; slot < loads.size(); ++slot) {
    auto [load, index] = loads[slot];
    float value = (*Weights)[static_cast<size_t>(index)];
    if (Path != WeightPath::Baked) { // baked values live in the code, not an array
      Packed->values.push_back(value);
      Packed->indices.push_back(index);
    }
    IRBuilder<> builder(load);
    Value *replacement = nullptr;
    switch (Path) {
    case WeightPath::Baked:
      replacement = ConstantFP::get(load->getType(), value);
      break;
    case WeightPath::ConstantBank:
      replacement = builder.CreateAlignedLoad(
          load->getType(),
          builder.CreateConstInBoundsGEP2_64(bank->getValueType(), bank, 0, slot), Align(4));
      break;
    case WeightPath::GlobalReadOnly: {
      replacement = builder.CreateAlignedLoad(
          load->getType(),
          builder.CreateConstInBoundsGEP1_64(builder.getInt8Ty(), weightsArgument, 4 * slot),
          Align(4));
      break;
    }
    }
    replacement->takeName(load);
    Value *oldPointer = load->getPointerOperand();
    load->replaceAllUsesWith(replacement);
    load->eraseFromParent();
    RecursivelyDeleteTriviallyDeadInstructions(oldPointer);
    ++NumWeightsPacked;
  }
  PreservedAnalyses preserved;
  preserved.preserveSet<CFGAnalyses>();
  return preserved;
}

} // namespace convgen
