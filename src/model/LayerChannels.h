// A layer's side of sparsity that crosses layers (model/ZeroChannels): its
// node of the channel graph, read from its weights, and what the facts the
// graph gives back change in the code it gets.
//
// Input channels known zero multiply zeros, whatever their weights; output
// channels nobody reads need not be computed. Their weights are set to zero
// in the weights the code is built from, so the zero-weight passes delete
// their instructions like any other zero's. The bias is kept: an unread
// channel holds the activation of its bias, not the convolution's value.
#pragma once

#include "model/ModelFile.h"
#include "model/ZeroChannels.h"

#include <string>

namespace convgen {

/// \p layer as a Conv node of the channel graph, from \p input to \p output:
/// which (output, input) channel pairs have a nonzero weight, and what each
/// output channel is where every input is zero (the activation of the bias).
ChannelGraph::Node layerChannelNode(const ConvLayer &layer, const std::string &input,
                                    const std::string &output);

/// Records \p facts in \p layer and zeroes the weights they make useless,
/// keeping the model's own in layer.modelWeights when any changes.
void applyChannelFacts(ConvLayer &layer, const ConvChannelFacts &facts);

} // namespace convgen
