// One plan per layer, computed once from its geometry, the decided tiling
// and its mask: whether it is sparse or dense (and why), how its channel
// blocks are divided into kernels under the code budget, and per kernel
// everything downstream needs: the template's constants, the input
// channels it reads, what the weight map must find, the shared memory and
// the launch shape. The specialiser, the weight-map check, the manifest and
// (through the manifest) the runtime's launch read the plan; none of them
// recomputes tiles, channel blocks, staging rounds or channels used. A new
// tiling parameter is planned here, in one place.
#pragma once

#include "codegen/KernelSplit.h"
#include "codegen/TemplateSpec.h"
#include "model/ModelFile.h"

#include <cstdint>
#include <string>
#include <vector>

namespace convgen {

/// One kernel of a layer's plan.
struct KernelPlan {
  std::string symbol;
  ChannelBlockRange channelBlocks;
  /// The template's convgen_spec for this kernel.
  TemplateSpec spec{};
  /// The template's convgen_input_channel_used: per channel block, per
  /// input channel of its group (all ones when dense).
  std::vector<uint8_t> inputChannelsUsed;
  /// Its channel blocks' nonzero weights, and nonzeros x BN x BH x BW: the
  /// positions and multiply-adds the weight map of its sparse code must
  /// show, no more, no fewer.
  int64_t sparsePositions = 0;
  int64_t sparseMultiplyAdds = 0;
  /// Blocks of grid y: its channel blocks, channelBlocksPerCta per block.
  int64_t gridY = 0;
};

struct LayerPlan {
  /// The decided tiling; for the dense fallback, with its fixed settings.
  Tiling tiling;
  DType dtype = DType::F32;
  SplitBudget budget{};
  /// Why the layer goes dense; empty when it is sparse.
  std::string denseReason;
  bool dense() const { return !denseReason.empty(); }
  /// Floats of shared memory a block uses: the staged input channel, the
  /// split reduction's hand-over, or none.
  int64_t sharedFloats = 0;
  /// Threads of grid x per group of BN images (its spatial tiles).
  int64_t tilesPerImageGroup = 0;
  std::vector<KernelPlan> kernels;
};

/// The tiling reason a dense fallback adds to the decided tiling's.
inline constexpr const char *DenseTilingReason =
    "dense fallback: skip=0, stage=0, split=1, weights=global";

/// "layer1.0.conv1" -> "convgen_layer1_0_conv1": a valid PTX identifier.
/// Kernel \p part of \p parts > 1 gets "_k<part>" appended.
std::string kernelSymbolFor(const std::string &layerName, size_t part = 0, size_t parts = 1);

/// Plans \p layer under the decided \p tiling (already checked against the
/// layer): dense when the tiling asks for it or the code budget says so.
LayerPlan planLayer(const ConvLayer &layer, const Tiling &tiling, DType dtype,
                    const SplitBudget &budget);

} // namespace convgen
