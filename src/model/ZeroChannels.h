// Sparsity that crosses layers: which channels of a network's tensors are
// known to be zero, and which no consumer reads, propagated through the
// graph to a fixed point (SparTA's idea, for channels).
//
// Forward, a channel is zero when its producer makes it zero exactly: a
// Conv output channel whose nonzero weights all lie on zero input channels
// (zero padding stays zero) and whose constant (bias, then the activation
// fused into it) is zero; an operator that maps 0 to 0 channel by channel
// (Relu, a Clip whose range holds 0, MaxPool, AveragePool, their Global
// forms, Identity, Dropout, a BatchNormalization channel whose affine map
// keeps 0); a Concat shifts channels; an Add keeps a channel zero only
// where every input has it zero.
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
    /// any weight is nonzero; and per output channel, whether the output is
    /// nonzero where every input is zero: its bias after the activation
    /// fused into it, so relu(b) for b <= 0 counts as zero (empty: none is).
    std::vector<std::vector<bool>> filterReads;
    std::vector<bool> constantNonzero;
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
