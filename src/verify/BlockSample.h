// Which blocks of a generated kernel's grid the verifier runs. Small layers
// run every block. For large ones, every channel block (grid y: each is
// different code) runs with a sample of the x blocks: the first and last,
// every one holding an output row whose window reaches into the top or
// bottom padding, and some random interior ones. Each x block covers whole
// or partial output rows, so the left and right padding is exercised by any
// block that holds a row's first or last column tile.
#pragma once

#include "codegen/TemplateSpec.h"
#include "exec/NvvmEmulation.h"

#include <cstdint>
#include <string>
#include <vector>

namespace convgen {

struct BlockSample {
  std::vector<Dim3> blocks; ///< blockIdx values; y counts from the kernel's first channel block
  Dim3 grid;
  ChannelBlockRange channelBlocks;
  bool sampled = false;
  std::string description; ///< e.g. "all 64 blocks"
};

/// Every block of the launch of the kernel computing \p channelBlocks for
/// \p batch images when \p sample is false, else the sample above with
/// \p interiorBlocks random interior x blocks drawn from \p seed.
BlockSample chooseBlocks(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch,
                         const ChannelBlockRange &channelBlocks, bool sample, int interiorBlocks,
                         uint64_t seed);

} // namespace convgen
