// Sparsity that crosses layers, from ONNX models built in code: the channel
// graph the reader builds (fused layers, parameters that are not data,
// subgraphs, broadcasting, other domains) and what a layer loads with it
// (weights dropped on zero inputs and unread outputs, the model's kept).
#include "model/OnnxChannelGraph.h"
#include "model/OnnxModel.h"
#include "support/OnnxBuilder.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

namespace {

/// OIHW weights, every one nonzero (1 + its index / 100).
std::vector<float> denseWeights(int64_t o, int64_t i, int64_t kh, int64_t kw) {
  std::vector<float> weights(size_t(o * i * kh * kw));
  for (size_t n = 0; n < weights.size(); ++n)
    weights[n] = 1.0f + float(n) / 100.0f;
  return weights;
}

/// x [1, 3, 6, 6] -> A (3x3, pad 1, 4 filters, bias) -> Relu -> a
///   -> B (1x1, 5 filters) -> y, the graph output.
/// A's filter 1 is zero with bias 0, filter 3 zero with bias -0.5 (the Relu
/// makes it 0); B has zero weights on input channel 2.
OnnxBuilder chain() {
  OnnxBuilder b;
  b.input("x", {1, 3, 6, 6});
  std::vector<float> a = denseWeights(4, 3, 3, 3);
  std::fill(a.begin() + 27, a.begin() + 54, 0.0f);
  std::fill(a.begin() + 81, a.begin() + 108, 0.0f);
  b.initializer("wa", {4, 3, 3, 3}, a);
  b.initializer("ba", {4}, {0.5f, 0.0f, 1.0f, -0.5f});
  onnx::NodeProto &convA = b.node("Conv", "A", {"x", "wa", "ba"}, {"a0"});
  setInts(convA, "pads", {1, 1, 1, 1});
  b.node("Relu", "reluA", {"a0"}, {"a"});
  std::vector<float> w = denseWeights(5, 4, 1, 1);
  for (size_t k = 0; k < 5; ++k)
    w[k * 4 + 2] = 0.0f;
  b.initializer("wb", {5, 4, 1, 1}, w);
  b.node("Conv", "B", {"a", "wb"}, {"y"});
  b.output("y");
  return b;
}

class OnnxChannelGraphTest : public ::testing::Test {
protected:
  ModelFile open(OnnxBuilder &builder, const OnnxOptions &options = {}) {
    builder.save(Dir / "m.onnx");
    return openOnnxModel((Dir / "m.onnx").string(), options);
  }
  TempDir Dir;
};

} // namespace

TEST_F(OnnxChannelGraphTest, ZeroFiltersAndUnreadInputsReachTheirNeighbours) {
  OnnxBuilder b = chain();
  ModelFile model = open(b);
  const LayerSpec &a = *model.sidecar().find("A"), &bSpec = *model.sidecar().find("B");
  EXPECT_THAT(a.channels.zeroOutputChannels, ElementsAre(1, 3)) << "relu(-0.5) is 0";
  EXPECT_THAT(a.channels.unreadOutputChannels, ElementsAre(1, 2, 3));
  EXPECT_THAT(bSpec.channels.zeroInputChannels, ElementsAre(1, 3));
  EXPECT_THAT(bSpec.channels.unreadOutputChannels, IsEmpty()) << "a graph output is read whole";

  ConvLayer layerB = model.loadLayer(bSpec);
  EXPECT_EQ(layerB.removedNonzeros, 10) << "5 filters x input channels 1 and 3";
  EXPECT_EQ(&layerB.referenceWeights(), &layerB.modelWeights);
  for (size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(layerB.weights[k * 4 + 1], 0.0f);
    EXPECT_EQ(layerB.weights[k * 4 + 3], 0.0f);
    EXPECT_NE(layerB.weights[k * 4 + 0], 0.0f);
    EXPECT_NE(layerB.modelWeights[k * 4 + 1], 0.0f) << "the model's own are kept";
  }
  ConvLayer layerA = model.loadLayer(a);
  EXPECT_EQ(layerA.removedNonzeros, 27) << "filter 2 is computed for nobody";
  EXPECT_EQ(layerA.bias[2], 1.0f) << "the bias stays";

  // --no-propagate: each layer alone, as before.
  ModelFile alone = open(b, {0, false});
  EXPECT_TRUE(alone.sidecar().find("B")->channels.empty());
  ConvLayer aloneB = alone.loadLayer(*alone.sidecar().find("B"));
  EXPECT_EQ(aloneB.removedNonzeros, 0);
  EXPECT_TRUE(aloneB.modelWeights.empty());
  EXPECT_EQ(aloneB.weights, layerB.modelWeights);
}

TEST_F(OnnxChannelGraphTest, ABatchNormalizationBetweenLayersKeepsZeroOnlyWhereExact) {
  // A's zero channels 1 and 3 pass a BatchNormalization after its Relu,
  // which is not fused: it keeps a channel zero only where that is exact.
  OnnxBuilder b = chain();
  onnx::GraphProto &graph = *b.model().mutable_graph();
  // Insert a BatchNormalization between the Relu and B: a -> bn -> an.
  graph.mutable_node(2)->set_input(0, "an");
  onnx::NodeProto bn;
  bn.set_op_type("BatchNormalization");
  bn.set_name("bn");
  for (const char *input : {"a", "gamma", "beta", "mean", "var"})
    bn.add_input(input);
  bn.add_output("an");
  *graph.mutable_node()->Add() = bn;
  // Keep the nodes in topological order: move bn before B.
  graph.mutable_node()->SwapElements(2, 3);
  b.initializer("gamma", {4}, {1.0f, 2.0f, 0.0f, 1.0f});
  b.initializer("beta", {4}, {0.0f, 0.0f, 0.0f, 0.5f});
  b.initializer("mean", {4}, {0.0f, 0.3f, 0.0f, 0.0f});
  b.initializer("var", {4}, {1.0f, 1.0f, 1.0f, 1.0f});
  ModelFile model = open(b);
  // Channel 1: mean 0.3 times gamma 2 moves 0; channel 3: beta 0.5 does.
  EXPECT_THAT(model.sidecar().find("B")->channels.zeroInputChannels, IsEmpty());
  EXPECT_THAT(model.sidecar().find("A")->channels.zeroOutputChannels, ElementsAre(1, 3));
}

TEST(OnnxChannelGraph, ParametersSubgraphsBroadcastsAndDomainsAreSafe) {
  onnx::GraphProto graph;
  auto node = [&](const std::string &op, std::vector<std::string> inputs, const std::string &output) {
    onnx::NodeProto &n = *graph.add_node();
    n.set_op_type(op);
    n.set_name(op);
    for (const std::string &input : inputs)
      n.add_input(input);
    n.add_output(output);
    return &n;
  };
  node("Clip", {"a", "low", "high"}, "c");     // high is computed: unknown bound
  node("Add", {"c", "bias"}, "d");              // bias [1, 4, 1, 1] broadcasts
  onnx::NodeProto *custom = node("Relu", {"d"}, "e");
  custom->set_domain("com.example");            // not ONNX's Relu
  onnx::NodeProto *branch = node("If", {"cond"}, "f");
  onnx::AttributeProto &then = *branch->add_attribute();
  then.set_name("then_branch");
  then.set_type(onnx::AttributeProto::GRAPH);
  onnx::NodeProto &inner = *then.mutable_g()->add_node();
  inner.set_op_type("Identity");
  inner.add_input("a"); // read from the outer scope
  inner.add_output("g");
  graph.add_output()->set_name("f");

  TensorShapes shapes = {{"a", {1, 4, 2, 2}}, {"c", {1, 4, 2, 2}}, {"bias", {1, 4, 1, 1}},
                         {"d", {1, 4, 2, 2}}, {"e", {1, 4, 2, 2}}};
  OnnxGraphView view{graph, shapes, 13,
                     [](const std::string &name) -> std::optional<std::vector<double>> {
                       if (name == "low")
                         return std::vector<double>{0.0};
                       return std::nullopt;
                     }};
  ChannelGraph channels = buildChannelGraph(view, {});
  ASSERT_EQ(channels.nodes.size(), 4u);
  EXPECT_EQ(channels.nodes[0].inputs, std::vector<std::string>{"a"}) << "bounds are not data";
  EXPECT_FALSE(channels.nodes[0].mapsZeroToZero);
  EXPECT_EQ(channels.nodes[1].op, "Add (broadcasting)");
  EXPECT_EQ(channels.nodes[2].op, "com.example.Relu");
  EXPECT_THAT(channels.nodes[3].inputs, Contains("a")) << "the subgraph reads it";
  EXPECT_EQ(channels.nodes[3].op, "If (with subgraphs)");
  EXPECT_EQ(channels.channels.at("a"), 4);

  // With both bounds constant and around 0, Clip keeps zeros.
  view.constant = [](const std::string &) -> std::optional<std::vector<double>> {
    return std::vector<double>{0.0};
  };
  EXPECT_TRUE(buildChannelGraph(view, {}).nodes[0].mapsZeroToZero);
}
