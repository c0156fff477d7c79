// Generated layers on a real GPU through the runtime: loaded from their
// manifests, launched on device tensors and compared with the reference
// convolution within the fp32 bound; values-only and full reloads; the
// driver's resource report. Without a driver or a GPU every test skips and
// says why.
#include "codegen/LayerGenerator.h"
#include "reference/ReferenceConv.h"
#include "runtime/LayerRuntime.h"
#include "support/ConvCases.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

using namespace convgen;
using namespace convgen::test;

namespace {

class GpuLayerTest : public ::testing::Test {
protected:
  void SetUp() override {
    try {
      Context = std::make_unique<CudaContext>(0);
    } catch (const DriverUnavailable &e) {
      GTEST_SKIP() << "no GPU to run on: " << e.what();
    }
  }

  ConvLayer layer(const std::string &name, double sparsity, uint64_t seed, int64_t outChannels = 8) {
    std::mt19937_64 random(seed);
    ConvGeometry g = makeGeometry({4, outChannels, 11, 10, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1}, 2,
                                  Activation::Relu6, true);
    return makeLayer(name, g, prunedWeights(g, SparsityPattern::Uniform, sparsity, random), random);
  }

  GeneratedLayer generate(const ConvLayer &convLayer, GenerateOptions options = {}) {
    options.outputDir = Dir.path();
    KernelGenerator generator(options);
    return generator.generate(convLayer);
  }

  /// Runs the loaded layer on a seeded input; returns how many outputs are
  /// off by more than the bound, with the first in \p firstBad.
  int64_t runAndCompare(const LayerRuntime &runtime, const ConvLayer &convLayer, int batch,
                        std::string &firstBad) {
    const ConvGeometry &g = convLayer.geometry;
    HW out = g.outSize();
    std::vector<float> input(size_t(batch * g.inChannels * g.inSize.h * g.inSize.w));
    std::mt19937_64 random(99);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    for (float &x : input)
      x = value(random);
    std::vector<float> output(size_t(batch * g.outChannels * out.h * out.w), NAN);
    DeviceBuffer deviceInput(*Context, input.size() * 4, "input");
    DeviceBuffer deviceOutput(*Context, output.size() * 4, "output");
    deviceInput.upload(input.data(), input.size() * 4, 0, "input");
    deviceOutput.upload(output.data(), output.size() * 4, 0, "output");
    runtime.launch(deviceInput.pointer(), deviceOutput.pointer(), batch);
    Context->driver().check(Context->driver().cuCtxSynchronize(), "cuCtxSynchronize", "running");
    deviceOutput.download(output.data(), output.size() * 4, 0, "output");

    ConvOperands operands{g, input, convLayer.weights, convLayer.bias, batch};
    int64_t bad = 0;
    size_t index = 0;
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t k = 0; k < g.outChannels; ++k)
        for (int64_t p = 0; p < out.h; ++p)
          for (int64_t q = 0; q < out.w; ++q, ++index) {
            ReferenceValue expected = referenceOutput(operands, n, k, p, q);
            double error = std::abs(double(output[index]) - expected.value);
            if (!(error <= float32ErrorBound(reductionLength(g), expected.magnitude)) && bad++ == 0)
              firstBad = "output " + std::to_string(index) + ": " + std::to_string(output[index]) +
                         " vs " + std::to_string(expected.value);
          }
    return bad;
  }

  std::unique_ptr<CudaContext> Context;
  TempDir Dir;
};

TEST_F(GpuLayerTest, EveryWeightPathMatchesTheReference) {
  struct Case {
    const char *name;
    bool bake;
    size_t bankLimit;
    int64_t budget;
  };
  const Case cases[] = {{"constant", false, 64 * 1024, 65536},
                        {"global", false, 0, 65536},
                        {"baked", true, 64 * 1024, 65536},
                        {"split", false, 64 * 1024, 300},
                        {"dense", false, 64 * 1024, 1}};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    ConvLayer convLayer = layer(c.name, 0.7, 5);
    GenerateOptions options;
    options.bakeValues = c.bake;
    options.constantBankLimitBytes = c.bankLimit;
    options.maxMultiplyAdds = c.budget;
    options.maxKernelsPerLayer = c.budget == 1 ? 1 : 4;
    GeneratedLayer generated = generate(convLayer, options);
    LayerRuntime runtime(*Context, generated.manifestPath);
    EXPECT_EQ(runtime.manifest().kernels.size(), generated.kernels.size());
    std::string firstBad;
    for (int batch : {1, 3})
      EXPECT_EQ(runAndCompare(runtime, convLayer, batch, firstBad), 0) << firstBad;
  }
}

TEST_F(GpuLayerTest, ReloadUploadsOnlyValuesWhenTheMaskIsTheSame) {
  ConvLayer convLayer = layer("reloaded", 0.8, 6);
  GeneratedLayer generated = generate(convLayer);
  LayerRuntime runtime(*Context, generated.manifestPath);

  std::mt19937_64 random(7);
  convLayer.weights = revalued(convLayer.weights, random);
  generate(convLayer);
  EXPECT_EQ(runtime.reload(), LayerRuntime::Reload::ValuesOnly);
  std::string firstBad;
  EXPECT_EQ(runAndCompare(runtime, convLayer, 2, firstBad), 0) << firstBad;

  ConvLayer repruned = layer("reloaded", 0.9, 8);
  generate(repruned);
  EXPECT_EQ(runtime.reload(), LayerRuntime::Reload::Module);
  EXPECT_EQ(runAndCompare(runtime, repruned, 2, firstBad), 0) << firstBad;
}

TEST_F(GpuLayerTest, DriverReportsResources) {
  GeneratedLayer generated = generate(layer("resources", 0.9, 9));
  LayerRuntime runtime(*Context, generated.manifestPath);
  for (const KernelResources &r : runtime.resources()) {
    EXPECT_GT(r.registers, 0) << r.symbol;
    EXPECT_GT(r.occupancy, 0.0) << r.symbol;
    EXPECT_LE(r.occupancy, 1.0) << r.symbol;
  }
}

} // namespace
