// The tiling sweep: every tiling parameter, crossed with the sweep's
// geometries, in fp32 and fp16, run on the host executor against the
// reference convolution. Each case asks for a tiling and adapts it to the
// geometry (BK to a divisor of the channels per group, BW and BH to the
// output size); tilings a geometry cannot take (staging too big for shared
// memory) are left out when the cases are built. A failure prints the seed,
// the geometry and the tiling.
#include "codegen/LayerGenerator.h"
#include "support/ConvCases.h"
#include "support/SweepCases.h"
#include "verify/LayerVerifier.h"

#include <algorithm>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;

namespace {

const GeometrySpec Geometries[] = {
    // C, K, H, W, kernel, stride, padding, dilation, groups
    {3, 8, 7, 9, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1},
    {4, 6, 9, 8, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 1},   // 1x1, 6 channels: bk 2
    {6, 8, 11, 10, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 2}, // groups 2, stride 2
    {8, 8, 9, 9, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 8},   // depthwise
    {5, 8, 13, 12, {1, 7}, {1, 1}, {0, 3}, {1, 1}, 1}, // 1x7
    {4, 4, 10, 11, {5, 5}, {1, 1}, {2, 2}, {2, 2}, 1}, // 5x5 dilation 2
    {7, 10, 1, 21, {1, 5}, {1, 1}, {0, 2}, {1, 1}, 1}, // one row
    {3, 4, 6, 3, {3, 3}, {1, 1}, {0, 0}, {1, 1}, 1},   // output 1 column wide
    {4, 16, 9, 14, {3, 3}, {3, 2}, {2, 3}, {2, 1}, 2}, // odd everything
};

// What each case asks for, adapted to the geometry.
const char *const Tilings[] = {
    "bk=1,bw=1",
    "bk=8,bw=4,threads=32",
    "bk=2,bw=2,bh=2",
    "bn=2,bw=2",
    "bn=2,bh=2,bw=2,threads=64",
    "bh=4,bw=1",
    "bw=8",
    "stage=1,bw=2",
    "stage=1,bh=2,bw=2,threads=64",
    "stage=1,bk=1,bw=4,threads=32,weights=global",
    "cta-blocks=2,threads=32,bw=2",
    "cta-blocks=4,threads=32,bh=2",
    "skip=0,bw=4",
    "weights=baked,bh=2,bw=2",
    "weights=global,bn=4,bw=2",
    // The lean shapes: wide channel blocks, and the split reduction (parts
    // of unequal length where S does not divide the channels).
    "bk=32,bw=2",
    "bk=16,bw=2,split=2",
    "bk=8,bw=2,split=3,threads=32",
    "bk=4,bh=2,split=4,threads=64,weights=global",
    "bk=16,bn=2,split=2,weights=baked",
    // Trees of three rounds (the parts' sums meet in part 0 by a tree):
    // 5 and 7 parts, so the last round has a lone part.
    "bk=2,bw=2,split=5,threads=32",
    "bk=1,split=7,threads=32,weights=global",
};

struct TilingCase {
  int index;
  size_t geometry;
  Tiling tiling;
  DType dtype;
  int64_t batch;
  bool bias;
  SparsityPattern pattern;
  double sparsity;
};

ConvGeometry geometryOf(const TilingCase &c) {
  return makeGeometry(Geometries[c.geometry], c.batch, Activation::Relu6, c.bias);
}

/// The asked-for tiling, adapted to \p g; nullopt if \p g cannot take it.
std::optional<Tiling> adapt(const char *text, const ConvGeometry &g) {
  Tiling t = parseTiling(text);
  while (g.outChannelsPerGroup() % t.channelsPerThread)
    --t.channelsPerThread;
  t.outputsPerThread = int(std::min<int64_t>(t.outputsPerThread, g.outSize().w));
  t.rowsPerThread = int(std::min<int64_t>(t.rowsPerThread, g.outSize().h));
  while (t.spatialPerThread() > MaxOutputsPerThread)
    t.imagesPerThread /= 2;
  t.reductionSplits = int(std::min<int64_t>(t.reductionSplits, g.inChannelsPerGroup()));
  try {
    checkTiling(g, t, "case");
  } catch (const Error &) {
    return std::nullopt;
  }
  return t;
}

std::vector<TilingCase> tilingCases() {
  std::vector<TilingCase> cases;
  for (size_t tiling = 0; tiling < std::size(Tilings); ++tiling)
    for (size_t geometry = 0; geometry < std::size(Geometries); ++geometry) {
      TilingCase c;
      c.index = int(cases.size());
      c.geometry = geometry;
      // Chosen so that dtype, bias, pattern and batch vary independently
      // enough that each tiling meets each of them.
      c.dtype = (tiling + geometry) % 2 ? DType::F16 : DType::F32;
      c.batch = 1 + int64_t((tiling + geometry) % 3);
      c.bias = (tiling / 2 + geometry) % 3 != 0;
      c.pattern = (tiling + geometry / 2) % 2 ? SparsityPattern::InputChannels
                                              : SparsityPattern::Uniform;
      // Whole input channels at 90 % would leave most few-channel layers empty.
      c.sparsity = c.pattern == SparsityPattern::InputChannels || geometry % 3 == 0 ? 0.5 : 0.9;
      std::optional<Tiling> adapted = adapt(Tilings[tiling], geometryOf(c));
      if (!adapted)
        continue;
      c.tiling = *adapted;
      cases.push_back(c);
    }
  return cases;
}

std::string tilingCaseName(const TilingCase &c) {
  std::string name = "case" + std::to_string(c.index) + "_" + dtypeName(c.dtype) + "_";
  for (char ch : c.tiling.describe())
    name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name;
}

class TilingSweep : public ::testing::TestWithParam<TilingCase> {};

TEST_P(TilingSweep, KernelMatchesReference) {
  const TilingCase &c = GetParam();
  const uint64_t seed = sweepSeed() * 7919 + uint64_t(c.index);
  std::mt19937_64 random(seed);
  ConvGeometry g = geometryOf(c);
  std::vector<float> weights = prunedWeights(g, c.pattern, c.sparsity, random);
  // Whole input channels at random can prune a few-channel layer empty, and
  // an empty layer computes only its bias: keep one weight.
  if (std::all_of(weights.begin(), weights.end(), [](float w) { return w == 0.0f; }))
    weights[weights.size() / 2] = 0.75f;
  ConvLayer layer = makeLayer(tilingCaseName(c), g, std::move(weights), random);
  SCOPED_TRACE("seed " + std::to_string(sweepSeed()) + " (case seed " + std::to_string(seed) +
               "): " + g.summary() + " C" + std::to_string(g.inChannels) + " K" +
               std::to_string(g.outChannels) + " batch " + std::to_string(c.batch) + ", " +
               dtypeName(c.dtype) + ", " + patternName(c.pattern) + " " +
               std::to_string(c.sparsity) + (c.bias ? ", bias, " : ", ") + c.tiling.describe());

  GenerateOptions options;
  options.runPtxas = false;
  options.dtype = c.dtype;
  options.tilingOverride = c.tiling.describe();
  KernelGenerator generator(options);
  BuiltKernel kernel = generator.build(layer);
  EXPECT_EQ(kernel.info.tiling, c.tiling);
  EXPECT_EQ(kernel.info.tilingSource, "user");
  EXPECT_EQ(kernel.info.mode, "sparse");
  // A layer with no nonzero computes only its bias: it would test little.
  EXPECT_GT(kernel.info.nonzeros, 0) << "the case's layer is empty";
  // nnz x the outputs per thread, less any LLVM proves to read only padding
  // (where a tile spans the whole output, its column offsets are constants).
  EXPECT_LE(kernel.info.multiplyAdds, kernel.info.nonzeros * c.tiling.spatialPerThread());
  EXPECT_GE(kernel.info.multiplyAdds, kernel.info.nonzeros * c.tiling.spatialPerThread() * 9 / 10);

  VerifyOptions verify;
  verify.batch = c.batch;
  verify.seed = seed;
  verify.allBlocks = true;
  verify.hostThreads = 1; // ctest already runs tests in parallel
  VerifyReport report = verifyKernel(layer, kernel, verify);
  EXPECT_TRUE(report.passed()) << report.failures << " bad outputs; first: " << report.firstFailure;
  EXPECT_GT(report.outputsChecked, 0);
}

// Six and eight parts (the geometries above have at most 7 input
// channels): three rounds over three and four rows, each row reused by the
// part that read it in the round before. (The host runs a block's threads in
// order between barriers: this checks the rows, not timing.)
TEST(TilingSweepSplit, ManyPartsReuseTheirRowsAndMatchTheReference) {
  for (const char *text : {"bk=4,bw=2,split=8,threads=32", "bk=2,split=6,threads=64,weights=baked"}) {
    const uint64_t seed = sweepSeed() * 7919 + 100003;
    std::mt19937_64 random(seed);
    ConvGeometry g = makeGeometry({24, 8, 7, 6, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1}, 2,
                                  Activation::Relu, true);
    ConvLayer layer = makeLayer("split", g, prunedWeights(g, SparsityPattern::Uniform, 0.7, random),
                                random);
    SCOPED_TRACE(std::string(text) + ", seed " + std::to_string(seed));
    GenerateOptions options;
    options.runPtxas = false;
    options.tilingOverride = text;
    KernelGenerator generator(options);
    BuiltKernel kernel = generator.build(layer);
    ASSERT_EQ(kernel.info.mode, "sparse");
    ASSERT_GE(kernel.info.tiling.reductionSplits, 6);
    VerifyOptions verify;
    verify.batch = 2;
    verify.seed = seed;
    verify.allBlocks = true;
    verify.hostThreads = 1;
    VerifyReport report = verifyKernel(layer, kernel, verify);
    EXPECT_TRUE(report.passed()) << report.failures << " bad outputs; first: " << report.firstFailure;
    EXPECT_GT(report.outputsChecked, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, TilingSweep, ::testing::ValuesIn(tilingCases()),
                         [](const ::testing::TestParamInfo<TilingCase> &info) {
                           return tilingCaseName(info.param);
                         });

} // namespace
