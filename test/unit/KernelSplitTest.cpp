// The kernel partition: consecutive channel blocks per kernel, within the
// per-kernel budget, and dense past the kernel limit or when one channel
// block alone is over the budget.
#include "codegen/KernelSplit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using ::testing::HasSubstr;

namespace {

// 4 channel blocks of BK = 2 (8 filters of 1x1x2 = 4 weights per block), BW = 2.
struct Fixture {
  ConvGeometry geometry;
  Tiling tiling;
  Fixture() {
    geometry.inChannels = 2;
    geometry.outChannels = 8;
    geometry.inSize = {4, 4};
    geometry.kernel = {1, 1};
    tiling.channelsPerThread = 2;
    tiling.outputsPerThread = 2;
  }
};

// Nonzeros per channel block: 4, 1, 3, 2 -> code 8, 2, 6, 4.
const std::vector<float> Weights = {1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1};

TEST(KernelSplit, OneKernelWhenEverythingFits) {
  Fixture f;
  KernelPartition plan = partitionKernels(f.geometry, f.tiling, Weights, {100, 4});
  ASSERT_EQ(plan.kernels.size(), 1u);
  EXPECT_EQ(plan.kernels[0], (ChannelBlockRange{0, 4}));
  EXPECT_EQ(plan.multiplyAdds, (std::vector<int64_t>{20}));
  EXPECT_EQ(plan.denseReason, "");
}

TEST(KernelSplit, ConsecutiveBlocksWithinTheBudget) {
  Fixture f;
  KernelPartition plan = partitionKernels(f.geometry, f.tiling, Weights, {10, 4});
  ASSERT_EQ(plan.kernels.size(), 2u);
  EXPECT_EQ(plan.kernels[0], (ChannelBlockRange{0, 2})); // 8 + 2
  EXPECT_EQ(plan.kernels[1], (ChannelBlockRange{2, 2})); // 6 + 4
  EXPECT_EQ(plan.multiplyAdds, (std::vector<int64_t>{10, 10}));
}

TEST(KernelSplit, DensePastTheKernelLimit) {
  Fixture f;
  KernelPartition plan = partitionKernels(f.geometry, f.tiling, Weights, {8, 2});
  EXPECT_TRUE(plan.kernels.empty());
  EXPECT_THAT(plan.denseReason, HasSubstr("20 multiply-adds of sparse code need 3 kernels"));
  EXPECT_THAT(plan.denseReason, HasSubstr("over the limit of 2 per layer"));
}

TEST(KernelSplit, DenseWhenOneBlockAloneIsOverBudget) {
  Fixture f;
  KernelPartition plan = partitionKernels(f.geometry, f.tiling, Weights, {7, 100});
  EXPECT_TRUE(plan.kernels.empty());
  EXPECT_THAT(plan.denseReason, HasSubstr("channel block 0 alone holds 8 multiply-adds"));
}

TEST(KernelSplit, AllZeroLayerIsOneKernel) {
  Fixture f;
  KernelPartition plan =
      partitionKernels(f.geometry, f.tiling, std::vector<float>(16, 0.0f), {1, 1});
  ASSERT_EQ(plan.kernels.size(), 1u);
  EXPECT_EQ(plan.multiplyAdds, (std::vector<int64_t>{0}));
}

} // namespace

// A constant bank per kernel: the nonzeros of a kernel stay within it too.
TEST(KernelSplit, NonzerosPerKernelWithinTheBank) {
  Fixture f;
  KernelPartition plan = partitionKernels(f.geometry, f.tiling, Weights, {100, 4, 4});
  ASSERT_EQ(plan.kernels.size(), 3u);
  EXPECT_EQ(plan.kernels[0], (ChannelBlockRange{0, 1})); // 4 nonzeros: a fifth would not fit
  EXPECT_EQ(plan.kernels[1], (ChannelBlockRange{1, 2})); // 1 + 3
  EXPECT_EQ(plan.kernels[2], (ChannelBlockRange{3, 1})); // 2
  EXPECT_EQ(plan.multiplyAdds, (std::vector<int64_t>{8, 8, 4}));

  KernelPartition tooSmall = partitionKernels(f.geometry, f.tiling, Weights, {100, 4, 3});
  EXPECT_TRUE(tooSmall.kernels.empty());
  EXPECT_THAT(tooSmall.denseReason, HasSubstr("channel block 0 alone holds 4 nonzeros, over the 3"));
  KernelPartition tooMany = partitionKernels(f.geometry, f.tiling, Weights, {100, 2, 4});
  EXPECT_THAT(tooMany.denseReason, HasSubstr("and 4 nonzeros each, over the limit of 2 per layer"));
}
