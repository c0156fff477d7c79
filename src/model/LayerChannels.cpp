#include "model/LayerChannels.h"

#include <algorithm>

namespace convgen {

ChannelGraph::Node layerChannelNode(const ConvLayer &layer, const std::string &input,
                                    const std::string &output) {
  const ConvGeometry &g = layer.geometry;
  ChannelGraph::Node node;
  node.name = layer.name;
  node.op = "Conv";
  node.inputs = {input};
  node.outputs = {output};
  node.groups = g.groups;
  const size_t perGroupIn = size_t(g.inChannelsPerGroup());
  const size_t taps = size_t(g.kernel.h * g.kernel.w);
  node.filterReads.assign(size_t(g.outChannels), std::vector<bool>(perGroupIn, false));
  for (size_t k = 0; k < size_t(g.outChannels); ++k)
    for (size_t c = 0; c < perGroupIn; ++c) {
      const float *filter = layer.weights.data() + (k * perGroupIn + c) * taps;
      node.filterReads[k][c] = std::any_of(filter, filter + taps, [](float w) { return w != 0.0f; });
    }
  // The kernel's sums start from the bias and the activation is a clamp:
  // both exact in float.
  node.constantOutput.assign(size_t(g.outChannels), 0.0);
  for (size_t k = 0; k < layer.bias.size(); ++k)
    node.constantOutput[k] = applyActivation(double(layer.bias[k]), g.activation);
  return node;
}

void applyChannelFacts(ConvLayer &layer, const ConvChannelFacts &facts) {
  layer.channels = facts;
  const ConvGeometry &g = layer.geometry;
  const size_t perGroupIn = size_t(g.inChannelsPerGroup());
  const size_t perGroupOut = size_t(g.outChannels / g.groups);
  const size_t taps = size_t(g.kernel.h * g.kernel.w);
  std::vector<bool> dropInput(size_t(g.inChannels), false), dropOutput(size_t(g.outChannels), false);
  for (int64_t c : facts.zeroInputChannels)
    if (c >= 0 && c < g.inChannels)
      dropInput[size_t(c)] = true;
  for (int64_t k : facts.unreadOutputChannels)
    if (k >= 0 && k < g.outChannels)
      dropOutput[size_t(k)] = true;

  std::vector<float> weights = layer.weights;
  int64_t removed = 0;
  for (size_t k = 0; k < size_t(g.outChannels); ++k) {
    const size_t group = k / perGroupOut;
    for (size_t c = 0; c < perGroupIn; ++c) {
      if (!dropOutput[k] && !dropInput[group * perGroupIn + c])
        continue;
      float *filter = weights.data() + (k * perGroupIn + c) * taps;
      for (float *w = filter; w != filter + taps; ++w) {
        removed += *w != 0.0f;
        *w = 0.0f;
      }
    }
  }
  layer.removedNonzeros = removed;
  if (removed > 0) {
    layer.modelWeights = std::move(layer.weights);
    layer.weights = std::move(weights);
  }
}

} // namespace convgen
