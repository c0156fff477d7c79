#include "exec/GridRunner.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace convgen {

std::vector<Dim3> allBlocks(const Dim3 &grid) {
  std::vector<Dim3> blocks;
  blocks.reserve(grid.count());
  for (uint32_t z = 0; z < grid.z; ++z)
    for (uint32_t y = 0; y < grid.y; ++y)
      for (uint32_t x = 0; x < grid.x; ++x)
        blocks.push_back({x, y, z});
  return blocks;
}

static void call(ConvKernelEntry kernel, const ConvKernelArguments &a) {
  kernel(a.input, a.weights, a.bias, a.output, a.batch);
}

/// Without barriers the threads of a block cannot observe each other's
/// order, so they run one after another on one host thread.
static void runBlockInTurn(ConvKernelEntry kernel, GpuThreadContext context,
                           const ConvKernelArguments &arguments) {
  setCurrentGpuThread(&context);
  for (uint32_t z = 0; z < context.blockDim.z; ++z)
    for (uint32_t y = 0; y < context.blockDim.y; ++y)
      for (uint32_t x = 0; x < context.blockDim.x; ++x) {
        context.threadIdx = {x, y, z};
        call(kernel, arguments);
      }
  setCurrentGpuThread(nullptr);
}

/// With barriers every GPU thread needs a host thread of its own: a
/// barrier releases only when the whole block has arrived.
static void runBlockConcurrently(ConvKernelEntry kernel, const GpuThreadContext &blockContext,
                                 const ConvKernelArguments &arguments) {
  const Dim3 &dims = blockContext.blockDim;
  BlockBarrier barrier(static_cast<std::ptrdiff_t>(dims.count()));
  std::vector<GpuThreadContext> contexts(dims.count(), blockContext);
  size_t index = 0;
  for (uint32_t z = 0; z < dims.z; ++z)
    for (uint32_t y = 0; y < dims.y; ++y)
      for (uint32_t x = 0; x < dims.x; ++x)
        contexts[index++].threadIdx = {x, y, z};
  std::vector<std::jthread> threads;
  threads.reserve(contexts.size());
  try {
    for (GpuThreadContext &context : contexts) {
      context.barrier = &barrier;
      threads.emplace_back([kernel, &context, &arguments, &barrier] {
        setCurrentGpuThread(&context);
        call(kernel, arguments);
        setCurrentGpuThread(nullptr);
        barrier.arrive_and_drop(); // returned: the others no longer wait for it
      });
    }
  } catch (...) {
    // Threads that could not be started never arrive: drop them from the
    // barrier so the started ones finish, then join and rethrow.
    for (size_t missing = threads.size(); missing < contexts.size(); ++missing)
      barrier.arrive_and_drop();
    threads.clear();
    throw;
  }
  threads.clear(); // joins
}

void runBlocks(const HostKernel &kernel, const Dim3 &grid, const Dim3 &block,
               std::span<const Dim3> blocks, const ConvKernelArguments &arguments,
               unsigned hostThreads, const std::string &entryName) {
  const ConvKernelEntry entry = kernel.entry(entryName);
  GpuThreadContext base;
  base.blockDim = block;
  base.gridDim = grid;
  if (kernel.usesBarriers() || kernel.usesSharedMemory()) {
    for (const Dim3 &index : blocks) {
      GpuThreadContext context = base;
      context.blockIdx = index;
      if (kernel.usesBarriers())
        runBlockConcurrently(entry, context, arguments);
      else
        runBlockInTurn(entry, context, arguments);
    }
    return;
  }
  if (hostThreads == 0)
    hostThreads = std::max(1u, std::thread::hardware_concurrency());
  hostThreads = static_cast<unsigned>(std::min<size_t>(hostThreads, blocks.size()));
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < blocks.size(); i = next++) {
      GpuThreadContext context = base;
      context.blockIdx = blocks[i];
      runBlockInTurn(entry, context, arguments);
    }
  };
  std::vector<std::jthread> workers;
  for (unsigned i = 1; i < hostThreads; ++i)
    workers.emplace_back(worker);
  worker();
}

} // namespace convgen
