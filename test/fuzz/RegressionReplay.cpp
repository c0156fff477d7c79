// Replays the fuzz seed corpus and every committed fuzzing crash
// (test/fuzz/regressions/KIND/) through the parsers in the ordinary test
// build, so a fixed crash stays fixed even where libFuzzer is not built.
#include "fuzz/ParseEverything.h"

#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <iterator>
#include <vector>

using namespace convgen::fuzz;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> inputsOf(InputKind kind) {
  std::vector<fs::path> files;
  for (const char *set : {"corpus", "regressions"}) {
    fs::path dir = fs::path(CONVGEN_FUZZ_DIR) / set / inputKindName(kind);
    if (fs::exists(dir))
      for (const auto &entry : fs::directory_iterator(dir))
        if (entry.is_regular_file() && entry.path().filename() != ".gitkeep")
          files.push_back(entry.path());
  }
  return files;
}

class FuzzInputs : public ::testing::TestWithParam<InputKind> {};

} // namespace

TEST_P(FuzzInputs, EveryInputIsParsedOrRejectedWithAnError) {
  std::vector<fs::path> files = inputsOf(GetParam());
  ASSERT_FALSE(files.empty()) << "no seed corpus for " << inputKindName(GetParam());
  size_t accepted = 0;
  for (const fs::path &file : files) {
    SCOPED_TRACE(file.string());
    std::ifstream in(file, std::ios::binary);
    std::vector<uint8_t> bytes(std::istreambuf_iterator<char>(in), {});
    // Anything but a convgen::Error escaping here fails the test.
    EXPECT_NO_THROW(accepted += parseEverything(GetParam(), bytes.data(), bytes.size()));
  }
  // The seed corpus consists of valid files; they must be accepted.
  EXPECT_GT(accepted, 0u);
}

// ONNX where this build reads it (the ONNX library is optional in a
// runtime-only build).
std::vector<InputKind> parsers() {
  std::vector<InputKind> kinds = {InputKind::Npy, InputKind::Npz, InputKind::Sidecar,
                                  InputKind::Fatbinary};
  if (onnxSupported())
    kinds.push_back(InputKind::Onnx);
  return kinds;
}

INSTANTIATE_TEST_SUITE_P(AllParsers, FuzzInputs, ::testing::ValuesIn(parsers()),
                         [](const auto &info) { return std::string(inputKindName(info.param)); });
