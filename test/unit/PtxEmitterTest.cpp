#include "codegen/PtxEmitter.h"
#include "codegen/Ptxas.h"
#include "support/Error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/SourceMgr.h>

using namespace convgen;
using ::testing::HasSubstr;

namespace {

// out[i] = 2 * in[i] + 1 for i = tid.x, as a CUDA kernel lowered by clang would be.
const char *ScaleKernel = R"IR(
define void @scale(ptr addrspace(1) noalias readonly %in, ptr addrspace(1) noalias %out) {
entry:
  %tid = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()
  %idx = zext i32 %tid to i64
  %src = getelementptr inbounds float, ptr addrspace(1) %in, i64 %idx
  %x = load float, ptr addrspace(1) %src, align 4
  %y = call float @llvm.fma.f32(float %x, float 2.0, float 1.0)
  %dst = getelementptr inbounds float, ptr addrspace(1) %out, i64 %idx
  store float %y, ptr addrspace(1) %dst, align 4
  ret void
}
declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()
declare float @llvm.fma.f32(float, float, float)
!nvvm.annotations = !{!0}
!0 = !{ptr @scale, !"kernel", i32 1}
)IR";

std::unique_ptr<llvm::Module> parse(llvm::LLVMContext &context, const char *text) {
  llvm::SMDiagnostic diagnostic;
  auto module = llvm::parseAssemblyString(text, diagnostic, context);
  if (!module)
    ADD_FAILURE() << diagnostic.getMessage().str();
  return module;
}

} // namespace

TEST(PtxEmitter, EmitsAKernelEntryForTheArch) {
  for (const char *archName : {"sm_70", "sm_80", "sm_90"}) {
    SCOPED_TRACE(archName);
    llvm::LLVMContext context;
    auto module = parse(context, ScaleKernel);
    ASSERT_TRUE(module);
    std::string ptx = emitPtx(*module, parseArch(archName), "scale");
    EXPECT_THAT(ptx, HasSubstr(std::string(".target ") + archName));
    EXPECT_THAT(ptx, HasSubstr(".address_size 64"));
    EXPECT_THAT(ptx, HasSubstr(".visible .entry scale("));
    EXPECT_THAT(ptx, HasSubstr("fma.rn.f32"));
    EXPECT_EQ(module->getTargetTriple(), NvptxTriple);
  }
}

TEST(PtxEmitter, PtxasAcceptsTheOutput) {
  auto ptxas = findPtxas();
  if (!ptxas)
    GTEST_SKIP() << "ptxas not found (CUDA toolkit not at /usr/local/cuda or $CUDA_HOME)";
  llvm::LLVMContext context;
  auto module = parse(context, ScaleKernel);
  ASSERT_TRUE(module);
  PtxasReport report = runPtxas(*ptxas, emitPtx(*module, parseArch("sm_80"), "scale"), "sm_80",
                                "scale"); // throws if ptxas rejects it
  EXPECT_GT(report.registers, 0);
  EXPECT_EQ(report.spillStoreBytes, 0);
  EXPECT_EQ(report.version, ptxas->version);
  EXPECT_FALSE(report.version.empty());
}

TEST(PtxEmitter, PtxasRejectionIsACheckFailureNamingTheLayer) {
  auto ptxas = findPtxas();
  if (!ptxas)
    GTEST_SKIP() << "ptxas not found (CUDA toolkit not at /usr/local/cuda or $CUDA_HOME)";
  try {
    runPtxas(*ptxas, ".version 7.0\n.target sm_80\nthis is not ptx\n", "sm_80", "layer 'bad'");
    FAIL() << "ptxas accepted garbage";
  } catch (const CheckFailure &error) {
    EXPECT_THAT(error.what(), HasSubstr("layer 'bad': ptxas rejected the PTX"));
  }
}

TEST(PtxEmitter, InvalidIrIsACheckFailureNamingTheLayer) {
  llvm::LLVMContext context;
  auto module = parse(context, ScaleKernel);
  ASSERT_TRUE(module);
  // Break the IR: a block without a terminator.
  module->getFunction("scale")->getEntryBlock().getTerminator()->eraseFromParent();
  try {
    emitPtx(*module, parseArch("sm_80"), "layer 'conv3'");
    FAIL() << "expected the verifier to reject the module";
  } catch (const CheckFailure &error) {
    EXPECT_THAT(error.what(), HasSubstr("layer 'conv3': LLVM IR verifier"));
  }
}
