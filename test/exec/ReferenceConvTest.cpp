// The reference convolution against hand-computed cases and against
// torch.nn.functional.conv2d (fixtures from test/data/make_torch_conv_fixtures.py).
#include "io/Npz.h"
#include "reference/ReferenceConv.h"
#include "support/ConvCases.h"
#include "support/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

using namespace convgen;

namespace {

ConvGeometry geometry(int64_t c, int64_t k, int64_t h, int64_t w, HW kernel, HW stride = {1, 1},
                      HW padding = {0, 0}, HW dilation = {1, 1}, int64_t groups = 1,
                      Activation activation = Activation::None) {
  return test::makeGeometry({c, k, h, w, kernel, stride, padding, dilation, groups}, 1,
                            activation, false);
}

TEST(ReferenceConv, OneByOneIdentityPlusBias) {
  ConvGeometry g = geometry(1, 1, 2, 3, {1, 1});
  std::vector<float> input = {1, -2, 3, 4.5f, 5, -6}, weights = {1}, bias = {0.5f};
  std::vector<double> out = referenceConv2d({g, input, weights, bias, 1});
  ASSERT_EQ(out.size(), 6u);
  for (size_t i = 0; i < 6; ++i)
    EXPECT_EQ(out[i], input[i] + 0.5);
}

TEST(ReferenceConv, ZeroPaddingCountsTheTapsInside) {
  ConvGeometry g = geometry(1, 1, 3, 3, {3, 3}, {1, 1}, {1, 1});
  std::vector<float> input(9, 1.0f), weights(9, 1.0f);
  EXPECT_EQ(referenceConv2d({g, input, weights, {}, 1}),
            (std::vector<double>{4, 6, 4, 6, 9, 6, 4, 6, 4}));
}

TEST(ReferenceConv, StrideAndDilation) {
  // 5x5 input holding its index; 2x2 ones, dilation 2, stride 2: each output
  // sums the corners of a 3x3 window.
  ConvGeometry g = geometry(1, 1, 5, 5, {2, 2}, {2, 2}, {0, 0}, {2, 2});
  std::vector<float> input(25), weights(4, 1.0f);
  std::iota(input.begin(), input.end(), 0.0f);
  EXPECT_EQ(referenceConv2d({g, input, weights, {}, 1}), (std::vector<double>{24, 32, 64, 72}));
}

TEST(ReferenceConv, GroupsSeeOnlyTheirChannels) {
  ConvGeometry g = geometry(2, 2, 1, 2, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 2);
  std::vector<float> input = {1, 2, 10, 20}, weights = {2, 3};
  EXPECT_EQ(referenceConv2d({g, input, weights, {}, 1}), (std::vector<double>{2, 4, 30, 60}));
}

TEST(ReferenceConv, BiasThenActivation) {
  std::vector<float> input = {-1, 3, 7}, weights = {1}, bias = {-0.5f};
  ConvGeometry relu = geometry(1, 1, 1, 3, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, Activation::Relu);
  EXPECT_EQ(referenceConv2d({relu, input, weights, bias, 1}), (std::vector<double>{0, 2.5, 6.5}));
  ConvGeometry relu6 = geometry(1, 1, 1, 3, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, Activation::Relu6);
  EXPECT_EQ(referenceConv2d({relu6, input, weights, bias, 1}), (std::vector<double>{0, 2.5, 6}));
}

TEST(ReferenceConv, BatchIndexesImages) {
  ConvGeometry g = geometry(1, 1, 1, 2, {1, 1});
  std::vector<float> input = {1, 2, 3, 4}, weights = {-1};
  EXPECT_EQ(referenceConv2d({g, input, weights, {}, 2}), (std::vector<double>{-1, -2, -3, -4}));
  ReferenceValue last = referenceOutput({g, input, weights, {}, 2}, 1, 0, 0, 1);
  EXPECT_EQ(last.value, -4);
  EXPECT_EQ(last.magnitude, 4);
}

TEST(ReferenceConv, MagnitudeSumsAbsoluteProductsAndBias) {
  ConvGeometry g = geometry(2, 1, 1, 1, {1, 1});
  std::vector<float> input = {3, -2}, weights = {1, 4}, bias = {-1};
  ReferenceValue value = referenceOutput({g, input, weights, bias, 1}, 0, 0, 0, 0);
  EXPECT_EQ(value.value, 3 - 8 - 1);
  EXPECT_EQ(value.magnitude, 3 + 8 + 1);
}

TEST(ReferenceConv, MismatchedOperandsAreRefused) {
  ConvGeometry g = geometry(1, 1, 2, 2, {1, 1});
  std::vector<float> input(3), weights(1);
  EXPECT_THROW(referenceConv2d({g, input, weights, {}, 1}), UnsupportedError);
  std::vector<float> fullInput(4);
  EXPECT_THROW(referenceOutput({g, fullInput, weights, {}, 1}, 0, 1, 0, 0), UnsupportedError);
}

TEST(ReferenceConv, ErrorBoundGrowsWithTheReduction) {
  const double u = std::ldexp(1.0, -24);
  EXPECT_NEAR(float32ErrorBound(9, 1.0), 10 * u / (1 - 10 * u), 1e-13);
  EXPECT_LT(float32ErrorBound(9, 1.0), float32ErrorBound(4608, 1.0));
  EXPECT_LT(float32ErrorBound(9, 1.0), float32ErrorBound(9, 2.0));
  EXPECT_GT(float32ErrorBound(9, 0.0), 0.0); // subnormal underflow still allowed for
}

TEST(ReferenceConv, MatchesTorchConv2d) {
  NpzArchive fixtures = NpzArchive::open(CONVGEN_TEST_DATA_DIR "/torch_conv2d.npz");
  int cases = 0;
  for (int i = 0; fixtures.contains("geometry_" + std::to_string(i)); ++i, ++cases) {
    const std::string n = std::to_string(i);
    std::vector<float> f = fixtures.read("geometry_" + n).toFloat32();
    ASSERT_EQ(f.size(), 16u);
    auto at = [&f](int index) { return int64_t(f[size_t(index)]); };
    ConvGeometry g = geometry(at(1), at(4), at(2), at(3), {at(5), at(6)}, {at(7), at(8)},
                              {at(9), at(10)}, {at(11), at(12)}, at(13),
                              static_cast<Activation>(at(14)));
    std::vector<float> input = fixtures.read("input_" + n).toFloat32();
    std::vector<float> weights = fixtures.read("weight_" + n).toFloat32();
    std::vector<float> bias = at(15) ? fixtures.read("bias_" + n).toFloat32() : std::vector<float>{};
    std::vector<float> expected = fixtures.read("output_" + n).toFloat32();
    std::vector<double> got = referenceConv2d({g, input, weights, bias, at(0)});
    ASSERT_EQ(got.size(), expected.size()) << "case " << i;
    for (size_t j = 0; j < got.size(); ++j)
      // torch's float64 result rounded to float32: within half an ulp.
      ASSERT_NEAR(got[j], expected[j], std::ldexp(std::abs(double(expected[j])), -24) + 1e-12)
          << "case " << i << " output " << j;
  }
  EXPECT_EQ(cases, 7);
}

} // namespace
