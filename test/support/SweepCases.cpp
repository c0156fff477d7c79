#include "support/SweepCases.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

namespace convgen::test {

namespace {
const std::vector<GeometrySpec> Geometries = {
    // C, K, H, W, kernel, stride, padding, dilation, groups
    {3, 5, 7, 9, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1},    // K=5: one channel per thread
    {4, 6, 9, 8, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 1},    // 1x1
    {6, 8, 11, 10, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 2},  // groups 2, stride 2
    {8, 8, 9, 9, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 8},    // depthwise
    {5, 7, 13, 12, {1, 7}, {1, 1}, {0, 3}, {1, 1}, 1},  // 1x7
    {5, 4, 12, 13, {7, 1}, {1, 1}, {3, 0}, {1, 1}, 1},  // 7x1
    {3, 8, 15, 15, {7, 7}, {2, 2}, {3, 3}, {1, 1}, 1},  // 7x7 stride 2
    {4, 4, 10, 11, {5, 5}, {1, 1}, {2, 2}, {2, 2}, 1},  // 5x5 dilation 2
    {6, 9, 8, 7, {2, 2}, {3, 3}, {0, 0}, {1, 1}, 3},    // even kernel, stride 3, groups 3
    {2, 12, 9, 9, {3, 3}, {1, 1}, {3, 3}, {2, 2}, 1},   // padding 3
    {12, 6, 6, 6, {3, 3}, {1, 1}, {0, 0}, {1, 1}, 3},   // no padding, groups 3
    {6, 6, 17, 5, {5, 3}, {2, 1}, {2, 1}, {1, 1}, 1},   // 5x3, mixed strides
    {16, 16, 5, 5, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 16}, // depthwise stride 2
    {7, 10, 1, 21, {1, 5}, {1, 1}, {0, 2}, {1, 1}, 1},  // one row
    {1, 4, 8, 8, {4, 4}, {2, 2}, {1, 1}, {1, 1}, 1},    // even kernel, one channel
    {10, 20, 7, 7, {1, 1}, {2, 2}, {0, 0}, {1, 1}, 2},  // 1x1 stride 2, groups 2
    {3, 4, 6, 3, {3, 3}, {1, 1}, {0, 0}, {1, 1}, 1},    // output 1 column wide
    {4, 8, 9, 14, {3, 3}, {3, 2}, {2, 3}, {2, 1}, 2},   // odd everything
};

const double Sparsities[] = {0.0, 0.5, 0.9, 0.99, 1.0};
const SparsityPattern Patterns[] = {SparsityPattern::Uniform, SparsityPattern::WholeFilters,
                                    SparsityPattern::InputChannels, SparsityPattern::TwoOfFour,
                                    SparsityPattern::Blocks4x4};
const Path Paths[] = {Path::Constant, Path::Global, Path::Baked};

} // namespace

const char *pathName(Path path) {
  switch (path) {
  case Path::Constant:
    return "constant";
  case Path::Global:
    return "global";
  case Path::Baked:
    return "baked";
  case Path::ValuesOnlyUpdate:
    return "valuesonly";
  case Path::DenseFallback:
    return "dense";
  case Path::Split:
    return "split";
  }
  return "?";
}

std::vector<SweepCase> sweepCases() {
  std::vector<SweepCase> cases;
  for (double sparsity : Sparsities)
    for (SparsityPattern pattern : Patterns)
      for (Path path : Paths)
        cases.push_back({int(cases.size()), sparsity, pattern, path});
  for (Path path : {Path::ValuesOnlyUpdate, Path::DenseFallback, Path::Split})
    for (SparsityPattern pattern : Patterns)
      for (double sparsity : {0.5, 0.9})
        cases.push_back({int(cases.size()), sparsity, pattern, path});
  return cases;
}

uint64_t sweepSeed() {
  const char *text = std::getenv("CONVGEN_SWEEP_SEED");
  return text ? std::strtoull(text, nullptr, 10) : 20261121;
}

std::string caseName(const SweepCase &c) {
  return "case" + std::to_string(c.index) + "_s" + std::to_string(int(c.sparsity * 100 + 0.5)) +
         "_" + patternName(c.pattern) + "_" + pathName(c.path);
}

void PrintTo(const SweepCase &c, std::ostream *out) { *out << caseName(c); }

SweepLayer makeSweepLayer(const SweepCase &c) {
  SweepLayer s;
  s.seed = sweepSeed() * 1000003 + uint64_t(c.index);
  std::mt19937_64 random(s.seed);
  const GeometrySpec &spec = Geometries[size_t(c.index) % Geometries.size()];
  const Activation activations[] = {Activation::None, Activation::Relu, Activation::Relu6};
  ConvGeometry geometry = makeGeometry(spec, 1 + c.index % 3, activations[c.index % 3],
                                       c.index % 4 != 3);
  s.layer = makeLayer(caseName(c), geometry,
                      prunedWeights(geometry, c.pattern, c.sparsity, random), random);
  std::ostringstream trace;
  trace << "seed " << sweepSeed() << " (case seed " << s.seed << "), " << caseName(c) << ": "
        << geometry.summary() << " C" << geometry.inChannels << " K" << geometry.outChannels
        << " " << geometry.inSize.h << "x" << geometry.inSize.w << " batch " << geometry.batch;
  s.trace = trace.str();

  GenerateOptions &options = s.options;
  options.runPtxas = false;
  options.bakeValues = c.path == Path::Baked;
  if (c.path == Path::Global)
    options.constantBankLimitBytes = 0;
  if (c.path == Path::DenseFallback)
    options.maxMultiplyAdds = 0;
  if (c.path == Path::Split) {
    // A budget of the largest channel block's code: the layer must split
    // wherever it has more code than that. Odd cases use the global path.
    // Channel blocks of 1 or 2: every geometry has several to split.
    options.tilingOverride = "bk=" + std::to_string(s.layer.geometry.outChannelsPerGroup() % 2 ? 1 : 2);
    s.largestBlockCode = largestChannelBlockCode(s.layer, options);
    options.maxMultiplyAdds = std::max<int64_t>(s.largestBlockCode, 1);
    options.maxKernelsPerLayer = 1024;
    if (c.index % 2)
      options.constantBankLimitBytes = 0;
  }
  if (c.path == Path::ValuesOnlyUpdate) {
    s.updated = s.layer;
    s.updated.weights = revalued(s.layer.weights, random);
  }
  return s;
}

} // namespace convgen::test
