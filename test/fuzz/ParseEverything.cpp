#include "fuzz/ParseEverything.h"

#include "io/Npy.h"
#include "io/Npz.h"
#include "model/ModelFile.h"
#include "model/Sidecar.h"
#include "runtime/FatbinaryImage.h"
#include "support/Error.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <vector>

#ifdef CONVGEN_FUZZ_ONNX
#include "model/OnnxModel.h"
#endif

namespace convgen::fuzz {

const char *inputKindName(InputKind kind) {
  switch (kind) {
  case InputKind::Npy: return "npy";
  case InputKind::Npz: return "npz";
  case InputKind::Sidecar: return "sidecar";
  case InputKind::Onnx: return "onnx";
  case InputKind::Fatbinary: return "fatbinary";
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

static void parseFatbinary(const uint8_t *data, size_t size) {
  // What the runtime does with a layer's NAME.fatbin before the driver sees it.
  const std::string bytes(reinterpret_cast<const char *>(data), size);
  const std::vector<FatbinaryImage> images = readFatbinary(bytes, "fuzz.fatbin");
  for (int sm : {70, 80, 86, 90, 100})
    if (const FatbinaryImage *cubin = cubinForDevice(images, sm); cubin && cubin->payload.empty())
      std::abort(); // a cubin is at least its ELF magic
  if (const FatbinaryImage *ptx = ptxImage(images); ptx && ptx->payload.find('\0') != std::string_view::npos)
    std::abort(); // the PTX text ends at its padding
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

bool onnxSupported() {
#ifdef CONVGEN_FUZZ_ONNX
  return true;
#else
  return false;
#endif
}

#ifdef CONVGEN_FUZZ_ONNX
static void parseOnnx(const uint8_t *data, size_t size) {
  // openOnnxModel reads a file (external data is found beside it): the
  // bytes go to one file per process, in a directory of its own.
  namespace fs = std::filesystem;
  static const fs::path path = [] {
    fs::path dir = fs::temp_directory_path() / ("convgen-fuzz-onnx-" + std::to_string(getpid()));
    fs::create_directories(dir);
    return dir / "fuzz.onnx";
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(data), std::streamsize(size));
  }
  // Opening runs the zero-channel propagation over the whole graph too.
  ModelFile model = openOnnxModel(path.string());
  for (const LayerSpec &spec : model.sidecar().layers) {
    try {
      ConvLayer layer = model.loadLayer(spec);
      (void)layer.geometry.denseMultiplyAdds();
      // Facts name channels the layer has, and remove only what it holds.
      auto outside = [](const std::vector<int64_t> &channels, int64_t count) {
        return std::any_of(channels.begin(), channels.end(),
                           [count](int64_t c) { return c < 0 || c >= count; });
      };
      const ConvChannelFacts &facts = layer.channels;
      if (outside(facts.zeroInputChannels, layer.geometry.inChannels) ||
          outside(facts.zeroOutputChannels, layer.geometry.outChannels) ||
          outside(facts.unreadOutputChannels, layer.geometry.outChannels) ||
          layer.removedNonzeros < 0 ||
          layer.removedNonzeros > int64_t(layer.referenceWeights().size()))
        std::abort();
    } catch (const InputError &) {
      // One bad layer must not affect the others.
    }
  }
  for (const SkippedLayer &skipped : model.sidecar().skipped)
    if (skipped.reason.empty())
      std::abort(); // every skipped Conv must say why
}
#endif

bool parseEverything(InputKind kind, const uint8_t *data, size_t size) {
  try {
    switch (kind) {
    case InputKind::Npy: consumeArray(parseNpy({data, size}, "fuzz.npy")); break;
    case InputKind::Npz: parseNpz(data, size); break;
    case InputKind::Sidecar: parseSidecarAndGeometry(data, size); break;
    case InputKind::Fatbinary: parseFatbinary(data, size); break;
    case InputKind::Onnx:
#ifdef CONVGEN_FUZZ_ONNX
      parseOnnx(data, size);
      break;
#else
      return false;
#endif
    }
    return true;
  } catch (const Error &error) {
    if (std::string(error.what()).empty())
      std::abort(); // every rejection must say why
    return false;
  }
}

} // namespace convgen::fuzz
