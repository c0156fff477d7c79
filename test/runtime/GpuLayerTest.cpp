// Generated layers on a real GPU through the runtime: loaded from their
// manifests, launched on device tensors and compared with the reference
// convolution within the fp32 bound; values-only and full reloads; the
// driver's resource report. Without a driver or a GPU every test skips and
// says why.
#include "codegen/LayerGenerator.h"
#include "runtime/LayerRuntime.h"
#include "support/ConvCases.h"
#include "support/DeviceLayers.h"
#include "support/GpuCompare.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;

namespace {

class GpuLayerTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string whyNot;
    Context = openGpu(whyNot);
    if (!Context)
      GTEST_SKIP() << "no GPU to run on: " << whyNot;
  }

  ConvLayer layer(const std::string &name, double sparsity, uint64_t seed, int64_t outChannels = 8) {
    return smallPrunedLayer(name, sparsity, seed, outChannels);
  }

  GeneratedLayer generate(const ConvLayer &convLayer, GenerateOptions options = {}) {
    options.outputDir = Dir.path();
    KernelGenerator generator(options);
    return Layers.generate(generator, convLayer);
  }

  int64_t runAndCompare(const LayerRuntime &runtime, const ConvLayer &convLayer, int batch,
                        std::string &firstBad) {
    return runOnGpuAndCompare(*Context, runtime, convLayer, batch, 99, firstBad);
  }

  std::unique_ptr<CudaContext> Context;
  TempDir Dir;
  DeviceLayers Layers;
};

// Each kind of tiling through the runtime: 2-D blocks (channel blocks per
// block), several images and rows per thread, shared-memory staging with its
// barriers, fp16 activations, and a split layer whose kernels take two
// channel blocks per block. On a GPU this is the first run of their PTX.
TEST_F(GpuLayerTest, EveryTilingKindMatchesTheReference) {
  struct Case {
    const char *tiling;
    DType dtype;
    int64_t budget;
  };
  const Case cases[] = {{"bk=2,bw=2,threads=32,cta-blocks=4", DType::F32, 65536},
                        {"bk=4,bn=2,bh=2,bw=2,threads=64", DType::F32, 65536},
                        {"bk=4,bw=2,stage=1,threads=64", DType::F32, 65536},
                        {"bk=4,bh=2,bw=2,stage=1,threads=32", DType::F16, 65536},
                        {"bk=2,bn=2,bw=4,cta-blocks=2,threads=32", DType::F16, 65536},
                        {"bk=2,bw=1,cta-blocks=2,threads=32", DType::F32, 40}};
  for (const Case &c : cases) {
    SCOPED_TRACE(std::string(c.tiling) + " " + dtypeName(c.dtype));
    ConvLayer convLayer = layer("tiled", 0.7, 6, 16);
    GenerateOptions options;
    options.tilingOverride = c.tiling;
    options.dtype = c.dtype;
    options.maxMultiplyAdds = c.budget;
    options.maxKernelsPerLayer = 1024;
    GeneratedLayer generated = generate(convLayer, options);
    LayerRuntime runtime(*Context, generated.manifestPath);
    EXPECT_EQ(runtime.manifest().elementBytes, dtypeBytes(c.dtype));
    EXPECT_EQ(runtime.manifest().blockY, generated.tiling.blockY());
    if (c.budget < 65536) {
      EXPECT_GT(generated.kernels.size(), 1u);
    }
    std::string firstBad;
    for (int batch : {1, 3})
      EXPECT_EQ(runAndCompare(runtime, convLayer, batch, firstBad), 0) << firstBad;
  }
}

TEST_F(GpuLayerTest, EveryWeightPathMatchesTheReference) {
  struct Case {
    const char *name;
    bool bake;
    size_t bankLimit;
    int64_t budget;
  };
  ConvLayer probe = layer("probe", 0.7, 5, 32);
  GenerateOptions narrow; // several channel blocks to split the layer by
  narrow.tilingOverride = "bk=4";
  const int64_t splitBudget = largestChannelBlockCode(probe, narrow); // one block per kernel at most
  const Case cases[] = {{"constant", false, 64 * 1024, 65536},
                        {"global", false, 0, 65536},
                        {"baked", true, 64 * 1024, 65536},
                        {"split", false, 64 * 1024, splitBudget},
                        {"dense", false, 64 * 1024, 1}};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    ConvLayer convLayer = layer(c.name, 0.7, 5, 32);
    GenerateOptions options;
    options.bakeValues = c.bake;
    options.constantBankLimitBytes = c.bankLimit;
    options.maxMultiplyAdds = c.budget;
    options.maxKernelsPerLayer = c.budget == 1 ? 1 : 1024;
    if (std::string(c.name) == "split")
      options.tilingOverride = narrow.tilingOverride;
    GeneratedLayer generated = generate(convLayer, options);
    LayerRuntime runtime(*Context, generated.manifestPath);
    EXPECT_EQ(runtime.manifest().kernels.size(), generated.kernels.size());
    if (std::string(c.name) == "split") {
      EXPECT_GT(generated.kernels.size(), 1u);
    }
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
