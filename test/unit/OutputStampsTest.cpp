// OutputStamps: a stamp vouches for a file's content only while the file's
// size and modification time are what was stamped, and only if the file
// was modified before the stamps were written. Anything doubtful (no
// stamps, another digest, a rewrite, damaged stamps) vouches for nothing.
#include "cache/OutputStamps.h"
#include "support/AtomicFile.h"
#include "support/TestFiles.h"

#include <chrono>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;
namespace fs = std::filesystem;

namespace {

/// Moves \p path's modification time \p seconds into the past.
void age(const fs::path &path, int seconds) {
  fs::last_write_time(path, fs::last_write_time(path) - std::chrono::seconds(seconds));
}

/// Writes \p file, stamps it with \p digest, saves, and hands back the
/// stamps as a later run reads them.
OutputStamps stampedAndReloaded(const TempDir &dir, const std::string &digest) {
  writeText(dir / "a.ptx", "ptx");
  age(dir / "a.ptx", 10); // well before the stamps are written
  OutputStamps stamps(dir.path());
  stamps.stamp(dir / "a.ptx", digest);
  stamps.save();
  return OutputStamps(dir.path());
}

} // namespace

TEST(OutputStamps, VouchForAnUntouchedFileWithItsDigestOnly) {
  TempDir dir;
  OutputStamps stamps = stampedAndReloaded(dir, "d1");
  EXPECT_TRUE(stamps.vouchesFor(dir / "a.ptx", "d1"));
  EXPECT_FALSE(stamps.vouchesFor(dir / "a.ptx", "d2"));
  EXPECT_FALSE(stamps.vouchesFor(dir / "b.ptx", "d1")) << "never stamped";
}

TEST(OutputStamps, NoStampsVouchForNothing) {
  TempDir dir;
  writeText(dir / "a.ptx", "ptx");
  EXPECT_FALSE(OutputStamps(dir.path()).vouchesFor(dir / "a.ptx", "d1"));
}

TEST(OutputStamps, ARewrittenFileIsNotVouchedFor) {
  TempDir dir;
  stampedAndReloaded(dir, "d1");
  writeText(dir / "a.ptx", "PTX"); // same size, new time
  EXPECT_FALSE(OutputStamps(dir.path()).vouchesFor(dir / "a.ptx", "d1"));
  writeText(dir / "a.ptx", "ptx!");
  age(dir / "a.ptx", 10);
  EXPECT_FALSE(OutputStamps(dir.path()).vouchesFor(dir / "a.ptx", "d1")) << "another size";
}

// git's "racily clean" case: a file modified in the same clock tick as the
// stamps (or after them) may have changed unseen, so it is hashed.
TEST(OutputStamps, AFileNotOlderThanTheStampsIsNotVouchedFor) {
  TempDir dir;
  stampedAndReloaded(dir, "d1");
  fs::last_write_time(dir / OutputStamps::FileName, fs::last_write_time(dir / "a.ptx"));
  EXPECT_FALSE(OutputStamps(dir.path()).vouchesFor(dir / "a.ptx", "d1"));
}

TEST(OutputStamps, DamagedStampsVouchForNothing) {
  TempDir dir;
  stampedAndReloaded(dir, "d1");
  for (const char *text : {"{", "[]", R"({"format":"other","files":{}})",
                           R"({"format":"convgen-output-stamps/1","files":{"a.ptx":{"bytes":"x"}}})"}) {
    writeText(dir / OutputStamps::FileName, text);
    EXPECT_FALSE(OutputStamps(dir.path()).vouchesFor(dir / "a.ptx", "d1")) << text;
  }
}
