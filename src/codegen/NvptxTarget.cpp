#include "codegen/NvptxTarget.h"

#include "support/Error.h"

#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/TargetParser/Triple.h>

#include <algorithm>
#include <memory>
#include <mutex>

namespace convgen {

// convgen's kernels assume Volta's independent thread scheduling and at
// most Hopper's features; issue #3 fixes the range at sm_70 .. sm_90.
static constexpr int MinComputeVersion = 70;
static constexpr int MaxComputeVersion = 90;

const llvm::Target &nvptxTarget() {
  // Only the NVPTX backend, not every target LLVM was built with.
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
  });
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(NvptxTriple, error);
  if (!target)
    throw UnsupportedError("LLVM: NVPTX target unavailable: " + error);
  return *target;
}

static bool llvmKnowsCpu(const std::string &cpu) {
  // One subtarget with the default CPU answers for every name; creating one
  // per candidate would make LLVM print a warning for each unknown name.
  static const std::unique_ptr<llvm::MCSubtargetInfo> info(
      nvptxTarget().createMCSubtargetInfo(NvptxTriple, "", ""));
  return info && info->isCPUStringValid(cpu);
}

/// "sm_86" -> 86; -1 if the name is not of that form.
static int computeVersionOf(const std::string &name) {
  if (name.size() < 5 || name.size() > 6 || name.compare(0, 3, "sm_") != 0)
    return -1;
  for (size_t i = 3; i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9')
      return -1;
  return std::stoi(name.substr(3));
}

std::vector<std::string> supportedArchs() {
  std::vector<std::string> archs;
  for (int version = MinComputeVersion; version <= MaxComputeVersion; ++version) {
    std::string name = "sm_" + std::to_string(version);
    if (llvmKnowsCpu(name))
      archs.push_back(name);
  }
  return archs;
}

NvptxArch parseArch(const std::string &name) {
  int version = computeVersionOf(name);
  if (version >= MinComputeVersion && version <= MaxComputeVersion && llvmKnowsCpu(name))
    return {name, version};
  std::string list;
  for (const std::string &arch : supportedArchs())
    list += (list.empty() ? "" : ", ") + arch;
  throw InputError({"", "", "--arch"}, "unsupported target '" + name + "'; supported: " + list);
}

ArchList parseArchList(const std::vector<std::string> &names) {
  std::vector<NvptxArch> archs;
  for (const std::string &name : names) {
    NvptxArch arch = parseArch(name);
    if (std::none_of(archs.begin(), archs.end(),
                     [&](const NvptxArch &known) { return known.name == arch.name; }))
      archs.push_back(arch);
  }
  if (archs.empty())
    throw InputError({"", "", "--arch"}, "names no target");
  std::sort(archs.begin(), archs.end(), [](const NvptxArch &a, const NvptxArch &b) {
    return a.computeVersion < b.computeVersion;
  });
  ArchList list;
  list.ptxArch = archs.front();
  for (const NvptxArch &arch : archs)
    list.cubinArchs.push_back(arch.name);
  return list;
}

} // namespace convgen
