// WeightMap and ZeroWeightElimination on IR parsed from strings, run through
// textual pipelines (as LLVM's own LICMTest does).
#include "WeightMap.h"
#include "codegen/PassPipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/SourceMgr.h>
#include <llvm/Support/raw_ostream.h>

using namespace convgen;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

// Two weights [1, 2, 1, 1]; x0 feeds both weights' multiply-adds, x1 (behind a
// padding select) only w1's.
const char *TwoWeights = R"IR(
define void @kernel(ptr %in, ptr %w, ptr %out, i1 %inside) !convgen.weights !0 {
  %x0 = load float, ptr %in, align 4
  %p1 = getelementptr inbounds i8, ptr %in, i64 4
  %x1raw = load float, ptr %p1, align 4
  %x1 = select i1 %inside, float %x1raw, float 0.0
  %w0 = load float, ptr %w, align 4
  %pw1 = getelementptr inbounds i8, ptr %w, i64 4
  %w1 = load float, ptr %pw1, align 4
  %a0 = call float @llvm.fma.f32(float %x0, float %w0, float 0.0)
  %a1 = call float @llvm.fma.f32(float %x1, float %w1, float %a0)
  %a2 = call float @llvm.fma.f32(float %x0, float %w1, float %a1)
  store float %a2, ptr %out, align 4
  ret void
}
declare float @llvm.fma.f32(float, float, float)
!0 = !{i32 1, i64 1, i64 2, i64 1, i64 1}
)IR";

class IrTest : public ::testing::Test {
protected:
  void parse(const char *text) {
    llvm::SMDiagnostic diagnostic;
    Module = llvm::parseAssemblyString(text, diagnostic, Context);
    ASSERT_TRUE(Module) << diagnostic.getMessage().str();
  }
  std::string weightMapText() {
    std::string text;
    llvm::raw_string_ostream out(text);
    PipelineContext context;
    context.weightMapOut = &out;
    runPipeline(*Module, "function(print<convgen-weight-map>)", context);
    return text;
  }
  std::string eliminate(std::vector<float> weights) {
    PipelineContext context;
    context.weights = std::make_shared<const std::vector<float>>(std::move(weights));
    context.verifyEach = true;
    runPipeline(*Module, "function(convgen-zero-weight-elimination)", context);
    std::string text;
    llvm::raw_string_ostream out(text);
    Module->print(out, nullptr);
    return text;
  }

  llvm::LLVMContext Context;
  std::unique_ptr<llvm::Module> Module;
};

} // namespace

TEST_F(IrTest, WeightMapPrintsPositionsAndTheirInstructions) {
  parse(TwoWeights);
  EXPECT_EQ(weightMapText(),
            "WeightMap for 'kernel': weights [1, 2, 1, 1], 2 positions, 3 multiply-adds, 0 "
            "non-constant loads, 0 loads with other uses\n"
            "  w[0,0,0,0]: 1 multiply-adds, 0 exclusive input loads\n"
            "  w[0,1,0,0]: 2 multiply-adds, 1 exclusive input loads\n");
}

TEST_F(IrTest, WeightMapReportsNonConstantOffsets) {
  parse(R"IR(
define float @kernel(ptr %w, i64 %i) !convgen.weights !0 {
  %p = getelementptr float, ptr %w, i64 %i
  %v = load float, ptr %p
  ret float %v
}
!0 = !{i32 0, i64 4, i64 1, i64 1, i64 1}
)IR");
  EXPECT_THAT(weightMapText(), HasSubstr("0 positions, 0 multiply-adds, 1 non-constant loads"));
}

TEST_F(IrTest, WeightMapIgnoresUnannotatedFunctions) {
  parse("define void @f() {\n  ret void\n}\n");
  EXPECT_EQ(weightMapText(), "");
}

TEST_F(IrTest, ZeroWeightBecomesItsAccumulator) {
  parse(TwoWeights);
  std::string ir = eliminate({0.0f, 2.0f});
  EXPECT_THAT(ir, Not(HasSubstr("%w0 = load")));
  EXPECT_THAT(ir, Not(HasSubstr("%a0 =")));
  EXPECT_THAT(ir, HasSubstr("%a1 = call float @llvm.fma.f32(float %x1, float %w1, float 0.000000e+00)"));
  EXPECT_THAT(ir, HasSubstr("%x0 = load")); // still needed by w1's second multiply-add
}

TEST_F(IrTest, ZeroWeightTakesItsExclusiveInputsWithIt) {
  parse(TwoWeights);
  std::string ir = eliminate({2.0f, 0.0f});
  EXPECT_THAT(ir, Not(HasSubstr("%w1 = load")));
  EXPECT_THAT(ir, Not(HasSubstr("%x1raw")));  // only w1 needed it
  EXPECT_THAT(ir, Not(HasSubstr("select")));
  EXPECT_THAT(ir, Not(HasSubstr("%pw1")));    // address arithmetic too
  EXPECT_THAT(ir, HasSubstr("store float %a0, ptr %out"));
}

TEST_F(IrTest, AllZeroLeavesOnlyTheEpilogue) {
  parse(TwoWeights);
  std::string ir = eliminate({0.0f, 0.0f});
  EXPECT_THAT(ir, Not(HasSubstr("call float @llvm.fma")));
  EXPECT_THAT(ir, Not(HasSubstr("load")));
  EXPECT_THAT(ir, HasSubstr("store float 0.000000e+00, ptr %out"));
}

TEST_F(IrTest, NoZeroWeightChangesNothing) {
  parse(TwoWeights);
  std::string before;
  llvm::raw_string_ostream out(before);
  Module->print(out, nullptr);
  EXPECT_EQ(eliminate({1.0f, -1.0f}), before);
}

TEST_F(IrTest, MissingWeightsIsAPipelineError) {
  parse(TwoWeights);
  EXPECT_THROW(runPipeline(*Module, "function(convgen-zero-weight-elimination)"), std::exception);
}
