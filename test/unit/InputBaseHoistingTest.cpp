// InputBaseHoisting on IR parsed from a string: two code sections (as two
// channel blocks) each compute the same padded input base; after the pass
// and early-cse there is one, in the block that dominates both, and the
// loads keep their constant offsets.
#include "codegen/PassPipeline.h"

#include <gtest/gtest.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/SourceMgr.h>

using namespace convgen;

namespace {

const char *TwoSections = R"IR(
@zero = internal constant [64 x i8] zeroinitializer
define void @kernel(ptr noalias readonly %in, ptr %out, i64 %pos, i1 %inside, i32 %block) {
entry:
  %first = icmp eq i32 %block, 0
  br i1 %first, label %a, label %b
a:
  %pa = getelementptr inbounds float, ptr %in, i64 %pos
  %basea = select i1 %inside, ptr %pa, ptr @zero
  %la = getelementptr inbounds i8, ptr %basea, i64 16
  %xa = load float, ptr %la, align 4
  store float %xa, ptr %out, align 4
  br label %done
b:
  %pb = getelementptr inbounds float, ptr %in, i64 %pos
  %baseb = select i1 %inside, ptr %pb, ptr @zero
  %lb = getelementptr inbounds i8, ptr %baseb, i64 32
  %xb = load float, ptr %lb, align 4
  store float %xb, ptr %out, align 4
  br label %done
done:
  ret void
}
)IR";

struct Counts {
  int selects = 0, selectsInEntry = 0, constantOffsetLoads = 0;
};

Counts count(llvm::Function &f) {
  Counts c;
  for (llvm::Instruction &inst : llvm::instructions(f)) {
    if (llvm::isa<llvm::SelectInst>(inst)) {
      ++c.selects;
      c.selectsInEntry += inst.getParent() == &f.getEntryBlock();
    }
    if (auto *load = llvm::dyn_cast<llvm::LoadInst>(&inst))
      if (auto *gep = llvm::dyn_cast<llvm::GetElementPtrInst>(load->getPointerOperand()))
        c.constantOffsetLoads += gep->hasAllConstantIndices();
  }
  return c;
}

} // namespace

TEST(InputBaseHoisting, EachBaseIsComputedOnceWhereAllLoadsSeeIt) {
  llvm::LLVMContext context;
  llvm::SMDiagnostic diagnostic;
  auto module = llvm::parseAssemblyString(TwoSections, diagnostic, context);
  ASSERT_TRUE(module) << diagnostic.getMessage().str();
  llvm::Function &kernel = *module->getFunction("kernel");
  ASSERT_EQ(count(kernel).selects, 2);
  runPipeline(*module, "function(convgen-hoist-input-bases,early-cse)");
  Counts after = count(kernel);
  EXPECT_EQ(after.selects, 1);
  EXPECT_EQ(after.selectsInEntry, 1);
  EXPECT_EQ(after.constantOffsetLoads, 2) << "each load keeps base + its own constant";
}

TEST(InputBaseHoisting, LeavesKernelsWithoutSectionsAlone) {
  llvm::LLVMContext context;
  llvm::SMDiagnostic diagnostic;
  auto module = llvm::parseAssemblyString(R"IR(
define void @k(ptr %in, ptr %out, i64 %pos) {
  %p = getelementptr inbounds float, ptr %in, i64 %pos
  %x = load float, ptr %p, align 4
  store float %x, ptr %out, align 4
  ret void
}
)IR",
                                          diagnostic, context);
  ASSERT_TRUE(module) << diagnostic.getMessage().str();
  runPipeline(*module, "function(convgen-hoist-input-bases)");
  EXPECT_EQ(module->getFunction("k")->getEntryBlock().size(), 4u);
}
