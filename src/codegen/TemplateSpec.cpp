#include "codegen/TemplateSpec.h"

#include "support/Error.h"

#include <algorithm>

namespace convgen {

std::string Tiling::describe() const {
  return "BK=" + std::to_string(channelsPerThread) + " BW=" + std::to_string(outputsPerThread) +
         " threads=" + std::to_string(threadsPerBlock);
}

Tiling chooseTiling(const ConvGeometry &geometry) {
  Tiling tiling;
  for (int channels : {4, 2, 1})
    if (geometry.outChannelsPerGroup() % channels == 0) {
      tiling.channelsPerThread = channels;
      break;
    }
  tiling.outputsPerThread = static_cast<int>(std::min<int64_t>(4, geometry.outSize().w));
  return tiling;
}

void checkTiling(const ConvGeometry &geometry, const Tiling &tiling, const std::string &layer) {
  auto fail = [&layer](const std::string &problem) {
    return UnsupportedError("layer '" + layer + "': tiling: " + problem);
  };
  if (tiling.channelsPerThread < 1 || tiling.channelsPerThread > MaxChannelsPerThread ||
      geometry.outChannelsPerGroup() % tiling.channelsPerThread != 0)
    throw fail("channels per thread must be in [1, " + std::to_string(MaxChannelsPerThread) +
               "] and divide the " + std::to_string(geometry.outChannelsPerGroup()) +
               " output channels per group");
  if (tiling.outputsPerThread < 1 || tiling.outputsPerThread > MaxOutputsPerThread ||
      tiling.outputsPerThread > geometry.outSize().w)
    throw fail("outputs per thread must be in [1, " + std::to_string(MaxOutputsPerThread) +
               "] and at most the output width " + std::to_string(geometry.outSize().w));
  if (tiling.threadsPerBlock < 32 || tiling.threadsPerBlock > 1024 ||
      tiling.threadsPerBlock % 32 != 0)
    throw fail("threads per block must be a multiple of 32 in [32, 1024]");
}

ChannelBlockRange allChannelBlocks(const ConvGeometry &geometry, const Tiling &tiling) {
  return {0, geometry.outChannels / tiling.channelsPerThread};
}

LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch,
                        const ChannelBlockRange &range) {
  HW out = geometry.outSize();
  int64_t columnTiles = (out.w + tiling.outputsPerThread - 1) / tiling.outputsPerThread;
  int64_t threads = batch * out.h * columnTiles;
  return {(threads + tiling.threadsPerBlock - 1) / tiling.threadsPerBlock, range.count,
          tiling.threadsPerBlock};
}

LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch) {
  return launchShape(geometry, tiling, batch, allChannelBlocks(geometry, tiling));
}

std::optional<ThreadTile> threadTile(const ConvGeometry &geometry, const Tiling &tiling,
                                     int64_t batch, int64_t thread) {
  HW out = geometry.outSize();
  int64_t columnTiles = (out.w + tiling.outputsPerThread - 1) / tiling.outputsPerThread;
  if (thread < 0 || thread >= batch * out.h * columnTiles)
    return std::nullopt;
  int64_t imageRow = thread / columnTiles;
  // The last tile of a row ends at the edge (see the template).
  int64_t q0 = std::min((thread % columnTiles) * tiling.outputsPerThread,
                        out.w - tiling.outputsPerThread);
  return ThreadTile{imageRow / out.h, imageRow % out.h, q0};
}

TemplateSpec makeTemplateSpec(const ConvGeometry &geometry, const Tiling &tiling) {
  return makeTemplateSpec(geometry, tiling, allChannelBlocks(geometry, tiling));
}

TemplateSpec makeTemplateSpec(const ConvGeometry &g, const Tiling &tiling,
                              const ChannelBlockRange &range) {
  HW out = g.outSize();
  auto i32 = [](int64_t value) { return static_cast<int32_t>(value); };
  return {i32(g.inChannels),  i32(g.inSize.h),   i32(g.inSize.w),
          i32(g.outChannels), i32(out.h),        i32(out.w),
          i32(g.kernel.h),    i32(g.kernel.w),   i32(g.stride.h),
          i32(g.stride.w),    i32(g.padding.h),  i32(g.padding.w),
          i32(g.dilation.h),  i32(g.dilation.w), i32(g.groups),
          static_cast<int32_t>(g.activation),    g.hasBias ? 1 : 0,
          tiling.channelsPerThread,              tiling.outputsPerThread,
          i32(range.first),                      i32(range.count)};
}

} // namespace convgen
