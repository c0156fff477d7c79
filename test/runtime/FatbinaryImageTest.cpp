// The fatbinary reader on containers built byte by byte (the layout the
// toolkit's tool writes; test/unit/FatbinaryToolTest reads the tool's own),
// and which code the runtime says the driver will run: a cubin by CUDA's
// compatibility rule, else the PTX, JIT-compiled.
#include "runtime/FatbinaryImage.h"
#include "runtime/LayerRuntime.h"
#include "support/Error.h"

#include <cstdint>
#include <cstring>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using ::testing::HasSubstr;

namespace {

template <typename T> void put(std::string &bytes, size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

/// A fatbinary entry as the tool writes it: a 64-byte header, then the payload.
std::string entry(uint16_t kind, uint32_t sm, const std::string &payload, uint64_t flags = 0x11) {
  std::string bytes(64, '\0');
  put<uint16_t>(bytes, 0, kind);
  put<uint16_t>(bytes, 2, 0x0101);
  put<uint32_t>(bytes, 4, 64);
  put<uint64_t>(bytes, 8, payload.size());
  put<uint32_t>(bytes, 28, sm);
  put<uint64_t>(bytes, 40, flags);
  return bytes + payload;
}

std::string container(const std::string &entries) {
  std::string bytes(16, '\0');
  put<uint32_t>(bytes, 0, 0xBA55ED50);
  put<uint16_t>(bytes, 4, 1);
  put<uint16_t>(bytes, 6, 16);
  put<uint64_t>(bytes, 8, entries.size());
  return bytes + entries;
}

const std::string Elf = std::string("\x7f" "ELF", 4) + std::string(28, 'x');
const std::string Ptx = ".version 7.0\n.target sm_80\n.visible .entry k() { ret; }\n";

std::string paddedPtx() { return Ptx + std::string(5, '\0'); }

TEST(FatbinaryImageTest, ReadsCubinsAndPtxWithoutPadding) {
  const std::string bytes =
      container(entry(2, 80, Elf) + entry(2, 90, Elf) + entry(1, 80, paddedPtx()));
  ASSERT_TRUE(isFatbinary(bytes));
  std::vector<FatbinaryImage> images = readFatbinary(bytes, "l.fatbin");
  ASSERT_EQ(images.size(), 3u);
  EXPECT_EQ(images[0].kind, FatbinaryImage::Kind::Cubin);
  EXPECT_EQ(images[1].sm, 90);
  EXPECT_EQ(images[1].payload, Elf);
  ASSERT_NE(ptxImage(images), nullptr);
  EXPECT_EQ(ptxImage(images)->payload, Ptx);
  EXPECT_FALSE(isFatbinary(Ptx));
}

TEST(FatbinaryImageTest, CubinForDeviceFollowsCudaBinaryCompatibility) {
  const std::string bytes =
      container(entry(2, 80, Elf) + entry(2, 86, Elf) + entry(2, 90, Elf) + entry(1, 80, Ptx));
  std::vector<FatbinaryImage> images = readFatbinary(bytes, "l.fatbin");
  ASSERT_NE(cubinForDevice(images, 90), nullptr);
  EXPECT_EQ(cubinForDevice(images, 90)->sm, 90);
  EXPECT_EQ(cubinForDevice(images, 89)->sm, 86); // the nearest of the same major below it
  EXPECT_EQ(cubinForDevice(images, 80)->sm, 80);
  EXPECT_EQ(cubinForDevice(images, 75), nullptr); // an older major: never
  EXPECT_EQ(cubinForDevice(images, 100), nullptr); // a newer major: the PTX
  std::vector<FatbinaryImage> only80 = readFatbinary(container(entry(2, 80, Elf)), "x");
  EXPECT_EQ(cubinForDevice(only80, 90), nullptr);
}

TEST(FatbinaryImageTest, MalformedContainersAreRefusedWithTheirProblem) {
  auto refused = [](const std::string &bytes, const std::string &fragment) {
    try {
      readFatbinary(bytes, "bad.fatbin");
      ADD_FAILURE() << "accepted; expected: " << fragment;
    } catch (const InputError &e) {
      EXPECT_THAT(e.what(), HasSubstr("bad.fatbin"));
      EXPECT_THAT(e.what(), HasSubstr(fragment));
      EXPECT_THAT(e.what(), HasSubstr("regenerate"));
    }
  };
  const std::string good = container(entry(2, 80, Elf) + entry(1, 80, Ptx));
  refused(Ptx, "no fatbinary header");
  refused(good.substr(0, good.size() - 3), "holds");
  std::string shortEntry = container(entry(2, 80, Elf));
  put<uint64_t>(shortEntry, 16 + 8, 1000); // the payload runs past the end
  refused(shortEntry, "runs past the end");
  refused(container(entry(7, 80, Elf)), "neither PTX nor cubin");
  refused(container(entry(1, 80, Ptx, 0x2011)), "compressed");
  refused(container(entry(2, 80, "not an elf")), "not an ELF cubin");
  refused(container(std::string(20, '\0')), "truncated");
}

TEST(FatbinaryImageTest, ChooseCodeSaysWhetherTheDriverCompiles) {
  const std::string both = container(entry(2, 80, Elf) + entry(2, 90, Elf) + entry(1, 80, Ptx));
  LoadedCode code = chooseCode(both, 90, "l.fatbin");
  EXPECT_FALSE(code.jitCompiled);
  EXPECT_EQ(code.description, "cubin sm_90");

  const std::string only80 = container(entry(2, 80, Elf) + entry(1, 80, Ptx));
  code = chooseCode(only80, 90, "l.fatbin");
  EXPECT_TRUE(code.jitCompiled);
  EXPECT_THAT(code.description, HasSubstr("no cubin for sm_90"));
  EXPECT_THAT(code.description, HasSubstr("sm_80"));

  code = chooseCode(Ptx, 90, "l.ptx");
  EXPECT_TRUE(code.jitCompiled);
  EXPECT_THAT(code.description, HasSubstr("--ptx-only"));

  try {
    chooseCode(container(entry(2, 80, Elf)), 90, "l.fatbin");
    ADD_FAILURE() << "a fatbinary with nothing for sm_90 was accepted";
  } catch (const InputError &e) {
    EXPECT_THAT(e.what(), HasSubstr("nothing runs on sm_90"));
  }
}

} // namespace
