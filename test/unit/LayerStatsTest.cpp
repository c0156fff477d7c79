#include "model/LayerStats.h"

#include <gtest/gtest.h>

using namespace convgen;

TEST(LayerStats, CountsNonzerosAndWork) {
  ConvLayer layer;
  layer.geometry.batch = 2;
  layer.geometry.inChannels = 4;
  layer.geometry.inSize = {6, 6};
  layer.geometry.outChannels = 2;
  layer.geometry.kernel = {3, 3};
  layer.geometry.groups = 2; // weights [2, 2, 3, 3]: 36 values
  layer.weights.assign(36, 0.0f);
  layer.weights[0] = 1.0f;
  layer.weights[7] = -2.0f;
  layer.weights[35] = 0.5f;
  layer.weights[20] = -0.0f; // negative zero is a zero weight
  LayerStats stats = computeLayerStats(layer);
  EXPECT_EQ(stats.weightCount, 36);
  EXPECT_EQ(stats.nonzeroCount, 3);
  EXPECT_DOUBLE_EQ(stats.sparsity(), 33.0 / 36.0);
  // Output 4x4, batch 2: dense = 2*2*16*(2*9), sparse = 2*16*nnz.
  EXPECT_EQ(stats.denseMultiplyAdds, 2 * 2 * 16 * 18);
  EXPECT_EQ(stats.sparseMultiplyAdds, 2 * 16 * 3);
  EXPECT_EQ(stats.denseFlops(), 2 * stats.denseMultiplyAdds);
  EXPECT_EQ(stats.sparseFlops(), 2 * stats.sparseMultiplyAdds);
}
