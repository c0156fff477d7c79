#include "codegen/KernelSplit.h"

#include <algorithm>
#include <limits>

namespace convgen {

KernelPartition partitionKernels(const ConvGeometry &geometry, const Tiling &tiling,
                                 const std::vector<float> &weights, const SplitBudget &budget) {
  const int64_t blocks = geometry.outChannels / tiling.channelsPerThread;
  const int64_t weightsPerBlock = int64_t(weights.size()) / blocks;
  const int64_t spatial = tiling.spatialPerThread();
  KernelPartition plan;
  int64_t total = 0, nonzerosOfKernel = 0;
  const int64_t maxNonzeros =
      budget.maxNonzeros > 0 ? budget.maxNonzeros : std::numeric_limits<int64_t>::max();
  for (int64_t block = 0; block < blocks; ++block) {
    auto begin = weights.begin() + block * weightsPerBlock;
    const int64_t nonzeros =
        std::count_if(begin, begin + weightsPerBlock, [](float w) { return w != 0; });
    int64_t code = nonzeros * spatial;
    total += code;
    if (plan.denseReason.empty() && code > budget.maxMultiplyAdds)
      plan.denseReason = "channel block " + std::to_string(block) + " alone holds " +
                         std::to_string(code) + " multiply-adds of sparse code, over the " +
                         "per-kernel limit of " + std::to_string(budget.maxMultiplyAdds);
    if (plan.denseReason.empty() && nonzeros > maxNonzeros)
      plan.denseReason = "channel block " + std::to_string(block) + " alone holds " +
                         std::to_string(nonzeros) + " nonzeros, over the " +
                         std::to_string(maxNonzeros) + " of a kernel's constant bank";
    if (!plan.kernels.empty() && plan.multiplyAdds.back() + code <= budget.maxMultiplyAdds &&
        nonzerosOfKernel + nonzeros <= maxNonzeros) {
      ++plan.kernels.back().count;
      plan.multiplyAdds.back() += code;
      nonzerosOfKernel += nonzeros;
    } else {
      nonzerosOfKernel = nonzeros;
      plan.kernels.push_back({block, 1});
      plan.multiplyAdds.push_back(code);
    }
  }
  if (plan.denseReason.empty() && int64_t(plan.kernels.size()) > budget.maxKernels)
    plan.denseReason = std::to_string(total) + " multiply-adds of sparse code need " +
                       std::to_string(plan.kernels.size()) + " kernels of at most " +
                       std::to_string(budget.maxMultiplyAdds) +
                       (budget.maxNonzeros > 0
                            ? " multiply-adds and " + std::to_string(budget.maxNonzeros) + " nonzeros"
                            : std::string()) +
                       " each, over the limit of " +
                       std::to_string(budget.maxKernels) + " per layer";
  if (!plan.denseReason.empty()) {
    plan.kernels.clear();
    plan.multiplyAdds.clear();
  }
  return plan;
}

} // namespace convgen
