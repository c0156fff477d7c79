// The host executor on kernels written as NVPTX IR strings: thread and block
// ids, real barrier semantics with shared memory (including threads that
// return before the barrier), module globals, refusal of intrinsics it does
// not emulate, and the original module left untouched.
#include "exec/GridRunner.h"
#include "exec/HostKernel.h"
#include "support/Error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/SourceMgr.h>

#include <cstring>
#include <numeric>

using namespace convgen;
using ::testing::HasSubstr;

namespace {

const char *Header = R"(
target datalayout = "e-i64:64-i128:128-v16:16-v32:32-n16:32:64"
target triple = "nvptx64-nvidia-cuda"
declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
declare i32 @llvm.nvvm.read.ptx.sreg.ctaid.y()
declare i32 @llvm.nvvm.read.ptx.sreg.nctaid.x()
declare void @llvm.nvvm.barrier0()
)";

// output[linear thread id] = linear id + batch, where the linear id is
// ((ctaid.y * nctaid.x + ctaid.x) * ntid.x + tid.x).
const char *Ids = R"(
define void @ids(ptr %in, ptr %w, ptr %b, ptr %out, i32 %batch) {
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %ntid = call i32 @llvm.nvvm.read.ptx.sreg.ntid.x()
  %bx = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
  %by = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.y()
  %nbx = call i32 @llvm.nvvm.read.ptx.sreg.nctaid.x()
  %row = mul i32 %by, %nbx
  %block = add i32 %row, %bx
  %base = mul i32 %block, %ntid
  %linear = add i32 %base, %tid
  %index = zext i32 %linear to i64
  %slot = getelementptr float, ptr %out, i64 %index
  %value = uitofp i32 %linear to float
  %offset = sitofp i32 %batch to float
  %sum = fadd float %value, %offset
  store float %sum, ptr %slot
  ret void
}
)";

// Threads tid < batch each put input[tid] in shared memory; after the
// barrier each reads its neighbour's, (tid + 1) % batch. Threads tid >= batch
// return before the barrier. Without a real barrier a thread reads a slot
// its neighbour has not written yet.
const char *Rotate = R"(
@shared = internal addrspace(3) global [64 x float] undef, align 4
define void @rotate(ptr %in, ptr %w, ptr %b, ptr %out, i32 %batch) {
entry:
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %active = icmp ult i32 %tid, %batch
  br i1 %active, label %work, label %done
work:
  %bx = call i32 @llvm.nvvm.read.ptx.sreg.ctaid.x()
  %base = mul i32 %bx, 64
  %global = add i32 %base, %tid
  %gindex = zext i32 %global to i64
  %src = getelementptr float, ptr %in, i64 %gindex
  %x = load float, ptr %src
  %tindex = zext i32 %tid to i64
  %mine = getelementptr [64 x float], ptr addrspace(3) @shared, i64 0, i64 %tindex
  store float %x, ptr addrspace(3) %mine
  call void @llvm.nvvm.barrier0()
  %next = add i32 %tid, 1
  %wrapped = urem i32 %next, %batch
  %nindex = zext i32 %wrapped to i64
  %theirs = getelementptr [64 x float], ptr addrspace(3) @shared, i64 0, i64 %nindex
  %y = load float, ptr addrspace(3) %theirs
  %dst = getelementptr float, ptr %out, i64 %gindex
  store float %y, ptr %dst
  br label %done
done:
  ret void
}
)";

const char *ConstantBank = R"(
@convgen_weights = addrspace(4) externally_initialized global [2 x float] zeroinitializer, align 4
define void @bank(ptr %in, ptr %w, ptr %b, ptr %out, i32 %batch) {
  %a = load float, ptr addrspace(4) @convgen_weights
  %p = getelementptr inbounds i8, ptr addrspace(4) @convgen_weights, i64 4
  %c = load float, ptr addrspace(4) %p
  %x = load float, ptr %in
  %r = call float @llvm.fma.f32(float %x, float %a, float %c)
  store float %r, ptr %out
  ret void
}
declare float @llvm.fma.f32(float, float, float)
)";

class HostKernelTest : public ::testing::Test {
protected:
  std::unique_ptr<llvm::Module> parse(const std::string &body) {
    llvm::SMDiagnostic diagnostic;
    auto module = llvm::parseAssemblyString(std::string(Header) + body, diagnostic, Context);
    if (!module)
      ADD_FAILURE() << diagnostic.getMessage().str();
    return module;
  }
  llvm::LLVMContext Context;
};

TEST_F(HostKernelTest, ThreadsSeeTheirIdsAcrossTheGrid) {
  auto module = parse(Ids);
  auto kernel = HostKernel::compile(*module, "ids", "test");
  EXPECT_FALSE(kernel->usesBarriers());
  const Dim3 grid{3, 2, 1}, block{32, 1, 1};
  std::vector<float> output(grid.count() * block.count(), -1.0f);
  ConvKernelArguments arguments;
  arguments.output = output.data();
  arguments.batch = 1000;
  runBlocks(*kernel, grid, block, allBlocks(grid), arguments, 2);
  for (size_t i = 0; i < output.size(); ++i)
    ASSERT_EQ(output[i], float(i + 1000)) << "thread " << i;
}

TEST_F(HostKernelTest, OnlyTheGivenBlocksRun) {
  auto module = parse(Ids);
  auto kernel = HostKernel::compile(*module, "ids", "test");
  const Dim3 grid{4, 1, 1}, block{32, 1, 1};
  std::vector<float> output(grid.count() * block.count(), -1.0f);
  ConvKernelArguments arguments;
  arguments.output = output.data();
  std::vector<Dim3> blocks = {{2, 0, 0}};
  runBlocks(*kernel, grid, block, blocks, arguments);
  for (size_t i = 0; i < output.size(); ++i)
    ASSERT_EQ(output[i], i / 32 == 2 ? float(i) : -1.0f) << "thread " << i;
}

TEST_F(HostKernelTest, BarrierHoldsEveryThreadOfTheBlock) {
  auto module = parse(Rotate);
  auto kernel = HostKernel::compile(*module, "rotate", "test");
  EXPECT_TRUE(kernel->usesBarriers());
  EXPECT_TRUE(kernel->usesSharedMemory());
  const Dim3 grid{3, 1, 1}, block{64, 1, 1};
  std::vector<float> input(grid.count() * block.count());
  std::iota(input.begin(), input.end(), 0.0f);
  for (int32_t active : {64, 40}) { // 40: 24 threads return before the barrier
    std::vector<float> output(input.size(), -1.0f);
    ConvKernelArguments arguments;
    arguments.input = input.data();
    arguments.output = output.data();
    arguments.batch = active;
    runBlocks(*kernel, grid, block, allBlocks(grid), arguments);
    for (uint32_t b = 0; b < grid.x; ++b)
      for (int32_t t = 0; t < 64; ++t) {
        float expected = t < active ? float(b * 64 + uint32_t((t + 1) % active)) : -1.0f;
        ASSERT_EQ(output[b * 64 + uint32_t(t)], expected)
            << "block " << b << " thread " << t << " with " << active << " active";
      }
  }
}

TEST_F(HostKernelTest, ModuleGlobalsAreHostMemory) {
  auto module = parse(ConstantBank);
  auto kernel = HostKernel::compile(*module, "bank", "test");
  std::span<std::byte> bank = kernel->global("convgen_weights");
  ASSERT_EQ(bank.size(), 8u);
  const float values[2] = {3.0f, 0.5f};
  std::memcpy(bank.data(), values, 8);
  float input = 2.0f, output = 0.0f;
  ConvKernelArguments arguments;
  arguments.input = &input;
  arguments.output = &output;
  runBlocks(*kernel, {1, 1, 1}, {1, 1, 1}, allBlocks({1, 1, 1}), arguments);
  EXPECT_EQ(output, 6.5f);
  EXPECT_THROW(kernel->global("no_such_global"), CheckFailure);
}

TEST_F(HostKernelTest, FusedMultiplyAddRoundsOnce) {
  // fma(1 + 2^-23, 1 - 2^-23, -1) = -2^-46 exactly; a separate multiply
  // would round the product to 1 and give 0.
  auto module = parse(ConstantBank);
  auto kernel = HostKernel::compile(*module, "bank", "test");
  const float values[2] = {1.0f - 0x1p-23f, -1.0f};
  std::memcpy(kernel->global("convgen_weights").data(), values, 8);
  float input = 1.0f + 0x1p-23f, output = 1.0f;
  ConvKernelArguments arguments;
  arguments.input = &input;
  arguments.output = &output;
  runBlocks(*kernel, {1, 1, 1}, {1, 1, 1}, allBlocks({1, 1, 1}), arguments);
  EXPECT_EQ(output, -0x1p-46f);
}

TEST_F(HostKernelTest, IntrinsicWithoutEmulationIsRefusedByName) {
  auto module = parse(R"(
declare i32 @llvm.nvvm.read.ptx.sreg.laneid()
define void @lane(ptr %in, ptr %w, ptr %b, ptr %out, i32 %batch) {
  %lane = call i32 @llvm.nvvm.read.ptx.sreg.laneid()
  %v = uitofp i32 %lane to float
  store float %v, ptr %out
  ret void
}
)");
  try {
    HostKernel::compile(*module, "lane", "layer 'x'");
    FAIL() << "expected UnsupportedError";
  } catch (const UnsupportedError &e) {
    EXPECT_THAT(e.what(), HasSubstr("layer 'x'"));
    EXPECT_THAT(e.what(), HasSubstr("llvm.nvvm.read.ptx.sreg.laneid"));
  }
}

TEST_F(HostKernelTest, WrongSignatureIsRefused) {
  auto module = parse(R"(
define void @other(ptr %out) {
  store float 1.0, ptr %out
  ret void
}
)");
  EXPECT_THROW(HostKernel::compile(*module, "other", "test"), UnsupportedError);
  EXPECT_THROW(HostKernel::compile(*module, "missing", "test"), CheckFailure);
}

TEST_F(HostKernelTest, TheOriginalModuleIsLeftForPtx) {
  auto module = parse(Rotate);
  HostKernel::compile(*module, "rotate", "test");
  EXPECT_EQ(module->getTargetTriple(), "nvptx64-nvidia-cuda");
  EXPECT_NE(module->getFunction("llvm.nvvm.barrier0"), nullptr);
  EXPECT_FALSE(llvm::verifyModule(*module, &llvm::errs()));
}

} // namespace
