// The --arch option: which NVIDIA GPU generation the PTX targets.
//
// The default is sm_80 (A100): PTX for sm_80 is JIT-compiled by the driver
// for any newer GPU (H100/H200 included), while PTX for sm_90 does not load on
// an A100. Pass --arch sm_90 to use Hopper-only features on H100/H200.
#pragma once

#include <string>
#include <vector>

namespace llvm {
class Target;
}

namespace convgen {

inline constexpr const char *DefaultArch = "sm_80";
inline constexpr const char *NvptxTriple = "nvptx64-nvidia-cuda";

/// DefaultArch unless set (parseArch checks a user's choice).
struct NvptxArch {
  std::string name = DefaultArch; ///< "sm_80": LLVM's NVPTX CPU name and ptxas's -arch
  int computeVersion = 80;
};

/// Every arch convgen targets (sm_70 .. sm_90) that this LLVM's NVPTX backend knows.
std::vector<std::string> supportedArchs();

/// LLVM's NVPTX target, registered on first use.
const llvm::Target &nvptxTarget();

/// Checks \p name against supportedArchs(); an InputError naming the option
/// and listing the supported values otherwise.
NvptxArch parseArch(const std::string &name);

/// `--arch sm_80,sm_90`: the archs a layer gets a cubin for, in increasing
/// order and without repeats, and the lowest, for which the PTX and its
/// tiling are made (PTX for sm_80 loads on sm_90, not the reverse). Throws
/// as parseArch does, or for an empty list.
struct ArchList {
  NvptxArch ptxArch;
  std::vector<std::string> cubinArchs;
};
ArchList parseArchList(const std::vector<std::string> &names);

} // namespace convgen
