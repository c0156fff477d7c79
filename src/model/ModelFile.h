// A pruned model as the user brings it: an .npz of PyTorch state_dict arrays
// plus its geometry sidecar, or an ONNX model (model/OnnxModel). Layers are loaded on demand and fully validated:
// the weight shape against the geometry, the output shape, and every value
// finite.
#pragma once

#include "io/Npz.h"
#include "model/ConvGeometry.h"
#include "model/Sidecar.h"
#include "model/ZeroChannels.h"
#include "support/Error.h"

#include <memory>
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

  /// Sparsity from the rest of the graph (model/ZeroChannels: ONNX models,
  /// unless --no-propagate). Where it removes weights, `weights` above is
  /// what the code computes (zero on known-zero input channels and unread
  /// output channels) and modelWeights the model's own; else it is empty.
  ConvChannelFacts channels;
  std::vector<float> modelWeights;
  int64_t removedNonzeros = 0; ///< nonzero weights the facts removed

  /// The model's weights, for the reference convolution.
  const std::vector<float> &referenceWeights() const {
    return modelWeights.empty() ? weights : modelWeights;
  }
};

/// Checks a weight shape against a sidecar entry and derives the full
/// geometry: OIHW [O, C/groups, kh, kw], groups dividing C and O, a positive
/// output matching the optional declared one, and every size overflow-free.
/// \p weightContext names the weight array in errors; \p sidecarPath the sidecar.
ConvGeometry buildConvGeometry(const LayerSpec &spec, const std::vector<int64_t> &weightShape,
                               const ErrorContext &weightContext, const std::string &sidecarPath);

/// A float tensor as read from a model file: where it came from (an array
/// key, or how it was derived), its shape and its values.
struct ModelTensor {
  std::string source;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

/// Where a model's layer tensors come from: an .npz (ModelFile::open) or an
/// ONNX graph (model/OnnxModel). Reads are unvalidated; ModelFile checks
/// shapes and values.
class LayerTensorSource {
public:
  virtual ~LayerTensorSource() = default;
  /// The weights file, as errors and manifests name it.
  virtual const std::string &fileName() const = 0;
  /// "12 arrays in the .npz", for the log.
  virtual std::string describeContents() const = 0;
  virtual ModelTensor weight(const LayerSpec &spec) const = 0;
  /// Called only when spec.biasKey is set.
  virtual ModelTensor bias(const LayerSpec &spec) const = 0;
};

class ModelFile {
public:
  /// Opens \p npzPath and its sidecar (\p sidecarPath, or the .json with the
  /// same stem when empty). The sidecar is parsed eagerly; arrays lazily.
  static ModelFile open(const std::string &npzPath, const std::string &sidecarPath = "");
  /// A model whose layers \p layers describes and \p tensors holds.
  ModelFile(std::shared_ptr<const LayerTensorSource> tensors, Sidecar layers)
      : Tensors(std::move(tensors)), Geometry(std::move(layers)) {}

  const LayerTensorSource &tensors() const { return *Tensors; }
  const Sidecar &sidecar() const { return Geometry; }
  /// The layer called \p name; an InputError listing the layer names and the
  /// closest match if there is none, or saying why convgen cannot take it.
  const LayerSpec &findLayer(const std::string &name) const;
  /// Reads, combines (orig * mask) and validates one layer's arrays.
  ConvLayer loadLayer(const LayerSpec &spec) const;

private:
  std::shared_ptr<const LayerTensorSource> Tensors;
  Sidecar Geometry;
};

} // namespace convgen
