// The specialisation constants of the direct conv template: the layer's
// geometry plus the tiling. TemplateSpecializer writes them into the
// template's `convgen_spec` global; the field order mirrors `ConvSpec` in
// templates/conv2d_direct.cu.
#pragma once

#include "model/ConvGeometry.h"

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace convgen {

/// How the work is split. Each thread computes channelsPerThread (BK) output
/// channels x outputsPerThread (BW) neighbouring output columns of one row;
/// blockIdx.y picks the block of BK channels.
struct Tiling {
  int channelsPerThread = 1; ///< BK, 1..8, divides outChannels / groups
  int outputsPerThread = 1;  ///< BW, 1..8
  int threadsPerBlock = 128;

  bool operator==(const Tiling &) const = default;
  std::string describe() const; ///< "BK=4 BW=4 threads=128"
};

/// Upper bounds fixed by the template's register arrays.
inline constexpr int MaxChannelsPerThread = 8;
inline constexpr int MaxOutputsPerThread = 8;

/// The default tiling: BK = the largest of 4, 2, 1 that divides the
/// channels per group (so a channel block never straddles a group; 1 for
/// depthwise), BW = 4 output columns (fewer if the output is narrower), 128
/// threads. Each input value loaded then feeds BK multiply-adds.
Tiling chooseTiling(const ConvGeometry &geometry);

/// Throws UnsupportedError naming the layer if \p tiling does not fit the
/// template or the geometry.
void checkTiling(const ConvGeometry &geometry, const Tiling &tiling, const std::string &layer);

/// The channel blocks (of BK output channels each) one kernel computes: all
/// outChannels / BK of them, or one range of a layer split across kernels.
struct ChannelBlockRange {
  int64_t first = 0;
  int64_t count = 0;
  bool operator==(const ChannelBlockRange &) const = default;
};
/// Every channel block of the layer.
ChannelBlockRange allChannelBlocks(const ConvGeometry &geometry, const Tiling &tiling);

/// Grid for a batch of N images: x covers N * Ho * ceil(Wo / BW) threads,
/// y the kernel's channel blocks (all of the layer's by default).
struct LaunchShape {
  int64_t gridX, gridY, blockX;
};
LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch);
LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch,
                        const ChannelBlockRange &range);

/// The outputs one GPU thread of the template computes (the template's work
/// split, restated for the host executor's coverage checks): image n, output
/// row p, columns [q0, q0 + BW), of the channels [blockIdx.y x BK, + BK).
/// Thread t is blockIdx.x x threads + threadIdx.x. Where BW does not divide
/// the width, a row's last tile is moved left to end at the edge, overlapping
/// its neighbour (both write the same values).
struct ThreadTile {
  int64_t n = 0, p = 0, q0 = 0;
};
/// The tile of thread \p thread, or nullopt if it lies past the last one.
std::optional<ThreadTile> threadTile(const ConvGeometry &geometry, const Tiling &tiling,
                                     int64_t batch, int64_t thread);

/// The values of ConvSpec, in declaration order.
using TemplateSpec = std::array<int32_t, 21>;
/// For a kernel computing \p range (default: every channel block).
TemplateSpec makeTemplateSpec(const ConvGeometry &geometry, const Tiling &tiling);
TemplateSpec makeTemplateSpec(const ConvGeometry &geometry, const Tiling &tiling,
                              const ChannelBlockRange &range);

} // namespace convgen
