#include "support/GpuCompare.h"

#include "reference/ReferenceConv.h"

#include <cmath>
#include <random>

namespace convgen::test {

std::unique_ptr<CudaContext> openGpu(std::string &whyNot) {
  try {
    return std::make_unique<CudaContext>(0);
  } catch (const DriverUnavailable &e) {
    whyNot = e.what();
    return nullptr;
  }
}

int64_t runOnGpuAndCompare(const CudaContext &context, const LayerRuntime &runtime,
                           const ConvLayer &layer, int batch, uint64_t seed,
                           std::string &firstBad) {
  return runOnGpuAndCompare(
      context,
      [&runtime](cuda::CUdeviceptr input, cuda::CUdeviceptr output, int images) {
        runtime.launch(input, output, images);
      },
      layer, batch, seed, firstBad);
}

int64_t runOnGpuAndCompare(const CudaContext &context, const LayerLaunch &launch,
                           const ConvLayer &layer, int batch, uint64_t seed,
                           std::string &firstBad) {
  const ConvGeometry &g = layer.geometry;
  HW out = g.outSize();
  std::vector<float> input(size_t(batch * g.inChannels * g.inSize.h * g.inSize.w));
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (float &x : input)
    x = value(random);
  std::vector<float> output(size_t(batch * g.outChannels * out.h * out.w), NAN);
  DeviceBuffer deviceInput(context, input.size() * 4, "input");
  DeviceBuffer deviceOutput(context, output.size() * 4, "output");
  deviceInput.upload(input.data(), input.size() * 4, 0, "input");
  deviceOutput.upload(output.data(), output.size() * 4, 0, "output"); // NaN: unwritten shows
  launch(deviceInput.pointer(), deviceOutput.pointer(), batch);
  context.driver().check(context.driver().cuCtxSynchronize(), "cuCtxSynchronize",
                         "running layer '" + layer.name + "'");
  deviceOutput.download(output.data(), output.size() * 4, 0, "output");

  ConvOperands operands{g, input, layer.weights, layer.bias, batch};
  const int64_t terms = reductionLength(g);
  int64_t bad = 0;
  size_t index = 0;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t k = 0; k < g.outChannels; ++k)
      for (int64_t p = 0; p < out.h; ++p)
        for (int64_t q = 0; q < out.w; ++q, ++index) {
          ReferenceValue expected = referenceOutput(operands, n, k, p, q);
          double error = std::abs(double(output[index]) - expected.value);
          if (!(error <= float32ErrorBound(terms, expected.magnitude)) && bad++ == 0)
            firstBad = "output[" + std::to_string(n) + "," + std::to_string(k) + "," +
                       std::to_string(p) + "," + std::to_string(q) + "] = " +
                       std::to_string(output[index]) + ", reference " +
                       std::to_string(expected.value);
        }
  return bad;
}

} // namespace convgen::test
