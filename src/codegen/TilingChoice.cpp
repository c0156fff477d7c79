#include "codegen/TilingChoice.h"

#include "support/Error.h"

#include <algorithm>
#include <set>
#include <cstdio>
#include <sstream>

namespace convgen {

/// Threads the layer's grid has at \p tiling: spatial tiles x channel
/// blocks x reduction parts.
static int64_t gridThreads(const ConvGeometry &g, const Tiling &tiling, int64_t batch) {
  return imageGroups(batch, tiling) * tilesPerImageGroup(g, tiling) *
         (g.outChannels / tiling.channelsPerThread) * tiling.reductionSplits;
}

/// Halves the spatial tile: BW first while BW > BH, else BH.
static void shrinkSpatial(Tiling &tiling) {
  if (tiling.outputsPerThread >= tiling.rowsPerThread && tiling.outputsPerThread > 1)
    tiling.outputsPerThread /= 2;
  else if (tiling.rowsPerThread > 1)
    tiling.rowsPerThread /= 2;
  else
    tiling.imagesPerThread = std::max(1, tiling.imagesPerThread / 2);
}

static std::string spatialText(const Tiling &t) {
  return "bw=" + std::to_string(t.outputsPerThread) + " bh=" + std::to_string(t.rowsPerThread);
}

// Rough instruction bytes of one multiply-add in the SASS (an FFMA is 16
// bytes, plus its share of the input loads: about 1.5 instructions per fma
// on the lean code). With several channel blocks in a thread block, their
// code runs side by side; keeping it within an instruction-cache-sized
// budget avoids thrashing. An estimate, not a measurement: tuning on a GPU
// is what settles it.
constexpr int64_t CodeBytesPerMultiplyAdd = 24;
/// The heuristic's widest channel block for k x k layers: 32 filters x two
/// outputs fill the 64 accumulators; bk=64 is a tuning candidate there.
/// (1x1 layers take up to 64 channels and one output.)
constexpr int MaxWideChannelBlock = 32;
constexpr int64_t SharedCodeBudgetBytes = 128 * 1024;

/// The split reduction's instructions per fma of code, estimated: part 0
/// adds each of the other parts' sums (one FADD per sum, a quarter of a
/// 128-bit shared load), the other parts store theirs.
static double splitCostPerMultiplyAdd(const ConvGeometry &g, const Tiling &t, double density) {
  const double reductionLength =
      double(g.inChannelsPerGroup() * g.kernel.h * g.kernel.w) * std::max(density, 1e-3);
  return double(t.reductionSplits - 1) * 1.5 / reductionLength;
}

static std::string formatCost(double instructionsPerMultiplyAdd) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", instructionsPerMultiplyAdd);
  return text;
}

int referenceMultiprocessors(int computeVersion) {
  if (computeVersion >= 90)
    return 132;
  if (computeVersion >= 89)
    return 58;
  if (computeVersion >= 86)
    return 72;
  if (computeVersion >= 80)
    return 108;
  if (computeVersion >= 75)
    return 40;
  return 80;
}

static std::string targetText(const TilingInputs &in) {
  return std::to_string(in.warpsPerScheduler) + " warp(s) on each of 4 schedulers of " +
         std::to_string(in.multiprocessors) + " SMs";
}

/// Threads per block row of a split: about four warps per block with its
/// parts (a small grid spreads evenly over the SMs in small blocks), at
/// least one warp.
static int splitThreadsX(int parts) {
  int threads = 32;
  while (threads * 2 * parts <= 128)
    threads *= 2;
  return threads;
}

TilingDecision chooseTiling(const ConvGeometry &g, const TilingInputs &in) {
  TilingDecision d;
  Tiling &t = d.tiling;
  const HW out = g.outSize();
  const int64_t batch = std::max<int64_t>(1, in.batch);
  const int64_t weightsTotal =
      g.outChannels * g.inChannelsPerGroup() * g.kernel.h * g.kernel.w;
  const double density = weightsTotal ? double(in.nonzeros) / double(weightsTotal) : 1.0;
  auto say = [&d](std::string line) { d.reasons.push_back(std::move(line)); };

  // The measure is machine instructions per fma in the code. Two things
  // bring it down: an input value loaded once feeding every nonzero of its
  // (c, r, s) column among BK filters (at 90 % sparsity, 4 filters share a
  // load in 1 case of 3, 32 in 29 of 30), and neighbouring outputs sharing
  // the loads of their overlapping windows and each weight operand.
  // Measured with ptxas 13.0 (sm_80) on the example at 90 %: F_0 (3x3
  // 64->64) 1.88 at bk=4 bw=4, 1.42 at bk=16 bw=2; LFF_1 (1x1 128->64)
  // 2.16 at bk=4 bw=4, 1.53 at bk=32 bw=2, 1.48 at bk=64 bw=1.
  const bool depthwise = g.outChannelsPerGroup() == 1 && g.inChannelsPerGroup() == 1;
  // (With weights loaded through ld.global.nc, a second output shares each
  // weight load, so a 1x1 layer keeps the general tile: ResNet-50's layer3
  // 1x1s at 90 %, whose 26 k nonzeros pass the 64 KiB bank, took 2.2-2.5
  // SASS/fma at bk=64 bw=1.)
  const bool pointwise =
      !depthwise && g.kernel.h == 1 && g.kernel.w == 1 && in.weightsAreOperands;
  if (depthwise) {
    // One filter per channel block: each block's dispatch, bias, loads of
    // its window and stores weigh against about one nonzero, so the tile
    // takes as many outputs as the template allows, along a row first
    // (MobileNetV2 dw 32ch 112x112 at 90 %: 14.8 SASS/fma at bw=2, 9.7 at
    // bw=4, 7.1 at bw=8, 7.3 at bw=4 bh=2).
    t.outputsPerThread = int(std::min<int64_t>(MaxOutputsPerThread, out.w));
    t.rowsPerThread = int(std::clamp<int64_t>(MaxOutputsPerThread / t.outputsPerThread, 1, out.h));
  } else if (pointwise) {
    // A 1x1 layer's neighbouring outputs share no input: a second output
    // per thread adds its own loads, where a wider channel block lets each
    // load feed more nonzeros. So one output, and up to 64 channels.
  } else if (out.w >= 2)
    t.outputsPerThread = 2;
  else if (out.h >= 2)
    t.rowsPerThread = 2;
  // Any divisor, not only powers of two: 3 output channels (an RGB output
  // layer) share their loads in one block of 3 rather than three of 1
  // (example SR, 48->3: 2.99 SASS/fma at bk=1, 2.55 at bk=3).
  const int widestChannelBlock = pointwise ? MaxChannelsPerThread : MaxWideChannelBlock;
  for (int channels = widestChannelBlock; channels >= 1; --channels)
    if (g.outChannelsPerGroup() % channels == 0 &&
        channels * t.spatialPerThread() <= MaxAccumulators) {
      t.channelsPerThread = channels;
      break;
    }
  if (depthwise)
    say(spatialText(t) + ": a depthwise layer's channel block is one filter with about one "
        "nonzero at high sparsity; its fixed cost (dispatch, bias, stores) is shared by the "
        "most outputs a thread can take");
  if (pointwise)
    say(spatialText(t) + ": a 1x1 layer's neighbouring outputs share no input, so the tile "
        "takes channels instead of outputs (LFF_1, 1x1 128->64 at 90 %, sm_80 batch 1: 1.84 "
        "SASS/fma at bk=32 bw=2, 1.79 at bk=64 bw=1; simulated 19,499 and 18,607 cycles)");
  say("bk=" + std::to_string(t.channelsPerThread) + " " + spatialText(t) +
      ": the widest channel block (at most " + std::to_string(widestChannelBlock) +
      ") dividing the " + std::to_string(g.outChannelsPerGroup()) +
      " output channels per group, with neighbouring outputs: an input load feeds the "
      "nonzeros of its column among bk filters, a weight every output of the tile");

  while (t.spatialPerThread() > 1 && in.nonzeros * t.spatialPerThread() > in.codeBudgetMultiplyAdds) {
    shrinkSpatial(t);
    say("fewer outputs per thread (" + spatialText(t) + "): " + std::to_string(in.nonzeros) +
        " nonzeros x the tile were over the code budget of " +
        std::to_string(in.codeBudgetMultiplyAdds) + " multiply-adds");
  }
  while (in.halfPrecision && t.spatialPerThread() > 1 &&
         in.nonzeros * t.spatialPerThread() > FP16TileMultiplyAdds) {
    shrinkSpatial(t);
    say("fewer outputs per thread (" + spatialText(t) + "): fp16 code over " +
        std::to_string(FP16TileMultiplyAdds) +
        " multiply-adds takes ptxas minutes (measured: 258 s at 29492, over 900 s at 58984)");
  }

  // Too few threads for the GPU (batch 1): split the reduction over input
  // channels across threads of a block, as few parts as reach the target,
  // while each part keeps a reduction long enough that combining the sums
  // costs little (estimated at most MaxSplitCostPerMultiplyAdd per fma).
  const int64_t threads = gridThreads(g, t, batch);
  const int64_t sparseWork = in.nonzeros * out.h * out.w * batch;
  if (threads < in.targetThreads() && sparseWork < MinSplitMultiplyAdds) {
    say("split=1: at batch " + std::to_string(batch) + " the outputs give " +
        std::to_string(threads) + " threads, but the layer's whole sparse work (" +
        std::to_string(sparseWork) + " multiply-adds) is too small for a split to pay: a "
        "launch costs more");
  } else if (threads < in.targetThreads()) {
    // A split fits the block (1024 threads, 48 KiB to hand the sums over,
    // threads shrunk to whole warps for it) and is cheap enough.
    auto acceptable = [&](const Tiling &candidate) {
      return candidate.threadsPerBlock() <= 1024 && splitFloats(candidate) <= MaxStagedFloats &&
             splitCostPerMultiplyAdd(g, candidate, density) <= MaxSplitCostPerMultiplyAdd;
    };
    Tiling split = t;
    const int64_t wanted = (in.targetThreads() + threads - 1) / threads;
    // Only part counts that divide the channels: equal parts (simulated,
    // F_0 took 51,350 cycles at split=5 with parts of 13 and 12 channels,
    // 32,940 at split=4).
    for (int64_t parts = std::min<int64_t>(wanted, g.inChannelsPerGroup()); parts > 1; --parts) {
      if (g.inChannelsPerGroup() % parts != 0)
        continue;
      split.reductionSplits = int(parts);
      split.threadsX = splitThreadsX(int(parts));
      while (split.threadsX > 32 &&
             (split.threadsPerBlock() > 1024 || splitFloats(split) > MaxStagedFloats))
        split.threadsX /= 2;
      if (acceptable(split))
        break;
    }
    if (split.reductionSplits > 1 && acceptable(split)) {
      t = split;
      const std::string cost = formatCost(splitCostPerMultiplyAdd(g, t, density));
      say("split=" + std::to_string(t.reductionSplits) + " threads=" + std::to_string(t.threadsX) +
          ": at batch " + std::to_string(batch) + " the outputs gave " + std::to_string(threads) +
          " threads, under the " + std::to_string(in.targetThreads()) +
          " (" + targetText(in) + "); each output's reduction is split over input "
          "channels across threads, combined in shared memory (about " + cost +
          " instructions per fma)");
    } else {
      say("split=1: at batch " + std::to_string(batch) + " the outputs give " +
          std::to_string(threads) + " threads, under the " + std::to_string(in.targetThreads()) +
          ", but a split of this layer's short reduction would cost more than an estimated " +
          formatCost(MaxSplitCostPerMultiplyAdd) + " instructions per fma (MaxSplitCostPerMultiplyAdd)");
    }
  }

  // Narrow maps: fewer spatial tiles than a block's 128 threads. The block
  // shrinks to the tiles (whole warps) and, unsplit, takes several channel
  // blocks.
  const int64_t tiles = imageGroups(batch, t) * tilesPerImageGroup(g, t);
  if (tiles < t.threadsX) {
    t.threadsX = int(std::max<int64_t>(32, (tiles + 31) / 32 * 32));
    if (t.reductionSplits == 1) {
      const int64_t channelBlocks = g.outChannels / t.channelsPerThread;
      const int64_t codePerChannelBlock =
          std::max<int64_t>(1, in.nonzeros / channelBlocks * t.spatialPerThread() *
                                   CodeBytesPerMultiplyAdd);
      int64_t perCta = std::min<int64_t>(128 / t.threadsX, channelBlocks);
      perCta = std::max<int64_t>(1, std::min(perCta, SharedCodeBudgetBytes / codePerChannelBlock));
      t.channelBlocksPerCta = int(perCta);
      say("threads=" + std::to_string(t.threadsX) + " cta-blocks=" + std::to_string(perCta) +
          ": " + std::to_string(tiles) + " spatial tiles fill less than 128 threads; a block "
          "takes several channel blocks, as many as keep their code (about " +
          std::to_string(codePerChannelBlock / 1024) + " KiB each) within " +
          std::to_string(SharedCodeBudgetBytes / 1024) + " KiB");
    } else {
      say("threads=" + std::to_string(t.threadsX) + ": " + std::to_string(tiles) +
          " spatial tiles; the block is whole warps of them times the split");
    }
  }
  say("stage=0: inputs are read through ld.global.nc at one base address per window "
      "position and a constant channel offset, padding from a zero page; staging in shared "
      "memory is a tuning candidate");
  return d;
}

Tiling chooseTiling(const ConvGeometry &geometry) {
  TilingInputs inputs;
  inputs.nonzeros = geometry.outChannels * geometry.inChannelsPerGroup() * geometry.kernel.h *
                    geometry.kernel.w;
  return chooseTiling(geometry, inputs).tiling;
}

std::vector<Tiling> candidateTilings(const ConvGeometry &g, const TilingInputs &in) {
  const Tiling heuristic = chooseTiling(g, in).tiling;
  std::vector<Tiling> out = {heuristic};
  std::set<std::string> seen = {heuristic.describe()};
  auto offer = [&](Tiling t) {
    try {
      checkTiling(g, t, "candidate");
    } catch (const Error &) {
      return;
    }
    if (in.nonzeros * t.spatialPerThread() > in.codeBudgetMultiplyAdds && t.spatialPerThread() > 1)
      return; // would go dense
    if (seen.insert(t.describe()).second)
      out.push_back(t);
  };
  // One parameter at a time around the heuristic's choice.
  for (int bk : {1, 2, 4, 8}) {
    Tiling t = heuristic;
    t.channelsPerThread = bk;
    offer(t);
  }
  const int shapes[][3] = {{1, 1, 1}, {1, 1, 2}, {1, 1, 4}, {1, 2, 2}, {1, 1, 8},
                           {1, 2, 4}, {2, 1, 2}, {2, 1, 4}, {1, 4, 1}};
  for (const auto &shape : shapes) {
    Tiling t = heuristic;
    t.imagesPerThread = shape[0];
    t.rowsPerThread = shape[1];
    t.outputsPerThread = shape[2];
    if (t.imagesPerThread > 1 && in.batch < 2)
      continue;
    offer(t);
  }
  for (int bk : {16, 32, 64}) {
    Tiling t = heuristic;
    t.channelsPerThread = bk;
    offer(t);
  }
  for (int parts : {1, 2, 4, 8}) {
    Tiling t = heuristic;
    t.reductionSplits = parts;
    t.channelBlocksPerCta = 1;
    t.stageInput = false;
    while (t.threadsX > 32 && (t.threadsPerBlock() > 1024 || splitFloats(t) > MaxStagedFloats))
      t.threadsX /= 2;
    offer(t);
  }
  for (int threads : {64, 128, 256}) {
    Tiling t = heuristic;
    t.threadsX = threads;
    t.channelBlocksPerCta = 1;
    offer(t);
  }
  Tiling staged = heuristic;
  staged.stageInput = true;
  staged.reductionSplits = 1;
  staged.channelBlocksPerCta = 1;
  staged.imagesPerThread = 1;
  staged.threadsX = std::max(heuristic.threadsX, 64);
  offer(staged);
  // The dense kernel, for layers where the sparse code loses (low sparsity).
  Tiling dense = heuristic;
  dense.dense = true;
  offer(dense);
  return out;
}

static int parseInt(const std::string &text, const std::string &key, const std::string &whole) {
  try {
    size_t used = 0;
    int value = std::stoi(text, &used);
    if (used == text.size())
      return value;
  } catch (const std::exception &) {
  }
  throw InputError({"", "", "--tiling"}, "tiling '" + whole + "': " + key + "=" + text + " is not an integer");
}

Tiling parseTiling(const std::string &text, Tiling base) {
  std::stringstream stream(text);
  std::string item;
  bool splitGiven = false;
  while (std::getline(stream, item, ',')) {
    if (item.empty())
      continue;
    const size_t equals = item.find('=');
    if (equals == std::string::npos)
      throw InputError({"", "", "--tiling"}, "tiling '" + text + "': '" + item + "' is not key=value");
    const std::string key = item.substr(0, equals), value = item.substr(equals + 1);
    auto flag = [&] {
      if (value != "0" && value != "1")
        throw InputError({"", "", "--tiling"}, "tiling '" + text + "': " + key + " must be 0 or 1");
      return value == "1";
    };
    if (key == "bk")
      base.channelsPerThread = parseInt(value, key, text);
    else if (key == "bw")
      base.outputsPerThread = parseInt(value, key, text);
    else if (key == "bh")
      base.rowsPerThread = parseInt(value, key, text);
    else if (key == "bn")
      base.imagesPerThread = parseInt(value, key, text);
    else if (key == "threads")
      base.threadsX = parseInt(value, key, text);
    else if (key == "cta-blocks")
      base.channelBlocksPerCta = parseInt(value, key, text);
    else if (key == "split") {
      base.reductionSplits = parseInt(value, key, text);
      splitGiven = true;
    }
    else if (key == "stage")
      base.stageInput = flag();
    else if (key == "skip")
      base.skipUnusedInputs = flag();
    else if (key == "dense")
      base.dense = flag();
    else if (key == "weights") {
      if (value == "auto")
        base.weightPath = WeightPathChoice::Auto;
      else if (value == "constant")
        base.weightPath = WeightPathChoice::Constant;
      else if (value == "global")
        base.weightPath = WeightPathChoice::Global;
      else if (value == "baked")
        base.weightPath = WeightPathChoice::Baked;
      else
        throw InputError({"", "", "--tiling"}, "tiling '" + text + "': weights must be auto, constant, global or baked");
    } else
      throw InputError({"", "", "--tiling"}, "tiling '" + text + "': unknown key '" + key +
                       "' (bk, bw, bh, bn, threads, cta-blocks, split, stage, skip, weights, dense)");
  }
  // Several channel blocks per block, or staging, cannot go with a split:
  // asked for over a base that splits (the heuristic's, at batch 1), they
  // win, unless the text asks for the split too (and checkTiling says no).
  if (!splitGiven && (base.channelBlocksPerCta > 1 || base.stageInput))
    base.reductionSplits = 1;
  return base;
}

} // namespace convgen
