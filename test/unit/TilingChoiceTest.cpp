// The tiling heuristic, its candidates and the --tiling syntax: decisions
// checked as data, each with the reason it records.
#include "codegen/TilingChoice.h"
#include "support/Error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <set>

using namespace convgen;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

ConvGeometry conv(int64_t c, int64_t k, int64_t size, int64_t kernel, int64_t batch) {
  ConvGeometry g;
  g.batch = batch;
  g.inChannels = c;
  g.outChannels = k;
  g.inSize = {size, size};
  g.kernel = {kernel, kernel};
  g.padding = {kernel / 2, kernel / 2};
  return g;
}

TilingInputs inputs(const ConvGeometry &g, double density, int64_t batch) {
  TilingInputs in;
  in.nonzeros = int64_t(double(g.outChannels * g.inChannels * g.kernel.h * g.kernel.w) * density);
  in.batch = batch;
  return in;
}

std::string reasons(const TilingDecision &d) {
  std::string all;
  for (const std::string &line : d.reasons)
    all += line + "\n";
  return all;
}

TEST(TilingChoice, WideChannelBlocksAndTwoOutputsAtEveryBatch) {
  ConvGeometry g = conv(64, 64, 56, 3, 1); // ResNet-50 layer1 3x3
  for (int64_t batch : {1, 32}) {
    TilingDecision d = chooseTiling(g, inputs(g, 0.1, batch));
    EXPECT_EQ(d.tiling.channelsPerThread, 32) << reasons(d);
    EXPECT_EQ(d.tiling.outputsPerThread, 2);
    EXPECT_EQ(d.tiling.rowsPerThread, 1);
    EXPECT_THAT(reasons(d), HasSubstr("the widest channel block"));
  }
  ConvGeometry oneWide = conv(64, 48, 1, 3, 1); // a 1-wide map takes two rows if it can
  oneWide.inSize = {8, 1};
  oneWide.kernel = {3, 1};
  oneWide.padding = {1, 0};
  TilingDecision rows = chooseTiling(oneWide, inputs(oneWide, 0.1, 1));
  EXPECT_EQ(rows.tiling.rowsPerThread, 2);
  EXPECT_EQ(rows.tiling.channelsPerThread, 24) << "48 channels: 24 is the widest dividing (<= 32)";
}

TEST(TilingChoice, BatchOneSplitsLongReductionsOnly) {
  ConvGeometry g = conv(64, 64, 56, 3, 1); // 3136 x 2 channel blocks / 2 = 3136 threads
  TilingDecision one = chooseTiling(g, inputs(g, 0.1, 1));
  EXPECT_EQ(one.tiling.reductionSplits, 4)
      << "5 parts would reach the target, but 4 is the most that divides the 64 channels: "
      << reasons(one);
  EXPECT_THAT(reasons(one), HasSubstr("1 warp(s) on each of 4 schedulers of 132 SMs"));
  EXPECT_NO_THROW(checkTiling(g, one.tiling, "l"));
  TilingDecision many = chooseTiling(g, inputs(g, 0.1, 32));
  EXPECT_EQ(many.tiling.reductionSplits, 1) << "batch 32 fills the GPU";
  // A 1x1 layer over 128 channels at 90 % (the example's LFF_1): 13
  // nonzeros per output, split in 4 (estimated 0.35 per fma; simulated, the
  // split halves its cycles).
  ConvGeometry pointwise = conv(128, 64, 64, 1, 1);
  TilingDecision lff = chooseTiling(pointwise, inputs(pointwise, 0.1, 1));
  EXPECT_EQ(lff.tiling.reductionSplits, 4) << reasons(lff);
  EXPECT_EQ(lff.tiling.threadsX, 32) << "blocks of four warps with their parts";
  // Over 32 channels: about 3 nonzeros per output, too short to split.
  ConvGeometry narrow = conv(32, 64, 128, 1, 1);
  TilingDecision shortSum = chooseTiling(narrow, inputs(narrow, 0.1, 1));
  EXPECT_EQ(shortSum.tiling.reductionSplits, 1);
  EXPECT_THAT(reasons(shortSum), HasSubstr("would cost more than an estimated 0.40"));
  // A tiny layer: a launch costs more than the split saves.
  ConvGeometry tiny = conv(8, 8, 8, 3, 1);
  TilingDecision small = chooseTiling(tiny, inputs(tiny, 0.5, 1));
  EXPECT_EQ(small.tiling.reductionSplits, 1);
  EXPECT_THAT(reasons(small), HasSubstr("too small for a split to pay"));
}

TEST(TilingChoice, NarrowMapsShrinkTheBlockAndShareItBetweenChannelBlocks) {
  ConvGeometry g = conv(512, 512, 7, 3, 1); // 28 two-column tiles at batch 1
  // Little work (no split): the block shrinks to a warp and takes four
  // channel blocks.
  TilingDecision d = chooseTiling(g, inputs(g, 0.001, 1));
  EXPECT_EQ(d.tiling.threadsX, 32);
  EXPECT_EQ(d.tiling.channelBlocksPerCta, 4) << reasons(d);
  EXPECT_THAT(reasons(d), HasSubstr("28 spatial tiles fill less than 128 threads"));
  // Dense channel blocks: two of them side by side would not fit the
  // instruction-cache budget, so one per block.
  TilingDecision heavy = chooseTiling(g, inputs(g, 1.0, 1));
  EXPECT_EQ(heavy.tiling.channelBlocksPerCta, 1);
  // Enough work at batch 1: the reduction is split instead, within the
  // block's 1024 threads and 48 KiB.
  TilingDecision split = chooseTiling(g, inputs(g, 0.05, 1));
  EXPECT_GT(split.tiling.reductionSplits, 1) << reasons(split);
  EXPECT_EQ(split.tiling.channelBlocksPerCta, 1);
  EXPECT_NO_THROW(checkTiling(g, split.tiling, "l"));
}

TEST(TilingChoice, OverTheCodeBudgetTheTileShrinksBeforeTheLayerGoesDense) {
  ConvGeometry g = conv(256, 256, 28, 3, 256);
  TilingInputs in = inputs(g, 0.1, 256); // 58982 nonzeros
  in.codeBudgetMultiplyAdds = 65536;
  TilingDecision d = chooseTiling(g, in);
  EXPECT_EQ(d.tiling.spatialPerThread(), 1);
  EXPECT_THAT(reasons(d), HasSubstr("over the code budget"));
}

TEST(TilingChoice, HalfPrecisionKeepsTheCodeSmallForPtxas) {
  ConvGeometry g = conv(128, 128, 28, 3, 32); // 14746 nonzeros at 90 %
  TilingInputs in = inputs(g, 0.1, 32);
  EXPECT_EQ(chooseTiling(g, in).tiling.spatialPerThread(), 2);
  in.halfPrecision = true;
  TilingDecision half = chooseTiling(g, in);
  EXPECT_EQ(half.tiling.spatialPerThread(), 1);
  EXPECT_THAT(reasons(half), HasSubstr("fp16 code over 16384 multiply-adds"));
  ConvGeometry small = conv(3, 64, 224, 3, 32); // 173 nonzeros: two outputs stay
  TilingInputs smallIn = inputs(small, 0.1, 32);
  smallIn.halfPrecision = true;
  EXPECT_EQ(chooseTiling(small, smallIn).tiling.spatialPerThread(), 2);
}

TEST(TilingChoice, DepthwiseAndOddChannelsTakeTheLargestDividingBk) {
  ConvGeometry g = conv(32, 32, 28, 3, 1);
  g.groups = 32;
  TilingDecision depthwise = chooseTiling(g, inputs(g, 0.1, 1));
  EXPECT_EQ(depthwise.tiling.channelsPerThread, 1);
  EXPECT_EQ(depthwise.tiling.spatialPerThread(), 8) << "the most outputs a thread can take";
  EXPECT_EQ(depthwise.tiling.outputsPerThread, 8);
  EXPECT_THAT(reasons(depthwise), HasSubstr("depthwise"));
  ConvGeometry small = conv(32, 32, 7, 3, 1); // a 7x7 map: a row of 7, one row
  small.groups = 32;
  EXPECT_EQ(chooseTiling(small, inputs(small, 0.1, 1)).tiling.outputsPerThread, 7);
  EXPECT_EQ(chooseTiling(small, inputs(small, 0.1, 1)).tiling.rowsPerThread, 1);
  ConvGeometry column = conv(16, 16, 1, 3, 1); // one column wide: rows instead
  column.inSize = {20, 1};
  column.padding = {1, 0};
  column.kernel = {3, 1};
  column.groups = 16;
  const Tiling tall = chooseTiling(column, inputs(column, 0.1, 1)).tiling;
  EXPECT_EQ(tall.outputsPerThread, 1);
  EXPECT_EQ(tall.rowsPerThread, 8);
  EXPECT_NO_THROW(checkTiling(column, tall, "l"));
  ConvGeometry six = conv(8, 6, 10, 1, 1);
  EXPECT_EQ(chooseTiling(six, inputs(six, 1.0, 1)).tiling.channelsPerThread, 6)
      << "not only powers of two: all 6 filters share the loads";
  ConvGeometry rgb = conv(48, 3, 64, 3, 1); // an RGB output layer (the example's SR)
  EXPECT_EQ(chooseTiling(rgb, inputs(rgb, 0.1, 1)).tiling.channelsPerThread, 3);
  ConvGeometry wide = conv(64, 96, 14, 3, 1); // 96: 32 is the widest divisor up to 32
  EXPECT_EQ(chooseTiling(wide, inputs(wide, 0.1, 1)).tiling.channelsPerThread, 32);
  ConvGeometry prime = conv(64, 37, 14, 3, 1);
  EXPECT_EQ(chooseTiling(prime, inputs(prime, 0.1, 1)).tiling.channelsPerThread, 1);
  ConvGeometry widePointwise = conv(64, 96, 14, 1, 1); // 1x1: up to 64
  EXPECT_EQ(chooseTiling(widePointwise, inputs(widePointwise, 0.1, 1)).tiling.channelsPerThread, 48);
  ConvGeometry primePointwise = conv(64, 37, 14, 1, 1);
  EXPECT_EQ(chooseTiling(primePointwise, inputs(primePointwise, 0.1, 1)).tiling.channelsPerThread, 37)
      << "one output per thread: all 37 filters fit the accumulators";
}

// A 1x1 layer's neighbouring outputs share no input, so its tile is one
// output and up to 64 channels: each input load feeds more nonzeros.
TEST(TilingChoice, PointwiseTakesChannelsNotOutputs) {
  ConvGeometry lff = conv(128, 64, 64, 1, 1); // the example's LFF_1
  for (int64_t batch : {1, 32}) {
    TilingDecision d = chooseTiling(lff, inputs(lff, 0.1, batch));
    EXPECT_EQ(d.tiling.channelsPerThread, 64) << reasons(d);
    EXPECT_EQ(d.tiling.outputsPerThread, 1);
    EXPECT_EQ(d.tiling.rowsPerThread, 1);
    EXPECT_THAT(reasons(d), HasSubstr("share no input"));
  }
  ConvGeometry strided = conv(256, 512, 56, 1, 1); // ResNet-50's downsampling 1x1
  strided.stride = {2, 2};
  EXPECT_EQ(chooseTiling(strided, inputs(strided, 0.1, 32)).tiling.channelsPerThread, 64);
}

TEST(TilingChoice, CandidatesStartWithTheHeuristicAndAllFit) {
  for (int64_t batch : {1, 32}) {
    ConvGeometry g = conv(64, 128, 28, 3, batch);
    TilingInputs in = inputs(g, 0.1, batch);
    std::vector<Tiling> candidates = candidateTilings(g, in);
    ASSERT_GT(candidates.size(), 5u);
    EXPECT_EQ(candidates[0], chooseTiling(g, in).tiling);
    std::set<std::string> seen;
    bool staged = false;
    for (const Tiling &t : candidates) {
      EXPECT_NO_THROW(checkTiling(g, t, "l")) << t.describe();
      EXPECT_TRUE(seen.insert(t.describe()).second) << "twice: " << t.describe();
      staged = staged || t.stageInput;
    }
    EXPECT_TRUE(staged) << "staging fits a 28-wide map, so it is tried";
    EXPECT_TRUE(candidates.back().dense) << "and the dense kernel, last";
  }
}

TEST(TilingChoice, DescribeAndParseRoundTrip) {
  Tiling t;
  t.channelsPerThread = 2;
  t.outputsPerThread = 2;
  t.rowsPerThread = 2;
  t.imagesPerThread = 2;
  t.threadsX = 64;
  t.channelBlocksPerCta = 2;
  t.reductionSplits = 3;
  t.skipUnusedInputs = false;
  t.weightPath = WeightPathChoice::Global;
  t.dense = true;
  EXPECT_EQ(parseTiling(t.describe()), t);
  Tiling partial = parseTiling("bw=2,stage=1", t);
  EXPECT_EQ(partial.outputsPerThread, 2);
  EXPECT_TRUE(partial.stageInput);
  EXPECT_EQ(partial.threadsX, 64) << "unnamed keys keep the base's value";
  EXPECT_EQ(parseTiling("split=4").reductionSplits, 4);
  // Over a heuristic tiling that splits, what the text asks for wins: a
  // split cannot go with several channel blocks per block or with staging.
  Tiling splitBase;
  splitBase.reductionSplits = 2;
  EXPECT_EQ(parseTiling("cta-blocks=4", splitBase).reductionSplits, 1);
  EXPECT_EQ(parseTiling("stage=1", splitBase).reductionSplits, 1);
  EXPECT_EQ(parseTiling("bk=2", splitBase).reductionSplits, 2);
  EXPECT_EQ(parseTiling("cta-blocks=4,split=2", splitBase).reductionSplits, 2)
      << "named, it stays, and checkTiling refuses the pair";
}

TEST(TilingChoice, SplitLimitsAreCheckedWithTheReason) {
  ConvGeometry g = conv(16, 16, 8, 3, 1);
  auto problem = [&](const std::string &text) {
    try {
      checkTiling(g, parseTiling(text), "l");
    } catch (const UnsupportedError &e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(problem("bk=16,bw=2,split=4,threads=32"), "accepted");
  EXPECT_THAT(problem("bk=4,split=17,threads=32"), HasSubstr("at most the 16 input channels"));
  EXPECT_THAT(problem("bk=4,split=2,cta-blocks=2"), HasSubstr("needs cta-blocks=1 and stage=0"));
  EXPECT_THAT(problem("bk=4,split=2,stage=1"), HasSubstr("needs cta-blocks=1 and stage=0"));
  EXPECT_THAT(problem("bk=16,bw=8"), HasSubstr("accumulators per thread"));
  EXPECT_THAT(problem("bk=16,bw=2,split=16,threads=128"), HasSubstr("x split at most 1024"));
  EXPECT_EQ(problem("bk=16,bw=2,split=4,threads=128"), "accepted") << "2 rows of 36 floats a lane";
  EXPECT_THAT(problem("bk=16,bw=2,split=8,threads=128"), HasSubstr("48 KiB"));
}

TEST(TilingChoice, BadTilingTextNamesTheProblem) {
  auto problem = [](const std::string &text) {
    try {
      parseTiling(text);
    } catch (const InputError &e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_THAT(problem("bq=2"), HasSubstr("unknown key 'bq'"));
  EXPECT_THAT(problem("bw=two"), HasSubstr("bw=two is not an integer"));
  EXPECT_THAT(problem("stage=yes"), HasSubstr("stage must be 0 or 1"));
  EXPECT_THAT(problem("weights=texture"), HasSubstr("weights must be"));
  EXPECT_THAT(problem("bw"), HasSubstr("is not key=value"));
}

TEST(TilingChoice, CheckTilingRefusesWhatTheTemplateCannotDo) {
  ConvGeometry g = conv(16, 16, 224, 3, 1);
  auto refusal = [&g](const std::string &text) {
    try {
      checkTiling(g, parseTiling(text), "conv1");
    } catch (const UnsupportedError &e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(refusal("bw=4,bh=2"), "accepted");
  EXPECT_THAT(refusal("bw=4,bh=4"), HasSubstr("bn x bh x bw must be at most 8"));
  EXPECT_THAT(refusal("bk=3"), HasSubstr("divide the 16 output channels"));
  EXPECT_THAT(refusal("threads=48"), HasSubstr("multiple of 32"));
  EXPECT_THAT(refusal("threads=512,cta-blocks=4"), HasSubstr("at most 1024"));
  EXPECT_THAT(refusal("stage=1,cta-blocks=2"), HasSubstr("staging inputs needs cta-blocks=1"));
  g = conv(16, 16, 4096, 3, 1); // two staged rows of 4096 x 3 floats each
  EXPECT_THAT(refusal("stage=1,threads=1024,bw=1"), HasSubstr("floats of shared memory"));
  EXPECT_THAT(refusal("bk=3"), HasSubstr("layer 'conv1'"));
}

TEST(TilingChoice, ChannelTableMarksTheInputChannelsABlockReads) {
  ConvGeometry g = conv(3, 4, 5, 1, 1); // 1x1: weights[k][c]
  std::vector<float> weights = {1, 0, 0,  // k0
                                0, 0, 0,  // k1
                                0, 0, 2,  // k2
                                0, 0, 0}; // k3
  Tiling t;
  t.channelsPerThread = 2;
  EXPECT_EQ(inputChannelsUsed(g, t, {0, 2}, weights), (std::vector<uint8_t>{1, 0, 0, 0, 0, 1}));
  EXPECT_EQ(inputChannelsUsed(g, t, {1, 1}, weights), (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(inputChannelsUsed(g, t, {0, 2}, {}), std::vector<uint8_t>(6, 1)) << "dense: all";
}

} // namespace

// Weights read through ld.global.nc (past the constant bank on sm_80) are
// loads a second output of the tile shares, so a 1x1 layer keeps two
// outputs per thread there.
TEST(TilingChoice, PointwiseWithLoadedWeightsKeepsTwoOutputs) {
  ConvGeometry g = conv(1024, 256, 14, 1, 32); // ResNet-50 layer3 1x1, 26 k nonzeros at 90 %
  TilingInputs loaded = inputs(g, 0.1, 32);
  loaded.weightsAreOperands = false;
  TilingDecision d = chooseTiling(g, loaded);
  EXPECT_EQ(d.tiling.outputsPerThread, 2) << reasons(d);
  EXPECT_EQ(d.tiling.channelsPerThread, 32);
  EXPECT_THAT(reasons(d), Not(HasSubstr("share no input")));
  EXPECT_EQ(chooseTiling(g, inputs(g, 0.1, 32)).tiling.channelsPerThread, 64)
      << "with the weights as operands, channels instead";
}

// The split's target is the arch's reference GPU: fewer SMs, fewer threads
// wanted. And its blocks are about four warps with their parts, so a small
// grid spreads over the SMs (simulated, LFF_1 split=4: 12,245 cycles in
// blocks of 32 x 4 threads, 13,826 in blocks of 64 x 4).
TEST(TilingChoice, TheSplitFillsTheArchsReferenceGpuInSmallBlocks) {
  EXPECT_EQ(referenceMultiprocessors(90), 132);
  EXPECT_EQ(referenceMultiprocessors(80), 108);
  EXPECT_EQ(referenceMultiprocessors(86), 72);
  EXPECT_EQ(referenceMultiprocessors(75), 40);
  EXPECT_EQ(referenceMultiprocessors(70), 80);
  ConvGeometry g = conv(640, 64, 64, 1, 1); // GFF_1: 4096 threads unsplit
  TilingInputs hopper = inputs(g, 0.1, 1);
  EXPECT_EQ(chooseTiling(g, hopper).tiling.reductionSplits, 5) << "16896 threads wanted";
  TilingInputs ampere = hopper;
  ampere.multiprocessors = 108;
  TilingDecision a100 = chooseTiling(g, ampere);
  EXPECT_EQ(a100.tiling.reductionSplits, 4) << "13824 threads wanted: " << reasons(a100);
  EXPECT_THAT(reasons(a100), HasSubstr("of 108 SMs"));
  TilingInputs t4 = hopper;
  t4.multiprocessors = 40;
  EXPECT_EQ(chooseTiling(g, t4).tiling.reductionSplits, 2) << "5120 threads wanted";
  EXPECT_EQ(chooseTiling(g, t4).tiling.threadsX, 64) << "two parts: blocks of 64 x 2";
}
