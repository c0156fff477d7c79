// LoadScheduling on IR parsed from a string: a section of loads each just
// before the multiply-adds that use it (the unrolled template's shape).
// After the pass, loads run ahead of their uses within the budget and the
// distance, in the order of their first use, their address arithmetic with
// them; loads of memory the kernel writes, constant-bank loads and barriers
// stay where they are.
#include "codegen/PassPipeline.h"
#include "support/Error.h"
#include "support/IrText.h"

#include <gtest/gtest.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <string>
#include <vector>

using namespace convgen;

namespace {

// Four loads of a read-only input, each at `base + constant` (the GEP just
// before it, as after NVPTX-bound cleanup), each feeding two multiply-adds
// right after it.
const char *FourLoads = R"IR(
define void @kernel(ptr noalias readonly %in, ptr noalias %out, float %w) {
entry:
  %p0 = getelementptr inbounds i8, ptr %in, i64 0
  %x0 = load float, ptr %p0, align 4
  %a0 = call float @llvm.fma.f32(float %x0, float %w, float 0.0)
  %b0 = call float @llvm.fma.f32(float %x0, float %w, float %a0)
  %p1 = getelementptr inbounds i8, ptr %in, i64 64
  %x1 = load float, ptr %p1, align 4
  %a1 = call float @llvm.fma.f32(float %x1, float %w, float %b0)
  %b1 = call float @llvm.fma.f32(float %x1, float %w, float %a1)
  %p2 = getelementptr inbounds i8, ptr %in, i64 128
  %x2 = load float, ptr %p2, align 4
  %a2 = call float @llvm.fma.f32(float %x2, float %w, float %b1)
  %b2 = call float @llvm.fma.f32(float %x2, float %w, float %a2)
  %p3 = getelementptr inbounds i8, ptr %in, i64 192
  %x3 = load float, ptr %p3, align 4
  %a3 = call float @llvm.fma.f32(float %x3, float %w, float %b2)
  %b3 = call float @llvm.fma.f32(float %x3, float %w, float %a3)
  store float %b3, ptr %out, align 4
  ret void
}
declare float @llvm.fma.f32(float, float, float)
)IR";

/// The names of the entry block's instructions, in order.
std::vector<std::string> order(llvm::Module &module) {
  std::vector<std::string> names;
  for (llvm::Instruction &inst : module.getFunction("kernel")->getEntryBlock())
    names.push_back(inst.hasName() ? inst.getName().str() : inst.getOpcodeName());
  return names;
}

std::vector<std::string> schedule(const char *ir, const std::string &pass) {
  llvm::LLVMContext context;
  auto module = test::parseIr(context, ir);
  if (!module)
    return {};
  PipelineContext verified;
  verified.verifyEach = true;
  runPipeline(*module, "function(" + pass + ")", verified);
  return order(*module);
}

} // namespace

TEST(LoadScheduling, LoadsRunAheadOfTheirUsesWithinTheBudget) {
  // Two loads in flight at most: x0 and x1 at the top; x2 once x0's first
  // use is reached, x3 once x1's is. Each with its address.
  const std::vector<std::string> expected = {"p0", "x0", "p1", "x1", "a0", "p2", "x2", "b0",
                                             "a1", "p3", "x3", "b1", "a2", "b2", "a3", "b3",
                                             "store", "ret"};
  EXPECT_EQ(schedule(FourLoads, "convgen-schedule-loads<budget=2;distance=100>"), expected);
}

TEST(LoadScheduling, AnUnboundedBudgetIssuesEveryLoadFirst) {
  const std::vector<std::string> expected = {"p0", "x0", "p1", "x1", "p2", "x2", "p3", "x3",
                                             "a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3",
                                             "store", "ret"};
  EXPECT_EQ(schedule(FourLoads, "convgen-schedule-loads<budget=100;distance=100>"), expected);
}

TEST(LoadScheduling, TheDistanceKeepsFarLoadsWhereTheyAre) {
  // A load moves only where its first use is at most 3 instructions ahead:
  // x1's first use (a1, position 6) comes within reach at position 3 (b0).
  const std::vector<std::string> expected = {"p0", "x0", "a0", "p1", "x1", "b0", "a1", "p2",
                                             "x2", "b1", "a2", "p3", "x3", "b2", "a3", "b3",
                                             "store", "ret"};
  EXPECT_EQ(schedule(FourLoads, "convgen-schedule-loads<budget=100;distance=3>"), expected);
}

TEST(LoadScheduling, ABudgetOfZeroChangesNothing) {
  llvm::LLVMContext context;
  auto module = test::parseIr(context, FourLoads);
  ASSERT_TRUE(module);
  const std::vector<std::string> before = order(*module);
  runPipeline(*module, "function(convgen-schedule-loads<budget=0>)");
  EXPECT_EQ(order(*module), before);
}

// x1 is read from %out, which the kernel writes: it may not cross the
// store. The constant-bank load (address space 4) is an FFMA operand after
// ptxas and stays. A barrier is a wall: x2 waits behind it.
const char *Walls = R"IR(
@bank = internal addrspace(4) constant [4 x float] zeroinitializer
define void @kernel(ptr noalias readonly %in, ptr noalias %out, float %w) {
entry:
  %x0 = load float, ptr %in, align 4
  store float %x0, ptr %out, align 4
  %a0 = fadd float %x0, %w
  %p1 = getelementptr inbounds i8, ptr %out, i64 4
  %x1 = load float, ptr %p1, align 4
  %c = load float, ptr addrspace(4) @bank, align 4
  %a1 = fadd float %x1, %c
  call void @llvm.nvvm.barrier0()
  %p2 = getelementptr inbounds i8, ptr %in, i64 8
  %x2 = load float, ptr %p2, align 4
  %a2 = fadd float %x2, %a1
  store float %a2, ptr %out, align 4
  ret void
}
declare void @llvm.nvvm.barrier0()
)IR";

TEST(LoadScheduling, WritableMemoryConstantBankAndBarriersStay) {
  const std::vector<std::string> expected = {"x0", "store", "a0", "p1", "x1", "c", "a1",
                                             "call", "p2", "x2", "a2", "store", "ret"};
  EXPECT_EQ(schedule(Walls, "convgen-schedule-loads<budget=8;distance=100>"), expected);
}

// The zero page: a load whose base is a select between the input and a
// constant global is read-only too, and moves with its select.
const char *PaddedLoad = R"IR(
@zero = internal constant [64 x i8] zeroinitializer
define void @kernel(ptr noalias readonly %in, ptr noalias %out, i1 %inside, float %w) {
entry:
  %a0 = fadd float %w, 1.0
  %a1 = fadd float %a0, 1.0
  %a2 = fadd float %a1, 1.0
  %base = select i1 %inside, ptr %in, ptr @zero
  %p = getelementptr inbounds i8, ptr %base, i64 16
  %x = load float, ptr %p, align 4
  %s = fadd float %x, %a2
  store float %s, ptr %out, align 4
  ret void
}
)IR";

TEST(LoadScheduling, ZeroPageLoadsMoveWithTheirBase) {
  const std::vector<std::string> expected = {"base", "p", "x", "a0", "a1", "a2", "s", "store", "ret"};
  EXPECT_EQ(schedule(PaddedLoad, "convgen-schedule-loads"), expected);
}

TEST(LoadScheduling, BadParametersAreACheckFailure) {
  llvm::LLVMContext context;
  auto module = test::parseIr(context, FourLoads);
  ASSERT_TRUE(module);
  EXPECT_THROW(runPipeline(*module, "function(convgen-schedule-loads<depth=3>)"), CheckFailure);
  EXPECT_THROW(runPipeline(*module, "function(convgen-schedule-loads<budget=-1>)"), CheckFailure);
}
