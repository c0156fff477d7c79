// Every case of the CPU property sweep (test/support/SweepCases.h), run on
// the GPU through the runtime: generated to files, loaded from the
// manifest, launched, and compared with the reference convolution. A
// values-only case regenerates with new values and must reload by values
// alone. Without a driver or a GPU every case skips and says why.
#include "runtime/LayerRuntime.h"
#include "support/DeviceLayers.h"
#include "support/GpuCompare.h"
#include "support/SweepCases.h"
#include "support/TestFiles.h"

#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;

namespace {

class GpuSweep : public ::testing::TestWithParam<SweepCase> {
protected:
  void SetUp() override {
    std::string whyNot;
    Context = openGpu(whyNot);
    if (!Context)
      GTEST_SKIP() << "no GPU to run on: " << whyNot;
  }
  std::unique_ptr<CudaContext> Context;
  TempDir Dir;
  DeviceLayers Layers;
};

TEST_P(GpuSweep, KernelMatchesReferenceOnTheGpu) {
  const SweepCase &c = GetParam();
  SweepLayer s = makeSweepLayer(c);
  SCOPED_TRACE(s.trace);
  s.options.outputDir = Dir.path();
  KernelGenerator generator(s.options);
  GeneratedLayer generated = Layers.generate(generator, s.layer);
  LayerRuntime runtime(*Context, generated.manifestPath);
  const ConvLayer *expected = &s.layer;
  if (c.path == Path::ValuesOnlyUpdate) {
    Layers.generate(generator, s.updated);
    EXPECT_EQ(runtime.reload(), LayerRuntime::Reload::ValuesOnly);
    expected = &s.updated;
  }
  std::string firstBad;
  EXPECT_EQ(runOnGpuAndCompare(*Context, runtime, *expected, int(expected->geometry.batch),
                               s.seed, firstBad),
            0)
      << firstBad;
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuSweep, ::testing::ValuesIn(sweepCases()),
                         [](const ::testing::TestParamInfo<SweepCase> &info) {
                           return caseName(info.param);
                         });

} // namespace
