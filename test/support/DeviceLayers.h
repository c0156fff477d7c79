// Generated layers for the runtime tests, which run on a GPU or, where there
// is none, on the host CUDA driver (test/hostcuda): ctest runs the runtime
// tests a second time with CONVGEN_CUDA_DRIVER naming that library. There a
// module cannot run its PTX, so each generated layer's PTX is registered
// with the IR it was emitted from, compiled by the host executor. Each
// launch then checks the runtime's arguments against the generator's own
// view of the layer (grid, block, buffer sizes) before running the blocks.
#pragma once

#include "codegen/LayerGenerator.h"
#include "hostcuda/HostCuda.h"

#include <memory>
#include <vector>

namespace convgen::test {

class DeviceLayers {
public:
  DeviceLayers();
  ~DeviceLayers(); ///< unregisters what it registered
  DeviceLayers(const DeviceLayers &) = delete;
  DeviceLayers &operator=(const DeviceLayers &) = delete;

  /// Generates \p layer into \p generator's output directory and, on the
  /// host driver, makes its PTX runnable there.
  GeneratedLayer generate(KernelGenerator &generator, const ConvLayer &layer);

  /// Whether the process runs on the host CUDA driver.
  static bool onHostDriver();

  struct Registration;

private:
  std::vector<std::unique_ptr<Registration>> Registered;
};

/// On the host driver only: its counters, and a failure for the next call
/// of \p api (as named in libcuda, "cuMemAlloc_v2").
ConvgenHostCudaCounters hostDriverCounters();
void failNextHostDriverCall(const char *api, int result);

} // namespace convgen::test
