// A pruned model as the user brings it: an .npz of PyTorch state_dict arrays
// plus its geometry sidecar. Layers are loaded on demand and fully validated:
// the weight shape against the geometry, the output shape, and every value
// finite.
#pragma once

#include "io/Npz.h"
#include "model/ConvGeometry.h"
#include "model/Sidecar.h"
#include "support/Error.h"

#include <string>
#include <vector>

namespace convgen {

/// One convolution layer, validated and ready for code generation.
struct ConvLayer {
  std::string name;
  /// Where the weights came from: "conv1.weight", or
  /// "conv1.weight_orig * conv1.weight_mask" for torch.nn.utils.prune output.
  std::string weightSource;
  ConvGeometry geometry;
  std::vector<float> weights; ///< OIHW, geometry.weightShape()
  std::vector<float> bias;    ///< outChannels values, or empty
};

/// Checks a weight shape against a sidecar entry and derives the full
/// geometry: OIHW [O, C/groups, kh, kw], groups dividing C and O, a positive
/// output matching the optional declared one, and every size overflow-free.
/// \p weightContext names the weight array in errors; \p sidecarPath the sidecar.
ConvGeometry buildConvGeometry(const LayerSpec &spec, const std::vector<int64_t> &weightShape,
                               const ErrorContext &weightContext, const std::string &sidecarPath);

class ModelFile {
public:
  /// Opens \p npzPath and its sidecar (\p sidecarPath, or the .json with the
  /// same stem when empty). The sidecar is parsed eagerly; arrays lazily.
  static ModelFile open(const std::string &npzPath, const std::string &sidecarPath = "");

  const NpzArchive &archive() const { return Archive; }
  const Sidecar &sidecar() const { return Geometry; }
  /// The layer called \p name; an InputError listing the layer names and the
  /// closest match if there is none.
  const LayerSpec &findLayer(const std::string &name) const;
  /// Reads, combines (orig * mask) and validates one layer's arrays.
  ConvLayer loadLayer(const LayerSpec &spec) const;

private:
  ModelFile(NpzArchive archive, Sidecar sidecar)
      : Archive(std::move(archive)), Geometry(std::move(sidecar)) {}

  struct Tensor {
    std::string source;
    std::vector<int64_t> shape;
    std::vector<float> values;
  };
  Tensor readFloatTensor(const std::string &key, const std::string &layer) const;

  NpzArchive Archive;
  Sidecar Geometry;
};

} // namespace convgen
