// The host CUDA driver: a test double of libcuda.so.1 that runs on the CPU,
// so the runtime's every driver call (module load, globals, uploads,
// launches, reloads, failures) is exercised where there is no GPU. Tests
// point the runtime at it with CONVGEN_CUDA_DRIVER=<libconvgen_hostcuda.so>.
//
// Device memory is host memory. A module is PTX, or a fatbinary, of which
// the double takes the cubin for its device (sm_90, an H100) as the real
// driver would, else the PTX (counted as a JIT compile). A module cannot
// run on the host, so a test registers, per PTX text (a fatbinary's own
// PTX for a fatbinary), the code to run in its place: the layer's
// final IR compiled by the host executor (test/support/DeviceLayers.h).
// Loading an unregistered PTX fails as an invalid PTX would, with a JIT log.
//
// What the double checks, as the real driver would or stricter: copies and
// launch pointers lie inside live allocations or module globals; globals
// and kernels exist in the PTX text (a global's size is the one the PTX
// declares); handles are live; launch dimensions are within CUDA's limits.
#pragma once

#include <cstddef>

extern "C" {

struct ConvgenHostModule {
  void *user;
  /// Runs \p symbol over the launch (grid, block) with the launch's
  /// parameter array. Returns null, or why the launch is invalid.
  const char *(*launch)(void *user, const char *symbol, const unsigned grid[3],
                        const unsigned block[3], void **parameters);
  /// The host memory standing for module global \p symbol, with its size in
  /// \p bytes; null if the module has none.
  void *(*global)(void *user, const char *symbol, size_t *bytes);
};

/// Makes modules loaded from \p ptx run \p module. It must stay valid until
/// unregistered.
void convgen_hostcuda_register(const char *ptx, const ConvgenHostModule *module);
void convgen_hostcuda_unregister(const char *ptx);

/// Whether [address, address + bytes) lies inside one live allocation or
/// loaded module global.
int convgen_hostcuda_is_device_memory(unsigned long long address, size_t bytes);

struct ConvgenHostCudaCounters {
  long modulesLoaded;   ///< successful cuModuleLoadDataEx calls, ever
  long jitCompiles;     ///< of which from PTX: plain, or a fatbinary's without a cubin that fits
  long cubinLoads;      ///< of which a fatbinary's cubin, loaded without compiling
  long modulesLive;
  long allocationsLive;
  long launches;
  size_t bytesToDevice; ///< by cuMemcpyHtoD, ever
  long streamsLive, eventsLive;
  long eventsRecorded, streamWaits; ///< ever
  long waitsOnUnrecordedEvents;     ///< ever: a wait that waits for nothing
};
void convgen_hostcuda_counters(ConvgenHostCudaCounters *counters);

/// The next call of driver entry point \p api (such as "cuMemAlloc_v2")
/// returns \p result without doing anything: for testing error paths.
void convgen_hostcuda_fail_next(const char *api, int result);

} // extern "C"
