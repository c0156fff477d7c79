#include "model/ConvGeometry.h"

#include <gtest/gtest.h>

using namespace convgen;

namespace {
ConvGeometry geometry(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  ConvGeometry g;
  g.batch = 2;
  g.inChannels = 8;
  g.inSize = {in, in + 1};
  g.outChannels = 4;
  g.kernel = {kernel, kernel};
  g.stride = {stride, stride};
  g.padding = {pad, pad};
  g.dilation = {dilation, dilation};
  g.groups = 2;
  return g;
}
} // namespace

// Expected sizes are torch.nn.Conv2d's (checked with torch 1.13).
TEST(ConvGeometry, OutputSizeMatchesTorch) {
  EXPECT_EQ(geometry(56, 3, 1, 1, 1).outSize(), (HW{56, 57}));
  EXPECT_EQ(geometry(7, 3, 2, 1, 1).outSize(), (HW{4, 4}));
  EXPECT_EQ(geometry(224, 7, 2, 3, 1).outSize(), (HW{112, 113}));
  EXPECT_EQ(geometry(10, 3, 1, 0, 2).outSize(), (HW{6, 7}));
  EXPECT_EQ(geometry(9, 5, 3, 2, 2).outSize(), (HW{2, 2}));
  EXPECT_EQ(geometry(1, 1, 3, 0, 1).outSize(), (HW{1, 1}));
}

TEST(ConvGeometry, KernelLargerThanPaddedInputGivesEmptyOutput) {
  EXPECT_EQ(geometry(2, 5, 1, 1, 1).outSize().h, 0);
  EXPECT_EQ(geometry(4, 3, 1, 0, 3).outSize().h, 0);
}

TEST(ConvGeometry, ShapesAndWork) {
  ConvGeometry g = geometry(8, 3, 1, 1, 1);
  EXPECT_EQ(g.weightShape(), (Shape4{4, 4, 3, 3}));
  EXPECT_EQ(g.outputShape(), (Shape4{2, 4, 8, 9}));
  EXPECT_EQ(g.denseMultiplyAdds(), 2 * 4 * 8 * 9 * 4 * 3 * 3);
  EXPECT_EQ(g.summary(), "3x3 s1 p1 d1 g2");
  EXPECT_EQ(formatShape4(g.inputShape()), "[2, 8, 8, 9]");
}
