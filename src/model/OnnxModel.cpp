#include "model/OnnxModel.h"

#include "model/LayerChannels.h"
#include "model/OnnxChannelGraph.h"

#include "io/Half.h"
#include "io/Npy.h"
#include "support/AtomicFile.h"
#include "support/CheckedMath.h"
#include "support/Error.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace convgen {

namespace {

using onnx::AttributeProto;
using onnx::NodeProto;
using onnx::TensorProto;

bool isDefaultDomain(const std::string &domain) { return domain.empty() || domain == "ai.onnx"; }

bool isOp(const NodeProto &node, const char *type) {
  return node.op_type() == type && isDefaultDomain(node.domain());
}

/// The first line of a library message (the checker's run to several).
std::string firstLine(const std::string &text) {
  std::string line = text.substr(0, text.find('\n'));
  while (!line.empty() && (line.back() == ' ' || line.back() == '\r'))
    line.pop_back();
  return line;
}

std::string describeNode(const NodeProto &node) {
  std::string op = node.op_type().empty() ? "node" : node.op_type();
  if (!node.name().empty())
    return op + " '" + node.name() + "'";
  return op + (node.output_size() ? " with output '" + node.output(0) + "'" : std::string(" (unnamed)"));
}

const AttributeProto *findAttribute(const NodeProto &node, const char *name) {
  for (const AttributeProto &attribute : node.attribute())
    if (attribute.name() == name)
      return &attribute;
  return nullptr;
}

std::vector<int64_t> intsAttribute(const NodeProto &node, const char *name,
                                   std::vector<int64_t> fallback) {
  const AttributeProto *attribute = findAttribute(node, name);
  if (!attribute)
    return fallback;
  return {attribute->ints().begin(), attribute->ints().end()};
}

std::string formatInts(const std::vector<int64_t> &values) {
  return formatShape(std::span<const int64_t>(values));
}

const char *dataTypeName(int type) {
  switch (type) {
  case TensorProto::FLOAT: return "float32";
  case TensorProto::FLOAT16: return "float16";
  case TensorProto::DOUBLE: return "float64";
  case TensorProto::BFLOAT16: return "bfloat16";
  case TensorProto::INT8: return "int8";
  case TensorProto::UINT8: return "uint8";
  case TensorProto::INT32: return "int32";
  case TensorProto::INT64: return "int64";
  default: return "a non-float type";
  }
}

/// What the ONNX checker and shape inference made of a model: the problem
/// they found (empty if none), else the graph's value_info and outputs with
/// the shapes inferred.
struct InferredShapes {
  std::string problem;
  onnx::GraphProto shapes;
};

/// Checks \p model with the ONNX checker and infers its shapes, in a child
/// process. libonnx 1.12 crashes on some malformed models (fuzzing found a
/// segfault in its Conv shape inference): in a child, that crash is this
/// file's input error, not the end of convgen. The child sends back only
/// the inferred value_info and outputs.
InferredShapes checkAndInferShapes(const onnx::ModelProto &model, const std::string &path) {
  bool externalData = false;
  for (const TensorProto &initializer : model.graph().initializer())
    externalData |= initializer.data_location() == TensorProto::EXTERNAL;
  int channel[2];
  if (pipe(channel) != 0)
    throw SystemError("pipe", path, errno);
  const pid_t child = fork();
  if (child < 0) {
    close(channel[0]);
    close(channel[1]);
    throw SystemError("fork", path, errno);
  }
  if (child == 0) {
    close(channel[0]);
    // A crash here ends this child alone, by its signal: no handler the
    // parent installed (a sanitizer's, a fuzzer's) reports it as the parent's.
    for (int signal : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT})
      std::signal(signal, SIG_DFL);
    std::string reply;
    try {
      // The checker resolves external data against the model's directory,
      // which only the path form gives it.
      if (externalData)
        onnx::checker::check_model(path);
      else
        onnx::checker::check_model(model);
      try {
        onnx::ModelProto inferred = model;
        onnx::shape_inference::InferShapes(inferred);
        onnx::GraphProto shapes;
        *shapes.mutable_value_info() = inferred.graph().value_info();
        *shapes.mutable_output() = inferred.graph().output();
        reply = "S" + shapes.SerializeAsString();
      } catch (const std::exception &e) {
        reply = "Eshape inference failed: " + firstLine(e.what());
      }
    } catch (const std::exception &e) {
      reply = "Efails the ONNX checker: " + firstLine(e.what());
    }
    for (size_t sent = 0; sent < reply.size();) {
      const ssize_t n = write(channel[1], reply.data() + sent, reply.size() - sent);
      if (n <= 0)
        _exit(1);
      sent += size_t(n);
    }
    _exit(0); // no atexit handlers, no destructors: the parent owns them
  }
  close(channel[1]);
  std::string reply;
  char buffer[65536];
  for (ssize_t n; (n = read(channel[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    reply.append(buffer, size_t(n));
  }
  close(channel[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  InferredShapes result;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || reply.empty()) {
    result.problem = WIFSIGNALED(status)
                         ? "is malformed: the ONNX library crashed checking it (signal " +
                               std::to_string(WTERMSIG(status)) + ")"
                         : std::string("is malformed: the ONNX library failed checking it");
  } else if (reply[0] == 'E') {
    result.problem = reply.substr(1);
  } else if (!result.shapes.ParseFromString(reply.substr(1))) {
    result.problem = "is malformed: its inferred shapes could not be read back";
  }
  return result;
}

/// Two fused nodes' worth of provenance for one layer.
struct LayerNodes {
  const NodeProto *conv = nullptr;
  const NodeProto *batchNorm = nullptr;  ///< folded into the weights, or null
  const NodeProto *activation = nullptr; ///< fused Relu or Clip, or null
};

/// The ONNX model, parsed, checked and shape-inferred, and the tensors of
/// its layers, decoded on demand.
class OnnxTensorSource final : public LayerTensorSource {
public:
  OnnxTensorSource(std::string path, const OnnxOptions &options);

  const std::string &fileName() const override { return Path; }
  std::string describeContents() const override {
    return std::to_string(Model.graph().initializer_size()) + " initializers in the ONNX graph";
  }
  ModelTensor weight(const LayerSpec &spec) const override;
  ModelTensor bias(const LayerSpec &spec) const override;

  /// The Conv nodes as layers, and the ones convgen cannot take.
  Sidecar describeLayers();
  /// Zero and unread channels across the graph (model/ZeroChannels), per
  /// layer of \p model (this source's). A layer whose tensors cannot be
  /// read stops propagation; loading it reports the error.
  std::map<std::string, ConvChannelFacts> propagateZeroChannels(const ModelFile &model) const;

private:
  ErrorContext context(const std::string &layer = "", const std::string &field = "") const {
    return {Path, layer, field};
  }
  void parse();
  void check(int64_t batch);
  void indexGraph();

  const TensorProto *constant(const std::string &name) const {
    auto found = Constants.find(name);
    return found == Constants.end() ? nullptr : found->second;
  }
  /// A tensor's values as doubles, whatever its float type; InputError for
  /// other types or for data that does not match its dims.
  std::vector<double> values(const TensorProto &tensor, const std::string &layer) const;
  std::vector<int64_t> dims(const TensorProto &tensor, const std::string &layer) const;
  std::string externalBytes(const TensorProto &tensor, const std::string &layer) const;
  /// A scalar constant input (Clip's bounds), or nullopt.
  std::optional<double> scalar(const std::string &name, const std::string &layer) const;

  /// Why \p conv cannot be a layer, or "" if it can; fills \p spec.
  std::string readConv(const NodeProto &conv, LayerSpec &spec, LayerNodes &nodes) const;
  std::string readPads(const NodeProto &conv, const std::vector<int64_t> &input,
                       const std::vector<int64_t> &kernel, const std::vector<int64_t> &strides,
                       const std::vector<int64_t> &dilations, HW &padding) const;
  /// Folds BatchNormalization and takes Relu/Clip(0, 6) after the Conv.
  void readEpilogue(LayerSpec &spec, LayerNodes &nodes) const;
  bool isFoldableBatchNorm(const NodeProto &node, int64_t outChannels) const;
  /// gamma / sqrt(var + eps) per channel of a foldable BatchNormalization.
  std::vector<double> batchNormScale(const NodeProto &norm, const std::string &layer) const;
  /// The only consumer of \p value, if it has exactly one and is not a graph
  /// output (a graph output is seen as it is, unfused).
  const NodeProto *onlyConsumer(const std::string &value) const;

  std::string Path;
  fs::path Directory;
  onnx::ModelProto Model;
  int64_t Opset = 0;
  std::unordered_map<std::string, const TensorProto *> Constants;
  std::unordered_map<std::string, std::vector<int64_t>> Shapes; ///< -1: unknown dimension
  std::unordered_map<std::string, std::vector<const NodeProto *>> Consumers;
  std::set<std::string> GraphOutputs;
  std::set<std::string> GraphInputs;
  std::map<std::string, LayerNodes> Layers; ///< by layer name
};

OnnxTensorSource::OnnxTensorSource(std::string path, const OnnxOptions &options)
    : Path(std::move(path)), Directory(fs::path(Path).parent_path()) {
  parse();
  check(options.batch > 0 ? options.batch : 1);
  indexGraph();
}

void OnnxTensorSource::parse() {
  const std::string bytes = readWholeFile(Path);
  if (bytes.empty())
    throw InputError(context(), "is empty, not an ONNX model");
  if (!Model.ParseFromString(bytes))
    throw InputError(context(), "is not an ONNX model: protobuf parsing failed (a truncated file, "
                                "or another format)");
  if (!Model.has_graph() || Model.graph().node_size() == 0)
    throw InputError(context(), "is not an ONNX model: it has no graph nodes");
}

void OnnxTensorSource::check(int64_t batch) {
  for (const onnx::OperatorSetIdProto &import : Model.opset_import())
    if (isDefaultDomain(import.domain()))
      Opset = import.version();
  const int maxOpset =
      onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map().at(onnx::ONNX_DOMAIN).second;
  if (Opset < 1)
    throw InputError(context(), "imports no ai.onnx opset; convgen reads ONNX opsets 1 to " +
                                    std::to_string(maxOpset));
  if (Opset > maxOpset)
    throw InputError(context(), "uses opset " + std::to_string(Opset) +
                                    ", newer than this build's ONNX library knows (opsets up to " +
                                    std::to_string(maxOpset) + "); export with opset_version <= " +
                                    std::to_string(maxOpset));

  // A symbolic batch dimension becomes the batch asked for, before shape
  // inference, so that every shape after it is concrete.
  std::set<std::string> initializers;
  for (const TensorProto &initializer : Model.graph().initializer())
    initializers.insert(initializer.name());
  for (onnx::ValueInfoProto &input : *Model.mutable_graph()->mutable_input()) {
    if (initializers.count(input.name()) || !input.type().has_tensor_type() ||
        !input.type().tensor_type().has_shape())
      continue;
    onnx::TensorShapeProto *shape = input.mutable_type()->mutable_tensor_type()->mutable_shape();
    if (shape->dim_size() > 0 && !shape->dim(0).has_dim_value())
      shape->mutable_dim(0)->set_dim_value(batch);
  }

  const InferredShapes inferred = checkAndInferShapes(Model, Path);
  if (!inferred.problem.empty())
    throw InputError(context(), inferred.problem);
  *Model.mutable_graph()->mutable_value_info() = inferred.shapes.value_info();
  *Model.mutable_graph()->mutable_output() = inferred.shapes.output();
}

void OnnxTensorSource::indexGraph() {
  const onnx::GraphProto &graph = Model.graph();
  for (const TensorProto &initializer : graph.initializer())
    Constants[initializer.name()] = &initializer;
  for (const NodeProto &node : graph.node()) {
    if (isOp(node, "Constant") && node.output_size() == 1)
      if (const AttributeProto *value = findAttribute(node, "value"); value && value->has_t())
        Constants[node.output(0)] = &value->t();
    for (const std::string &input : node.input())
      if (!input.empty())
        Consumers[input].push_back(&node);
  }
  auto addShape = [&](const onnx::ValueInfoProto &info) {
    if (!info.type().has_tensor_type() || !info.type().tensor_type().has_shape())
      return;
    std::vector<int64_t> shape;
    for (const auto &dim : info.type().tensor_type().shape().dim())
      shape.push_back(dim.has_dim_value() ? dim.dim_value() : -1);
    Shapes[info.name()] = shape;
  };
  for (const auto &info : graph.input()) {
    addShape(info);
    GraphInputs.insert(info.name());
  }
  for (const auto &info : graph.value_info())
    addShape(info);
  for (const auto &info : graph.output()) {
    addShape(info);
    GraphOutputs.insert(info.name());
  }
}

std::vector<int64_t> OnnxTensorSource::dims(const TensorProto &tensor, const std::string &layer) const {
  std::vector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
  for (int64_t dim : shape)
    if (dim < 0 || dim > MaxGeometryValue)
      throw InputError(context(layer, tensor.name()), "has dims " + formatInts(shape) +
                                                          "; every dimension must be in 0..2^31-1");
  if (!checkedProduct(shape) || *checkedProduct(shape) > (int64_t(1) << 40))
    throw InputError(context(layer, tensor.name()), "has dims " + formatInts(shape) + ", too large");
  return shape;
}

std::string OnnxTensorSource::externalBytes(const TensorProto &tensor, const std::string &layer) const {
  const ErrorContext where = context(layer, tensor.name());
  std::string location;
  int64_t offset = 0, length = -1;
  for (const onnx::StringStringEntryProto &entry : tensor.external_data()) {
    try {
      if (entry.key() == "location")
        location = entry.value();
      else if (entry.key() == "offset")
        offset = std::stoll(entry.value());
      else if (entry.key() == "length")
        length = std::stoll(entry.value());
    } catch (const std::exception &) {
      throw InputError(where, "external data " + entry.key() + " '" + entry.value() +
                                  "' is not a number");
    }
  }
  if (location.empty())
    throw InputError(where, "is stored as external data but names no location");
  // Confined to the model's directory: no absolute path, no "..", and no
  // symbolic link that leads out of it.
  const fs::path relative(location);
  const bool climbs = std::any_of(relative.begin(), relative.end(),
                                  [](const fs::path &part) { return part == ".."; });
  std::error_code ec;
  const fs::path base = fs::weakly_canonical(Directory.empty() ? fs::path(".") : Directory, ec);
  const fs::path file = fs::weakly_canonical(base / relative, ec);
  const auto [baseEnd, fileAt] = std::mismatch(base.begin(), base.end(), file.begin(), file.end());
  if (relative.is_absolute() || relative.has_root_name() || climbs || ec || baseEnd != base.end())
    throw InputError(where, "external data '" + location +
                                "' is outside the model's directory; it must be a file beside "
                                "the model or below it");
  if (offset < 0 || length < -1)
    throw InputError(where, "external data has a negative offset or length");
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw InputError(where, "external data file '" + location + "' cannot be opened");
  in.seekg(0, std::ios::end);
  const int64_t size = in.tellg();
  if (offset > size || (length >= 0 && length > size - offset))
    throw InputError(where, "external data '" + location + "' is " + std::to_string(size) +
                                " bytes; offset " + std::to_string(offset) + " and length " +
                                std::to_string(length) + " go past its end");
  std::string bytes(size_t(length >= 0 ? length : size - offset), '\0');
  in.seekg(offset);
  in.read(bytes.data(), std::streamsize(bytes.size()));
  if (!in)
    throw InputError(where, "external data '" + location + "' could not be read");
  return bytes;
}

std::vector<double> OnnxTensorSource::values(const TensorProto &tensor, const std::string &layer) const {
  const ErrorContext where = context(layer, tensor.name());
  const std::vector<int64_t> shape = dims(tensor, layer);
  const size_t count = size_t(*checkedProduct(shape));
  const int type = tensor.data_type();
  const size_t elementBytes = type == TensorProto::FLOAT     ? 4
                              : type == TensorProto::FLOAT16 ? 2
                              : type == TensorProto::DOUBLE  ? 8
                                                             : 0;
  if (!elementBytes)
    throw InputError(where, std::string("holds ") + dataTypeName(type) +
                                " values; convgen reads float32 or float16 (float64 for "
                                "normalisation statistics)");
  const bool external = tensor.data_location() == TensorProto::EXTERNAL;
  const std::string externalData = external ? externalBytes(tensor, layer) : std::string();
  const std::string &raw = external ? externalData : tensor.raw_data();
  auto mismatch = [&](size_t held) {
    return InputError(where, "holds " + std::to_string(held) + " values; its dims " +
                                 formatInts(shape) + " need " + std::to_string(count));
  };
  std::vector<double> out;
  if (external || tensor.has_raw_data()) {
    // ONNX stores raw data little-endian, as this host is.
    if (raw.size() != count * elementBytes)
      throw mismatch(raw.size() / elementBytes);
    out.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const char *at = raw.data() + i * elementBytes;
      if (type == TensorProto::FLOAT) {
        float value;
        std::memcpy(&value, at, 4);
        out[i] = value;
      } else if (type == TensorProto::FLOAT16) {
        uint16_t bits;
        std::memcpy(&bits, at, 2);
        out[i] = halfToFloat(bits);
      } else {
        std::memcpy(&out[i], at, 8);
      }
    }
    return out;
  }
  const size_t typedCount = size_t(type == TensorProto::FLOAT     ? tensor.float_data_size()
                                   : type == TensorProto::FLOAT16 ? tensor.int32_data_size()
                                                                  : tensor.double_data_size());
  if (typedCount != count)
    throw mismatch(typedCount);
  out.resize(count);
  if (type == TensorProto::FLOAT) {
    std::copy(tensor.float_data().begin(), tensor.float_data().end(), out.begin());
  } else if (type == TensorProto::FLOAT16) {
    // float16 in the typed field: each int32 holds one value's bits.
    for (size_t i = 0; i < count; ++i)
      out[i] = halfToFloat(uint16_t(tensor.int32_data(int(i)) & 0xffff));
  } else {
    std::copy(tensor.double_data().begin(), tensor.double_data().end(), out.begin());
  }
  return out;
}

std::optional<double> OnnxTensorSource::scalar(const std::string &name, const std::string &layer) const {
  const TensorProto *tensor = constant(name);
  if (!tensor)
    return std::nullopt;
  std::vector<double> held = values(*tensor, layer);
  if (held.size() != 1)
    return std::nullopt;
  return held[0];
}

const NodeProto *OnnxTensorSource::onlyConsumer(const std::string &value) const {
  auto found = Consumers.find(value);
  if (found == Consumers.end() || found->second.size() != 1 || GraphOutputs.count(value))
    return nullptr;
  return found->second.front();
}

std::string OnnxTensorSource::readPads(const NodeProto &conv, const std::vector<int64_t> &input,
                                       const std::vector<int64_t> &kernel,
                                       const std::vector<int64_t> &strides,
                                       const std::vector<int64_t> &dilations, HW &padding) const {
  const AttributeProto *autoPad = findAttribute(conv, "auto_pad");
  const std::string mode = autoPad ? autoPad->s() : "NOTSET";
  std::vector<int64_t> pads(4, 0); // top, left, bottom, right
  if (mode == "NOTSET" || mode.empty()) {
    pads = intsAttribute(conv, "pads", {0, 0, 0, 0});
    if (pads.size() != 4)
      return "pads " + formatInts(pads) + " are not four values";
  } else if (mode == "SAME_UPPER" || mode == "SAME_LOWER") {
    for (int axis = 0; axis < 2; ++axis) {
      const int64_t size = input[size_t(2 + axis)], stride = strides[size_t(axis)];
      const int64_t outSize = (size + stride - 1) / stride;
      const int64_t extent = (kernel[size_t(axis)] - 1) * dilations[size_t(axis)] + 1;
      const int64_t total = std::max<int64_t>(0, (outSize - 1) * stride + extent - size);
      const int64_t small = total / 2, large = total - small;
      pads[size_t(axis)] = mode == "SAME_UPPER" ? small : large;
      pads[size_t(axis + 2)] = mode == "SAME_UPPER" ? large : small;
    }
    if (pads[0] != pads[2] || pads[1] != pads[3])
      return "auto_pad " + mode + " needs asymmetric pads here " + formatInts(pads) +
             " (top, left, bottom, right); convgen pads top = bottom and left = right";
  } else if (mode != "VALID") {
    return "auto_pad '" + mode + "' is not an ONNX padding mode";
  }
  if (std::any_of(pads.begin(), pads.end(), [](int64_t pad) { return pad < 0; }))
    return "negative pads " + formatInts(pads);
  if (pads[0] != pads[2] || pads[1] != pads[3])
    return "asymmetric pads " + formatInts(pads) +
           " (top, left, bottom, right); convgen pads top = bottom and left = right";
  padding = {pads[0], pads[1]};
  return "";
}

std::string OnnxTensorSource::readConv(const NodeProto &conv, LayerSpec &spec, LayerNodes &nodes) const {
  if (conv.input_size() < 2 || conv.input(1).empty())
    return "it has no weight input";
  const TensorProto *weight = constant(conv.input(1));
  if (!weight)
    return "its weights ('" + conv.input(1) + "') are computed in the graph, not constant "
           "initializers";
  const int rank = weight->dims_size();
  if (rank != 4)
    return rank == 3   ? std::string("it is a 1-D convolution; convgen takes 2-D ones")
           : rank == 5 ? std::string("it is a 3-D convolution; convgen takes 2-D ones")
                       : "its weight has rank " + std::to_string(rank) + "; convgen takes 2-D convolutions";
  if (weight->data_type() != TensorProto::FLOAT && weight->data_type() != TensorProto::FLOAT16)
    return std::string("its weights are ") + dataTypeName(weight->data_type()) +
           "; convgen reads float32 or float16";
  const bool hasBias = conv.input_size() > 2 && !conv.input(2).empty();
  if (hasBias && !constant(conv.input(2)))
    return "its bias ('" + conv.input(2) + "') is computed in the graph, not a constant";

  auto input = Shapes.find(conv.input(0));
  if (input == Shapes.end() || input->second.size() != 4 ||
      std::any_of(input->second.begin(), input->second.end(), [](int64_t d) { return d < 1; }))
    return "shape inference could not fix its input's shape ('" + conv.input(0) +
           "'): give the graph inputs concrete shapes (only a symbolic batch is filled in)";
  const std::vector<int64_t> kernel = {weight->dims(2), weight->dims(3)};
  if (intsAttribute(conv, "kernel_shape", kernel) != kernel)
    return "kernel_shape " + formatInts(intsAttribute(conv, "kernel_shape", {})) +
           " disagrees with its weight's " + formatInts(kernel);
  const std::vector<int64_t> strides = intsAttribute(conv, "strides", {1, 1});
  const std::vector<int64_t> dilations = intsAttribute(conv, "dilations", {1, 1});
  if (strides.size() != 2 || dilations.size() != 2)
    return "strides " + formatInts(strides) + " or dilations " + formatInts(dilations) +
           " are not two values";
  const AttributeProto *group = findAttribute(conv, "group");
  if (std::string reason = readPads(conv, input->second, kernel, strides, dilations, spec.padding);
      !reason.empty())
    return reason;

  spec.weightKey = conv.input(1);
  if (hasBias)
    spec.biasKey = conv.input(2);
  spec.input = {input->second[0], input->second[1], input->second[2], input->second[3]};
  spec.stride = {strides[0], strides[1]};
  spec.dilation = {dilations[0], dilations[1]};
  spec.groups = group ? group->i() : 1;
  if (auto output = Shapes.find(conv.output(0));
      output != Shapes.end() && output->second.size() == 4 &&
      std::all_of(output->second.begin(), output->second.end(), [](int64_t d) { return d >= 1; }))
    spec.declaredOutput = Shape4{output->second[0], output->second[1], output->second[2], output->second[3]};
  nodes.conv = &conv;
  readEpilogue(spec, nodes);
  return "";
}

bool OnnxTensorSource::isFoldableBatchNorm(const NodeProto &node, int64_t outChannels) const {
  if (!isOp(node, "BatchNormalization") || node.input_size() != 5)
    return false;
  if (const AttributeProto *training = findAttribute(node, "training_mode"); training && training->i())
    return false;
  for (int i = 1; i < node.input_size(); ++i) {
    const TensorProto *parameter = constant(node.input(i));
    if (!parameter || parameter->dims_size() != 1 || parameter->dims(0) != outChannels)
      return false;
  }
  // Only the normalised output may be used: the statistics outputs exist in
  // training mode alone.
  for (int i = 1; i < node.output_size(); ++i)
    if (!node.output(i).empty() && Consumers.count(node.output(i)))
      return false;
  return true;
}

void OnnxTensorSource::readEpilogue(LayerSpec &spec, LayerNodes &nodes) const {
  const NodeProto &conv = *nodes.conv;
  std::string result = conv.output(0);
  const int64_t outChannels = constant(conv.input(1))->dims(0);
  const NodeProto *next = onlyConsumer(result);
  if (next && next->input(0) == result && isFoldableBatchNorm(*next, outChannels)) {
    nodes.batchNorm = next;
    spec.biasKey = conv.input_size() > 2 && !conv.input(2).empty() ? conv.input(2) : next->input(2);
    result = next->output(0);
    next = onlyConsumer(result);
  }
  if (next && isOp(*next, "Relu")) {
    spec.activation = Activation::Relu;
    nodes.activation = next;
    result = next->output(0);
  } else if (next && isOp(*next, "Clip") && next->input(0) == result) {
    std::optional<double> low, high;
    if (Opset >= 11) { // bounds are inputs
      low = next->input_size() > 1 && !next->input(1).empty() ? scalar(next->input(1), spec.name)
                                                               : std::nullopt;
      high = next->input_size() > 2 && !next->input(2).empty() ? scalar(next->input(2), spec.name)
                                                                : std::nullopt;
    } else { // bounds are attributes
      if (const AttributeProto *min = findAttribute(*next, "min"))
        low = min->f();
      if (const AttributeProto *max = findAttribute(*next, "max"))
        high = max->f();
    }
    if (low == 0.0 && high == 6.0) {
      spec.activation = Activation::Relu6;
      nodes.activation = next;
      result = next->output(0);
    }
  }
  spec.graphOutput = result;
}

Sidecar OnnxTensorSource::describeLayers() {
  Sidecar sidecar;
  sidecar.path = Path;
  sidecar.model = Model.graph().name();
  std::set<std::string> taken;
  for (const NodeProto &node : Model.graph().node()) {
    if (isOp(node, "ConvTranspose") && node.output_size() >= 1) {
      sidecar.skipped.push_back({node.name().empty() ? node.output(0) : node.name(), node.output(0),
                                 "ConvTranspose (a transposed convolution): convgen generates Conv"});
      continue;
    }
    if (!isOp(node, "Conv") || node.output_size() < 1)
      continue;
    // Named by node name, else by output name; a name seen before falls
    // back to the (unique) output name.
    std::string name = node.name().empty() || taken.count(node.name()) ? node.output(0) : node.name();
    if (taken.count(name)) {
      sidecar.skipped.push_back({name, node.output(0), "its name is taken by another Conv"});
      continue;
    }
    taken.insert(name);
    LayerSpec spec;
    spec.name = name;
    LayerNodes nodes;
    std::string reason;
    try {
      reason = readConv(node, spec, nodes);
    } catch (const InputError &e) {
      reason = e.problem();
    }
    if (!reason.empty()) {
      sidecar.skipped.push_back({name, node.output(0), reason});
      continue;
    }
    Layers[name] = nodes;
    sidecar.layers.push_back(std::move(spec));
  }
  if (sidecar.layers.empty() && sidecar.skipped.empty())
    throw InputError(context(), "has no Conv node");
  return sidecar;
}

std::map<std::string, ConvChannelFacts>
OnnxTensorSource::propagateZeroChannels(const ModelFile &model) const {
  std::vector<FusedLayerNode> layers;
  for (const LayerSpec &spec : model.sidecar().layers) {
    const LayerNodes &nodes = Layers.at(spec.name);
    FusedLayerNode layer;
    layer.conv = nodes.conv;
    for (const NodeProto *node : {nodes.batchNorm, nodes.activation})
      if (node)
        layer.fused.push_back(node);
    try {
      layer.node = layerChannelNode(model.loadLayer(spec), nodes.conv->input(0), spec.graphOutput);
    } catch (const Error &) { // reported when the layer itself is loaded
      // Unknown to the pass: a Conv without filterReads reads everything.
      layer.node.name = spec.name;
      layer.node.op = "Conv";
      layer.node.inputs = {nodes.conv->input(0)};
      layer.node.outputs = {spec.graphOutput};
    }
    layers.push_back(std::move(layer));
  }
  OnnxGraphView view{Model.graph(), Shapes, Opset,
                     [this](const std::string &name) -> std::optional<std::vector<double>> {
                       // An initializer that is also a graph input can be
                       // given another value at run time: not a constant.
                       const TensorProto *tensor = constant(name);
                       if (!tensor || GraphInputs.count(name))
                         return std::nullopt;
                       try {
                         return values(*tensor, "");
                       } catch (const InputError &) {
                         return std::nullopt;
                       }
                     }};
  return convgen::propagateZeroChannels(buildChannelGraph(view, layers));
}

std::vector<double> OnnxTensorSource::batchNormScale(const NodeProto &norm, const std::string &layer) const {
  const AttributeProto *epsilon = findAttribute(norm, "epsilon");
  const double eps = epsilon ? epsilon->f() : 1e-5;
  std::vector<double> scale = values(*constant(norm.input(1)), layer);
  const std::vector<double> variance = values(*constant(norm.input(4)), layer);
  for (size_t o = 0; o < scale.size(); ++o)
    scale[o] /= std::sqrt(variance[o] + eps);
  return scale;
}

ModelTensor OnnxTensorSource::weight(const LayerSpec &spec) const {
  const LayerNodes &nodes = Layers.at(spec.name);
  const TensorProto &weight = *constant(nodes.conv->input(1));
  ModelTensor tensor;
  tensor.source = weight.name();
  tensor.shape = dims(weight, spec.name);
  std::vector<double> held = values(weight, spec.name);
  if (nodes.batchNorm) {
    // w * gamma / sqrt(var + eps), per output channel, as PyTorch folds it.
    const std::vector<double> scale = batchNormScale(*nodes.batchNorm, spec.name);
    const size_t perChannel = scale.empty() ? 0 : held.size() / scale.size();
    for (size_t i = 0; i < held.size(); ++i)
      held[i] *= scale[i / perChannel];
    tensor.source += " folded with " + describeNode(*nodes.batchNorm);
  }
  tensor.values.assign(held.begin(), held.end());
  return tensor;
}

ModelTensor OnnxTensorSource::bias(const LayerSpec &spec) const {
  const LayerNodes &nodes = Layers.at(spec.name);
  const NodeProto &conv = *nodes.conv;
  const bool hasBias = conv.input_size() > 2 && !conv.input(2).empty();
  ModelTensor tensor;
  std::vector<double> held;
  if (hasBias) {
    const TensorProto &bias = *constant(conv.input(2));
    tensor.source = bias.name();
    tensor.shape = dims(bias, spec.name);
    held = values(bias, spec.name);
  }
  if (nodes.batchNorm) {
    // (b - mean) * gamma / sqrt(var + eps) + beta.
    const NodeProto &norm = *nodes.batchNorm;
    const std::vector<double> scale = batchNormScale(norm, spec.name);
    const std::vector<double> beta = values(*constant(norm.input(2)), spec.name);
    const std::vector<double> mean = values(*constant(norm.input(3)), spec.name);
    if (!hasBias) {
      held.assign(scale.size(), 0.0);
      tensor.shape = {int64_t(scale.size())};
    }
    if (held.size() != scale.size())
      throw InputError(context(spec.name, tensor.source),
                       "has " + std::to_string(held.size()) + " values; " + describeNode(norm) +
                           " normalises " + std::to_string(scale.size()) + " channels");
    for (size_t o = 0; o < held.size(); ++o)
      held[o] = (held[o] - mean[o]) * scale[o] + beta[o];
    tensor.source = (hasBias ? tensor.source + " " : std::string("zero bias ")) + "folded with " +
                    describeNode(norm);
  }
  tensor.values.assign(held.begin(), held.end());
  return tensor;
}

} // namespace

bool isOnnxPath(const std::string &path) {
  std::string extension = fs::path(path).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return extension == ".onnx";
}

ModelFile openOnnxModel(const std::string &path, const OnnxOptions &options) {
  auto source = std::make_shared<OnnxTensorSource>(path, options);
  Sidecar layers = source->describeLayers();
  if (options.propagateZeroChannels) {
    const std::map<std::string, ConvChannelFacts> facts =
        source->propagateZeroChannels(ModelFile(source, layers));
    for (LayerSpec &spec : layers.layers)
      if (auto found = facts.find(spec.name); found != facts.end())
        spec.channels = found->second;
  }
  return ModelFile(std::move(source), std::move(layers));
}

} // namespace convgen
