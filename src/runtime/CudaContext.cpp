#include "runtime/CudaContext.h"

#include "runtime/FatbinaryImage.h"

#include <utility>
#include <vector>

namespace convgen {

using namespace cuda;

CudaContext::CudaContext(int ordinal) : Driver(CudaDriver::get()) {
  int count = 0;
  Driver.check(Driver.cuDeviceGetCount(&count), "cuDeviceGetCount", "counting GPUs");
  if (ordinal < 0 || ordinal >= count)
    throw DriverUnavailable("no GPU " + std::to_string(ordinal) + ": the driver sees " +
                            std::to_string(count));
  Driver.check(Driver.cuDeviceGet(&Device, ordinal), "cuDeviceGet", "opening GPU " + std::to_string(ordinal));
  char name[256] = {};
  Driver.check(Driver.cuDeviceGetName(name, sizeof(name) - 1, Device), "cuDeviceGetName",
               "naming the GPU");
  Name = name;
  int major = 0, minor = 0;
  Driver.check(Driver.cuDeviceGetAttribute(&Multiprocessors, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                           Device),
               "cuDeviceGetAttribute", "querying the GPU");
  Driver.check(Driver.cuDeviceGetAttribute(&MaxThreadsPerMultiprocessor,
                                           CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, Device),
               "cuDeviceGetAttribute", "querying the GPU");
  Driver.check(Driver.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, Device),
               "cuDeviceGetAttribute", "querying the GPU");
  Driver.check(Driver.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, Device),
               "cuDeviceGetAttribute", "querying the GPU");
  ComputeCapability = major * 10 + minor;
  Driver.check(Driver.cuDriverGetVersion(&DriverVersion), "cuDriverGetVersion",
               "querying the driver");
  Driver.check(Driver.cuDevicePrimaryCtxRetain(&Context, Device), "cuDevicePrimaryCtxRetain",
               "opening " + Name);
  makeCurrent();
}

CudaContext::~CudaContext() {
  if (Context)
    (void)Driver.cuDevicePrimaryCtxRelease(Device); // may be DEINITIALIZED at exit
}

void CudaContext::makeCurrent() const {
  Driver.check(Driver.cuCtxSetCurrent(Context), "cuCtxSetCurrent", "using " + Name);
}

DeviceBuffer::DeviceBuffer(const CudaContext &context, size_t bytes, const std::string &what)
    : Driver(&context.driver()), Bytes(bytes) {
  Driver->check(Driver->cuMemAlloc(&Pointer, bytes ? bytes : 1), "cuMemAlloc",
                "allocating " + std::to_string(bytes) + " bytes for " + what);
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : Driver(other.Driver), Pointer(std::exchange(other.Pointer, 0)),
      Bytes(std::exchange(other.Bytes, 0)) {}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  if (this != &other) {
    release();
    Driver = other.Driver;
    Pointer = std::exchange(other.Pointer, 0);
    Bytes = std::exchange(other.Bytes, 0);
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  if (Pointer && Driver)
    (void)Driver->cuMemFree(Pointer); // may be DEINITIALIZED at exit
  Pointer = 0;
}

void DeviceBuffer::upload(const void *data, size_t bytes, size_t offset,
                          const std::string &what) const {
  if (offset + bytes > Bytes)
    throw CudaError("upload of " + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                        " overruns the " + std::to_string(Bytes) + "-byte buffer for " + what,
                    0);
  if (bytes)
    Driver->check(Driver->cuMemcpyHtoD(Pointer + offset, data, bytes), "cuMemcpyHtoD",
                  "uploading " + what);
}

void DeviceBuffer::download(void *data, size_t bytes, size_t offset,
                            const std::string &what) const {
  if (offset + bytes > Bytes)
    throw CudaError("download of " + std::to_string(bytes) + " bytes at " +
                        std::to_string(offset) + " overruns the " + std::to_string(Bytes) +
                        "-byte buffer for " + what,
                    0);
  if (bytes)
    Driver->check(Driver->cuMemcpyDtoH(data, Pointer + offset, bytes), "cuMemcpyDtoH",
                  "downloading " + what);
}

CudaModule::CudaModule(const CudaContext &context, const std::string &image, const std::string &what)
    : Driver(context.driver()), What(what) {
  std::vector<char> errorLog(16384, '\0'), infoLog(16384, '\0');
  int options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                   CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog.data(),
                    reinterpret_cast<void *>(static_cast<uintptr_t>(errorLog.size() - 1)),
                    infoLog.data(),
                    reinterpret_cast<void *>(static_cast<uintptr_t>(infoLog.size() - 1))};
  // A PTX string's terminating NUL is what cuModuleLoadDataEx expects; a
  // fatbinary's header gives its size.
  CUresult result = Driver.cuModuleLoadDataEx(&Module, image.c_str(), 4, options, values);
  InfoLog = infoLog.data();
  if (result != CUDA_SUCCESS) {
    std::string log = errorLog.data();
    Driver.check(result, "cuModuleLoadDataEx",
                 std::string(isFatbinary(image) ? "loading the fatbinary of " : "loading the PTX of ") +
                     what + (log.empty() ? "" : ": " + log));
  }
}

CudaModule::~CudaModule() {
  if (Module)
    (void)Driver.cuModuleUnload(Module); // may be DEINITIALIZED at exit
}

CUfunction CudaModule::function(const std::string &symbol) const {
  CUfunction function = nullptr;
  Driver.check(Driver.cuModuleGetFunction(&function, Module, symbol.c_str()),
               "cuModuleGetFunction", "finding kernel " + symbol + " of " + What);
  return function;
}

std::pair<CUdeviceptr, size_t> CudaModule::global(const std::string &symbol) const {
  CUdeviceptr pointer = 0;
  size_t bytes = 0;
  Driver.check(Driver.cuModuleGetGlobal(&pointer, &bytes, Module, symbol.c_str()),
               "cuModuleGetGlobal", "finding " + symbol + " of " + What);
  return {pointer, bytes};
}

} // namespace convgen
