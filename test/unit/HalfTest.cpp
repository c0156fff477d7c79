// fp16 conversions: the verifier rounds inputs to half and reads half
// outputs with these, so they must agree with the GPU's cvt.rn.f16.f32.
#include "io/Half.h"

#include <bit>
#include <cmath>
#include <gtest/gtest.h>

using namespace convgen;

TEST(Half, RoundsToNearestEven) {
  EXPECT_EQ(floatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(floatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(floatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(floatToHalf(65519.99f), 0x7BFF);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7C00) << "rounds past the largest half: infinity";
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -24)), 0x0001) << "smallest subnormal";
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -25)), 0x0000) << "a tie goes to even: zero";
  EXPECT_EQ(floatToHalf(std::ldexp(3.0f, -25)), 0x0002) << "a tie goes to even: two";
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00) << "tie below: even";
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(3.0f, -11)), 0x3C02) << "tie above: even";
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3C01);
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -14) * (1.0f - std::ldexp(1.0f, -12))), 0x0400)
      << "the largest subnormal's neighbour rounds up into the normals";
  EXPECT_EQ(floatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(floatToHalf(INFINITY), 0x7C00);
  EXPECT_EQ(floatToHalf(NAN) & 0x7E00, 0x7E00) << "NaN stays a quiet NaN";
}

TEST(Half, EveryHalfRoundTrips) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint16_t half = uint16_t(bits);
    if ((half & 0x7C00) == 0x7C00 && (half & 0x03FF))
      continue; // NaN payloads are quietened
    ASSERT_EQ(floatToHalf(halfToFloat(half)), half) << std::hex << bits;
  }
}

TEST(Half, AgreesWithTheCompilersConversion) {
  // _Float16 conversions are correctly rounded (GCC and clang on x86-64).
  for (float value : {0.1f, 1.0f / 3, 123.456f, -7.77e-5f, 3.0e-7f, 6.1e-5f, 40000.5f}) {
    const _Float16 expected = static_cast<_Float16>(value);
    EXPECT_EQ(floatToHalf(value), std::bit_cast<uint16_t>(expected)) << value;
  }
}
