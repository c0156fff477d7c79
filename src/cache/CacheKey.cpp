#include "cache/CacheKey.h"

#include "codegen/TemplateSpec.h"

#include <llvm/ADT/StringExtras.h>
#include <llvm/Support/BLAKE3.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/SHA256.h>

#ifndef CONVGEN_VERSION
#define CONVGEN_VERSION "unknown"
#endif

namespace convgen {

namespace {

std::string hex(llvm::ArrayRef<uint8_t> digest) { return llvm::toHex(digest, /*LowerCase=*/true); }

/// Fields are written as "name=value\n", so no two different inputs hash
/// the same text.
class KeyText {
public:
  template <typename Value> KeyText &add(const char *name, const Value &value) {
    Hash.update(std::string(name) + "=" + toText(value) + "\n");
    return *this;
  }
  void addBytes(const char *name, llvm::ArrayRef<uint8_t> bytes) {
    Hash.update(std::string(name) + ":" + std::to_string(bytes.size()) + "\n");
    Hash.update(bytes);
    Hash.update("\n");
  }
  std::string digest() { return hex(Hash.final()); }

private:
  static std::string toText(const std::string &value) { return value; }
  static std::string toText(bool value) { return value ? "1" : "0"; }
  static std::string toText(const HW &value) {
    return std::to_string(value.h) + "x" + std::to_string(value.w);
  }
  template <typename Number> static std::string toText(const Number &value) {
    return std::to_string(value);
  }
  llvm::SHA256 Hash;
};

} // namespace

const std::string &toolFingerprint() {
  static const std::string fingerprint = [] {
    // Mapped, not read, and BLAKE3, not SHA-256: every run (hits included)
    // hashes this 48 MB executable, and reading plus SHA-256 took 0.5 s of
    // the example's 0.7 s no-change round.
    auto executable = llvm::MemoryBuffer::getFile("/proc/self/exe", /*IsText=*/false,
                                                  /*RequiresNullTerminator=*/false);
    if (!executable) // no /proc: the version alone, which a rebuild does not change
      return std::string(CONVGEN_VERSION) + "+unknown-build";
    const auto digest = llvm::BLAKE3::hash(
        llvm::arrayRefFromStringRef((*executable)->getBuffer()));
    return std::string(CONVGEN_VERSION) + "+" + hex(digest).substr(0, 16);
  }();
  return fingerprint;
}

/// One bit per weight: nonzero or not.
static std::vector<uint8_t> maskBits(const std::vector<float> &weights) {
  std::vector<uint8_t> mask((weights.size() + 7) / 8, 0);
  for (size_t i = 0; i < weights.size(); ++i)
    if (weights[i] != 0.0f)
      mask[i / 8] |= uint8_t(1u << (i % 8));
  return mask;
}

/// The convolution's shape: what both keys share.
static KeyText &addConvolution(KeyText &key, const ConvGeometry &g) {
  return key.add("in_channels", g.inChannels)
      .add("out_channels", g.outChannels)
      .add("in_size", g.inSize)
      .add("kernel", g.kernel)
      .add("stride", g.stride)
      .add("padding", g.padding)
      .add("dilation", g.dilation)
      .add("groups", g.groups);
}

std::string layerCacheKey(const ConvLayer &layer, const GenerateOptions &options,
                          const std::string &templateId, const std::string &ptxasVersion) {
  const ConvGeometry &g = layer.geometry;
  const Tiling tiling = decideTiling(layer, options).tiling;
  KeyText key;
  key.add("format", std::string("convgen-cache/2"))
      .add("tool", toolFingerprint())
      .add("template", templateId)
      .add("layer", layer.name)
      .add("batch", g.batch);
  addConvolution(key, g)
      .add("activation", std::string(activationName(g.activation)))
      .add("bias", g.hasBias)
      .add("tiling", tiling.describe())
      .add("dtype", std::string(dtypeName(options.dtype)))
      .add("arch", options.arch.name)
      .add("bake_values", options.bakeValues)
      .add("constant_bank_limit", options.constantBankLimitBytes)
      .add("max_multiply_adds", options.maxMultiplyAdds)
      .add("max_kernels", options.maxKernelsPerLayer)
      .add("ptxas", options.runPtxas ? ptxasVersion : std::string("off"));
  std::string cubins; // the fatbinary's archs: another list is another entry
  for (const std::string &arch : cubinArchs(options))
    cubins += arch + " ";
  key.add("cubins", cubins);
  key.add("weights", layer.weights.size());
  key.addBytes("mask", maskBits(layer.weights));
  if (tiling.weightPath == WeightPathChoice::Baked)
    key.addBytes("values", {reinterpret_cast<const uint8_t *>(layer.weights.data()),
                            layer.weights.size() * 4});
  return key.digest();
}

std::string layerTuningKey(const ConvLayer &layer, const GenerateOptions &options,
                           const std::string &templateId) {
  const ConvGeometry &g = layer.geometry;
  KeyText key;
  key.add("format", std::string("convgen-tuning/1"))
      .add("template", templateId)
      .add("layer", layer.name);
  addConvolution(key, g)
      .add("arch", options.arch.name)
      .add("dtype", std::string(dtypeName(options.dtype)))
      .add("batch", options.batch.value_or(g.batch))
      .add("bake_values", options.bakeValues)
      .add("constant_bank_limit", options.constantBankLimitBytes)
      .add("max_multiply_adds", options.maxMultiplyAdds)
      .add("max_kernels", options.maxKernelsPerLayer);
  key.addBytes("mask", maskBits(layer.weights));
  return key.digest();
}

} // namespace convgen
