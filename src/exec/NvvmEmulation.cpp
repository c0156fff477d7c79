#include "exec/NvvmEmulation.h"

#include <utility>

namespace convgen {

static thread_local const GpuThreadContext *Current = nullptr;

void setCurrentGpuThread(const GpuThreadContext *context) { Current = context; }

// The IR calls these with the C calling convention: `i32 ()` and `void ()`.
static uint32_t tidX() { return Current->threadIdx.x; }
static uint32_t tidY() { return Current->threadIdx.y; }
static uint32_t tidZ() { return Current->threadIdx.z; }
static uint32_t ctaidX() { return Current->blockIdx.x; }
static uint32_t ctaidY() { return Current->blockIdx.y; }
static uint32_t ctaidZ() { return Current->blockIdx.z; }
static uint32_t ntidX() { return Current->blockDim.x; }
static uint32_t ntidY() { return Current->blockDim.y; }
static uint32_t ntidZ() { return Current->blockDim.z; }
static uint32_t nctaidX() { return Current->gridDim.x; }
static uint32_t nctaidY() { return Current->gridDim.y; }
static uint32_t nctaidZ() { return Current->gridDim.z; }
static uint32_t warpSize() { return 32; }
static void barrier0() {
  if (Current->barrier)
    Current->barrier->arrive_and_wait();
}
// bar.sync 0 is __syncthreads(); HostKernel refuses other barrier ids.
static void barSync(uint32_t) { barrier0(); }

using Entry = std::pair<std::string_view, void *>;
static const Entry HostFunctions[] = {
    {"llvm.nvvm.read.ptx.sreg.tid.x", reinterpret_cast<void *>(&tidX)},
    {"llvm.nvvm.read.ptx.sreg.tid.y", reinterpret_cast<void *>(&tidY)},
    {"llvm.nvvm.read.ptx.sreg.tid.z", reinterpret_cast<void *>(&tidZ)},
    {"llvm.nvvm.read.ptx.sreg.ctaid.x", reinterpret_cast<void *>(&ctaidX)},
    {"llvm.nvvm.read.ptx.sreg.ctaid.y", reinterpret_cast<void *>(&ctaidY)},
    {"llvm.nvvm.read.ptx.sreg.ctaid.z", reinterpret_cast<void *>(&ctaidZ)},
    {"llvm.nvvm.read.ptx.sreg.ntid.x", reinterpret_cast<void *>(&ntidX)},
    {"llvm.nvvm.read.ptx.sreg.ntid.y", reinterpret_cast<void *>(&ntidY)},
    {"llvm.nvvm.read.ptx.sreg.ntid.z", reinterpret_cast<void *>(&ntidZ)},
    {"llvm.nvvm.read.ptx.sreg.nctaid.x", reinterpret_cast<void *>(&nctaidX)},
    {"llvm.nvvm.read.ptx.sreg.nctaid.y", reinterpret_cast<void *>(&nctaidY)},
    {"llvm.nvvm.read.ptx.sreg.nctaid.z", reinterpret_cast<void *>(&nctaidZ)},
    {"llvm.nvvm.read.ptx.sreg.warpsize", reinterpret_cast<void *>(&warpSize)},
    {"llvm.nvvm.barrier0", reinterpret_cast<void *>(&barrier0)},
    {"llvm.nvvm.bar.sync", reinterpret_cast<void *>(&barSync)},
};

void *nvvmHostFunction(std::string_view name) {
  for (const auto &[intrinsic, function] : HostFunctions)
    if (intrinsic == name)
      return function;
  return nullptr;
}

bool isBarrierIntrinsic(std::string_view name) {
  return name == "llvm.nvvm.barrier0" || name == "llvm.nvvm.bar.sync";
}

} // namespace convgen
