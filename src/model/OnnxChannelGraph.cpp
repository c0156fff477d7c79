#include "model/OnnxChannelGraph.h"

#include <onnx/onnx_pb.h>

#include <cmath>
#include <limits>
#include <set>

namespace convgen {

namespace {

using onnx::AttributeProto;
using onnx::GraphProto;
using onnx::NodeProto;

const AttributeProto *findAttribute(const NodeProto &node, const char *name) {
  for (const AttributeProto &attribute : node.attribute())
    if (attribute.name() == name)
      return &attribute;
  return nullptr;
}

/// Every tensor name a subgraph's nodes read: a node holding subgraphs
/// reads them from the outer scope (ONNX passes them implicitly).
void collectSubgraphReads(const GraphProto &graph, std::vector<std::string> &names) {
  for (const NodeProto &node : graph.node()) {
    for (const std::string &input : node.input())
      if (!input.empty())
        names.push_back(input);
    for (const AttributeProto &attribute : node.attribute()) {
      if (attribute.has_g())
        collectSubgraphReads(attribute.g(), names);
      for (const GraphProto &subgraph : attribute.graphs())
        collectSubgraphReads(subgraph, names);
    }
  }
}

/// Whether Clip's range holds 0: both bounds known constants (or absent:
/// unbounded) with low <= 0 <= high.
bool clipKeepsZero(const OnnxGraphView &view, const NodeProto &clip) {
  double low = -std::numeric_limits<double>::infinity();
  double high = std::numeric_limits<double>::infinity();
  if (view.opset >= 11) { // bounds are inputs
    for (int i : {1, 2}) {
      if (clip.input_size() <= i || clip.input(i).empty())
        continue;
      std::optional<std::vector<double>> bound = view.constant(clip.input(i));
      if (!bound || bound->size() != 1)
        return false; // computed: unknown
      (i == 1 ? low : high) = bound->front();
    }
  } else { // bounds are attributes
    if (const AttributeProto *min = findAttribute(clip, "min"))
      low = min->f();
    if (const AttributeProto *max = findAttribute(clip, "max"))
      high = max->f();
  }
  return low <= 0.0 && 0.0 <= high;
}

/// Per channel, whether an inference-mode BatchNormalization keeps 0 at 0
/// exactly: beta == 0 and (mean == 0 or gamma == 0). Empty: unknown.
std::vector<bool> batchNormKeepsZero(const OnnxGraphView &view, const NodeProto &norm) {
  if (const AttributeProto *training = findAttribute(norm, "training_mode"); training && training->i())
    return {};
  if (norm.input_size() != 5)
    return {};
  std::vector<std::vector<double>> parameters; // gamma, beta, mean, var
  for (int i = 1; i < 5; ++i) {
    std::optional<std::vector<double>> values = view.constant(norm.input(i));
    if (!values || (!parameters.empty() && values->size() != parameters.front().size()))
      return {};
    parameters.push_back(std::move(*values));
  }
  const std::vector<double> &gamma = parameters[0], &beta = parameters[1], &mean = parameters[2],
                            &variance = parameters[3];
  const AttributeProto *epsilon = findAttribute(norm, "epsilon");
  const double eps = epsilon ? double(epsilon->f()) : 1e-5;
  std::vector<bool> keeps(gamma.size());
  for (size_t c = 0; c < keeps.size(); ++c)
    // 0 * anything finite is 0; a variance that makes the scale infinite
    // or NaN would not be.
    keeps[c] = beta[c] == 0.0 && (mean[c] == 0.0 || gamma[c] == 0.0) &&
               std::isfinite(gamma[c]) && std::isfinite(mean[c]) &&
               std::isfinite(variance[c]) && variance[c] + eps > 0.0;
  return keeps;
}

/// Whether every input of an elementwise node has the output's full,
/// known shape: no broadcasting.
bool sameShapes(const OnnxGraphView &view, const NodeProto &node) {
  auto output = view.shapes.find(node.output(0));
  if (output == view.shapes.end())
    return false;
  for (const std::string &input : node.input()) {
    auto shape = view.shapes.find(input);
    if (shape == view.shapes.end() || shape->second != output->second)
      return false;
  }
  for (int64_t dim : output->second)
    if (dim < 1)
      return false;
  return true;
}

/// The channel-graph node of an ONNX node that is no layer of convgen's.
ChannelGraph::Node translate(const OnnxGraphView &view, const NodeProto &onnxNode) {
  ChannelGraph::Node node;
  node.name = onnxNode.name().empty() && onnxNode.output_size() ? onnxNode.output(0) : onnxNode.name();
  const bool defaultDomain = onnxNode.domain().empty() || onnxNode.domain() == "ai.onnx";
  node.op = defaultDomain ? onnxNode.op_type() : onnxNode.domain() + "." + onnxNode.op_type();
  for (const std::string &output : onnxNode.output())
    if (!output.empty())
      node.outputs.push_back(output);
  // Parameter inputs (bounds, statistics, the dropout ratio) are not data.
  static const std::set<std::string> oneDataInput = {"Clip", "BatchNormalization", "Dropout"};
  if (oneDataInput.count(node.op) && onnxNode.input_size() >= 1) {
    node.inputs = {onnxNode.input(0)};
    // Training-mode Dropout and BatchNormalization have extra outputs;
    // only the first is data, and the others make the node unknown.
  } else {
    for (const std::string &input : onnxNode.input())
      if (!input.empty())
        node.inputs.push_back(input);
  }
  if (node.op == "Clip")
    node.mapsZeroToZero = clipKeepsZero(view, onnxNode);
  else if (node.op == "BatchNormalization")
    node.channelMapsZeroToZero = batchNormKeepsZero(view, onnxNode);
  else if (node.op == "Concat") {
    const AttributeProto *axis = findAttribute(onnxNode, "axis");
    node.axis = axis ? axis->i() : 1;
    auto output = onnxNode.output_size() ? view.shapes.find(onnxNode.output(0)) : view.shapes.end();
    if (node.axis < 0 && output != view.shapes.end())
      node.axis += int64_t(output->second.size());
  } else if ((node.op == "Add" || node.op == "Sum") && !sameShapes(view, onnxNode)) {
    node.op += " (broadcasting)"; // unknown to the pass
  }
  bool hasSubgraph = false;
  for (const AttributeProto &attribute : onnxNode.attribute()) {
    if (attribute.has_g()) {
      collectSubgraphReads(attribute.g(), node.inputs);
      hasSubgraph = true;
    }
    for (const GraphProto &subgraph : attribute.graphs()) {
      collectSubgraphReads(subgraph, node.inputs);
      hasSubgraph = true;
    }
  }
  if (hasSubgraph)
    node.op += " (with subgraphs)";
  return node;
}

} // namespace

ChannelGraph buildChannelGraph(const OnnxGraphView &view, const std::vector<FusedLayerNode> &layers) {
  ChannelGraph graph;
  for (const auto &[name, shape] : view.shapes)
    if (shape.size() >= 2 && shape[1] > 0)
      graph.channels[name] = shape[1];
  for (const auto &output : view.graph.output())
    graph.graphOutputs.push_back(output.name());

  std::unordered_map<const NodeProto *, const FusedLayerNode *> layerOf;
  std::set<const NodeProto *> fused;
  for (const FusedLayerNode &layer : layers) {
    layerOf[layer.conv] = &layer;
    fused.insert(layer.fused.begin(), layer.fused.end());
  }
  // ONNX lists nodes in topological order (the checker insists), which the
  // pass's sweeps follow.
  for (const NodeProto &node : view.graph.node()) {
    if (auto layer = layerOf.find(&node); layer != layerOf.end())
      graph.nodes.push_back(layer->second->node);
    else if (!fused.count(&node))
      graph.nodes.push_back(translate(view, node));
  }
  return graph;
}

} // namespace convgen
