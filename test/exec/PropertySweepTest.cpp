// The property sweep: generated kernels, run on the host executor, match
// the reference convolution across crossed geometries, sparsities, pruning
// patterns and weight paths, after a values-only update, split across
// kernels and as the dense fallback (the cases: test/support/SweepCases.h).
// A failure prints the seed and the case.
#include "support/SweepCases.h"
#include "verify/LayerVerifier.h"

#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;

namespace {

class PropertySweep : public ::testing::TestWithParam<SweepCase> {};

TEST_P(PropertySweep, KernelMatchesReference) {
  const SweepCase &c = GetParam();
  SweepLayer s = makeSweepLayer(c);
  SCOPED_TRACE(s.trace);
  KernelGenerator generator(s.options);
  BuiltKernel kernel = generator.build(s.layer);
  // A budget of 0 sends every layer with a nonzero weight to the dense path.
  const bool expectDense = c.path == Path::DenseFallback && kernel.info.nonzeros > 0;
  EXPECT_EQ(kernel.info.mode, expectDense ? "dense" : "sparse");
  if (c.path == Path::Split && kernel.info.multiplyAdds > s.largestBlockCode) {
    EXPECT_GT(kernel.info.kernels.size(), 1u);
  }

  ConvLayer &layer = s.layer;
  if (c.path == Path::ValuesOnlyUpdate) {
    // Next pruning round, same mask: the old code with only the new packed
    // values must compute the new layer.
    BuiltKernel rebuilt = generator.build(s.updated);
    kernel.arrayValues = rebuilt.arrayValues;
    layer = s.updated;
  }

  VerifyOptions verify;
  verify.batch = layer.geometry.batch;
  verify.seed = s.seed;
  verify.allBlocks = true;
  verify.hostThreads = 1; // ctest already runs tests in parallel
  VerifyReport report = verifyKernel(layer, kernel, verify);
  EXPECT_TRUE(report.passed()) << report.failures << " bad outputs; first: "
                               << report.firstFailure;
  EXPECT_GT(report.outputsChecked, 0);
}

INSTANTIATE_TEST_SUITE_P(Cases, PropertySweep, ::testing::ValuesIn(sweepCases()),
                         [](const ::testing::TestParamInfo<SweepCase> &info) {
                           return caseName(info.param);
                         });

} // namespace
