// An ONNX graph as model/ZeroChannels sees it: each node with the rule it
// follows, each tensor with its channel count (axis 1 of its inferred
// shape), and each layer convgen generates as one Conv node from the Conv's
// input to the layer's result, the BatchNormalization and activation fused
// into it included (their effect is in the layer's folded weights, bias and
// activation).
//
// What the builder decides, so that the pass only ever sees safe facts:
//   - Clip maps 0 to 0 only when both bounds are constants that hold 0 (a
//     missing bound is unbounded); BatchNormalization channel c only when
//     beta[c] is 0 and mean[c] or gamma[c] is 0, which stays exactly 0 in
//     any precision; a training-mode one, or one with computed parameters,
//     is unknown;
//   - an Add or Sum whose inputs are not all the output's shape broadcasts
//     and is unknown;
//   - a node of another domain is unknown, and a node with a subgraph (If,
//     Loop, Scan) reads every tensor its subgraphs name.
#pragma once

#include "model/ZeroChannels.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace onnx {
class GraphProto;
class NodeProto;
} // namespace onnx

namespace convgen {

/// Inferred shapes by tensor name; -1 for an unknown dimension.
using TensorShapes = std::unordered_map<std::string, std::vector<int64_t>>;

/// A layer convgen generates: its Conv, the nodes fused into it, and its
/// node of the channel graph (name, inputs, outputs, filterReads,
/// constantOutput, groups). A layer whose weights could not be read has a
/// node without filterReads, which the pass treats as unknown.
struct FusedLayerNode {
  const onnx::NodeProto *conv = nullptr;
  std::vector<const onnx::NodeProto *> fused;
  ChannelGraph::Node node;
};

struct OnnxGraphView {
  const onnx::GraphProto &graph;
  const TensorShapes &shapes;
  int64_t opset = 0;
  /// The values of a constant tensor (initializer or Constant node), or
  /// nullopt for a computed or unreadable one.
  std::function<std::optional<std::vector<double>>(const std::string &name)> constant;
};

ChannelGraph buildChannelGraph(const OnnxGraphView &view, const std::vector<FusedLayerNode> &layers);

} // namespace convgen
