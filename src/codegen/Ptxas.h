// ptxas from the CUDA toolkit: validates generated PTX and reports the
// resources the kernel uses (registers, spills, shared and constant memory).
// Found at $CUDA_HOME/bin/ptxas, /usr/local/cuda/bin/ptxas or on PATH.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace convgen {

/// One kernel's resources.
struct PtxasKernelReport {
  int registers = 0;
  int spillStoreBytes = 0;
  int spillLoadBytes = 0;
  int stackFrameBytes = 0;
  int sharedBytes = 0;
  /// Machine (SASS) instructions in the kernel's code: its cubin section's
  /// size / 16. 0 where the cubin has no section for it.
  int64_t instructions = 0;
};

/// The module's: per kernel, and the worst over its kernels.
struct PtxasReport {
  std::string version;
  std::map<std::string, PtxasKernelReport> kernels;
  int registers = 0;
  int spillStoreBytes = 0;
  int spillLoadBytes = 0;
  int stackFrameBytes = 0;
  int sharedBytes = 0;
  int constantBytes = 0; ///< user constants (cmem[3]): the packed weights in constant mode
  int64_t instructions = 0; ///< machine instructions of every kernel together
  double seconds = 0;
};

struct Ptxas {
  std::string path;
  std::string version; ///< "13.0", asked once when found
};

/// The ptxas to use, or nullopt if there is none.
std::optional<Ptxas> findPtxas();

/// Assembles \p ptx for \p arch with `ptxas -v` and parses its report;
/// with \p cubin, also hands back the machine code (the layer's binary for
/// that arch). Throws CheckFailure with ptxas's messages if it rejects the PTX.
PtxasReport runPtxas(const Ptxas &ptxas, const std::string &ptx, const std::string &arch,
                     const std::string &what, std::string *cubin = nullptr);

} // namespace convgen
