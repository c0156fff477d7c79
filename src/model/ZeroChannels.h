// Sparsity that crosses layers: which channels of a network's tensors are
// known to be zero, and which no consumer reads, propagated through the
// graph to a fixed point (SparTA's idea, for channels).
//
// Forward, a channel is zero when its producer makes it zero exactly. To
// find such channels the pass tracks channels that hold one value at every
// position (zero among them), all exact in float:
//   - a Conv output channel whose nonzero weights all lie on zero input
//     channels holds its bias after the fused activation (zero padding
//     changes nothing: the weights it would meet are on zero channels);
//   - Relu, MaxPool and GlobalMaxPool (pads are -inf) and Identity keep a
//     constant; AveragePool, GlobalAveragePool, Dropout, a Clip whose range
//     holds 0 and a BatchNormalization channel whose affine map keeps 0 keep
//     only a zero;
//   - a Concat shifts channels;
//   - an Add of two constants is their float sum, so relu(a + b) is zero
//     where a + b <= 0 (a residual add behind two pruned filters); with more
//     inputs only an all-zero channel stays zero.
// A constant channel that is not zero is never used for anything else:
// folding it into a consumer's bias would not be exact under zero padding.
//
// Backward, a channel is unread when the tensor is no graph output and no
// consumer reads it: a Conv reads input channel c only through nonzero
// weights of output channels someone reads; channel-wise operators and Add
// read channel c only if their output's channel c is read; a Concat maps
// channels back to its inputs.
//
// Any operator not named here stops both: its outputs have no known zero
// channels and it reads every channel of every input. So an unknown
// operator is never unsafe. The graph is built by the model reader (ONNX)
// or by tests; it holds no tensor data, only what the rules need.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace convgen {

struct ChannelGraph {
  struct Node {
    std::string name; ///< for the result and messages
    std::string op;   ///< ONNX op type: "Conv", "Relu", "Concat", ...
    std::vector<std::string> inputs, outputs; ///< tensor names; data inputs only
    /// Conv: per output channel, per input channel of its group, whether
    /// any weight is nonzero; and per output channel, what the output is
    /// where every input it reads is zero: its bias after the activation
    /// fused into it, as the layer computes it in float (so relu(b) is 0
    /// for b <= 0); empty: 0.
    std::vector<std::vector<bool>> filterReads;
    std::vector<double> constantOutput;
    int64_t groups = 1;
    /// Concat: the axis (channels are axis 1 of NCHW).
    int64_t axis = 1;
    /// Clip: whether its range holds 0. BatchNormalization: per channel,
    /// whether it maps 0 to 0 (bias − scale·mean / sqrt(var + eps) == 0).
    bool mapsZeroToZero = false;
    std::vector<bool> channelMapsZeroToZero;
  };

  std::vector<Node> nodes;
  std::map<std::string, int64_t> channels; ///< per tensor; -1 or absent: unknown
  std::vector<std::string> graphOutputs;
};

/// What propagation found for one Conv node.
struct ConvChannelFacts {
  std::vector<int64_t> zeroInputChannels;    ///< of its input, known zero everywhere
  std::vector<int64_t> zeroOutputChannels;   ///< of its output, known zero everywhere
  std::vector<int64_t> unreadOutputChannels; ///< of its output, read by nobody

  bool empty() const {
    return zeroInputChannels.empty() && zeroOutputChannels.empty() && unreadOutputChannels.empty();
  }
};

/// Runs both directions to a fixed point. Keyed by Conv node name. Nodes
/// whose shapes do not fit the rules (channel counts that disagree, a
/// Concat on another axis) are treated as unknown operators.
std::map<std::string, ConvChannelFacts> propagateZeroChannels(const ChannelGraph &graph);

} // namespace convgen
