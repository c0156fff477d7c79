// The geometry sidecar: a JSON file next to the .npz (same stem, .json) that
// gives each convolution's input shape, stride, padding, dilation, groups and
// activation. The weights' own shapes give the rest (see ModelFile).
//
//   {"model": "resnet50",
//    "layers": [{"name": "layer1.0.conv2", "weight": "layer1.0.conv2.weight",
//                "bias": "layer1.0.conv2.bias", "input": [1, 64, 56, 56],
//                "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1],
//                "groups": 1, "activation": "relu", "output": [1, 64, 56, 56]}]}
//
// "bias" and "output" are optional; every other layer field is required, and
// unknown fields are rejected so that a typo ("paddings") cannot silently
// fall back to a default.
#pragma once

#include "model/ConvGeometry.h"
#include "model/ZeroChannels.h"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace convgen {

/// One layer entry of the sidecar, checked for types and ranges but not yet
/// against the weights.
struct LayerSpec {
  std::string name;
  std::string weightKey;
  std::optional<std::string> biasKey;
  Shape4 input{};
  HW stride{1, 1};
  HW padding{0, 0};
  HW dilation{1, 1};
  int64_t groups = 1;
  Activation activation = Activation::None;
  std::optional<Shape4> declaredOutput;
  /// ONNX: the tensor the layer's result is (the Conv's output, or that of
  /// the BatchNormalization or activation fused into it); empty for npz.
  std::string graphOutput;
  /// ONNX: what the rest of the graph says about its channels
  /// (model/ZeroChannels); empty for npz and with --no-propagate.
  ConvChannelFacts channels;
};

/// A convolution of the model that convgen cannot take (ONNX), and why.
struct SkippedLayer {
  std::string name;
  std::string graphOutput;
  std::string reason;
};

struct Sidecar {
  std::string path;
  std::string model; ///< may be empty
  std::vector<LayerSpec> layers;
  std::vector<SkippedLayer> skipped; ///< in graph order; never for npz

  std::vector<std::string> layerNames() const;
  const LayerSpec *find(std::string_view name) const;
};

/// Largest value accepted for any dimension, stride, padding or dilation:
/// kernels index with 32-bit integers.
inline constexpr int64_t MaxGeometryValue = 0x7fffffff;

/// Parses sidecar JSON text; \p path is used in error messages.
Sidecar parseSidecar(std::string_view text, const std::string &path);
/// Reads and parses the sidecar at \p path.
Sidecar loadSidecar(const std::string &path);
/// The sidecar that belongs to an .npz: same directory and stem, ".json".
std::string defaultSidecarPath(const std::string &npzPath);

} // namespace convgen
