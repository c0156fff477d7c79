#include "support/GpuCompare.h"

#include "io/Half.h"
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
      layer, batch, seed, firstBad, runtime.manifest().elementBytes == 2);
}

int64_t runOnGpuAndCompare(const CudaContext &context, const LayerLaunch &launch,
                           const ConvLayer &layer, int batch, uint64_t seed,
                           std::string &firstBad, bool halfPrecision) {
  const ConvGeometry &g = layer.geometry;
  HW out = g.outSize();
  std::vector<float> input(size_t(batch * g.inChannels * g.inSize.h * g.inSize.w));
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (float &x : input)
    x = halfPrecision ? halfToFloat(floatToHalf(value(random))) : value(random);
  std::vector<float> output(size_t(batch * g.outChannels * out.h * out.w), NAN);
  // The device buffers hold the layer's element type; NaN marks unwritten.
  const size_t element = halfPrecision ? 2 : 4;
  std::vector<uint16_t> input16, output16(halfPrecision ? output.size() : 0, 0x7e00);
  for (float x : halfPrecision ? input : std::vector<float>())
    input16.push_back(floatToHalf(x));
  const void *inputBytes = halfPrecision ? static_cast<const void *>(input16.data()) : input.data();
  void *outputBytes = halfPrecision ? static_cast<void *>(output16.data()) : output.data();
  DeviceBuffer deviceInput(context, input.size() * element, "input");
  DeviceBuffer deviceOutput(context, output.size() * element, "output");
  deviceInput.upload(inputBytes, input.size() * element, 0, "input");
  deviceOutput.upload(outputBytes, output.size() * element, 0, "output");
  launch(deviceInput.pointer(), deviceOutput.pointer(), batch);
  context.driver().check(context.driver().cuCtxSynchronize(), "cuCtxSynchronize",
                         "running layer '" + layer.name + "'");
  deviceOutput.download(outputBytes, output.size() * element, 0, "output");
  if (halfPrecision)
    for (size_t i = 0; i < output.size(); ++i)
      output[i] = halfToFloat(output16[i]);

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
          const double bound =
              halfPrecision ? float16OutputErrorBound(terms, expected.magnitude, expected.value)
                            : float32ErrorBound(terms, expected.magnitude);
          if (!(error <= bound) && bad++ == 0)
            firstBad = "output[" + std::to_string(n) + "," + std::to_string(k) + "," +
                       std::to_string(p) + "," + std::to_string(q) + "] = " +
                       std::to_string(output[index]) + ", reference " +
                       std::to_string(expected.value);
        }
  return bad;
}

} // namespace convgen::test
