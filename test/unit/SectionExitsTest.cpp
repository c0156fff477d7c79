// SectionExits on IR parsed from a string: a chain of three code sections
// selected by `%block`; after the pass each section's end branches past the
// later checks straight to the exit, and a check that does work of its own
// is not skipped.
#include "codegen/PassPipeline.h"
#include "support/IrText.h"

#include <gtest/gtest.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

using namespace convgen;

namespace {

// The unrolled template's shape: check k compares `k == %block` (constant
// first, as the unroller leaves it), section k ends at check k + 1.
const char *ThreeSections = R"IR(
define void @kernel(ptr %out, i64 %block) {
check0:
  %is0 = icmp eq i64 0, %block
  br i1 %is0, label %section0, label %check1
section0:
  store float 0.0, ptr %out, align 4
  br label %check1
check1:
  %is1 = icmp eq i64 1, %block
  br i1 %is1, label %section1, label %check2
section1:
  store float 1.0, ptr %out, align 4
  br label %check2
check2:
  %not2 = icmp ne i64 %block, 2
  br i1 %not2, label %exit, label %section2
section2:
  store float 2.0, ptr %out, align 4
  br label %exit
exit:
  ret void
}
)IR";

std::string successorOf(llvm::Function &f, const std::string &block) {
  for (llvm::BasicBlock &b : f)
    if (b.getName() == block)
      return b.getTerminator()->getSuccessor(0)->getName().str();
  return "";
}

} // namespace

TEST(SectionExits, EachSectionEndsAtTheExit) {
  llvm::LLVMContext context;
  auto module = test::parseIr(context, ThreeSections);
  ASSERT_TRUE(module);
  llvm::Function &kernel = *module->getFunction("kernel");
  ASSERT_EQ(successorOf(kernel, "section0"), "check1");
  runPipeline(*module, "function(convgen-section-exits)");
  EXPECT_EQ(successorOf(kernel, "section0"), "exit") << "past checks 1 and 2";
  EXPECT_EQ(successorOf(kernel, "section1"), "exit");
  EXPECT_EQ(successorOf(kernel, "section2"), "exit");
}

TEST(SectionExits, ACheckThatDoesWorkIsNotSkipped) {
  std::string ir = ThreeSections;
  // check1 now stores before comparing: skipping it would skip the store.
  const std::string compare = "  %is1 = icmp eq i64 1, %block\n";
  ir.replace(ir.find(compare), compare.size(),
             "  store float 9.0, ptr %out, align 4\n" + compare);
  llvm::LLVMContext context;
  auto module = test::parseIr(context, ir);
  ASSERT_TRUE(module);
  llvm::Function &kernel = *module->getFunction("kernel");
  runPipeline(*module, "function(convgen-section-exits)");
  EXPECT_EQ(successorOf(kernel, "section0"), "check1");
  EXPECT_EQ(successorOf(kernel, "section1"), "exit");
}

TEST(SectionExits, AnUndecidedEndIsLeftAlone) {
  // The first section's end is reached from the entry without a check.
  std::string ir = ThreeSections;
  ir.replace(ir.find("br i1 %is0, label %section0, label %check1"),
             std::string("br i1 %is0, label %section0, label %check1").size(),
             "br label %section0");
  llvm::LLVMContext context;
  auto module = test::parseIr(context, ir);
  ASSERT_TRUE(module);
  llvm::Function &kernel = *module->getFunction("kernel");
  runPipeline(*module, "function(convgen-section-exits)");
  EXPECT_EQ(successorOf(kernel, "section0"), "check1");
}
