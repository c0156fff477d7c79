#include "codegen/OperatorTemplate.h"

#include <cstdint>
#include <cstdio>

extern const char convgen_template_conv2d_direct[];
extern const unsigned long convgen_template_conv2d_direct_size;

namespace convgen {

/// FNV-1a, 64 bit: a stable content id, not a security hash.
static std::string contentHash(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

const OperatorTemplate &directConvTemplate() {
  static const OperatorTemplate conv = [] {
    OperatorTemplate t;
    t.name = "conv2d_direct";
    t.irText = std::string_view(convgen_template_conv2d_direct, convgen_template_conv2d_direct_size);
    t.id = t.name + "@" + contentHash(t.irText);
    t.kernelName = "convgen_conv2d";
    t.specGlobal = "convgen_spec";
    return t;
  }();
  return conv;
}

} // namespace convgen
