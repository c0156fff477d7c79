// Pruned ONNX models as convgen input, through Debian's ONNX library
// (protobuf model, checker, shape inference): no sidecar needed.
//
// Each Conv node of the main graph is a layer, named by its node name, else
// by its output name. Its input shape comes from the graph inputs and shape
// inference; a symbolic batch dimension of a graph input becomes the batch
// asked for (--for-batch), else 1. Its weights and bias come from
// initializers (or Constant nodes): float32, or float16 widened; raw or
// typed fields; external data files, confined to the model's directory.
//
// What follows a Conv is fused as PyTorch's exporter (tools/export_pytorch.py)
// fuses it: a BatchNormalization that is the Conv's only consumer is folded
// into its weights and bias, and a Relu, or a Clip with constant bounds 0
// and 6, that is the only consumer of the result becomes the activation.
//
// A Conv convgen cannot take (computed weights, 1-D or 3-D, asymmetric pads,
// an input shape inference cannot fix) is listed in Sidecar::skipped with
// the reason, and asking for it by name is an InputError. A file that is not
// a valid ONNX model, or uses an opset newer than the library knows, is an
// InputError for the whole file.
//
// Sparsity that crosses layers: unless turned off, the channels each layer
// gets as known zero from its producers, and those of its output nobody
// reads, are found at open (model/OnnxChannelGraph, model/ZeroChannels);
// loading the layer then drops their weights (model/LayerChannels).
//
// The ONNX checker and shape inference run in a forked child process:
// libonnx crashes on some malformed models, and such a crash must be the
// file's input error. So open ONNX models before starting threads.
#pragma once

#include "model/ModelFile.h"

#include <cstdint>
#include <string>

namespace convgen {

struct OnnxOptions {
  /// What a symbolic batch dimension becomes; 0 means 1.
  int64_t batch = 0;
  /// Propagate zero and unread channels through the graph
  /// (model/ZeroChannels) into each layer's LayerSpec::channels; reads
  /// every layer's weights once at open.
  bool propagateZeroChannels = true;
};

/// True if \p path names an ONNX file (by its ".onnx" extension, any case).
bool isOnnxPath(const std::string &path);

/// Reads, checks and shape-infers the ONNX model at \p path and describes
/// its Conv nodes as layers. Tensors are decoded when a layer is loaded.
ModelFile openOnnxModel(const std::string &path, const OnnxOptions &options = {});

} // namespace convgen
