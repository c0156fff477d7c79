// Layers for execution tests: geometries built field by field and weights
// pruned with a chosen pattern and sparsity, all from a seed, so a failing
// case can be rebuilt exactly from what the test prints.
#pragma once

#include "codegen/LayerGenerator.h"
#include "model/ModelFile.h"

#include <cstdint>
#include <random>
#include <string>

namespace convgen::test {

/// How the zeros are laid out in the OIHW weights.
enum class SparsityPattern {
  Uniform,       ///< each weight zero independently
  WholeFilters,  ///< whole output channels zero
  InputChannels, ///< whole input channels zero in every filter
  TwoOfFour,     ///< 2:4 along the reduction (c, r, s), more zeros on top past 50 %
  Blocks4x4,     ///< 4x4 blocks of the (filter, reduction) matrix
};
const char *patternName(SparsityPattern pattern);

struct GeometrySpec {
  int64_t inChannels, outChannels, height, width;
  HW kernel, stride, padding, dilation;
  int64_t groups;
};

ConvGeometry makeGeometry(const GeometrySpec &spec, int64_t batch, Activation activation,
                          bool bias);

/// Values uniform in [-2, 2] (large enough that ReLU6 clamps some outputs),
/// zeroed by \p pattern at about \p sparsity (exactly 0 and 1 are exact).
std::vector<float> prunedWeights(const ConvGeometry &geometry, SparsityPattern pattern,
                                 double sparsity, std::mt19937_64 &random);

/// New values on the same mask: every nonzero stays nonzero.
std::vector<float> revalued(const std::vector<float> &weights, std::mt19937_64 &random);

ConvLayer makeLayer(const std::string &name, const ConvGeometry &geometry,
                    std::vector<float> weights, std::mt19937_64 &random);

/// A small 3x3 layer (4 input channels, 11x10, padding 1, batch 2, ReLU6,
/// bias) pruned uniformly at \p sparsity: the runtime tests' workhorse.
ConvLayer smallPrunedLayer(const std::string &name, double sparsity, uint64_t seed,
                           int64_t outChannels = 8);

/// The most sparse code (nonzeros x BW) one channel block of \p layer has
/// under the default tiling: as a per-kernel budget, it splits the layer
/// wherever it has more code than that.
/// (At the tiling \p options give the layer: a split test narrows the
/// channel blocks with `--tiling bk=4`, so the layer has several to split.)
int64_t largestChannelBlockCode(const ConvLayer &layer, const GenerateOptions &options = {});

} // namespace convgen::test
