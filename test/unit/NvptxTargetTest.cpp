#include "codegen/NvptxTarget.h"
#include "support/Error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using ::testing::HasSubstr;

TEST(NvptxTarget, DefaultAndRangeAreSupported) {
  std::vector<std::string> archs = supportedArchs();
  for (const char *arch : {"sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90"})
    EXPECT_NE(std::find(archs.begin(), archs.end(), arch), archs.end()) << arch;
  EXPECT_EQ(parseArch(DefaultArch).computeVersion, 80);
  EXPECT_EQ(parseArch("sm_90").name, "sm_90");
}

TEST(NvptxTarget, RejectsOutOfRangeAndMalformed) {
  for (const char *arch : {"sm_60", "sm_100", "sm_71", "sm80", "compute_80", "", "sm_8x"}) {
    SCOPED_TRACE(arch);
    try {
      parseArch(arch);
      FAIL();
    } catch (const InputError &error) {
      EXPECT_THAT(error.what(), HasSubstr("--arch: unsupported target"));
      EXPECT_THAT(error.what(), HasSubstr("supported: sm_70"));
    }
  }
}
