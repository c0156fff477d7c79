// RAII over the CUDA objects the runtime owns: the device's primary
// context, device memory and modules. Destructors never throw and tolerate
// CUDA_ERROR_DEINITIALIZED (the driver shutting down at process exit).
#pragma once

#include "runtime/CudaDriver.h"

#include <cstddef>
#include <string>
#include <utility>

namespace convgen {

/// The primary context of one device, retained and made current.
class CudaContext {
public:
  /// Throws DriverUnavailable (no driver or no device \p ordinal) or CudaError.
  explicit CudaContext(int ordinal = 0);
  ~CudaContext();
  CudaContext(const CudaContext &) = delete;
  CudaContext &operator=(const CudaContext &) = delete;

  /// Makes the context current on the calling thread.
  void makeCurrent() const;
  const CudaDriver &driver() const { return Driver; }
  cuda::CUdevice device() const { return Device; }
  const std::string &name() const { return Name; }
  int multiprocessors() const { return Multiprocessors; }
  int maxThreadsPerMultiprocessor() const { return MaxThreadsPerMultiprocessor; }
  int computeCapability() const { return ComputeCapability; } ///< e.g. 90
  int driverVersion() const { return DriverVersion; }         ///< e.g. 12040

private:
  const CudaDriver &Driver;
  cuda::CUdevice Device = 0;
  cuda::CUcontext Context = nullptr;
  std::string Name;
  int Multiprocessors = 0, MaxThreadsPerMultiprocessor = 0, ComputeCapability = 0,
      DriverVersion = 0;
};

/// Device memory.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  /// Allocates \p bytes (at least one) in \p context. \p what names the use in errors.
  DeviceBuffer(const CudaContext &context, size_t bytes, const std::string &what);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer &&other) noexcept;
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;

  cuda::CUdeviceptr pointer() const { return Pointer; }
  size_t bytes() const { return Bytes; }
  void upload(const void *data, size_t bytes, size_t offset, const std::string &what) const;
  void download(void *data, size_t bytes, size_t offset, const std::string &what) const;

private:
  void release() noexcept;
  const CudaDriver *Driver = nullptr;
  cuda::CUdeviceptr Pointer = 0;
  size_t Bytes = 0;
};

/// A driver object made with \p Create(&handle, \p Flags) and released
/// with \p Destroy (a CudaDriver entry point each); the destructor ignores
/// errors, as at exit.
template <typename Handle, auto Create, auto Destroy, unsigned Flags>
class DriverObject {
public:
  DriverObject(const CudaContext &context, const char *api, const std::string &what)
      : Driver(&context.driver()) {
    Driver->check((Driver->*Create)(&Object, Flags), api, what);
  }
  ~DriverObject() {
    if (Object)
      (void)(Driver->*Destroy)(Object);
  }
  DriverObject(DriverObject &&other) noexcept
      : Driver(other.Driver), Object(std::exchange(other.Object, nullptr)) {}
  DriverObject &operator=(DriverObject &&) = delete;
  DriverObject(const DriverObject &) = delete;
  Handle get() const { return Object; }

private:
  const CudaDriver *Driver;
  Handle Object = nullptr;
};

/// A stream that does not synchronise with the legacy default stream, and
/// an event without timing: what a layer's kernels fan out and back in with.
using CudaStream = DriverObject<cuda::CUstream, &CudaDriver::cuStreamCreate,
                                &CudaDriver::cuStreamDestroy, cuda::CU_STREAM_NON_BLOCKING>;
using CudaEvent = DriverObject<cuda::CUevent, &CudaDriver::cuEventCreate,
                               &CudaDriver::cuEventDestroy, cuda::CU_EVENT_DISABLE_TIMING>;

/// A loaded module, from PTX (which the driver JIT-compiles) or a
/// fatbinary (whose cubin for the device it loads as it is, else its PTX
/// compiled). The driver's error and info logs go into the error message
/// when it fails.
class CudaModule {
public:
  /// \p image is PTX text or a fatbinary's bytes.
  CudaModule(const CudaContext &context, const std::string &image, const std::string &what);
  ~CudaModule();
  CudaModule(const CudaModule &) = delete;
  CudaModule &operator=(const CudaModule &) = delete;

  cuda::CUfunction function(const std::string &symbol) const;
  /// A module global's device address and size.
  std::pair<cuda::CUdeviceptr, size_t> global(const std::string &symbol) const;
  const std::string &infoLog() const { return InfoLog; }

private:
  const CudaDriver &Driver;
  cuda::CUmodule Module = nullptr;
  std::string What, InfoLog;
};

} // namespace convgen
