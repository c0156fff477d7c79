// Content hashes for manifests and caches: FNV-1a, 64 bit, as 16 hex
// digits. Stable across runs and platforms; for change detection, not
// security.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

namespace convgen {

inline uint64_t fnv1a64(std::span<const unsigned char> bytes, uint64_t hash = 0xcbf29ce484222325ull) {
  for (unsigned char byte : bytes) {
    hash ^= byte;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

inline std::string hexDigest(uint64_t hash) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

inline std::string contentHash(std::string_view text) {
  return hexDigest(fnv1a64({reinterpret_cast<const unsigned char *>(text.data()), text.size()}));
}

} // namespace convgen
