// The verifier can fail: kernels corrupted on purpose (one nonzero's
// multiply-add deleted, one packed value changed, one store deleted) are
// reported as FAIL. Also: large layers run a sample of blocks, and a
// sampled run still checks every output it computes; and a layer checked in
// its graph's context fails where a channel it treats as zero is not.
#include "codegen/LayerGenerator.h"
#include "model/LayerChannels.h"
#include "support/ConvCases.h"
#include "verify/LayerVerifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/Module.h>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

class LayerVerifierTest : public ::testing::Test {
protected:
  ConvLayer layer(double sparsity, int64_t size = 9) {
    std::mt19937_64 random(7);
    ConvGeometry g = makeGeometry({4, 8, size, size, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1}, 2,
                                  Activation::None, true);
    return makeLayer("probe", g, prunedWeights(g, SparsityPattern::Uniform, sparsity, random),
                     random);
  }
  VerifyOptions verifyOptions() {
    VerifyOptions options;
    options.allBlocks = true;
    options.hostThreads = 1;
    return options;
  }
  /// A 3x3 layer at 50 % with one kernel per channel block of 4 filters
  /// (bk=4 pinned, so the number of kernels does not follow the heuristic):
  /// the budget is the largest block's code.
  std::pair<ConvLayer, GenerateOptions> splitProbe(const std::string &name, int64_t filters,
                                                   int64_t size, int64_t batch, uint64_t seed) {
    std::mt19937_64 random(seed);
    ConvGeometry g = makeGeometry({4, filters, size, size, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1},
                                  batch, Activation::Relu, true);
    ConvLayer probe =
        makeLayer(name, g, prunedWeights(g, SparsityPattern::Uniform, 0.5, random), random);
    GenerateOptions options = generateOptions();
    options.tilingOverride = "bk=4";
    options.maxMultiplyAdds = largestChannelBlockCode(probe, options);
    return {probe, options};
  }
  GenerateOptions generateOptions(bool bake = false) {
    GenerateOptions options;
    options.runPtxas = false;
    options.bakeValues = bake;
    return options;
  }
};

/// The fma calls of the kernel, in code order.
std::vector<llvm::IntrinsicInst *> multiplyAdds(llvm::Module &module) {
  std::vector<llvm::IntrinsicInst *> found;
  for (llvm::Function &function : module)
    for (llvm::Instruction &inst : llvm::instructions(function))
      if (auto *call = llvm::dyn_cast<llvm::IntrinsicInst>(&inst))
        if (call->getIntrinsicID() == llvm::Intrinsic::fma)
          found.push_back(call);
  return found;
}

TEST_F(LayerVerifierTest, DeletingOneNonzerosMultiplyAddFails) {
  for (bool bake : {false, true}) {
    SCOPED_TRACE(bake ? "baked" : "constant bank");
    ConvLayer probe = layer(0.5);
    KernelGenerator generator(generateOptions(bake));
    BuiltKernel kernel = generator.build(probe);
    ASSERT_TRUE(verifyKernel(probe, kernel, verifyOptions()).passed());

    // What zero-weight elimination does to a zero weight, done to a nonzero:
    // the multiply-add becomes its accumulator.
    auto fmas = multiplyAdds(*kernel.module);
    ASSERT_FALSE(fmas.empty());
    llvm::IntrinsicInst *victim = fmas[fmas.size() / 2];
    victim->replaceAllUsesWith(victim->getArgOperand(2));
    victim->eraseFromParent();

    VerifyReport report = verifyKernel(probe, kernel, verifyOptions());
    EXPECT_FALSE(report.passed());
    EXPECT_GT(report.failures, 0);
    EXPECT_THAT(report.firstFailure, HasSubstr("> bound"));
  }
}

TEST_F(LayerVerifierTest, ChangingOnePackedValueFails) {
  ConvLayer probe = layer(0.5);
  KernelGenerator generator(generateOptions());
  BuiltKernel kernel = generator.build(probe);
  ASSERT_FALSE(kernel.arrayValues.empty());
  kernel.arrayValues[kernel.arrayValues.size() / 3] += 0.25f;
  EXPECT_FALSE(verifyKernel(probe, kernel, verifyOptions()).passed());
}

TEST_F(LayerVerifierTest, AnOutputNeverStoredFails) {
  ConvLayer probe = layer(0.9);
  KernelGenerator generator(generateOptions());
  BuiltKernel kernel = generator.build(probe);
  llvm::StoreInst *store = nullptr;
  for (llvm::Function &function : *kernel.module)
    for (llvm::Instruction &inst : llvm::instructions(function))
      if (!store)
        store = llvm::dyn_cast<llvm::StoreInst>(&inst);
  ASSERT_NE(store, nullptr);
  store->eraseFromParent();
  VerifyReport report = verifyKernel(probe, kernel, verifyOptions());
  EXPECT_FALSE(report.passed());
  EXPECT_THAT(report.firstFailure, HasSubstr("never written"));
}

TEST_F(LayerVerifierTest, SplitKernelsVerifyAndTheirWeightSlicesMatter) {
  auto [probe, options] = splitProbe("split", 16, 9, 2, 3);
  options.constantBankLimitBytes = 0;
  KernelGenerator generator(options);
  BuiltKernel kernel = generator.build(probe);
  ASSERT_EQ(kernel.info.kernels.size(), 4u);
  ASSERT_EQ(kernel.info.weightPath, "global");
  VerifyReport report = verifyKernel(probe, kernel, verifyOptions());
  EXPECT_TRUE(report.passed()) << report.firstFailure;
  EXPECT_THAT(report.blocks, HasSubstr("4 kernels"));

  // Kernel 1 reading kernel 2's slice of the packed weights must fail.
  std::swap(kernel.info.kernels[1].weightsOffset, kernel.info.kernels[2].weightsOffset);
  EXPECT_FALSE(verifyKernel(probe, kernel, verifyOptions()).passed());
}

TEST_F(LayerVerifierTest, AWriteOutsideTheKernelsOutputsFails) {
  auto [probe, options] = splitProbe("stray", 8, 6, 1, 5);
  KernelGenerator generator(options);
  BuiltKernel kernel = generator.build(probe);
  ASSERT_EQ(kernel.info.kernels.size(), 2u);
  ASSERT_TRUE(verifyKernel(probe, kernel, verifyOptions()).passed());

  // Kernel 0 also stores its first result 4 channels further on: into
  // kernel 1's outputs, which kernel 1 then overwrites with the right value.
  llvm::Function *first = kernel.module->getFunction(kernel.info.kernels[0].symbol);
  llvm::StoreInst *store = nullptr;
  for (llvm::Instruction &inst : llvm::instructions(*first))
    if (!store)
      store = llvm::dyn_cast<llvm::StoreInst>(&inst);
  ASSERT_NE(store, nullptr);
  llvm::IRBuilder<> builder(store);
  llvm::Value *shifted = builder.CreateConstGEP1_64(builder.getFloatTy(), store->getPointerOperand(),
                                                    4 * 6 * 6);
  builder.CreateStore(store->getValueOperand(), shifted);

  VerifyReport report = verifyKernel(probe, kernel, verifyOptions());
  EXPECT_FALSE(report.passed());
  EXPECT_THAT(report.firstFailure, HasSubstr("was written by " + kernel.info.kernels[0].symbol));
}

TEST_F(LayerVerifierTest, LargeLayersRunASampleOfBlocks) {
  ConvLayer probe = layer(0.9, 64); // 2 x 64 rows x 16 tiles / 128: 16 x blocks; 2 channel blocks
  GenerateOptions o = generateOptions();
  o.tilingOverride = "bk=4,bw=4";
  KernelGenerator generator(o);
  BuiltKernel kernel = generator.build(probe);
  VerifyOptions options = verifyOptions();
  options.allBlocks = false;
  options.sampleAboveMultiplyAdds = 0;
  options.interiorBlocks = 3;
  VerifyReport report = verifyKernel(probe, kernel, options);
  EXPECT_TRUE(report.passed()) << report.firstFailure;
  EXPECT_TRUE(report.sampled);
  EXPECT_THAT(report.blocks, HasSubstr("of 32 blocks: all 2 channel blocks"));
  EXPECT_THAT(report.blocks, HasSubstr("3 random"));
  EXPECT_GT(report.outputsChecked, 0);
  EXPECT_LT(report.outputsChecked, 2 * 8 * 64 * 64);
}

TEST_F(LayerVerifierTest, DenseFallbackVerifies) {
  ConvLayer probe = layer(0.5);
  GenerateOptions options = generateOptions();
  options.maxMultiplyAdds = 1;
  KernelGenerator generator(options);
  BuiltKernel kernel = generator.build(probe);
  ASSERT_EQ(kernel.info.mode, "dense");
  VerifyReport report = verifyKernel(probe, kernel, verifyOptions());
  EXPECT_TRUE(report.passed()) << report.firstFailure;
  EXPECT_EQ(report.outputsChecked, 2 * 8 * 9 * 9);
}

} // namespace

// In context (ConvLayer::channels): a layer whose weights on a known-zero
// input channel and on an unread output channel were dropped verifies, on
// inputs zero there and outputs someone reads. The same kernel fails where
// the channel it treats as zero is not zero, and a producer fails where the
// graph claims an output channel zero that its model weights make nonzero.
TEST_F(LayerVerifierTest, ChannelsTreatedAsZeroVerifyOnlyWhereTheyAreZero) {
  ConvLayer model = layer(0.3);
  ConvLayer propagated = model;
  applyChannelFacts(propagated, {{2}, {}, {5}});
  ASSERT_GT(propagated.removedNonzeros, 0);
  ASSERT_EQ(propagated.referenceWeights(), model.weights);
  KernelGenerator generator(generateOptions());
  BuiltKernel kernel = generator.build(propagated);
  VerifyReport inContext = verifyKernel(propagated, kernel, verifyOptions());
  EXPECT_TRUE(inContext.passed()) << inContext.firstFailure;
  EXPECT_THAT(inContext.context, HasSubstr("1 input channel(s) zero, 1 output channel(s) unread"));

  // The same code, checked as a layer alone: input channel 2 is not zero.
  VerifyReport alone = verifyKernel(model, kernel, verifyOptions());
  EXPECT_FALSE(alone.passed());

  // A producer claiming channel 1 zero, though its filter 1 is not.
  ConvLayer claims = model;
  claims.channels.zeroOutputChannels = {1};
  VerifyReport wrongClaim = verifyKernel(claims, generator.build(claims), verifyOptions());
  EXPECT_FALSE(wrongClaim.passed());
  EXPECT_THAT(wrongClaim.firstFailure, HasSubstr("the graph claims channel 1 zero"));
}
