#include "codegen/LayerPlan.h"

#include <algorithm>
#include <cctype>

namespace convgen {

std::string kernelSymbolFor(const std::string &layerName, size_t part, size_t parts) {
  std::string symbol = "convgen_";
  for (char c : layerName)
    symbol += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (parts > 1)
    symbol += "_k" + std::to_string(part);
  return symbol;
}

/// The dense kernel reads every input channel through ld.global.nc, with
/// no staging and no split: the same template with its loops kept.
static Tiling denseTiling(Tiling tiling) {
  tiling.skipUnusedInputs = false;
  tiling.stageInput = false;
  tiling.reductionSplits = 1;
  tiling.weightPath = WeightPathChoice::Global;
  return tiling;
}

/// The kernel computing \p range, with the template's constants for it.
static KernelPlan planKernel(const ConvLayer &layer, const LayerPlan &plan,
                             const ChannelBlockRange &range, std::string symbol) {
  const ConvGeometry &geometry = layer.geometry;
  const Tiling &tiling = plan.tiling;
  KernelPlan kernel;
  kernel.symbol = std::move(symbol);
  kernel.channelBlocks = range;
  kernel.spec = makeTemplateSpec(geometry, tiling, range, plan.dtype);
  kernel.inputChannelsUsed =
      tiling.skipUnusedInputs && !plan.dense()
          ? inputChannelsUsed(geometry, tiling, range, layer.weights)
          : std::vector<uint8_t>(size_t(range.count * geometry.inChannelsPerGroup()), 1);
  kernel.gridY = (range.count + tiling.channelBlocksPerCta - 1) / tiling.channelBlocksPerCta;
  return kernel;
}

LayerPlan planLayer(const ConvLayer &layer, const Tiling &tiling, DType dtype,
                    const SplitBudget &budget) {
  const ConvGeometry &geometry = layer.geometry;
  LayerPlan plan;
  plan.tiling = tiling;
  plan.dtype = dtype;
  plan.budget = budget;
  // Past the code-size budget the layer is split across kernels by channel
  // blocks; past the kernel limit, the dense fallback from the same template.
  KernelPartition partition;
  if (tiling.dense)
    partition.denseReason = "the tiling asks for the dense kernel (dense=1)";
  else
    partition = partitionKernels(geometry, tiling, layer.weights, budget);
  plan.denseReason = partition.denseReason;
  if (plan.dense()) {
    plan.tiling = denseTiling(tiling);
    partition.kernels = {allChannelBlocks(geometry, plan.tiling)};
    partition.multiplyAdds = {int64_t(layer.weights.size()) * plan.tiling.spatialPerThread()};
  }
  plan.sharedFloats = plan.tiling.stageInput ? stagedFloats(geometry, plan.tiling)
                      : plan.tiling.reductionSplits > 1 ? splitFloats(plan.tiling)
                                                        : 0;
  plan.tilesPerImageGroup = tilesPerImageGroup(geometry, plan.tiling);
  const size_t parts = partition.kernels.size();
  for (size_t part = 0; part < parts; ++part) {
    KernelPlan kernel =
        planKernel(layer, plan, partition.kernels[part], kernelSymbolFor(layer.name, part, parts));
    kernel.sparseMultiplyAdds = partition.multiplyAdds[part];
    kernel.sparsePositions = kernel.sparseMultiplyAdds / plan.tiling.spatialPerThread();
    plan.kernels.push_back(std::move(kernel));
  }
  return plan;
}

} // namespace convgen
