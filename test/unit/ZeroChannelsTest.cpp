// Zero channels propagated across layers, on graphs built in code: chains,
// residual adds, concat, pools, an unknown operator, grouped convolutions,
// and a layer that feeds a graph output.
#include "model/ZeroChannels.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

namespace {

using Node = ChannelGraph::Node;
using Ids = std::vector<int64_t>;

/// A Conv from \p in (\p inChannels) to \p out (\p outChannels), every weight
/// nonzero and no bias, until a test clears some.
Node conv(const std::string &name, const std::string &in, const std::string &out,
          int64_t inChannels, int64_t outChannels, int64_t groups = 1) {
  Node node;
  node.name = name;
  node.op = "Conv";
  node.inputs = {in};
  node.outputs = {out};
  node.groups = groups;
  node.filterReads.assign(size_t(outChannels), std::vector<bool>(size_t(inChannels / groups), true));
  node.constantOutput.assign(size_t(outChannels), 0.0);
  return node;
}

Node op(const std::string &type, std::vector<std::string> in, const std::string &out) {
  Node node;
  node.name = type;
  node.op = type;
  node.inputs = std::move(in);
  node.outputs = {out};
  return node;
}

/// Filter k of \p node reads nothing: an all-zero filter.
void clearFilter(Node &node, size_t k) { node.filterReads[k].assign(node.filterReads[k].size(), false); }

/// Every filter of \p node has zero weights on input channel \p c.
void clearInput(Node &node, size_t c) {
  for (auto &row : node.filterReads)
    row[c] = false;
}

TEST(ZeroChannels, AChainPropagatesBothWays) {
  ChannelGraph g;
  g.channels = {{"x", 3}, {"a", 4}, {"r", 4}, {"b", 8}};
  g.graphOutputs = {"b"};
  Node a = conv("A", "x", "a", 3, 4), b = conv("B", "r", "b", 4, 8);
  clearFilter(a, 1); // forward: A's channel 1 is zero, so B needs no code for it
  clearInput(b, 2);  // backward: nobody reads A's channel 2
  g.nodes = {a, op("Relu", {"a"}, "r"), b};
  auto facts = propagateZeroChannels(g);
  EXPECT_THAT(facts["B"].zeroInputChannels, ElementsAre(1));
  EXPECT_THAT(facts["B"].unreadOutputChannels, IsEmpty()) << "a graph output is read whole";
  EXPECT_THAT(facts["A"].zeroInputChannels, IsEmpty());
  EXPECT_THAT(facts["A"].unreadOutputChannels, ElementsAre(1, 2));
  EXPECT_THAT(facts["A"].zeroOutputChannels, ElementsAre(1));
  EXPECT_THAT(facts["B"].zeroOutputChannels, IsEmpty());
}

TEST(ZeroChannels, ABiasOrAnActivationThatMovesZeroStopsIt) {
  ChannelGraph g;
  g.channels = {{"x", 3}, {"a", 2}, {"c", 2}, {"b", 2}};
  g.graphOutputs = {"b"};
  Node a = conv("A", "x", "a", 3, 2);
  clearFilter(a, 0);
  clearFilter(a, 1);
  a.constantOutput[1] = 0.5; // channel 1 is the bias everywhere: not zero
  Node clip = op("Clip", {"a"}, "c");
  clip.mapsZeroToZero = true;
  g.nodes = {a, clip, conv("B", "c", "b", 2, 2)};
  EXPECT_THAT(propagateZeroChannels(g)["B"].zeroInputChannels, ElementsAre(0));
  g.nodes[1].mapsZeroToZero = false; // Clip(min=1): 0 becomes 1
  EXPECT_THAT(propagateZeroChannels(g)["B"].zeroInputChannels, IsEmpty());
  Node bn = op("BatchNormalization", {"a"}, "c");
  bn.channelMapsZeroToZero = {false, true};
  g.nodes[1] = bn;
  EXPECT_THAT(propagateZeroChannels(g)["B"].zeroInputChannels, IsEmpty());
  g.nodes[1].channelMapsZeroToZero = {true, true};
  EXPECT_THAT(propagateZeroChannels(g)["B"].zeroInputChannels, ElementsAre(0));
}

TEST(ZeroChannels, AResidualAddKeepsAChannelZeroOnlyWhereBothAre) {
  ChannelGraph g;
  g.channels = {{"x", 4}, {"a", 4}, {"b", 4}, {"y", 4}, {"z", 4}};
  g.graphOutputs = {"z"};
  Node a = conv("A", "x", "a", 4, 4), b = conv("B", "x", "b", 4, 4), c = conv("C", "y", "z", 4, 4);
  clearFilter(a, 0);
  clearFilter(a, 3);
  clearFilter(b, 3);
  clearInput(c, 1); // nobody reads y's channel 1: neither a's nor b's
  g.nodes = {a, b, op("Add", {"a", "b"}, "y"), c};
  auto facts = propagateZeroChannels(g);
  EXPECT_THAT(facts["C"].zeroInputChannels, ElementsAre(3));
  EXPECT_THAT(facts["A"].unreadOutputChannels, ElementsAre(1, 3));
  EXPECT_THAT(facts["B"].unreadOutputChannels, ElementsAre(1, 3));
}

// A residual block behind two pruned filters with biases: each branch is a
// constant channel, and relu(a + b) is zero where the float sum is <= 0.
// An average pool keeps only zeros; three inputs, or a sum of a sum, keep
// only all-zero ones.
TEST(ZeroChannels, ConstantChannelsAddUpAndAReluZeroesANegativeSum) {
  ChannelGraph g;
  g.channels = {{"x", 3}, {"a", 3}, {"b", 3}, {"s", 3}, {"r", 3}, {"y", 2}};
  g.graphOutputs = {"y"};
  Node a = conv("A", "x", "a", 3, 3), b = conv("B", "x", "b", 3, 3), c = conv("C", "r", "y", 3, 2);
  for (size_t k = 0; k < 3; ++k) {
    clearFilter(a, k);
    clearFilter(b, k);
  }
  a.constantOutput = {0.5, 0.25, 0.0};
  b.constantOutput = {-0.5, 0.0, -1.0};
  g.nodes = {a, b, op("Add", {"a", "b"}, "s"), op("Relu", {"s"}, "r"), c};
  // 0.5 - 0.5 = 0, 0.25 + 0 > 0, 0 - 1 < 0: channels 0 and 2 are zero.
  EXPECT_THAT(propagateZeroChannels(g)["C"].zeroInputChannels, ElementsAre(0, 2));

  g.nodes[3] = op("AveragePool", {"s"}, "r"); // keeps zeros, not constants
  EXPECT_THAT(propagateZeroChannels(g)["C"].zeroInputChannels, ElementsAre(0));

  g.channels["d"] = 3;
  Node d = conv("D", "x", "d", 3, 3);
  for (size_t k = 0; k < 3; ++k)
    clearFilter(d, k);
  g.nodes = {a, b, d, op("Sum", {"a", "b", "d"}, "s"), op("Relu", {"s"}, "r"), c};
  EXPECT_THAT(propagateZeroChannels(g)["C"].zeroInputChannels, IsEmpty())
      << "a + b + 0 is not added up: only all-zero channels pass three inputs";

  // (a + b) + d in two Adds: a sum of a sum is not trusted (its roundings
  // differ between precisions), though 0.25 - 1 would be < 0 here.
  d.constantOutput = {-0.5, -1.0, -1.0};
  g.channels["t"] = 3;
  g.nodes = {a, b, d, op("Add", {"a", "b"}, "t"), op("Add", {"t", "d"}, "s"),
             op("Relu", {"s"}, "r"), c};
  EXPECT_THAT(propagateZeroChannels(g)["C"].zeroInputChannels, ElementsAre(0))
      << "channel 0 is 0 + -0.5 (a zero sum is exact), channel 1 a sum of a sum";
}

TEST(ZeroChannels, ConcatShiftsChannelsAndPoolsKeepZeros) {
  ChannelGraph g;
  g.channels = {{"x", 2}, {"a", 2}, {"b", 3}, {"p", 3}, {"cat", 5}, {"z", 2}};
  g.graphOutputs = {"z"};
  Node a = conv("A", "x", "a", 2, 2), b = conv("B", "x", "b", 2, 3), c = conv("C", "cat", "z", 5, 2);
  clearFilter(a, 1); // concat channel 1
  clearFilter(b, 0); // b channel 0, pooled, is concat channel 2
  clearInput(c, 4);  // concat channel 4 is b's channel 2
  g.nodes = {a, b, op("MaxPool", {"b"}, "p"), op("Concat", {"a", "p"}, "cat"), c};
  auto facts = propagateZeroChannels(g);
  EXPECT_THAT(facts["C"].zeroInputChannels, ElementsAre(1, 2));
  EXPECT_THAT(facts["A"].unreadOutputChannels, ElementsAre(1));
  EXPECT_THAT(facts["B"].unreadOutputChannels, ElementsAre(0, 2));
  g.nodes[3].axis = 2; // not along channels: unknown
  facts = propagateZeroChannels(g);
  EXPECT_THAT(facts["C"].zeroInputChannels, IsEmpty());
  EXPECT_THAT(facts["B"].unreadOutputChannels, IsEmpty());
}

TEST(ZeroChannels, AnUnknownOperatorStopsBothDirections) {
  ChannelGraph g;
  g.channels = {{"x", 2}, {"a", 2}, {"s", 2}, {"z", 2}};
  g.graphOutputs = {"z"};
  Node a = conv("A", "x", "a", 2, 2), b = conv("B", "s", "z", 2, 2);
  clearFilter(a, 0);
  clearInput(b, 1);
  g.nodes = {a, op("Sigmoid", {"a"}, "s"), b}; // sigmoid(0) is 0.5
  auto facts = propagateZeroChannels(g);
  EXPECT_THAT(facts["B"].zeroInputChannels, IsEmpty());
  EXPECT_THAT(facts["A"].unreadOutputChannels, IsEmpty());
  EXPECT_THAT(facts["B"].unreadOutputChannels, IsEmpty());
}

TEST(ZeroChannels, ALayerThatFeedsAGraphOutputWritesEveryChannel) {
  ChannelGraph g;
  g.channels = {{"x", 2}, {"a", 3}, {"z", 2}};
  g.graphOutputs = {"a", "z"};
  Node a = conv("A", "x", "a", 2, 3), b = conv("B", "a", "z", 3, 2);
  clearInput(b, 2);
  g.nodes = {a, b};
  EXPECT_THAT(propagateZeroChannels(g)["A"].unreadOutputChannels, IsEmpty());
}

TEST(ZeroChannels, GroupedConvolutionsMapChannelsWithinTheirGroup) {
  ChannelGraph g;
  g.channels = {{"x", 4}, {"a", 4}, {"d", 4}, {"z", 2}};
  g.graphOutputs = {"z"};
  Node a = conv("A", "x", "a", 4, 4), dw = conv("DW", "a", "d", 4, 4, 4), c = conv("C", "d", "z", 4, 2);
  clearFilter(a, 2);       // a's channel 2 is zero, so the depthwise channel 2 is too
  clearInput(c, 3);        // nobody reads d's channel 3, so nobody reads a's channel 3
  g.nodes = {a, dw, c};
  auto facts = propagateZeroChannels(g);
  EXPECT_THAT(facts["DW"].zeroInputChannels, ElementsAre(2));
  EXPECT_THAT(facts["C"].zeroInputChannels, ElementsAre(2));
  EXPECT_THAT(facts["DW"].unreadOutputChannels, ElementsAre(2, 3));
  EXPECT_THAT(facts["A"].unreadOutputChannels, ElementsAre(2, 3));
}

TEST(ZeroChannels, ShapesThatDisagreeMakeANodeUnknown) {
  ChannelGraph g;
  g.channels = {{"x", 2}, {"a", 2}, {"y", 3}, {"z", 2}};
  g.graphOutputs = {"z"};
  Node a = conv("A", "x", "a", 2, 2);
  clearFilter(a, 0);
  g.nodes = {a, op("Relu", {"a"}, "y"), conv("B", "y", "z", 3, 2)}; // 2 channels in, 3 out
  auto facts = propagateZeroChannels(g);
  EXPECT_THAT(facts["B"].zeroInputChannels, IsEmpty());
  EXPECT_THAT(facts["A"].unreadOutputChannels, IsEmpty());
  g.nodes[2].filterReads.pop_back(); // a Conv whose filters disagree with its output
  EXPECT_EQ(propagateZeroChannels(g).count("B"), 0u);
}

} // namespace
