// libFuzzer entry point; built once per input kind with CONVGEN_FUZZ_KIND set
// (see test/fuzz/CMakeLists.txt and scripts/fuzz.sh).
#include "fuzz/ParseEverything.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  convgen::fuzz::parseEverything(convgen::fuzz::InputKind::CONVGEN_FUZZ_KIND, data, size);
  return 0;
}
