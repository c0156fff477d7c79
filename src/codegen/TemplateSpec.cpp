#include "codegen/TemplateSpec.h"

#include "support/Error.h"

#include <algorithm>

namespace convgen {

const char *weightPathName(WeightPathChoice path) {
  switch (path) {
  case WeightPathChoice::Auto:
    return "auto";
  case WeightPathChoice::Constant:
    return "constant";
  case WeightPathChoice::Global:
    return "global";
  case WeightPathChoice::Baked:
    return "baked";
  }
  return "?";
}

const char *dtypeName(DType dtype) { return dtype == DType::F16 ? "f16" : "f32"; }
int64_t dtypeBytes(DType dtype) { return dtype == DType::F16 ? 2 : 4; }

std::string Tiling::describe() const {
  return "bk=" + std::to_string(channelsPerThread) + ",bw=" + std::to_string(outputsPerThread) +
         ",bh=" + std::to_string(rowsPerThread) + ",bn=" + std::to_string(imagesPerThread) +
         ",threads=" + std::to_string(threadsX) +
         ",cta-blocks=" + std::to_string(channelBlocksPerCta) +
         ",split=" + std::to_string(reductionSplits) +
         ",stage=" + std::to_string(int(stageInput)) +
         ",skip=" + std::to_string(int(skipUnusedInputs)) + ",weights=" + weightPathName(weightPath) +
         ",dense=" + std::to_string(int(dense));
}

int64_t imageGroups(int64_t batch, const Tiling &tiling) {
  return (batch + tiling.imagesPerThread - 1) / tiling.imagesPerThread;
}

int64_t tilesPerImageGroup(const ConvGeometry &geometry, const Tiling &tiling) {
  HW out = geometry.outSize();
  return ((out.h + tiling.rowsPerThread - 1) / tiling.rowsPerThread) *
         ((out.w + tiling.outputsPerThread - 1) / tiling.outputsPerThread);
}

int64_t stagedFloats(const ConvGeometry &g, const Tiling &tiling) {
  const int64_t columnTiles = (g.outSize().w + tiling.outputsPerThread - 1) / tiling.outputsPerThread;
  const int64_t rows = (tiling.rowsPerThread - 1) * g.stride.h + (g.kernel.h - 1) * g.dilation.h + 1;
  const int64_t rowTiles = (tiling.threadsX + columnTiles - 2) / columnTiles + 1;
  return rowTiles * rows * g.inSize.w;
}

int64_t splitFloats(const Tiling &tiling) {
  // The template's rows: the sums rounded up to four, plus four of padding;
  // ceil(S / 2) rows per lane, reused across the tree's rounds.
  const int64_t rowFloats = (tiling.accumulators() + 3) / 4 * 4 + 4;
  return int64_t(tiling.reductionSplits + 1) / 2 * tiling.threadsX * rowFloats;
}

int64_t stagingRounds(const ConvGeometry &geometry, const Tiling &tiling) {
  return tiling.stageInput ? (stagedFloats(geometry, tiling) + tiling.threadsX - 1) / tiling.threadsX
                           : 0;
}

void checkTiling(const ConvGeometry &geometry, const Tiling &tiling, const std::string &layer) {
  auto fail = [&layer, &tiling](const std::string &problem) {
    return UnsupportedError("layer '" + layer + "': tiling " + tiling.describe() + ": " + problem);
  };
  const HW out = geometry.outSize();
  if (tiling.channelsPerThread < 1 || tiling.channelsPerThread > MaxChannelsPerThread ||
      geometry.outChannelsPerGroup() % tiling.channelsPerThread != 0)
    throw fail("channels per thread (bk) must be in [1, " + std::to_string(MaxChannelsPerThread) +
               "] and divide the " + std::to_string(geometry.outChannelsPerGroup()) +
               " output channels per group");
  if (tiling.outputsPerThread < 1 || tiling.outputsPerThread > out.w)
    throw fail("output columns per thread (bw) must be in [1, the output width " +
               std::to_string(out.w) + "]");
  if (tiling.rowsPerThread < 1 || tiling.rowsPerThread > out.h)
    throw fail("output rows per thread (bh) must be in [1, the output height " +
               std::to_string(out.h) + "]");
  if (tiling.imagesPerThread < 1)
    throw fail("images per thread (bn) must be at least 1");
  if (tiling.spatialPerThread() > MaxOutputsPerThread)
    throw fail("bn x bh x bw must be at most " + std::to_string(MaxOutputsPerThread));
  if (tiling.channelsPerThread * tiling.spatialPerThread() > MaxAccumulators)
    throw fail("bk x bn x bh x bw (accumulators per thread) must be at most " +
               std::to_string(MaxAccumulators));
  if (tiling.threadsX < 32 || tiling.threadsX % 32 != 0 || tiling.channelBlocksPerCta < 1 ||
      tiling.reductionSplits < 1 || tiling.threadsPerBlock() > 1024)
    throw fail("threads must be a multiple of 32, and threads x cta-blocks x split at most 1024");
  if (tiling.reductionSplits > 1) {
    if (tiling.reductionSplits > geometry.inChannelsPerGroup())
      throw fail("split must be at most the " + std::to_string(geometry.inChannelsPerGroup()) +
                 " input channels per group it divides among its parts");
    if (tiling.channelBlocksPerCta != 1 || tiling.stageInput)
      throw fail("a split reduction needs cta-blocks=1 and stage=0 (its parts share the "
                 "block's barrier and shared memory)");
    if (splitFloats(tiling) > MaxStagedFloats)
      throw fail("a split reduction hands over " + std::to_string(splitFloats(tiling)) +
                 " floats through shared memory, over the " + std::to_string(MaxStagedFloats) +
                 " (48 KiB) the template has");
  }
  if (tiling.stageInput) {
    if (tiling.channelBlocksPerCta != 1 || tiling.imagesPerThread != 1)
      throw fail("staging inputs needs cta-blocks=1 and bn=1 (a block's threads share the "
                 "staged rows and its barriers)");
    if (stagedFloats(geometry, tiling) > MaxStagedFloats)
      throw fail("a staged input channel needs " + std::to_string(stagedFloats(geometry, tiling)) +
                 " floats of shared memory, over the " + std::to_string(MaxStagedFloats) +
                 " (48 KiB) the template has");
  }
}

ChannelBlockRange allChannelBlocks(const ConvGeometry &geometry, const Tiling &tiling) {
  return {0, geometry.outChannels / tiling.channelsPerThread};
}

LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch,
                        const ChannelBlockRange &range) {
  const int64_t threads = imageGroups(batch, tiling) * tilesPerImageGroup(geometry, tiling);
  return {(threads + tiling.threadsX - 1) / tiling.threadsX,
          (range.count + tiling.channelBlocksPerCta - 1) / tiling.channelBlocksPerCta,
          tiling.threadsX, tiling.blockY()};
}

LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch) {
  return launchShape(geometry, tiling, batch, allChannelBlocks(geometry, tiling));
}

std::optional<ThreadTile> threadTile(const ConvGeometry &geometry, const Tiling &tiling,
                                     int64_t batch, int64_t thread) {
  HW out = geometry.outSize();
  const int64_t columnTiles = (out.w + tiling.outputsPerThread - 1) / tiling.outputsPerThread;
  const int64_t rowTiles = (out.h + tiling.rowsPerThread - 1) / tiling.rowsPerThread;
  if (thread < 0 || thread >= imageGroups(batch, tiling) * rowTiles * columnTiles)
    return std::nullopt;
  const int64_t imageRowTile = thread / columnTiles;
  // The last tiles end at the edge (see the template).
  return ThreadTile{imageRowTile / rowTiles * tiling.imagesPerThread,
                    std::min(imageRowTile % rowTiles * tiling.rowsPerThread, out.h - tiling.rowsPerThread),
                    std::min(thread % columnTiles * tiling.outputsPerThread,
                             out.w - tiling.outputsPerThread)};
}

TemplateSpec makeTemplateSpec(const ConvGeometry &geometry, const Tiling &tiling, DType dtype) {
  return makeTemplateSpec(geometry, tiling, allChannelBlocks(geometry, tiling), dtype);
}

TemplateSpec makeTemplateSpec(const ConvGeometry &g, const Tiling &tiling,
                              const ChannelBlockRange &range, DType dtype) {
  HW out = g.outSize();
  auto i32 = [](int64_t value) { return static_cast<int32_t>(value); };
  return {i32(g.inChannels),  i32(g.inSize.h),   i32(g.inSize.w),
          i32(g.outChannels), i32(out.h),        i32(out.w),
          i32(g.kernel.h),    i32(g.kernel.w),   i32(g.stride.h),
          i32(g.stride.w),    i32(g.padding.h),  i32(g.padding.w),
          i32(g.dilation.h),  i32(g.dilation.w), i32(g.groups),
          static_cast<int32_t>(g.activation),    g.hasBias ? 1 : 0,
          tiling.channelsPerThread,              tiling.outputsPerThread,
          tiling.rowsPerThread,                  tiling.imagesPerThread,
          tiling.threadsX,                       tiling.channelBlocksPerCta,
          tiling.stageInput ? 1 : 0,             tiling.skipUnusedInputs ? 1 : 0,
          dtype == DType::F16 ? 1 : 0,           i32(range.first),
          i32(range.count),                      tiling.reductionSplits};
}

std::vector<uint8_t> inputChannelsUsed(const ConvGeometry &geometry, const Tiling &tiling,
                                       const ChannelBlockRange &range,
                                       const std::vector<float> &weights) {
  const int64_t channels = geometry.inChannelsPerGroup();
  const int64_t taps = geometry.kernel.h * geometry.kernel.w;
  std::vector<uint8_t> used(size_t(range.count * channels), weights.empty() ? 1 : 0);
  if (weights.empty())
    return used;
  for (int64_t block = 0; block < range.count; ++block)
    for (int64_t kk = 0; kk < tiling.channelsPerThread; ++kk) {
      const int64_t k = (range.first + block) * tiling.channelsPerThread + kk;
      for (int64_t c = 0; c < channels; ++c) {
        auto first = weights.begin() + (k * channels + c) * taps;
        if (std::any_of(first, first + taps, [](float w) { return w != 0.0f; }))
          used[size_t(block * channels + c)] = 1;
      }
    }
  return used;
}

} // namespace convgen
