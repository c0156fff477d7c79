#include "verify/BlockSample.h"

#include "exec/GridRunner.h"
#include "support/Error.h"

#include <algorithm>
#include <limits>
#include <random>
#include <set>

namespace convgen {

/// True if output row p's receptive field reaches into the top or bottom padding.
static bool touchesRowPadding(const ConvGeometry &g, int64_t p) {
  int64_t top = p * g.stride.h - g.padding.h;
  int64_t bottom = top + (g.kernel.h - 1) * g.dilation.h;
  return top < 0 || bottom >= g.inSize.h;
}

BlockSample chooseBlocks(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch,
                         const ChannelBlockRange &channelBlocks, bool sample, int interiorBlocks,
                         uint64_t seed) {
  LaunchShape launch = launchShape(geometry, tiling, batch, channelBlocks);
  constexpr int64_t maxDim = std::numeric_limits<int32_t>::max();
  if (launch.gridX > maxDim || launch.gridY > 65535)
    throw UnsupportedError("verify: the grid for batch " + std::to_string(batch) +
                           " exceeds CUDA's limits");
  BlockSample result;
  result.grid = {uint32_t(launch.gridX), uint32_t(launch.gridY), 1};
  result.channelBlocks = channelBlocks;
  const uint64_t total = result.grid.count();
  if (!sample) {
    result.blocks = allBlocks(result.grid);
    result.description = "all " + std::to_string(total) + " blocks";
    return result;
  }

  std::set<int64_t> boundary = {0, launch.gridX - 1};
  for (int64_t x = 0; x < launch.gridX; ++x)
    for (int64_t t = x * launch.blockX; t < (x + 1) * launch.blockX; ++t) {
      auto tile = threadTile(geometry, tiling, batch, t);
      bool padded = false;
      for (int64_t p = tile ? tile->p0 : 0; tile && p < tile->p0 + tiling.rowsPerThread; ++p)
        padded = padded || touchesRowPadding(geometry, p);
      if (padded) {
        boundary.insert(x);
        break;
      }
    }
  std::vector<int64_t> interior;
  for (int64_t x = 0; x < launch.gridX; ++x)
    if (!boundary.count(x))
      interior.push_back(x);
  std::mt19937_64 random(seed);
  std::shuffle(interior.begin(), interior.end(), random);
  interior.resize(std::min<size_t>(interior.size(), size_t(std::max(interiorBlocks, 0))));

  std::set<int64_t> columns = boundary;
  columns.insert(interior.begin(), interior.end());
  for (uint32_t y = 0; y < result.grid.y; ++y)
    for (int64_t x : columns)
      result.blocks.push_back({uint32_t(x), y, 0});
  result.sampled = result.blocks.size() < total;
  result.description =
      result.sampled
          ? std::to_string(result.blocks.size()) + " of " + std::to_string(total) +
                " blocks: all " + std::to_string(result.grid.y) + " channel blocks x " +
                std::to_string(columns.size()) + " of " + std::to_string(launch.gridX) +
                " x blocks (" + std::to_string(boundary.size()) +
                " at the padding rows or the grid's ends, " + std::to_string(interior.size()) +
                " random)"
          : "all " + std::to_string(total) + " blocks";
  return result;
}

} // namespace convgen
