// Running a loaded layer on the GPU and checking every output against the
// reference convolution within its fp32 bound (as convgen verify does on
// the host).
#pragma once

#include "model/ModelFile.h"
#include "runtime/LayerRuntime.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace convgen::test {

/// GPU 0's context, or null with the reason in \p whyNot (no driver, no GPU).
std::unique_ptr<CudaContext> openGpu(std::string &whyNot);

/// Runs \p runtime on \p batch seeded random images (fp32, or fp16 as its
/// manifest says); returns the number of outputs off by more than the
/// bound, the first described in \p firstBad.
int64_t runOnGpuAndCompare(const CudaContext &context, const LayerRuntime &runtime,
                           const ConvLayer &layer, int batch, uint64_t seed,
                           std::string &firstBad);

/// The same for a layer launched some other way (the C API): \p launch runs
/// it on (input, output, batch) device pointers; \p halfPrecision: the
/// layer's activations are fp16.
using LayerLaunch = std::function<void(cuda::CUdeviceptr, cuda::CUdeviceptr, int)>;
int64_t runOnGpuAndCompare(const CudaContext &context, const LayerLaunch &launch,
                           const ConvLayer &layer, int batch, uint64_t seed,
                           std::string &firstBad, bool halfPrecision = false);

} // namespace convgen::test
