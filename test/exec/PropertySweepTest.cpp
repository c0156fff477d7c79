// The property sweep: generated kernels, run on the host executor, match
// the reference convolution across crossed geometries, sparsities, pruning
// patterns and weight paths, and after a values-only update.
//
// Every (sparsity x pattern x path) combination is one case; the cases walk
// a list of geometries that together cover kernels 1-7 (1x7, 7x1, even
// sizes), strides 1-3, padding 0-3, dilation 1-2, groups 1, 2, 3 and
// depthwise, odd spatial sizes, outputs narrower than a tile, and channel
// counts that are not multiples of the tiles; batch cycles 1-3. All of it is
// drawn from one seed (CONVGEN_SWEEP_SEED overrides it), and a failure
// prints the seed and the case.
#include "codegen/LayerGenerator.h"
#include "support/ConvCases.h"
#include "verify/LayerVerifier.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>

using namespace convgen;
using namespace convgen::test;

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
enum class Path { Constant, Global, Baked, ValuesOnlyUpdate, DenseFallback, Split };
const Path Paths[] = {Path::Constant, Path::Global, Path::Baked};

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

struct SweepCase {
  int index;
  double sparsity;
  SparsityPattern pattern;
  Path path;
};

/// The crossed cases, then values-only updates, dense fallbacks and layers
/// split across kernels for every pattern at 50 and 90 %.
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

/// Names the case in test listings instead of dumping its bytes.
void PrintTo(const SweepCase &c, std::ostream *out) { *out << caseName(c); }

class PropertySweep : public ::testing::TestWithParam<SweepCase> {};

TEST_P(PropertySweep, KernelMatchesReference) {
  const SweepCase &c = GetParam();
  const uint64_t seed = sweepSeed() * 1000003 + uint64_t(c.index);
  std::mt19937_64 random(seed);
  const GeometrySpec &spec = Geometries[size_t(c.index) % Geometries.size()];
  const Activation activations[] = {Activation::None, Activation::Relu, Activation::Relu6};
  ConvGeometry geometry = makeGeometry(spec, 1 + c.index % 3, activations[c.index % 3],
                                       c.index % 4 != 3);
  ConvLayer layer = makeLayer(caseName(c), geometry,
                              prunedWeights(geometry, c.pattern, c.sparsity, random), random);
  std::ostringstream trace;
  trace << "seed " << sweepSeed() << " (case seed " << seed << "), " << caseName(c) << ": "
        << geometry.summary() << " C" << geometry.inChannels << " K" << geometry.outChannels
        << " " << geometry.inSize.h << "x" << geometry.inSize.w << " batch " << geometry.batch;
  SCOPED_TRACE(trace.str());

  GenerateOptions options;
  options.runPtxas = false;
  options.bakeValues = c.path == Path::Baked;
  if (c.path == Path::Global)
    options.constantBankLimitBytes = 0;
  if (c.path == Path::DenseFallback)
    options.maxMultiplyAdds = 0;
  int64_t largestBlockCode = 0;
  if (c.path == Path::Split) {
    // A budget of the largest channel block's code: the layer must split
    // wherever it has more code than that. Odd cases use the global path.
    largestBlockCode = largestChannelBlockCode(layer);
    options.maxMultiplyAdds = std::max<int64_t>(largestBlockCode, 1);
    options.maxKernelsPerLayer = 1024;
    if (c.index % 2)
      options.constantBankLimitBytes = 0;
  }
  KernelGenerator generator(options);
  BuiltKernel kernel = generator.build(layer);
  // A budget of 0 sends every layer with a nonzero weight to the dense path.
  const bool expectDense = c.path == Path::DenseFallback && kernel.info.nonzeros > 0;
  EXPECT_EQ(kernel.info.mode, expectDense ? "dense" : "sparse");
  if (c.path == Path::Split && kernel.info.multiplyAdds > largestBlockCode) {
    EXPECT_GT(kernel.info.kernels.size(), 1u);
  }

  if (c.path == Path::ValuesOnlyUpdate) {
    // Next pruning round, same mask: the old code with only the new packed
    // values must compute the new layer.
    ConvLayer updated = layer;
    updated.weights = revalued(layer.weights, random);
    BuiltKernel rebuilt = generator.build(updated);
    kernel.arrayValues = rebuilt.arrayValues;
    layer = std::move(updated);
  }

  VerifyOptions verify;
  verify.batch = geometry.batch;
  verify.seed = seed;
  verify.allBlocks = true;
  verify.hostThreads = 1; // ctest already runs tests in parallel
  VerifyReport report = verifyKernel(layer, kernel, verify);
  EXPECT_TRUE(report.passed()) << report.failures << " bad outputs; first: "
                               << report.firstFailure;
  EXPECT_GT(report.outputsChecked, 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, PropertySweep, ::testing::ValuesIn(sweepCases()),
                         [](const ::testing::TestParamInfo<SweepCase> &info) {
                           return caseName(info.param);
                         });

} // namespace
