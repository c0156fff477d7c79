#include "codegen/KernelSplit.h"

#include <algorithm>

namespace convgen {

KernelPartition partitionKernels(const ConvGeometry &geometry, const Tiling &tiling,
                                 const std::vector<float> &weights, const SplitBudget &budget) {
  const int64_t blocks = geometry.outChannels / tiling.channelsPerThread;
  const int64_t weightsPerBlock = int64_t(weights.size()) / blocks;
  const int64_t spatial = tiling.spatialPerThread();
  // A staged input channel adds its copy rounds to the unrolled template,
  // each about four multiply-adds' worth of IR (index arithmetic, a load, a
  // store): an estimate.
  const int64_t stagingPerChannel = 4 * stagingRounds(geometry, tiling);
  const int64_t positionsPerChannel = tiling.channelsPerThread * geometry.kernel.h * geometry.kernel.w;
  // The template unrolls the input channels a block reads (all of them
  // unless unused ones are skipped).
  const std::vector<uint8_t> used =
      tiling.skipUnusedInputs ? inputChannelsUsed(geometry, tiling, {0, blocks}, weights)
                              : std::vector<uint8_t>();
  KernelPartition plan;
  int64_t total = 0, templateOfLast = 0;
  int64_t templatePerBlock =
      weightsPerBlock * spatial + geometry.inChannelsPerGroup() * stagingPerChannel;
  for (int64_t block = 0; block < blocks; ++block) {
    auto begin = weights.begin() + block * weightsPerBlock;
    int64_t code = std::count_if(begin, begin + weightsPerBlock, [](float w) { return w != 0; }) *
                   spatial;
    if (!used.empty())
      templatePerBlock =
          std::count(used.begin() + block * geometry.inChannelsPerGroup(),
                     used.begin() + (block + 1) * geometry.inChannelsPerGroup(), uint8_t{1}) *
          (positionsPerChannel * spatial + stagingPerChannel);
    total += code;
    if (plan.denseReason.empty() &&
        (code > budget.maxMultiplyAdds || templatePerBlock > budget.maxTemplateMultiplyAdds))
      plan.denseReason = "channel block " + std::to_string(block) + " alone holds " +
                         std::to_string(code) + " multiply-adds of sparse code and " +
                         std::to_string(templatePerBlock) +
                         " of unrolled template, over the per-kernel limits of " +
                         std::to_string(budget.maxMultiplyAdds) + " and " +
                         std::to_string(budget.maxTemplateMultiplyAdds);
    bool fits = !plan.kernels.empty() &&
                plan.multiplyAdds.back() + code <= budget.maxMultiplyAdds &&
                templateOfLast + templatePerBlock <= budget.maxTemplateMultiplyAdds;
    if (fits) {
      ++plan.kernels.back().count;
      plan.multiplyAdds.back() += code;
      templateOfLast += templatePerBlock;
    } else {
      plan.kernels.push_back({block, 1});
      plan.multiplyAdds.push_back(code);
      templateOfLast = templatePerBlock;
    }
  }
  if (plan.denseReason.empty() && int64_t(plan.kernels.size()) > budget.maxKernels)
    plan.denseReason = std::to_string(total) + " multiply-adds of sparse code need " +
                       std::to_string(plan.kernels.size()) + " kernels of at most " +
                       std::to_string(budget.maxMultiplyAdds) + " (and " +
                       std::to_string(budget.maxTemplateMultiplyAdds) +
                       " of unrolled template) each, over the limit of " +
                       std::to_string(budget.maxKernels) + " per layer";
  if (!plan.denseReason.empty()) {
    plan.kernels.clear();
    plan.multiplyAdds.clear();
  }
  return plan;
}

} // namespace convgen
