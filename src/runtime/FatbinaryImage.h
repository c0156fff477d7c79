// Reading a fatbinary: NVIDIA's container of a kernel module's machine code
// for several GPUs (one cubin per SM version) plus its PTX, as the CUDA
// toolkit's `fatbinary` tool writes it and nvcc embeds it. The driver
// loads one whole and runs the best cubin for the device, or JIT-compiles
// the PTX where none fits. The runtime reads it to know beforehand which
// of the two will happen; the host CUDA driver reads it to do the same.
//
// The container (little-endian): a 16-byte header (magic 0xBA55ED50, u16
// version 1, u16 header size, u64 size of what follows), then one entry
// after another, each a header (u16 kind: 1 PTX, 2 ELF cubin; u32 header
// size at 4; u64 payload size at 8; u32 SM version at 28, 80 for sm_80;
// u64 flags at 40, 0x2000 when compressed) and its payload. convgen writes
// its images uncompressed; a compressed one is refused, not misread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace convgen {

struct FatbinaryImage {
  enum class Kind { Ptx, Cubin };
  Kind kind = Kind::Cubin;
  int sm = 0;               ///< the SM version it is for: 80 for sm_80
  std::string_view payload; ///< PTX text (its NUL padding cut) or the ELF, inside the bytes read
};

/// Whether \p bytes begin as a fatbinary does.
bool isFatbinary(std::string_view bytes);

/// The images of fatbinary \p bytes, which must outlive them. Throws
/// InputError naming \p what for a truncated or malformed container, a
/// compressed image, or an entry of another kind.
std::vector<FatbinaryImage> readFatbinary(std::string_view bytes, const std::string &what);

/// The cubin a device of SM version \p deviceSm runs from \p images, by
/// CUDA's binary compatibility rule: a cubin for X.y runs on X.z for
/// z >= y, never on another major version. The nearest such; null if none,
/// and the driver would JIT-compile the PTX.
const FatbinaryImage *cubinForDevice(const std::vector<FatbinaryImage> &images, int deviceSm);

/// The PTX image, null if there is none.
const FatbinaryImage *ptxImage(const std::vector<FatbinaryImage> &images);

} // namespace convgen
