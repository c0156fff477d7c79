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
#include <vector>

namespace convgen {

/// Where the kernels read the nonzero weights from (all three separate from
/// the inputs): the constant bank, ld.global.nc, or immediates in the code.
enum class WeightPathChoice { Auto, Constant, Global, Baked };
const char *weightPathName(WeightPathChoice path); ///< "auto", "constant", "global", "baked"

/// The kernel's tiling, specialisation constants like the geometry. Each
/// thread computes BK output channels x BN images x BH output rows x BW
/// neighbouring output columns; a block is threadsX x channelBlocksPerCta
/// threads, each row of threadsX computing one channel block (of BK
/// channels) over threadsX spatial tiles.
struct Tiling {
  int channelsPerThread = 1;   ///< BK, 1..64, divides outChannels / groups
  int outputsPerThread = 1;    ///< BW, output columns per thread, <= the output width
  int rowsPerThread = 1;       ///< BH, output rows per thread, <= the output height
  int imagesPerThread = 1;     ///< BN
  int threadsX = 128;          ///< blockDim.x: spatial tiles per block
  int channelBlocksPerCta = 1; ///< channel blocks per block
  /// S: threads that share one thread's outputs, each reducing over a
  /// slice of the input channels; combined through shared memory in a fixed
  /// order. blockDim.y is channelBlocksPerCta x S.
  int reductionSplits = 1;
  bool stageInput = false;     ///< inputs staged in shared memory, a channel at a time
  bool skipUnusedInputs = true; ///< a channel block skips the input channels it never reads
  WeightPathChoice weightPath = WeightPathChoice::Auto;
  /// The dense kernel of the same template: every weight read by index, no
  /// elimination. A tuner's candidate for layers the sparse code loses on.
  bool dense = false;

  int blockY() const { return channelBlocksPerCta * reductionSplits; }
  int threadsPerBlock() const { return threadsX * blockY(); }
  int accumulators() const { return channelsPerThread * spatialPerThread(); }
  /// Outputs of one channel a thread computes: BN x BH x BW.
  int spatialPerThread() const { return imagesPerThread * rowsPerThread * outputsPerThread; }
  bool operator==(const Tiling &) const = default;
  /// "bk=4,bw=4,bh=1,bn=1,threads=128,cta-blocks=1,split=1,stage=0,skip=1,weights=auto,dense=0":
  /// the syntax parseTiling reads.
  std::string describe() const;
};

/// Upper bounds fixed by the template's register arrays and shared memory.
inline constexpr int MaxChannelsPerThread = 64;
inline constexpr int MaxOutputsPerThread = 8; ///< BN x BH x BW
inline constexpr int MaxAccumulators = 64;    ///< BK x BN x BH x BW: registers
inline constexpr int64_t MaxStagedFloats = 12288;

/// Floats of shared memory the staging of one input channel takes (the
/// template's formula: staged row tiles x rows x input width).
int64_t stagedFloats(const ConvGeometry &geometry, const Tiling &tiling);
/// Staging rounds per input channel: each thread copies one float a round.
int64_t stagingRounds(const ConvGeometry &geometry, const Tiling &tiling);
/// Floats of shared memory a split reduction hands over: the sums of parts
/// 1..S-1 (0 without a split).
int64_t splitFloats(const Tiling &tiling);

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

/// Groups of BN images a batch makes: ceil(batch / BN).
int64_t imageGroups(int64_t batch, const Tiling &tiling);

/// Spatial tiles (threads of grid x) per BN images: ceil(Ho / BH) x ceil(Wo / BW).
int64_t tilesPerImageGroup(const ConvGeometry &geometry, const Tiling &tiling);

/// Grid for a batch of N images: x covers ceil(N / BN) x tilesPerImageGroup
/// threads, y the kernel's channel blocks (all of the layer's by default),
/// channelBlocksPerCta per block.
struct LaunchShape {
  int64_t gridX, gridY, blockX, blockY;
};
LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch);
LaunchShape launchShape(const ConvGeometry &geometry, const Tiling &tiling, int64_t batch,
                        const ChannelBlockRange &range);

/// The outputs one GPU thread of the template computes (the template's work
/// split, restated for the host executor's coverage checks): images
/// [n0, n0 + BN) (clamped to the batch), output rows [p0, p0 + BH), columns
/// [q0, q0 + BW), of its channel block's BK channels. Thread t is blockIdx.x
/// x threadsX + threadIdx.x. Where BW (BH) does not divide the width
/// (height), the last tile is moved left (up) to end at the edge,
/// overlapping its neighbour (both write the same values).
struct ThreadTile {
  int64_t n0 = 0, p0 = 0, q0 = 0;
};
/// The tile of spatial thread \p thread, or nullopt if it lies past the last one.
std::optional<ThreadTile> threadTile(const ConvGeometry &geometry, const Tiling &tiling,
                                     int64_t batch, int64_t thread);

/// Activations (input and output) in fp32 or fp16; weights, bias and
/// accumulation stay fp32.
enum class DType { F32, F16 };
const char *dtypeName(DType dtype); ///< "f32", "f16"
int64_t dtypeBytes(DType dtype);

/// The values of ConvSpec, in declaration order.
using TemplateSpec = std::array<int32_t, 29>;
/// Where each ConvSpec field is in a TemplateSpec.
enum SpecField : size_t {
  SpecInChannels, SpecInHeight, SpecInWidth, SpecOutChannels, SpecOutHeight, SpecOutWidth,
  SpecKernelH, SpecKernelW, SpecStrideH, SpecStrideW, SpecPadH, SpecPadW, SpecDilationH,
  SpecDilationW, SpecGroups, SpecActivation, SpecHasBias, SpecChannelsPerThread,
  SpecOutputsPerThread, SpecRowsPerThread, SpecImagesPerThread, SpecThreadsX,
  SpecChannelBlocksPerCta, SpecStageInput, SpecSkipUnusedInputs, SpecHalfPrecision,
  SpecFirstChannelBlock, SpecChannelBlocks, SpecReductionSplits, SpecFieldCount
};
static_assert(SpecFieldCount == std::tuple_size_v<TemplateSpec>);
/// For a kernel computing \p range (default: every channel block).
TemplateSpec makeTemplateSpec(const ConvGeometry &geometry, const Tiling &tiling,
                              DType dtype = DType::F32);
TemplateSpec makeTemplateSpec(const ConvGeometry &geometry, const Tiling &tiling,
                              const ChannelBlockRange &range, DType dtype = DType::F32);

/// The template's convgen_input_channel_used table for \p range: per channel
/// block, per input channel of its group, 1 if one of the block's BK filters
/// has a nonzero weight on it. All ones when \p weights is empty (dense).
std::vector<uint8_t> inputChannelsUsed(const ConvGeometry &geometry, const Tiling &tiling,
                                       const ChannelBlockRange &range,
                                       const std::vector<float> &weights);

} // namespace convgen
