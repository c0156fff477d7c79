#include "fuzz/ParseEverything.h"

#include "io/Npy.h"
#include "io/Npz.h"
#include "model/ModelFile.h"
#include "model/Sidecar.h"
#include "support/Error.h"

#include <cstdlib>
#include <vector>

namespace convgen::fuzz {

const char *inputKindName(InputKind kind) {
  switch (kind) {
  case InputKind::Npy: return "npy";
  case InputKind::Npz: return "npz";
  case InputKind::Sidecar: return "sidecar";
  }
  return "?";
}

static void consumeArray(const NpyArray &array) {
  // Converting touches every element: the size checks must have been right.
  volatile float sink = 0;
  for (float value : array.toFloat32())
    sink = sink + value;
}

static void parseNpz(const uint8_t *data, size_t size) {
  NpzArchive npz = NpzArchive::fromBytes(std::vector<uint8_t>(data, data + size), "fuzz.npz");
  for (const std::string &key : npz.keys()) {
    try {
      consumeArray(npz.read(key));
    } catch (const InputError &) {
      // One bad member must not affect the others.
    }
  }
}

static void parseSidecarAndGeometry(const uint8_t *data, size_t size) {
  Sidecar sidecar = parseSidecar(std::string_view(reinterpret_cast<const char *>(data), size),
                                 "fuzz.json");
  // Check each layer against weight shapes that fit it and ones that do not,
  // so the geometry validation's arithmetic sees the fuzzed values.
  for (const LayerSpec &spec : sidecar.layers) {
    int64_t perGroup = spec.input[1] / spec.groups;
    for (std::vector<int64_t> shape : {std::vector<int64_t>{spec.groups * 2, perGroup, 3, 3},
                                       std::vector<int64_t>{1, perGroup, 1, 7},
                                       std::vector<int64_t>{4, 4, 4}}) {
      try {
        ConvGeometry geometry = buildConvGeometry(spec, shape, {"w", spec.name, "w"}, "fuzz.json");
        (void)geometry.denseMultiplyAdds();
        (void)geometry.summary();
      } catch (const InputError &) {
      }
    }
  }
}

bool parseEverything(InputKind kind, const uint8_t *data, size_t size) {
  try {
    switch (kind) {
    case InputKind::Npy: consumeArray(parseNpy({data, size}, "fuzz.npy")); break;
    case InputKind::Npz: parseNpz(data, size); break;
    case InputKind::Sidecar: parseSidecarAndGeometry(data, size); break;
    }
    return true;
  } catch (const Error &error) {
    if (std::string(error.what()).empty())
      std::abort(); // every rejection must say why
    return false;
  }
}

} // namespace convgen::fuzz
