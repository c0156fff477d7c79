#include "io/Npz.h"
#include "support/Error.h"
#include "support/TestFiles.h"

#include <algorithm>
#include <cmath>
#include <zip.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

std::string fixture(const std::string &name) {
  return std::string(CONVGEN_TEST_DATA_DIR) + "/" + name;
}

template <typename F> std::string errorOf(F &&function) {
  try {
    function();
  } catch (const InputError &error) {
    return error.what();
  }
  return "<no error>";
}

void expectFixtureContents(const NpzArchive &npz) {
  EXPECT_EQ(npz.keys(),
            (std::vector<std::string>{"conv.weight", "half", "mask_bool", "mask_u8", "scalar"}));
  NpyArray weight = npz.read("conv.weight");
  EXPECT_EQ(weight.shape, (std::vector<int64_t>{2, 3, 2, 2}));
  std::vector<float> values = weight.toFloat32();
  for (int i = 0; i < 24; ++i)
    EXPECT_EQ(values[i], float(i) - 11.5f);
  std::vector<float> half = npz.read("half").toFloat32();
  EXPECT_EQ(half[2], 65504.0f);
  EXPECT_EQ(half[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(half[4]));
  EXPECT_EQ(npz.read("mask_bool").toFloat32(), (std::vector<float>{1, 0, 0, 1}));
  EXPECT_EQ(npz.read("mask_u8").dtype, NpyDType::UInt8);
  EXPECT_EQ(npz.read("scalar").toFloat32(), std::vector<float>{3.25f});
}

} // namespace

// numpy writes zip64 extra fields in every member's local header; both
// fixtures carry them.
TEST(Npz, ReadsNumpySavez) { expectFixtureContents(NpzArchive::open(fixture("numpy_savez.npz"))); }

TEST(Npz, ReadsNumpySavezCompressed) {
  expectFixtureContents(NpzArchive::open(fixture("numpy_savez_compressed.npz")));
}

TEST(Npz, ReadsFromMemory) {
  expectFixtureContents(NpzArchive::fromBytes(readFile(fixture("numpy_savez_compressed.npz")), "m"));
}

TEST(Npz, MissingFile) {
  EXPECT_THAT(errorOf([] { NpzArchive::open("/nonexistent/model.npz"); }),
              HasSubstr("/nonexistent/model.npz: no such file"));
}

TEST(Npz, NotAZipArchive) {
  TempDir dir;
  writeText(dir / "model.npz", "this is not a zip archive at all, just text\n");
  EXPECT_THAT(errorOf([&] { NpzArchive::open((dir / "model.npz").string()); }),
              HasSubstr("not a zip archive"));
  // A bare .npy renamed to .npz is a common mistake.
  writeFile(dir / "array.npz", readFile(fixture("numpy_v1.npy")));
  EXPECT_THAT(errorOf([&] { NpzArchive::open((dir / "array.npz").string()); }),
              HasSubstr("not a zip archive"));
}

TEST(Npz, TruncatedArchive) {
  Bytes bytes = readFile(fixture("numpy_savez_compressed.npz"));
  for (size_t keep : {bytes.size() / 2, bytes.size() - 10, size_t{30}}) {
    SCOPED_TRACE(keep);
    Bytes truncated(bytes.begin(), bytes.begin() + static_cast<long>(keep));
    std::string error = errorOf([&] { NpzArchive::fromBytes(truncated, "cut.npz"); });
    EXPECT_THAT(error, HasSubstr("cut.npz: "));
    EXPECT_THAT(error, HasSubstr("truncated"));
  }
}

TEST(Npz, CorruptMemberDataFailsTheCrcCheck) {
  Bytes bytes = readFile(fixture("numpy_savez.npz"));
  // Stored (uncompressed) member: flip one byte of conv.weight's data.
  Bytes npy = readFile(fixture("numpy_v1.npy"));
  auto at = std::search(bytes.begin(), bytes.end(), npy.begin(), npy.end());
  ASSERT_NE(at, bytes.end());
  at[npy.size() - 1] ^= 0x55;
  NpzArchive npz = NpzArchive::fromBytes(bytes, "crc.npz");
  EXPECT_THAT(errorOf([&] { npz.read("conv.weight"); }), HasSubstr("crc.npz[conv.weight]: corrupt"));
  EXPECT_NO_THROW(npz.read("half")); // other members stay readable
}

TEST(Npz, MissingKey) {
  NpzArchive npz = NpzArchive::open(fixture("numpy_savez.npz"));
  EXPECT_FALSE(npz.contains("conv.bias"));
  EXPECT_THAT(errorOf([&] { npz.read("conv.bias"); }), HasSubstr("no array 'conv.bias'"));
}

TEST(Npz, CorruptNpyInsideArchiveNamesTheMember) {
  TempDir dir;
  writeNpz(dir / "m.npz", {{"w", makeNpyWithHeader("{'descr': '<f4'", floatBytes({1}))}});
  NpzArchive npz = NpzArchive::open((dir / "m.npz").string());
  EXPECT_THAT(errorOf([&] { npz.read("w"); }), HasSubstr("m.npz[w]: corrupt npy header"));
}

TEST(Npz, IgnoresMembersThatAreNotArrays) {
  TempDir dir;
  writeNpz(dir / "m.npz", {{"w", makeNpy("<f4", {1}, floatBytes({1}))}});
  // Add a non-.npy member next to it.
  int error = 0;
  zip_t *archive = zip_open((dir / "m.npz").c_str(), 0, &error);
  ASSERT_NE(archive, nullptr);
  static const char note[] = "notes";
  zip_file_add(archive, "README.txt", zip_source_buffer(archive, note, 5, 0), 0);
  ASSERT_EQ(zip_close(archive), 0);
  EXPECT_EQ(NpzArchive::open((dir / "m.npz").string()).keys(), std::vector<std::string>{"w"});
}
