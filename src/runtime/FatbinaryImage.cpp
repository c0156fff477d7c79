#include "runtime/FatbinaryImage.h"

#include "support/Error.h"

#include <cstdint>
#include <cstring>

namespace convgen {

namespace {

constexpr uint32_t FatbinaryMagic = 0xBA55ED50;
constexpr uint16_t KindPtx = 1, KindCubin = 2;
constexpr uint64_t FlagCompressed = 0x2000;
constexpr size_t ContainerHeaderBytes = 16, EntryHeaderMinBytes = 48;

template <typename T> T readLittleEndian(std::string_view bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T)); // hosts and devices are little-endian
  return value;
}

} // namespace

bool isFatbinary(std::string_view bytes) {
  return bytes.size() >= ContainerHeaderBytes && readLittleEndian<uint32_t>(bytes, 0) == FatbinaryMagic;
}

std::vector<FatbinaryImage> readFatbinary(std::string_view bytes, const std::string &what) {
  auto fail = [&](const std::string &problem) -> void {
    throw InputError({what, "", ""}, "fatbinary: " + problem + ": regenerate the layer");
  };
  if (!isFatbinary(bytes))
    fail("no fatbinary header");
  const uint16_t headerBytes = readLittleEndian<uint16_t>(bytes, 6);
  const uint64_t bodyBytes = readLittleEndian<uint64_t>(bytes, 8);
  if (headerBytes < ContainerHeaderBytes || headerBytes > bytes.size() ||
      bodyBytes > bytes.size() - headerBytes)
    fail("its header says " + std::to_string(bodyBytes) + " bytes, the file holds " +
         std::to_string(bytes.size()));
  std::vector<FatbinaryImage> images;
  const size_t end = headerBytes + bodyBytes;
  for (size_t at = headerBytes; at < end;) {
    const std::string where = "entry at byte " + std::to_string(at);
    if (end - at < EntryHeaderMinBytes)
      fail(where + " is truncated");
    const uint16_t kind = readLittleEndian<uint16_t>(bytes, at);
    const uint32_t entryHeaderBytes = readLittleEndian<uint32_t>(bytes, at + 4);
    const uint64_t payloadBytes = readLittleEndian<uint64_t>(bytes, at + 8);
    const uint32_t sm = readLittleEndian<uint32_t>(bytes, at + 28);
    const uint64_t flags = readLittleEndian<uint64_t>(bytes, at + 40);
    if (entryHeaderBytes < EntryHeaderMinBytes || entryHeaderBytes > end - at ||
        payloadBytes > end - at - entryHeaderBytes)
      fail(where + " runs past the end");
    if (kind != KindPtx && kind != KindCubin)
      fail(where + " is of kind " + std::to_string(kind) + ", neither PTX nor cubin");
    if (flags & FlagCompressed)
      fail(where + " is compressed");
    FatbinaryImage image;
    image.kind = kind == KindPtx ? FatbinaryImage::Kind::Ptx : FatbinaryImage::Kind::Cubin;
    image.sm = int(sm);
    image.payload = bytes.substr(at + entryHeaderBytes, payloadBytes);
    if (image.kind == FatbinaryImage::Kind::Ptx)
      image.payload = image.payload.substr(0, image.payload.find('\0'));
    else if (image.payload.substr(0, 4) != "\x7f" "ELF")
      fail(where + " (sm_" + std::to_string(sm) + ") is not an ELF cubin");
    images.push_back(image);
    at += entryHeaderBytes + payloadBytes;
  }
  return images;
}

const FatbinaryImage *cubinForDevice(const std::vector<FatbinaryImage> &images, int deviceSm) {
  const FatbinaryImage *best = nullptr;
  for (const FatbinaryImage &image : images)
    if (image.kind == FatbinaryImage::Kind::Cubin && image.sm / 10 == deviceSm / 10 &&
        image.sm <= deviceSm && (!best || image.sm > best->sm))
      best = &image;
  return best;
}

const FatbinaryImage *ptxImage(const std::vector<FatbinaryImage> &images) {
  for (const FatbinaryImage &image : images)
    if (image.kind == FatbinaryImage::Kind::Ptx)
      return &image;
  return nullptr;
}

} // namespace convgen
