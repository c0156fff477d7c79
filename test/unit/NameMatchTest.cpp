#include "support/NameMatch.h"

#include <gtest/gtest.h>

using namespace convgen;

TEST(NameMatch, EditDistance) {
  EXPECT_EQ(editDistance("", ""), 0u);
  EXPECT_EQ(editDistance("conv3", "conv3"), 0u);
  EXPECT_EQ(editDistance("conv3", "conv2"), 1u);
  EXPECT_EQ(editDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(editDistance("", "abc"), 3u);
}

TEST(NameMatch, ClosestMatch) {
  std::vector<std::string> names = {"layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "fc"};
  EXPECT_EQ(closestMatch("layer1.0.conv3", names), "layer1.0.conv1");
  EXPECT_EQ(closestMatch("layer2.0.con1", names), "layer2.0.conv1");
  EXPECT_EQ(closestMatch("F_O", {"F_0", "F_m1"}), "F_0");
  EXPECT_EQ(closestMatch("totally-different-name", names), std::nullopt);
  EXPECT_EQ(closestMatch("fc", {}), std::nullopt);
  // A unique substring match: "2.0.conv1" names layer2.0.conv1.
  EXPECT_EQ(closestMatch("2.0.conv1", names), "layer2.0.conv1");
}
