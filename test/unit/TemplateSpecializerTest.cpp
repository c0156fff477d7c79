#include "codegen/PassPipeline.h"
#include "codegen/TemplateSpecializer.h"
#include "codegen/TilingChoice.h"
#include "support/Error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/raw_ostream.h>

using namespace convgen;

namespace {

ConvGeometry geometry(int64_t c, int64_t k, int64_t h, int64_t w, int64_t kernel, int64_t groups = 1) {
  ConvGeometry g;
  g.batch = 1;
  g.inChannels = c;
  g.inSize = {h, w};
  g.outChannels = k;
  g.kernel = {kernel, kernel};
  g.padding = {kernel / 2, kernel / 2};
  g.groups = groups;
  g.activation = Activation::Relu;
  g.hasBias = true;
  return g;
}

size_t countIntrinsic(const llvm::Function &f, llvm::Intrinsic::ID id) {
  size_t count = 0;
  for (const llvm::Instruction &inst : llvm::instructions(f))
    if (auto *call = llvm::dyn_cast<llvm::IntrinsicInst>(&inst); call && call->getIntrinsicID() == id)
      ++count;
  return count;
}

} // namespace

TEST(TemplateSpecializer, UnrollsToTheDenseMultiplyAddCount) {
  llvm::LLVMContext context;
  TemplateSpecializer specializer(context, directConvTemplate());
  ConvGeometry g = geometry(3, 8, 6, 7, 3);
  Tiling tiling;
  tiling.channelsPerThread = 4;
  tiling.outputsPerThread = 2;
  auto module = specializer.specialize(makeTemplateSpec(g, tiling), "conv_test", "layer 'test'");
  llvm::Function *kernel = module->getFunction("conv_test");
  ASSERT_NE(kernel, nullptr);
  // Every (k, c, r, s) position times BW columns: 8 * 3 * 3 * 3 * 2.
  EXPECT_EQ(countIntrinsic(*kernel, llvm::Intrinsic::fma), 8u * 3 * 3 * 3 * 2);
  // Straight out of the unroller, before any cleanup, every weight load has
  // a constant position and feeds only multiply-adds.
  std::string text;
  llvm::raw_string_ostream out(text);
  PipelineContext pipelineContext;
  pipelineContext.weightMapOut = &out;
  runPipeline(*module, "function(print<convgen-weight-map>)", pipelineContext);
  EXPECT_THAT(text, ::testing::StartsWith(
                        "WeightMap for 'conv_test': weights [8, 3, 3, 3], 216 positions, 432 "
                        "multiply-adds, 0 non-constant loads, 0 loads with other uses\n"));
}

TEST(TemplateSpecializer, InputsWeightsAndBiasAreReadOnlyOutputIsNot) {
  llvm::LLVMContext context;
  TemplateSpecializer specializer(context, directConvTemplate());
  ConvGeometry g = geometry(2, 4, 5, 5, 3);
  auto module = specializer.specialize(makeTemplateSpec(g, chooseTiling(g)), "k", "layer 'k'");
  llvm::Function *kernel = module->getFunction("k");
  ASSERT_NE(kernel, nullptr);
  for (unsigned i : {0u, 1u, 2u})
    EXPECT_TRUE(kernel->getArg(i)->onlyReadsMemory()) << "argument " << i;
  EXPECT_FALSE(kernel->getArg(3)->onlyReadsMemory()) << "the output is written";
}
