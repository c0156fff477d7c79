// Host stand-ins for the NVVM intrinsics the operator templates use. On the
// host each GPU thread runs on some host thread that first says which GPU
// thread it is (setCurrentGpuThread); the stand-ins for the thread and block
// ids and dimensions read that, and the barrier stand-in waits on the
// block's barrier. HostKernel redirects every `llvm.nvvm.*` call of the
// retargeted IR to these; an intrinsic without a stand-in is refused, never
// guessed at.
#pragma once

#include <barrier>
#include <cstdint>
#include <string_view>

namespace convgen {

struct Dim3 {
  uint32_t x = 1, y = 1, z = 1;
  uint64_t count() const { return uint64_t(x) * y * z; }
};

/// One barrier per block: every thread of the block arrives at each
/// __syncthreads() before any passes it. A thread that returns early drops
/// out, as on the GPU, so the others do not wait for it.
using BlockBarrier = std::barrier<>;

/// Which GPU thread a host thread is running.
struct GpuThreadContext {
  Dim3 threadIdx, blockIdx, blockDim, gridDim;
  BlockBarrier *barrier = nullptr; ///< null when the kernel has no barrier
};

/// The calling host thread now runs \p context's GPU thread (null: none).
/// The context must outlive the calls the kernel makes.
void setCurrentGpuThread(const GpuThreadContext *context);

/// The host function standing in for the NVVM intrinsic \p name (e.g.
/// "llvm.nvvm.read.ptx.sreg.tid.x"), or nullptr if none does.
void *nvvmHostFunction(std::string_view name);

/// True for the intrinsics that are block-wide barriers.
bool isBarrierIntrinsic(std::string_view name);

} // namespace convgen
