#include "support/ConvCases.h"

#include "codegen/LayerGenerator.h"
#include "codegen/TemplateSpec.h"

#include <algorithm>

namespace convgen::test {

const char *patternName(SparsityPattern pattern) {
  switch (pattern) {
  case SparsityPattern::Uniform:
    return "uniform";
  case SparsityPattern::WholeFilters:
    return "filters";
  case SparsityPattern::InputChannels:
    return "inchannels";
  case SparsityPattern::TwoOfFour:
    return "2of4";
  case SparsityPattern::Blocks4x4:
    return "blocks4x4";
  }
  return "?";
}

ConvGeometry makeGeometry(const GeometrySpec &spec, int64_t batch, Activation activation,
                          bool bias) {
  ConvGeometry g;
  g.batch = batch;
  g.inChannels = spec.inChannels;
  g.outChannels = spec.outChannels;
  g.inSize = {spec.height, spec.width};
  g.kernel = spec.kernel;
  g.stride = spec.stride;
  g.padding = spec.padding;
  g.dilation = spec.dilation;
  g.groups = spec.groups;
  g.activation = activation;
  g.hasBias = bias;
  return g;
}

static float nonzeroValue(std::mt19937_64 &random) {
  std::uniform_real_distribution<float> value(0.05f, 2.0f);
  return std::bernoulli_distribution(0.5)(random) ? value(random) : -value(random);
}

std::vector<float> prunedWeights(const ConvGeometry &g, SparsityPattern pattern, double sparsity,
                                 std::mt19937_64 &random) {
  const int64_t filters = g.outChannels, channels = g.inChannelsPerGroup();
  const int64_t taps = g.kernel.h * g.kernel.w, reduction = channels * taps;
  std::vector<float> weights(size_t(filters * reduction));
  for (float &w : weights)
    w = nonzeroValue(random);
  auto zeroWithProbability = [&random](double p) {
    return p >= 1.0 || (p > 0.0 && std::uniform_real_distribution<double>(0, 1)(random) < p);
  };
  switch (pattern) {
  case SparsityPattern::Uniform:
    for (float &w : weights)
      if (zeroWithProbability(sparsity))
        w = 0;
    break;
  case SparsityPattern::WholeFilters:
    for (int64_t k = 0; k < filters; ++k)
      if (zeroWithProbability(sparsity))
        std::fill_n(weights.begin() + k * reduction, reduction, 0.0f);
    break;
  case SparsityPattern::InputChannels:
    for (int64_t c = 0; c < channels; ++c)
      if (zeroWithProbability(sparsity))
        for (int64_t k = 0; k < filters; ++k)
          std::fill_n(weights.begin() + k * reduction + c * taps, taps, 0.0f);
    break;
  case SparsityPattern::TwoOfFour: {
    // Below 50 % only some groups of four are 2:4; above, the survivors of
    // every 2:4 group are pruned further.
    double groupShare = std::min(1.0, 2 * sparsity);
    double extra = sparsity > 0.5 ? (sparsity - 0.5) / 0.5 : 0.0;
    for (int64_t k = 0; k < filters; ++k)
      for (int64_t i = 0; i < reduction; i += 4) {
        int64_t size = std::min<int64_t>(4, reduction - i);
        float *group = weights.data() + k * reduction + i;
        if (zeroWithProbability(groupShare)) {
          std::vector<int64_t> order(static_cast<size_t>(size));
          for (int64_t j = 0; j < size; ++j)
            order[size_t(j)] = j;
          std::shuffle(order.begin(), order.end(), random);
          for (int64_t j = 0; j < std::min<int64_t>(2, size); ++j)
            group[order[size_t(j)]] = 0;
        }
        for (int64_t j = 0; j < size; ++j)
          if (zeroWithProbability(extra))
            group[j] = 0;
      }
    break;
  }
  case SparsityPattern::Blocks4x4:
    for (int64_t k0 = 0; k0 < filters; k0 += 4)
      for (int64_t i0 = 0; i0 < reduction; i0 += 4)
        if (zeroWithProbability(sparsity))
          for (int64_t k = k0; k < std::min(k0 + 4, filters); ++k)
            for (int64_t i = i0; i < std::min(i0 + 4, reduction); ++i)
              weights[size_t(k * reduction + i)] = 0;
    break;
  }
  return weights;
}

std::vector<float> revalued(const std::vector<float> &weights, std::mt19937_64 &random) {
  std::vector<float> result = weights;
  for (float &w : result)
    if (w != 0)
      w = nonzeroValue(random);
  return result;
}

ConvLayer makeLayer(const std::string &name, const ConvGeometry &geometry,
                    std::vector<float> weights, std::mt19937_64 &random) {
  ConvLayer layer;
  layer.name = name;
  layer.weightSource = name + ".weight";
  layer.geometry = geometry;
  layer.weights = std::move(weights);
  if (geometry.hasBias) {
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    layer.bias.resize(size_t(geometry.outChannels));
    for (float &b : layer.bias)
      b = value(random);
  }
  return layer;
}

ConvLayer smallPrunedLayer(const std::string &name, double sparsity, uint64_t seed,
                           int64_t outChannels) {
  std::mt19937_64 random(seed);
  ConvGeometry g = makeGeometry({4, outChannels, 11, 10, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1}, 2,
                                Activation::Relu6, true);
  return makeLayer(name, g, prunedWeights(g, SparsityPattern::Uniform, sparsity, random), random);
}

int64_t largestChannelBlockCode(const ConvLayer &layer, const GenerateOptions &options) {
  Tiling tiling = decideTiling(layer, options).tiling;
  const int64_t blocks = layer.geometry.outChannels / tiling.channelsPerThread;
  const int64_t perBlock = int64_t(layer.weights.size()) / blocks;
  int64_t largest = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    auto begin = layer.weights.begin() + b * perBlock;
    largest = std::max<int64_t>(
        largest, std::count_if(begin, begin + perBlock, [](float w) { return w != 0; }) *
                     tiling.spatialPerThread());
  }
  return largest;
}

} // namespace convgen::test
