// Runs a host-compiled kernel over a CUDA grid with GPU semantics: each
// block's threads see their own ids; where the kernel has barriers, every
// thread of the block is a host thread of its own and waits on the block's
// barrier; shared memory is one copy per module, so such blocks run one at a
// time. Kernels with neither (convgen's direct template) run each block's
// threads in turn, and the blocks in parallel over the host's cores.
#pragma once

#include "exec/HostKernel.h"
#include "exec/NvvmEmulation.h"

#include <span>
#include <vector>

namespace convgen {

struct ConvKernelArguments {
  const void *input = nullptr; ///< fp32 or fp16, as the kernel was generated
  const float *weights = nullptr;
  const float *bias = nullptr;
  void *output = nullptr;
  int32_t batch = 0;
};

/// Every block index of \p grid, x fastest.
std::vector<Dim3> allBlocks(const Dim3 &grid);

/// Runs \p blocks of the launch (grid, block) of \p kernel's entry \p entry
/// (its first kernel if empty) with \p arguments, on up to \p hostThreads
/// host threads (0: one per core).
void runBlocks(const HostKernel &kernel, const Dim3 &grid, const Dim3 &block,
               std::span<const Dim3> blocks, const ConvKernelArguments &arguments,
               unsigned hostThreads = 0, const std::string &entry = "");

} // namespace convgen
