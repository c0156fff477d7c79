#include "io/Npy.h"
#include "support/Error.h"
#include "support/TestFiles.h"

#include <cmath>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

std::string parseError(const Bytes &bytes) {
  try {
    parseNpy(bytes, "in.npz[w]");
  } catch (const InputError &error) {
    return error.what();
  }
  return "<no error>";
}

std::vector<float> expectedFixtureWeights() {
  std::vector<float> values(24);
  for (int i = 0; i < 24; ++i)
    values[i] = float(i) - 11.5f;
  return values;
}

} // namespace

TEST(Npy, ReadsNumpyHeaderVersions1To3) {
  for (int major : {1, 2, 3}) {
    SCOPED_TRACE(major);
    Bytes bytes = readFile(std::string(CONVGEN_TEST_DATA_DIR) + "/numpy_v" +
                           std::to_string(major) + ".npy");
    NpyArray array = parseNpy(bytes, "fixture");
    EXPECT_EQ(array.dtype, NpyDType::Float32);
    EXPECT_EQ(array.shape, (std::vector<int64_t>{2, 3, 2, 2}));
    EXPECT_EQ(array.toFloat32(), expectedFixtureWeights());
  }
}

TEST(Npy, ReadsEveryAcceptedDType) {
  NpyArray f4 = parseNpy(makeNpy("<f4", {2}, floatBytes({1.5f, -2.0f})), "s");
  EXPECT_EQ(f4.toFloat32(), (std::vector<float>{1.5f, -2.0f}));
  NpyArray b1 = parseNpy(makeNpy("|b1", {3}, {1, 0, 1}), "s");
  EXPECT_EQ(b1.dtype, NpyDType::Bool);
  EXPECT_EQ(b1.toFloat32(), (std::vector<float>{1, 0, 1}));
  NpyArray u1 = parseNpy(makeNpy("|u1", {2, 1}, {0, 1}), "s");
  EXPECT_EQ(u1.dtype, NpyDType::UInt8);
  EXPECT_EQ(u1.shape, (std::vector<int64_t>{2, 1}));
}

TEST(Npy, WidensHalfExactly) {
  // 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal), 2^-14 (smallest
  // normal), -0.0, inf.
  Bytes data = {0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00,
                0x00, 0x04, 0x00, 0x80, 0x00, 0x7C};
  std::vector<float> values = parseNpy(makeNpy("<f2", {7}, data), "s").toFloat32();
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], -2.0f);
  EXPECT_EQ(values[2], 65504.0f);
  EXPECT_EQ(values[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(values[4], std::ldexp(1.0f, -14));
  EXPECT_TRUE(values[5] == 0.0f && std::signbit(values[5]));
  EXPECT_TRUE(std::isinf(values[6]));
}

TEST(Npy, ScalarAndEmptyShapes) {
  NpyArray scalar = parseNpy(makeNpy("<f4", {}, floatBytes({7.0f})), "s");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.elementCount(), 1);
  NpyArray empty = parseNpy(makeNpy("<f4", {0, 3}, {}), "s");
  EXPECT_EQ(empty.elementCount(), 0);
}

TEST(Npy, RejectsBadMagicAndVersions) {
  Bytes good = makeNpy("<f4", {1}, floatBytes({1}));
  Bytes badMagic = good;
  badMagic[1] = 'X';
  EXPECT_THAT(parseError(badMagic), HasSubstr("bad magic"));
  Bytes version4 = good;
  version4[6] = 4;
  EXPECT_THAT(parseError(version4), HasSubstr("unsupported npy format version 4.0"));
  Bytes version11 = good;
  version11[7] = 1;
  EXPECT_THAT(parseError(version11), HasSubstr("version 1.1"));
  EXPECT_THAT(parseError(Bytes(good.begin(), good.begin() + 9)), HasSubstr("truncated npy header"));
  EXPECT_THAT(parseError({}), HasSubstr("bad magic"));
}

TEST(Npy, ErrorsNameTheSource) {
  EXPECT_THAT(parseError({1, 2, 3}), HasSubstr("in.npz[w]: "));
}

TEST(Npy, BoundsTheHeaderLength) {
  // A version 2.0 header claiming 1 GiB must be refused before it is read.
  Bytes bytes = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 0x40};
  EXPECT_THAT(parseError(bytes), HasSubstr("exceeds the limit"));
  Bytes claimsMore = makeNpy("<f4", {1}, floatBytes({1}));
  claimsMore[8] = 0xFF; // header length larger than the file
  EXPECT_THAT(parseError(claimsMore), HasSubstr("truncated npy header"));
}

TEST(Npy, RejectsCorruptHeaderDicts) {
  Bytes data = floatBytes({1});
  struct Case {
    std::string header, message;
  } cases[] = {
      {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
      {"{'descr': '<f4', 'shape': (1,)}", "missing key 'fortran_order'"},
      {"{'fortran_order': False, 'shape': (1,)}", "missing key 'descr'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
       "duplicate key 'descr'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
       "unexpected key 'extra'"},
      {"{'descr': '<f4', 'fortran_order': Flase, 'shape': (1,)}", "expected True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1)}", "'(n,)'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "non-negative integer"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
       "64 bits"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", "corrupt npy header"},
      {"['descr', '<f4']", "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", "must end with"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", "expected ',' or '}'"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.header);
    EXPECT_THAT(parseError(makeNpyWithHeader(c.header, data)), HasSubstr(c.message));
  }
}

TEST(Npy, RejectsHeaderWithoutNewline) {
  Bytes bytes = makeNpy("<f4", {1}, floatBytes({1}));
  size_t newline = 10 + bytes[8] - 1;
  bytes[newline] = ' ';
  EXPECT_THAT(parseError(bytes), HasSubstr("must end with '\\n'"));
}

TEST(Npy, RejectsNonAsciiHeader) {
  EXPECT_THAT(parseError(makeNpyWithHeader("{'descr': '<f4\xc3\xa9', 'fortran_order': False, "
                                           "'shape': (1,)}",
                                           floatBytes({1}), 3)),
              HasSubstr("non-ASCII"));
}

TEST(Npy, RejectsUnsupportedDTypesWithAHint) {
  EXPECT_THAT(parseError(makeNpy("<f8", {1}, Bytes(8))), HasSubstr("float64; convert with"));
  EXPECT_THAT(parseError(makeNpy(">f4", {1}, Bytes(4))), HasSubstr("big-endian"));
  EXPECT_THAT(parseError(makeNpy("<i4", {1}, Bytes(4))), HasSubstr("unsupported dtype '<i4'"));
}

TEST(Npy, RejectsFortranOrder) {
  EXPECT_THAT(parseError(makeNpy("<f4", {2, 2}, Bytes(16), 1, true)), HasSubstr("fortran_order"));
}

TEST(Npy, DataMustMatchShapeExactly) {
  EXPECT_THAT(parseError(makeNpy("<f4", {2, 3}, Bytes(20))),
              HasSubstr("needs 24 data bytes, file has 20"));
  EXPECT_THAT(parseError(makeNpy("<f4", {2, 3}, Bytes(28))),
              HasSubstr("needs 24 data bytes, file has 28"));
  EXPECT_THAT(parseError(makeNpy("<f2", {3}, Bytes(4))), HasSubstr("needs 6 data bytes"));
}

TEST(Npy, ShapeProductOverflowIsAnErrorNotAWrap) {
  // 2^32 * 2^32 wraps to 0 in 64 bits; with no data bytes a wrapping check
  // would accept it.
  EXPECT_THAT(parseError(makeNpy("<f4", {4294967296, 4294967296}, {})), HasSubstr("overflows"));
  // Fits as an element count, overflows once multiplied by the item size.
  EXPECT_THAT(parseError(makeNpy("<f4", {int64_t{1} << 62}, {})), HasSubstr("overflows"));
}

TEST(Npy, RejectsTooManyDimensions) {
  std::vector<int64_t> shape(33, 1);
  EXPECT_THAT(parseError(makeNpy("<f4", shape, floatBytes({1}))), HasSubstr("more than 32"));
}
