#include "runtime/CudaDriver.h"

#include <cstdlib>
#include <dlfcn.h>
#include <memory>
#include <mutex>

namespace convgen {

namespace {

/// Resolves \p symbol (the versioned name cuda.h maps the API to, such as
/// cuMemAlloc_v2) into \p function.
template <typename Function>
void resolve(void *library, const char *symbol, Function &function, const std::string &path) {
  void *address = ::dlsym(library, symbol);
  if (!address)
    throw DriverUnavailable(path + " has no " + symbol +
                            ": the NVIDIA driver is too old for convgen (CUDA 12 or later needed)");
  function = reinterpret_cast<Function>(address);
}

} // namespace

std::string CudaDriver::driverLibrary() {
  const char *chosen = std::getenv("CONVGEN_CUDA_DRIVER");
  return chosen && *chosen ? chosen : "libcuda.so.1";
}

CudaDriver::CudaDriver(const std::string &library) {
  Library = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!Library) {
    const char *reason = ::dlerror();
    throw DriverUnavailable("no NVIDIA driver: cannot load " + library + " (" +
                            (reason ? reason : "unknown reason") + ")");
  }
  try {
    resolve(Library, "cuInit", cuInit, library);
    resolve(Library, "cuDriverGetVersion", cuDriverGetVersion, library);
    resolve(Library, "cuDeviceGetCount", cuDeviceGetCount, library);
    resolve(Library, "cuDeviceGet", cuDeviceGet, library);
    resolve(Library, "cuDeviceGetName", cuDeviceGetName, library);
    resolve(Library, "cuDeviceGetAttribute", cuDeviceGetAttribute, library);
    resolve(Library, "cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain, library);
    resolve(Library, "cuDevicePrimaryCtxRelease_v2", cuDevicePrimaryCtxRelease, library);
    resolve(Library, "cuCtxSetCurrent", cuCtxSetCurrent, library);
    resolve(Library, "cuCtxSynchronize", cuCtxSynchronize, library);
    resolve(Library, "cuModuleLoadDataEx", cuModuleLoadDataEx, library);
    resolve(Library, "cuModuleUnload", cuModuleUnload, library);
    resolve(Library, "cuModuleGetFunction", cuModuleGetFunction, library);
    resolve(Library, "cuModuleGetGlobal_v2", cuModuleGetGlobal, library);
    resolve(Library, "cuFuncGetAttribute", cuFuncGetAttribute, library);
    resolve(Library, "cuOccupancyMaxActiveBlocksPerMultiprocessor",
            cuOccupancyMaxActiveBlocksPerMultiprocessor, library);
    resolve(Library, "cuMemAlloc_v2", cuMemAlloc, library);
    resolve(Library, "cuMemFree_v2", cuMemFree, library);
    resolve(Library, "cuMemcpyHtoD_v2", cuMemcpyHtoD, library);
    resolve(Library, "cuMemcpyDtoH_v2", cuMemcpyDtoH, library);
    resolve(Library, "cuLaunchKernel", cuLaunchKernel, library);
    resolve(Library, "cuStreamSynchronize", cuStreamSynchronize, library);
    resolve(Library, "cuStreamCreate", cuStreamCreate, library);
    resolve(Library, "cuStreamDestroy_v2", cuStreamDestroy, library);
    resolve(Library, "cuStreamWaitEvent", cuStreamWaitEvent, library);
    resolve(Library, "cuEventCreate", cuEventCreate, library);
    resolve(Library, "cuEventDestroy_v2", cuEventDestroy, library);
    resolve(Library, "cuEventRecord", cuEventRecord, library);
    resolve(Library, "cuGetErrorName", cuGetErrorName, library);
    resolve(Library, "cuGetErrorString", cuGetErrorString, library);
  } catch (...) {
    ::dlclose(Library);
    throw;
  }
}

CudaDriver::~CudaDriver() {
  if (Library)
    ::dlclose(Library);
}

const CudaDriver &CudaDriver::get() {
  // Loaded once; a failure is remembered and rethrown to every caller.
  static std::once_flag once;
  static std::unique_ptr<CudaDriver> driver;
  static std::string failure;
  std::call_once(once, [] {
    try {
      auto loaded = std::make_unique<CudaDriver>(driverLibrary());
      cuda::CUresult result = loaded->cuInit(0);
      if (result != cuda::CUDA_SUCCESS)
        throw DriverUnavailable("the NVIDIA driver is installed, but cuInit failed: " +
                                loaded->errorName(result) +
                                (result == cuda::CUDA_ERROR_NO_DEVICE ? " (no GPU visible)" : ""));
      driver = std::move(loaded);
    } catch (const DriverUnavailable &e) {
      failure = e.what();
    }
  });
  if (!driver)
    throw DriverUnavailable(failure);
  return *driver;
}

std::string CudaDriver::errorName(cuda::CUresult result) const {
  const char *name = nullptr;
  if (cuGetErrorName && cuGetErrorName(result, &name) == cuda::CUDA_SUCCESS && name)
    return name;
  return "CUresult " + std::to_string(result);
}

void CudaDriver::check(cuda::CUresult result, const char *api, const std::string &what) const {
  if (result == cuda::CUDA_SUCCESS)
    return;
  std::string message = std::string(api) + ": " + errorName(result);
  const char *description = nullptr;
  if (cuGetErrorString && cuGetErrorString(result, &description) == cuda::CUDA_SUCCESS &&
      description)
    message += " (" + std::string(description) + ")";
  throw CudaError(message + " while " + what, result);
}

} // namespace convgen
