#include "codegen/TilingChoice.h"

#include "support/Error.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace convgen {

/// Threads the layer's grid has at \p tiling: spatial tiles x channel blocks.
static int64_t gridThreads(const ConvGeometry &g, const Tiling &tiling, int64_t batch) {
  return imageGroups(batch, tiling) * tilesPerImageGroup(g, tiling) *
         (g.outChannels / tiling.channelsPerThread);
}

/// Outputs computed per output computed: >1 where the last tiles overlap.
static double recomputation(const ConvGeometry &g, const Tiling &tiling) {
  const HW out = g.outSize();
  return double(tilesPerImageGroup(g, tiling) * tiling.rowsPerThread * tiling.outputsPerThread) /
         double(out.h * out.w);
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

// Rough instruction bytes of one multiply-add in the SASS (an FFMA is 16
// bytes, plus its share of the input loads). With several channel blocks in
// a thread block, their code runs side by side; keeping it within an
// instruction-cache-sized budget avoids thrashing. The figure is an
// estimate, not a measurement: tuning on a GPU is what settles it.
constexpr int64_t CodeBytesPerMultiplyAdd = 20;
constexpr int64_t SharedCodeBudgetBytes = 128 * 1024;

TilingDecision chooseTiling(const ConvGeometry &g, const TilingInputs &in) {
  TilingDecision d;
  Tiling &t = d.tiling;
  const HW out = g.outSize();
  const int64_t batch = std::max<int64_t>(1, in.batch);
  auto say = [&d](std::string line) { d.reasons.push_back(std::move(line)); };

  for (int channels : {4, 2, 1})
    if (g.outChannelsPerGroup() % channels == 0) {
      t.channelsPerThread = channels;
      break;
    }
  say("bk=" + std::to_string(t.channelsPerThread) + ": the largest of 4, 2, 1 dividing the " +
      std::to_string(g.outChannelsPerGroup()) +
      " output channels per group; each input value loaded feeds bk multiply-adds");

  // Four outputs per thread: four columns, or 2 x 2 where four columns
  // would recompute more of the row's end (14-wide maps) or the map is
  // narrower than four.
  if (out.w >= 4) {
    t.outputsPerThread = 4;
    Tiling square = t;
    square.outputsPerThread = 2;
    square.rowsPerThread = out.h >= 2 ? 2 : 1;
    if (recomputation(g, square) < recomputation(g, t) && square.rowsPerThread == 2)
      t = square;
  } else {
    t.outputsPerThread = int(out.w);
    t.rowsPerThread = int(std::min<int64_t>(out.h, 4 / out.w));
  }
  say("bw=" + std::to_string(t.outputsPerThread) + " bh=" + std::to_string(t.rowsPerThread) +
      ": four outputs per thread with the least recomputed at the map's edge; each weight "
      "feeds bw x bh multiply-adds");

  while (t.spatialPerThread() > 1 && gridThreads(g, t, batch) < in.targetThreads) {
    shrinkSpatial(t);
    say("fewer outputs per thread (bw=" + std::to_string(t.outputsPerThread) +
        " bh=" + std::to_string(t.rowsPerThread) + "): at batch " + std::to_string(batch) +
        " the grid had fewer than " + std::to_string(in.targetThreads) + " threads");
  }
  while (t.spatialPerThread() > 1 && in.nonzeros * t.spatialPerThread() > in.codeBudgetMultiplyAdds) {
    shrinkSpatial(t);
    say("fewer outputs per thread (bw=" + std::to_string(t.outputsPerThread) +
        " bh=" + std::to_string(t.rowsPerThread) + "): " + std::to_string(in.nonzeros) +
        " nonzeros x the tile were over the code budget of " +
        std::to_string(in.codeBudgetMultiplyAdds) + " multiply-adds");
  }

  while (in.halfPrecision && t.spatialPerThread() > 1 &&
         in.nonzeros * t.spatialPerThread() > FP16TileMultiplyAdds) {
    shrinkSpatial(t);
    say("fewer outputs per thread (bw=" + std::to_string(t.outputsPerThread) +
        " bh=" + std::to_string(t.rowsPerThread) + "): fp16 code over " +
        std::to_string(FP16TileMultiplyAdds) +
        " multiply-adds takes ptxas minutes (measured: 258 s at 29492, over 900 s at 58984)");
  }

  // Narrow maps: fewer spatial tiles than a block's 128 threads. The block
  // shrinks to the tiles (whole warps) and takes several channel blocks.
  const int64_t tiles = imageGroups(batch, t) * tilesPerImageGroup(g, t);
  if (tiles < 128) {
    t.threadsX = int(std::max<int64_t>(32, (tiles + 31) / 32 * 32));
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
  }
  say("stage=0: inputs are read through ld.global.nc, whose L1 serves the neighbouring "
      "threads' overlapping windows; staging in shared memory is a tuning candidate");
  say("weights=auto: the constant bank where the nonzeros fit in 64 KiB, else ld.global.nc");
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
  for (int threads : {64, 128, 256}) {
    Tiling t = heuristic;
    t.threadsX = threads;
    t.channelBlocksPerCta = 1;
    offer(t);
  }
  Tiling staged = heuristic;
  staged.stageInput = true;
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
                       "' (bk, bw, bh, bn, threads, cta-blocks, stage, skip, weights, dense)");
  }
  return base;
}

} // namespace convgen
