// The layer plan: computed once from the geometry, the decided tiling and
// the mask, it carries what the specialiser, the weight-map check, the
// manifest and the launch need, for sparse, split and dense layers alike.
#include "codegen/LayerPlan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using ::testing::HasSubstr;

namespace {

// 8 filters of 2 input channels, 3x3, on a 6x10 image: 4 channel blocks of
// BK = 2; filters 2 and 3 (block 1) read only input channel 0.
ConvLayer makeLayer() {
  ConvLayer layer;
  layer.name = "net.conv1";
  ConvGeometry &g = layer.geometry;
  g.batch = 1;
  g.inChannels = 2;
  g.outChannels = 8;
  g.inSize = {6, 10};
  g.kernel = {3, 3};
  g.padding = {1, 1};
  layer.weights.assign(8 * 2 * 9, 0.5f);
  for (int k : {2, 3})
    std::fill_n(layer.weights.begin() + (k * 2 + 1) * 9, 9, 0.0f);
  layer.bias.assign(8, 0.0f);
  return layer;
}

Tiling tiling(int splits = 1) {
  Tiling t;
  t.channelsPerThread = 2;
  t.outputsPerThread = 4;
  t.threadsX = 32;
  t.channelBlocksPerCta = splits == 1 ? 2 : 1;
  t.reductionSplits = splits;
  return t;
}

constexpr SplitBudget Roomy{1 << 20, 4};

} // namespace

TEST(LayerPlan, SparseKernelCarriesItsSpecChannelsAndLaunch) {
  const ConvLayer layer = makeLayer();
  const LayerPlan plan = planLayer(layer, tiling(), DType::F32, Roomy);
  ASSERT_FALSE(plan.dense());
  ASSERT_EQ(plan.kernels.size(), 1u);
  const KernelPlan &kernel = plan.kernels[0];
  EXPECT_EQ(kernel.symbol, "convgen_net_conv1");
  EXPECT_EQ(kernel.channelBlocks, (ChannelBlockRange{0, 4}));
  EXPECT_EQ(kernel.gridY, 2) << "4 channel blocks, 2 per block";
  EXPECT_EQ(kernel.spec[SpecChannelBlocks], 4);
  EXPECT_EQ(kernel.spec[SpecChannelsPerThread], 2);
  EXPECT_EQ(kernel.inputChannelsUsed, (std::vector<uint8_t>{1, 1, 1, 0, 1, 1, 1, 1}));
  // 8 filters x 2 channels x 3x3, 18 of them zero, each feeding BW 4 outputs.
  EXPECT_EQ(kernel.sparsePositions, 8 * 2 * 9 - 18);
  EXPECT_EQ(kernel.sparseMultiplyAdds, (8 * 2 * 9 - 18) * 4);
  EXPECT_EQ(plan.sharedFloats, 0);
  EXPECT_EQ(plan.tilesPerImageGroup, 6 * 3) << "6 rows x ceil(10 / 4) column tiles";
  EXPECT_EQ(plan.tilesPerImageGroup, tilesPerImageGroup(layer.geometry, plan.tiling));
}

TEST(LayerPlan, SplitReductionPlansItsSharedMemory) {
  const LayerPlan plan = planLayer(makeLayer(), tiling(2), DType::F32, Roomy);
  EXPECT_EQ(plan.sharedFloats, splitFloats(plan.tiling));
  EXPECT_GT(plan.sharedFloats, 0);
  EXPECT_EQ(plan.kernels[0].gridY, 4) << "one channel block per block, 2 parts each";
}

TEST(LayerPlan, KernelsPastTheBudgetAreNamedAndEachHasItsOwnSpec) {
  // Each block's code is 2 filters x 18 x BW 4 = 144 (block 1: 72): blocks
  // 0-1 (216) and 2-3 (288) fit 300 each.
  const LayerPlan plan = planLayer(makeLayer(), tiling(), DType::F16, {300, 4});
  ASSERT_EQ(plan.kernels.size(), 2u);
  EXPECT_EQ(plan.kernels[0].symbol, "convgen_net_conv1_k0");
  EXPECT_EQ(plan.kernels[1].symbol, "convgen_net_conv1_k1");
  EXPECT_EQ(plan.kernels[1].spec[SpecFirstChannelBlock], plan.kernels[1].channelBlocks.first);
  EXPECT_EQ(plan.kernels[1].spec[SpecHalfPrecision], 1);
  EXPECT_EQ(plan.kernels[1].channelBlocks, (ChannelBlockRange{2, 2}));
  EXPECT_EQ(plan.kernels[0].gridY, 1);
  EXPECT_EQ(plan.kernels[1].gridY, 1);
}

TEST(LayerPlan, DenseFallbackTakesTheDenseSettingsAndEveryChannel) {
  Tiling asked = tiling(2);
  asked.stageInput = false;
  const LayerPlan plan = planLayer(makeLayer(), asked, DType::F32, {10, 4});
  ASSERT_TRUE(plan.dense());
  EXPECT_THAT(plan.denseReason, HasSubstr("alone holds"));
  EXPECT_EQ(plan.tiling.reductionSplits, 1);
  EXPECT_FALSE(plan.tiling.skipUnusedInputs);
  EXPECT_EQ(plan.tiling.weightPath, WeightPathChoice::Global);
  EXPECT_EQ(plan.sharedFloats, 0);
  ASSERT_EQ(plan.kernels.size(), 1u);
  EXPECT_EQ(plan.kernels[0].channelBlocks, (ChannelBlockRange{0, 4}));
  EXPECT_EQ(plan.kernels[0].inputChannelsUsed, std::vector<uint8_t>(8, 1));
  EXPECT_EQ(plan.kernels[0].spec[SpecReductionSplits], 1);
}

TEST(LayerPlan, DenseTilingAsksForTheDenseKernel) {
  Tiling asked = tiling();
  asked.dense = true;
  const LayerPlan plan = planLayer(makeLayer(), asked, DType::F32, Roomy);
  EXPECT_EQ(plan.denseReason, "the tiling asks for the dense kernel (dense=1)");
}
