// The host executor's compiler: a generated kernel's final IR (the very
// module that goes to the NVPTX backend) copied, retargeted to the host CPU
// and compiled there with LLVM ORC, so convgen can run its own kernels
// without a GPU.
//
// Retargeting changes only what the host needs: the triple, the data
// layout and target attributes, and each `llvm.nvvm.*` intrinsic call,
// which becomes a call to its host stand-in (exec/NvvmEmulation). Loads,
// address arithmetic and fused multiply-adds are the kernel's own; llvm.fma
// is correctly rounded on the host as on the GPU, so results match bit for
// bit wherever the PTX does not reassociate (it does not: no fast-math).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace llvm {
class Module;
namespace orc {
class LLJIT;
}
} // namespace llvm

namespace convgen {

/// The conv kernels' parameters: input, weights, bias, output, batch.
using ConvKernelEntry = void (*)(const void *, const float *, const float *, void *, int32_t);

class HostKernel {
public:
  /// Compiles the kernels \p kernelNames of \p module for the host. The
  /// module is copied (bitcode round trip into a private context) and left
  /// untouched. Throws UnsupportedError naming \p what for an NVVM intrinsic
  /// without a host stand-in or an unexpected kernel signature, CheckFailure
  /// if LLVM fails.
  static std::unique_ptr<HostKernel> compile(const llvm::Module &module,
                                             const std::vector<std::string> &kernelNames,
                                             const std::string &what);
  static std::unique_ptr<HostKernel> compile(const llvm::Module &module,
                                             const std::string &kernelName,
                                             const std::string &what) {
    return compile(module, std::vector<std::string>{kernelName}, what);
  }
  ~HostKernel();

  /// The host entry point of kernel \p name; the first kernel's by default.
  ConvKernelEntry entry(const std::string &name = "") const;
  /// The host memory of a global of the module, such as the constant-bank
  /// array the runtime fills (cuModuleGetGlobal on the GPU).
  std::span<std::byte> global(const std::string &name) const;
  /// Whether the kernel calls a block-wide barrier.
  bool usesBarriers() const { return UsesBarriers; }
  /// Whether the kernel has shared (addrspace 3) memory. There is one copy
  /// per module, so the blocks of such a kernel run one at a time.
  bool usesSharedMemory() const { return UsesSharedMemory; }

private:
  HostKernel();
  std::unique_ptr<llvm::orc::LLJIT> Jit;
  std::map<std::string, ConvKernelEntry> Entries;
  std::string FirstKernel;
  std::map<std::string, size_t> GlobalSizes;
  bool UsesBarriers = false;
  bool UsesSharedMemory = false;
  std::string What;
};

} // namespace convgen
