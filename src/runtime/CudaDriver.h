// The CUDA Driver API, loaded at run time with dlopen("libcuda.so.1"), so
// convgen's binaries start on machines without an NVIDIA driver and say so
// in one line instead of failing to load. Every call goes through check(),
// which turns a failed CUresult into a CudaError naming the API, the
// driver's error name and what was being done.
#pragma once

#include "runtime/CudaDriverApi.h"
#include "support/Error.h"

#include <string>

namespace convgen {

/// No usable driver: libcuda.so.1 is missing, lacks an entry point, or
/// cuInit fails (no device). Exit code 2: the machine, not convgen, is the
/// problem.
class DriverUnavailable : public Error {
public:
  using Error::Error;
};

/// A driver call failed.
class CudaError : public Error {
public:
  CudaError(const std::string &message, cuda::CUresult code) : Error(message), Code(code) {}
  cuda::CUresult code() const { return Code; }
  ExitCode exitCode() const override { return ExitCheckFailed; }

private:
  cuda::CUresult Code;
};

class CudaDriver {
public:
  /// The driver of this process, loaded and initialised (cuInit) on first
  /// use. Throws DriverUnavailable.
  static const CudaDriver &get();
  /// The library get() loads: $CONVGEN_CUDA_DRIVER if set (a driver
  /// outside the loader's path, or the tests' host emulator), else
  /// libcuda.so.1.
  static std::string driverLibrary();
  /// Loads \p library (for tests: a name that does not exist). Throws
  /// DriverUnavailable.
  explicit CudaDriver(const std::string &library);
  ~CudaDriver();
  CudaDriver(const CudaDriver &) = delete;
  CudaDriver &operator=(const CudaDriver &) = delete;

  /// Throws CudaError "API: ERROR_NAME (description) while WHAT" unless
  /// \p result is CUDA_SUCCESS.
  void check(cuda::CUresult result, const char *api, const std::string &what) const;
  /// "CUDA_ERROR_OUT_OF_MEMORY", or the number if the driver has no name.
  std::string errorName(cuda::CUresult result) const;

  using CUresult = cuda::CUresult;
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuDriverGetVersion)(int *) = nullptr;
  CUresult (*cuDeviceGetCount)(int *) = nullptr;
  CUresult (*cuDeviceGet)(cuda::CUdevice *, int) = nullptr;
  CUresult (*cuDeviceGetName)(char *, int, cuda::CUdevice) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int *, int, cuda::CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(cuda::CUcontext *, cuda::CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRelease)(cuda::CUdevice) = nullptr;
  CUresult (*cuCtxSetCurrent)(cuda::CUcontext) = nullptr;
  CUresult (*cuCtxSynchronize)() = nullptr;
  CUresult (*cuModuleLoadDataEx)(cuda::CUmodule *, const void *, unsigned, int *,
                                 void **) = nullptr;
  CUresult (*cuModuleUnload)(cuda::CUmodule) = nullptr;
  CUresult (*cuModuleGetFunction)(cuda::CUfunction *, cuda::CUmodule, const char *) = nullptr;
  CUresult (*cuModuleGetGlobal)(cuda::CUdeviceptr *, size_t *, cuda::CUmodule,
                                const char *) = nullptr;
  CUresult (*cuFuncGetAttribute)(int *, int, cuda::CUfunction) = nullptr;
  CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int *, cuda::CUfunction, int,
                                                          size_t) = nullptr;
  CUresult (*cuMemAlloc)(cuda::CUdeviceptr *, size_t) = nullptr;
  CUresult (*cuMemFree)(cuda::CUdeviceptr) = nullptr;
  CUresult (*cuMemcpyHtoD)(cuda::CUdeviceptr, const void *, size_t) = nullptr;
  CUresult (*cuMemcpyDtoH)(void *, cuda::CUdeviceptr, size_t) = nullptr;
  CUresult (*cuLaunchKernel)(cuda::CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, cuda::CUstream, void **, void **) = nullptr;
  CUresult (*cuStreamSynchronize)(cuda::CUstream) = nullptr;
  CUresult (*cuStreamCreate)(cuda::CUstream *, unsigned) = nullptr;
  CUresult (*cuStreamDestroy)(cuda::CUstream) = nullptr;
  CUresult (*cuStreamWaitEvent)(cuda::CUstream, cuda::CUevent, unsigned) = nullptr;
  CUresult (*cuEventCreate)(cuda::CUevent *, unsigned) = nullptr;
  CUresult (*cuEventDestroy)(cuda::CUevent) = nullptr;
  CUresult (*cuEventRecord)(cuda::CUevent, cuda::CUstream) = nullptr;
  CUresult (*cuGetErrorName)(CUresult, const char **) = nullptr;
  CUresult (*cuGetErrorString)(CUresult, const char **) = nullptr;

private:
  void *Library = nullptr;
};

} // namespace convgen
