// The driver loader without a GPU: a missing libcuda is one clear error,
// and the API values declared in runtime/CudaDriverApi.h match cuda.h
// wherever the CUDA toolkit is installed.
#include "runtime/CudaDriver.h"

#include <cstdlib>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#ifdef CONVGEN_HAVE_CUDA_H
#include <cuda.h>
#endif

using namespace convgen;
using ::testing::HasSubstr;

TEST(CudaDriver, MissingDriverIsOneClearError) {
  try {
    CudaDriver driver("libconvgen-no-such-driver.so.1");
    FAIL() << "expected DriverUnavailable";
  } catch (const DriverUnavailable &e) {
    EXPECT_THAT(e.what(), HasSubstr("no NVIDIA driver: cannot load libconvgen-no-such-driver.so.1"));
    EXPECT_EQ(e.exitCode(), ExitBadInput);
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

TEST(CudaDriver, EnvironmentCanNameTheLibrary) {
  ::setenv("CONVGEN_CUDA_DRIVER", "/opt/driver/libcuda.so.1", 1);
  EXPECT_EQ(CudaDriver::driverLibrary(), "/opt/driver/libcuda.so.1");
  ::setenv("CONVGEN_CUDA_DRIVER", "", 1);
  EXPECT_EQ(CudaDriver::driverLibrary(), "libcuda.so.1");
  ::unsetenv("CONVGEN_CUDA_DRIVER");
  EXPECT_EQ(CudaDriver::driverLibrary(), "libcuda.so.1");
}

TEST(CudaDriver, LibraryWithoutTheApiIsRefused) {
  // libz is a real library without any CUDA entry point.
  try {
    CudaDriver driver("libz.so.1");
    FAIL() << "expected DriverUnavailable";
  } catch (const DriverUnavailable &e) {
    EXPECT_THAT(e.what(), HasSubstr("has no cuInit"));
  }
}

TEST(CudaDriver, DeclaredApiValuesMatchCudaH) {
#ifdef CONVGEN_HAVE_CUDA_H
  static_assert(cuda::CUDA_SUCCESS == ::CUDA_SUCCESS);
  static_assert(cuda::CU_STREAM_NON_BLOCKING == ::CU_STREAM_NON_BLOCKING);
  static_assert(cuda::CU_EVENT_DISABLE_TIMING == ::CU_EVENT_DISABLE_TIMING);
  static_assert(cuda::CUDA_ERROR_DEINITIALIZED == ::CUDA_ERROR_DEINITIALIZED);
  static_assert(cuda::CUDA_ERROR_NO_DEVICE == ::CUDA_ERROR_NO_DEVICE);
  static_assert(cuda::CU_JIT_INFO_LOG_BUFFER == ::CU_JIT_INFO_LOG_BUFFER);
  static_assert(cuda::CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES == ::CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES);
  static_assert(cuda::CU_JIT_ERROR_LOG_BUFFER == ::CU_JIT_ERROR_LOG_BUFFER);
  static_assert(cuda::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES == ::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES);
  static_assert(cuda::CU_JIT_LOG_VERBOSE == ::CU_JIT_LOG_VERBOSE);
  static_assert(cuda::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES == ::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES);
  static_assert(cuda::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES == ::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES);
  static_assert(cuda::CU_FUNC_ATTRIBUTE_NUM_REGS == ::CU_FUNC_ATTRIBUTE_NUM_REGS);
  static_assert(cuda::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT ==
                ::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  static_assert(cuda::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR ==
                ::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR);
  static_assert(cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR ==
                ::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  static_assert(cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR ==
                ::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  static_assert(sizeof(cuda::CUdeviceptr) == sizeof(::CUdeviceptr));
  SUCCEED();
#else
  GTEST_SKIP() << "cuda.h is not installed (CUDA toolkit missing): nothing to compare against";
#endif
}
