// How a layer's sparse code is divided into kernels. The code for a channel
// block holds nnz(block) x BN x BH x BW multiply-adds. One kernel takes
// consecutive channel blocks while its code stays within the per-kernel
// budget (and, where each kernel gets a constant bank of its own, its
// nonzeros within the bank); a layer needing more kernels than allowed, or with one channel
// block over the budget, goes dense. (Specialisation costs follow the
// nonzeros, ir_passes/SparseUnroll, so the dense template's size sets no
// limit.)
#pragma once

#include "codegen/TemplateSpec.h"

#include <cstdint>
#include <string>
#include <vector>

namespace convgen {

struct SplitBudget {
  int64_t maxMultiplyAdds; ///< sparse code per kernel
  int64_t maxKernels;      ///< kernels per layer
  /// Nonzero weights per kernel, 0 for no limit: a kernel in a module of
  /// its own reads its weights from that module's 64 KiB constant bank.
  int64_t maxNonzeros = 0;
};

struct KernelPartition {
  std::vector<ChannelBlockRange> kernels; ///< consecutive, covering every channel block
  std::vector<int64_t> multiplyAdds;      ///< sparse multiply-adds of each kernel
  std::string denseReason;                ///< set (and kernels empty) if the layer must go dense
};

/// Divides the channel blocks of a layer with OIHW \p weights into kernels
/// (codegen/LayerPlan builds the layer's plan on it).
KernelPartition partitionKernels(const ConvGeometry &geometry, const Tiling &tiling,
                                 const std::vector<float> &weights, const SplitBudget &budget);

} // namespace convgen
