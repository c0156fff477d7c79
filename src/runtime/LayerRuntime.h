// A generated layer on the GPU: its module loaded (the fatbinary, whose
// cubin for the device needs no compiling, or the PTX of a --ptx-only
// round, which the driver JIT-compiles), its kernels found, its packed
// weights uploaded once, and a launch on device tensors. After the
// generator has rewritten the layer's files (a new pruning round), reload()
// updates it in place: only the values when the code is the same (same
// mask), else the whole module.
#pragma once

#include "runtime/CudaContext.h"
#include "runtime/LayerManifest.h"

#include <memory>
#include <vector>

namespace convgen {

/// What the driver reports for one kernel, and the occupancy it gets.
struct KernelResources {
  std::string symbol;
  int registers = 0;
  int localBytes = 0;  ///< per thread: spills and stack
  int sharedBytes = 0;
  int blocksPerMultiprocessor = 0;
  double occupancy = 0; ///< resident threads / the SM's maximum
};

/// How a layer's code reaches the device.
struct LoadedCode {
  bool jitCompiled = false; ///< the driver compiles PTX at load
  std::string description;  ///< "cubin sm_90", or the PTX and why no cubin fits
};

/// What the driver runs from \p image (a fatbinary, or PTX text) on a device
/// of SM version \p deviceSm (90): the fatbinary's cubin by CUDA's
/// compatibility rule, else its PTX, JIT-compiled. Throws InputError naming
/// \p what if the fatbinary is malformed or holds neither.
LoadedCode chooseCode(const std::string &image, int deviceSm, const std::string &what);

class LayerRuntime {
public:
  /// Loads the layer described by \p manifestPath. Throws InputError for bad
  /// files, CudaError if the driver refuses (with the JIT log).
  LayerRuntime(const CudaContext &context, const std::filesystem::path &manifestPath);

  /// Runs the layer: \p input holds \p batch NCHW images, \p output receives
  /// theirs. The kernels write disjoint output channels: a layer of several
  /// runs them at once, forked from \p stream onto side streams and joined
  /// back, so work queued on \p stream after it sees the whole output.
  void launch(cuda::CUdeviceptr input, cuda::CUdeviceptr output, int batch,
              cuda::CUstream stream = nullptr) const;

  enum class Reload { ValuesOnly, Module };
  /// Re-reads the manifest and files after regeneration. Same PTX: the new
  /// values are uploaded and nothing else changes. Otherwise a new module is
  /// loaded, and replaces the old one only once it has loaded.
  Reload reload();

  std::vector<KernelResources> resources() const;
  const LayerManifest &manifest() const { return Manifest; }
  ~LayerRuntime();
  /// What the modules were loaded from, and whether the driver compiled
  /// (any of) them.
  const LoadedCode &loadedCode() const;
  double loadSeconds() const; ///< the modules' load, JIT included

private:
  void uploadValues(const std::vector<float> &values);

  const CudaContext &Context;
  LayerManifest Manifest;
  /// Per module, the fatbinary's bytes or the PTX: what it was loaded from.
  std::vector<std::string> Images;
  struct LoadedModules;
  std::unique_ptr<LoadedModules> Code;
  DeviceBuffer Weights; ///< the weights file: packed values (or the dense tensor), then the bias
};

} // namespace convgen
