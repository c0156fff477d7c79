// The CUDA toolkit's `fatbinary` tool: packs a layer's cubins (one per
// --arch) and its PTX into the one image the runtime hands the driver,
// nvcc's convention. Found beside ptxas.
#pragma once

#include "codegen/Ptxas.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace convgen {

struct FatbinaryTool {
  std::string path;
};

/// `fatbinary` in the directory of \p ptxas; nullopt if it is not there.
std::optional<FatbinaryTool> findFatbinaryTool(const Ptxas &ptxas);

/// A cubin of the layer: its arch ("sm_80") and ptxas's output.
struct ArchCubin {
  std::string arch;
  std::string bytes;
};

/// The fatbinary of \p cubins and \p ptx (for \p ptxArch), uncompressed so
/// that the host CUDA driver and the runtime read its entries as they are.
/// Throws CheckFailure with the tool's first line if it fails.
std::string makeFatbinary(const FatbinaryTool &tool, const std::vector<ArchCubin> &cubins,
                          const std::string &ptx, const std::string &ptxArch,
                          const std::string &what);

/// "sm_80" -> 80. Throws UnsupportedError for a name that is not sm_NN.
int smVersion(const std::string &arch);

} // namespace convgen
