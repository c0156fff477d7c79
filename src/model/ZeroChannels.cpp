#include "model/ZeroChannels.h"

#include <algorithm>
#include <optional>
#include <set>

namespace convgen {

namespace {

using Node = ChannelGraph::Node;
using Mask = std::vector<bool>;
/// A channel that holds one value at every position. `summed`: the value
/// is a sum of two constants (an Add), exact in float but not in every
/// precision a runtime may add them in, so it is not added again.
struct Constant {
  double value = 0;
  bool summed = false;
};
/// Per channel, the value it holds everywhere, where known.
using Constants = std::vector<std::optional<Constant>>;

enum class Kind { Conv, ChannelWise, Concat, Add, Unknown };

/// Per tensor of known channel count: which channels are constant (zero
/// among them), which read.
struct Masks {
  std::map<std::string, Constants> constant;
  std::map<std::string, Mask> read;
};

int64_t channelsOf(const ChannelGraph &graph, const std::string &tensor) {
  auto it = graph.channels.find(tensor);
  return it == graph.channels.end() ? -1 : it->second;
}

bool knownAll(const ChannelGraph &graph, const std::vector<std::string> &tensors) {
  return std::all_of(tensors.begin(), tensors.end(),
                     [&](const std::string &t) { return channelsOf(graph, t) > 0; });
}

bool isConvShaped(const ChannelGraph &graph, const Node &node) {
  if (node.inputs.size() != 1 || node.outputs.size() != 1 || node.groups < 1)
    return false;
  const int64_t in = channelsOf(graph, node.inputs[0]), out = channelsOf(graph, node.outputs[0]);
  if (in <= 0 || out <= 0 || in % node.groups || out % node.groups ||
      int64_t(node.filterReads.size()) != out ||
      (!node.constantOutput.empty() && int64_t(node.constantOutput.size()) != out))
    return false;
  return std::all_of(node.filterReads.begin(), node.filterReads.end(),
                     [&](const Mask &row) { return int64_t(row.size()) == in / node.groups; });
}

/// Which rule a node follows; one whose shapes do not fit its rule is Unknown.
Kind kindOf(const ChannelGraph &graph, const Node &node) {
  static const std::set<std::string> channelWise = {
      "Relu",     "MaxPool", "AveragePool",        "GlobalMaxPool", "GlobalAveragePool",
      "Identity", "Clip",    "BatchNormalization", "Dropout"};
  if (node.op == "Conv")
    return isConvShaped(graph, node) ? Kind::Conv : Kind::Unknown;
  if (!knownAll(graph, node.inputs) || !knownAll(graph, node.outputs) || node.outputs.size() != 1 ||
      node.inputs.empty())
    return Kind::Unknown;
  const int64_t out = channelsOf(graph, node.outputs[0]);
  if (channelWise.count(node.op)) {
    // Clip's and BatchNormalization's extra inputs are parameters, not data.
    if (node.inputs.size() != 1 || channelsOf(graph, node.inputs[0]) != out)
      return Kind::Unknown;
    if (node.op == "BatchNormalization" && int64_t(node.channelMapsZeroToZero.size()) != out)
      return Kind::Unknown;
    return Kind::ChannelWise;
  }
  if (node.op == "Concat") {
    int64_t sum = 0;
    for (const std::string &input : node.inputs)
      sum += channelsOf(graph, input);
    return node.axis == 1 && sum == out ? Kind::Concat : Kind::Unknown;
  }
  if (node.op == "Add" || node.op == "Sum") {
    for (const std::string &input : node.inputs)
      if (channelsOf(graph, input) != out) // no broadcasting over channels
        return Kind::Unknown;
    return Kind::Add;
  }
  return Kind::Unknown;
}

/// What a channel-wise node makes of a channel that is the constant
/// \p value everywhere: the value it then holds everywhere, or nullopt.
/// Relu, max pooling (pads are -inf), Identity keep a constant exactly;
/// the others only keep 0 (an average over padding, a dropout's scale or a
/// normalisation computed in another precision would not be exact).
std::optional<Constant> channelWise(const Node &node, size_t c, Constant in) {
  const double value = in.value;
  if (node.op == "Relu")
    return value <= 0.0 ? Constant{0.0, false} : in; // a zero is exact in any precision
  if (node.op == "MaxPool" || node.op == "GlobalMaxPool" || node.op == "Identity")
    return in;
  const bool keepsZero = node.op == "Clip"                 ? node.mapsZeroToZero
                         : node.op == "BatchNormalization" ? bool(node.channelMapsZeroToZero[c])
                                                           : true; // pools, Dropout
  if (value == 0.0 && keepsZero)
    return Constant{0.0, false};
  return std::nullopt;
}

/// Sets \p values[i] to \p value where it was unknown; true if it changed.
bool learn(Constants &values, size_t i, std::optional<Constant> value) {
  if (!value || values[i])
    return false;
  values[i] = value;
  return true;
}

bool isZero(const std::optional<Constant> &constant) { return constant && constant->value == 0.0; }

/// One forward sweep: channels that hold one value everywhere, from inputs
/// that are zero (a Conv) or constant (the rest).
bool forward(const ChannelGraph &graph, const std::vector<Kind> &kinds, Masks &m) {
  bool changed = false;
  for (size_t n = 0; n < graph.nodes.size(); ++n) {
    const Node &node = graph.nodes[n];
    switch (kinds[n]) {
    case Kind::Conv: {
      // Only zero inputs: a constant nonzero input is not constant in the
      // output where the window overlaps the zero padding.
      const Constants &in = m.constant.at(node.inputs[0]);
      Constants &out = m.constant.at(node.outputs[0]);
      const size_t perGroupIn = in.size() / size_t(node.groups);
      const size_t perGroupOut = out.size() / size_t(node.groups);
      for (size_t k = 0; k < out.size(); ++k) {
        const size_t group = k / perGroupOut;
        bool constant = true;
        for (size_t c = 0; constant && c < perGroupIn; ++c)
          constant = !node.filterReads[k][c] || isZero(in[group * perGroupIn + c]);
        if (constant)
          changed |= learn(out, k, Constant{node.constantOutput.empty() ? 0.0 : node.constantOutput[k]});
      }
      break;
    }
    case Kind::ChannelWise: {
      const Constants &in = m.constant.at(node.inputs[0]);
      Constants &out = m.constant.at(node.outputs[0]);
      for (size_t c = 0; c < out.size(); ++c)
        if (in[c])
          changed |= learn(out, c, channelWise(node, c, *in[c]));
      break;
    }
    case Kind::Concat: {
      Constants &out = m.constant.at(node.outputs[0]);
      size_t offset = 0;
      for (const std::string &input : node.inputs) {
        const Constants &in = m.constant.at(input);
        for (size_t c = 0; c < in.size(); ++c)
          changed |= learn(out, offset + c, in[c]);
        offset += in.size();
      }
      break;
    }
    case Kind::Add: {
      // Two constants add to one constant. One rounding, in any precision,
      // keeps the sign of the exact sum (rounding is monotonic and 0 is
      // exact), so whether it is <= 0 is known; a sum of sums is not (the
      // roundings differ between precisions), nor a sum of three.
      Constants &out = m.constant.at(node.outputs[0]);
      for (size_t c = 0; c < out.size(); ++c) {
        bool allZero = true, addable = node.inputs.size() == 2;
        double sum = 0.0;
        for (const std::string &input : node.inputs) {
          const std::optional<Constant> &in = m.constant.at(input)[c];
          allZero = allZero && isZero(in);
          addable = addable && in && (!in->summed || in->value == 0.0);
          if (in)
            sum += in->value;
        }
        if (allZero)
          changed |= learn(out, c, Constant{0.0, false});
        else if (addable)
          changed |= learn(out, c, Constant{double(float(sum)), sum != 0.0});
      }
      break;
    }
    case Kind::Unknown:
      break;
    }
  }
  return changed;
}

/// Sets \p mask[i] where \p value; true if it changed anything.
bool raise(Mask &mask, size_t i, bool value) {
  if (!value || mask[i])
    return false;
  mask[i] = true;
  return true;
}

/// One backward sweep: channels read by someone who needs them.
bool backward(const ChannelGraph &graph, const std::vector<Kind> &kinds, Masks &m) {
  bool changed = false;
  for (size_t n = graph.nodes.size(); n-- > 0;) {
    const Node &node = graph.nodes[n];
    switch (kinds[n]) {
    case Kind::Conv: {
      // Input channel c is read through a nonzero weight of an output
      // channel someone reads, unless c is known zero (its weights are skipped).
      const Mask &outRead = m.read.at(node.outputs[0]);
      const Constants &inValues = m.constant.at(node.inputs[0]);
      Mask &inRead = m.read.at(node.inputs[0]);
      const size_t perGroupIn = inRead.size() / size_t(node.groups);
      const size_t perGroupOut = outRead.size() / size_t(node.groups);
      for (size_t k = 0; k < outRead.size(); ++k) {
        if (!outRead[k])
          continue;
        const size_t group = k / perGroupOut;
        for (size_t c = 0; c < perGroupIn; ++c) {
          const size_t channel = group * perGroupIn + c;
          changed |= raise(inRead, channel, node.filterReads[k][c] && !isZero(inValues[channel]));
        }
      }
      break;
    }
    case Kind::ChannelWise:
    case Kind::Add: {
      const Mask &outRead = m.read.at(node.outputs[0]);
      for (const std::string &input : node.inputs) {
        Mask &inRead = m.read.at(input);
        for (size_t c = 0; c < inRead.size(); ++c)
          changed |= raise(inRead, c, outRead[c]);
      }
      break;
    }
    case Kind::Concat: {
      const Mask &outRead = m.read.at(node.outputs[0]);
      size_t offset = 0;
      for (const std::string &input : node.inputs) {
        Mask &inRead = m.read.at(input);
        for (size_t c = 0; c < inRead.size(); ++c)
          changed |= raise(inRead, c, outRead[offset + c]);
        offset += inRead.size();
      }
      break;
    }
    case Kind::Unknown:
      for (const std::string &input : node.inputs)
        if (auto it = m.read.find(input); it != m.read.end())
          for (size_t c = 0; c < it->second.size(); ++c)
            changed |= raise(it->second, c, true);
      break;
    }
  }
  return changed;
}

std::vector<int64_t> zeroIndices(const Constants &values) {
  std::vector<int64_t> indices;
  for (size_t i = 0; i < values.size(); ++i)
    if (isZero(values[i]))
      indices.push_back(int64_t(i));
  return indices;
}

std::vector<int64_t> indicesOf(const Mask &mask, bool value) {
  std::vector<int64_t> indices;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] == value)
      indices.push_back(int64_t(i));
  return indices;
}

} // namespace

std::map<std::string, ConvChannelFacts> propagateZeroChannels(const ChannelGraph &graph) {
  Masks m;
  for (const auto &[tensor, channels] : graph.channels)
    if (channels > 0) {
      m.constant[tensor] = Constants(size_t(channels));
      m.read[tensor] = Mask(size_t(channels), false);
    }
  for (const std::string &output : graph.graphOutputs)
    if (auto it = m.read.find(output); it != m.read.end())
      it->second.assign(it->second.size(), true);
  std::vector<Kind> kinds;
  for (const Node &node : graph.nodes)
    kinds.push_back(kindOf(graph, node));
  // Zeros depend only on zeros, reads on reads and the final zeros: each
  // direction grows to its own fixed point, the forward one first.
  while (forward(graph, kinds, m)) {
  }
  while (backward(graph, kinds, m)) {
  }
  std::map<std::string, ConvChannelFacts> facts;
  for (size_t n = 0; n < graph.nodes.size(); ++n) {
    if (kinds[n] != Kind::Conv)
      continue;
    const Node &node = graph.nodes[n];
    facts[node.name] = {zeroIndices(m.constant.at(node.inputs[0])),
                        zeroIndices(m.constant.at(node.outputs[0])),
                        indicesOf(m.read.at(node.outputs[0]), false)};
  }
  return facts;
}

} // namespace convgen
