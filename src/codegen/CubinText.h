// The machine code size of each kernel in a cubin, the ELF file ptxas
// writes: kernel NAME's SASS is section `.text.NAME`. On sm_70 and later
// every instruction is 128 bits, so the section's size / 16 is its count
// of machine instructions: what the kernel issues per pass through its
// code, the numerator of "machine instructions per useful multiply-add".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace convgen {

/// Bytes per SASS instruction on sm_70 and later.
inline constexpr int64_t SassInstructionBytes = 16;

/// Size in bytes of each `.text.NAME` section of \p cubin, by NAME.
/// Throws CheckFailure naming \p what if \p cubin is not a 64-bit
/// little-endian ELF file or its section table runs past its end.
std::map<std::string, int64_t> kernelTextBytes(std::string_view cubin, const std::string &what);

} // namespace convgen
