#include "support/AtomicFile.h"
#include "support/Error.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

using namespace convgen;
using namespace convgen::test;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> entries(const fs::path &dir) {
  std::vector<std::string> names;
  for (const auto &entry : fs::directory_iterator(dir))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}
} // namespace

TEST(AtomicFile, WritesAndReplaces) {
  TempDir dir;
  writeFileAtomically(dir / "out" / "a.ptx", std::string_view("first"));
  writeFileAtomically(dir / "out" / "a.ptx", std::string_view("second version"));
  Bytes bytes = readFile(dir / "out" / "a.ptx");
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "second version");
  EXPECT_EQ(entries(dir / "out"), std::vector<std::string>{"a.ptx"}); // no temporaries left
}

TEST(AtomicFile, UsesTheUmaskNotPrivateMode) {
  TempDir dir;
  mode_t previous = ::umask(022);
  writeFileAtomically(dir / "a.bin", std::string_view("x"));
  ::umask(previous);
  struct stat info;
  ASSERT_EQ(::stat((dir / "a.bin").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
}

TEST(AtomicFile, FailureLeavesTheOldFileAndNoTemporary) {
  TempDir dir;
  writeFileAtomically(dir / "a.ptx", std::string_view("old"));
  // Renaming a file over a non-empty directory fails after the temporary
  // has been written: the guard must remove it.
  fs::create_directories(dir / "b.ptx" / "inside");
  EXPECT_THROW(writeFileAtomically(dir / "b.ptx", std::string_view("new")), SystemError);
  EXPECT_EQ(entries(dir.path()), (std::vector<std::string>{"a.ptx", "b.ptx"}));
  Bytes old = readFile(dir / "a.ptx");
  EXPECT_EQ(std::string(old.begin(), old.end()), "old");
}

TEST(AtomicFile, UnwritableDirectoryIsASystemError) {
  TempDir dir;
  writeText(dir / "file", "x");
  try {
    writeFileAtomically(dir / "file" / "a.ptx", std::string_view("x"));
    FAIL();
  } catch (const SystemError &error) {
    EXPECT_THAT(error.what(), ::testing::HasSubstr("create directory failed"));
  }
}

// readWholeFile reads a file of known size in one read, and streams what has
// no size (a /proc file reports 0): both give the whole content, binary
// bytes included; an empty file is empty.
TEST(AtomicFile, ReadWholeFileReadsSizedAndUnsizedFiles) {
  TempDir dir;
  std::string bytes(3 * 1024 * 1024 + 7, '\0');
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = char(i * 131 % 251);
  writeFileAtomically(dir / "big.bin", std::string_view(bytes));
  EXPECT_EQ(readWholeFile(dir / "big.bin"), bytes);
  writeFileAtomically(dir / "empty.bin", std::string_view(""));
  EXPECT_EQ(readWholeFile(dir / "empty.bin"), "");
  const std::string status = readWholeFile("/proc/self/status");
  EXPECT_THAT(status, ::testing::HasSubstr("VmRSS:"));
  EXPECT_THROW(readWholeFile(dir / "missing.bin"), SystemError);
}
