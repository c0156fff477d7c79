#include "model/ModelFile.h"

#include "model/LayerChannels.h"

#include "support/CheckedMath.h"
#include "support/Error.h"
#include "support/NameMatch.h"

#include <cmath>

namespace convgen {

namespace {

/// An .npz's arrays, read on demand.
class NpzTensorSource final : public LayerTensorSource {
public:
  explicit NpzTensorSource(NpzArchive archive) : Archive(std::move(archive)) {}
  const std::string &fileName() const override { return Archive.name(); }
  std::string describeContents() const override {
    return std::to_string(Archive.keys().size()) + " arrays in the .npz";
  }
  ModelTensor weight(const LayerSpec &spec) const override {
    return readFloatTensor(spec.weightKey, spec.name);
  }
  ModelTensor bias(const LayerSpec &spec) const override {
    return readFloatTensor(*spec.biasKey, spec.name);
  }

private:
  ModelTensor readFloatTensor(const std::string &key, const std::string &layer) const;
  NpzArchive Archive;
};

} // namespace

ModelFile ModelFile::open(const std::string &npzPath, const std::string &sidecarPath) {
  // The sidecar first: it is the cheaper file and names what to read.
  Sidecar sidecar = loadSidecar(sidecarPath.empty() ? defaultSidecarPath(npzPath) : sidecarPath);
  return ModelFile(std::make_shared<NpzTensorSource>(NpzArchive::open(npzPath)), std::move(sidecar));
}

static std::string joinNames(const std::vector<std::string> &names) {
  std::string out;
  for (const std::string &name : names)
    out += (out.empty() ? "" : ", ") + name;
  return out;
}

const LayerSpec &ModelFile::findLayer(const std::string &name) const {
  if (const LayerSpec *spec = Geometry.find(name))
    return *spec;
  for (const SkippedLayer &skipped : Geometry.skipped)
    if (skipped.name == name)
      throw InputError({Geometry.path, name, ""}, "convgen cannot take this Conv: " + skipped.reason);
  std::vector<std::string> names = Geometry.layerNames();
  std::string message = "no layer named '" + name + "'";
  if (auto closest = closestMatch(name, names))
    message += "; did you mean '" + *closest + "'?";
  message += " Layers: " + joinNames(names);
  throw InputError({Geometry.path, "", ""}, message);
}

static bool isFloatDType(NpyDType dtype) {
  return dtype == NpyDType::Float32 || dtype == NpyDType::Float16;
}

ModelTensor NpzTensorSource::readFloatTensor(const std::string &key,
                                             const std::string &layer) const {
  const std::string &file = Archive.name();
  if (Archive.contains(key)) {
    NpyArray array = Archive.read(key);
    if (!isFloatDType(array.dtype))
      throw InputError({file, layer, key}, std::string("has dtype ") + npyDescr(array.dtype) +
                                               "; weights and biases must be <f4 or <f2");
    return {key, array.shape, array.toFloat32()};
  }

  // torch.nn.utils.prune without prune.remove() leaves NAME_orig and
  // NAME_mask in the state_dict; the effective tensor is their product.
  std::string origKey = key + "_orig", maskKey = key + "_mask";
  if (!Archive.contains(origKey) || !Archive.contains(maskKey)) {
    std::string message = "array not found in the .npz (nor the '" + origKey + "' + '" + maskKey +
                          "' pair that torch.nn.utils.prune leaves)";
    if (auto closest = closestMatch(key, Archive.keys()))
      message += "; did you mean '" + *closest + "'?";
    throw InputError({file, layer, key}, message);
  }
  NpyArray orig = Archive.read(origKey);
  NpyArray mask = Archive.read(maskKey);
  if (!isFloatDType(orig.dtype))
    throw InputError({file, layer, origKey}, std::string("has dtype ") + npyDescr(orig.dtype) +
                                                 "; expected <f4 or <f2");
  if (orig.shape != mask.shape)
    throw InputError({file, layer, maskKey}, "shape " + formatShape(mask.shape) +
                                                 " differs from '" + origKey + "' shape " +
                                                 formatShape(orig.shape));
  std::vector<float> values = orig.toFloat32();
  std::vector<float> maskValues = mask.toFloat32();
  for (size_t i = 0; i < values.size(); ++i) {
    if (maskValues[i] != 0.0f && maskValues[i] != 1.0f)
      throw InputError({file, layer, maskKey}, "element " + std::to_string(i) + " is " +
                                                   std::to_string(maskValues[i]) +
                                                   "; a pruning mask holds only 0 and 1");
    // A masked weight is exactly zero whatever orig holds (even inf/NaN).
    values[i] = maskValues[i] == 0.0f ? 0.0f : values[i];
  }
  return {origKey + " * " + maskKey, orig.shape, std::move(values)};
}

/// Every weight and bias value must be finite: a NaN or inf in a kernel
/// poisons whole output maps and is always an export bug.
static void checkFinite(const std::vector<float> &values, const std::vector<int64_t> &shape,
                        const ErrorContext &context) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isfinite(values[i]))
      continue;
    std::vector<int64_t> index(shape.size());
    size_t rest = i;
    for (size_t d = shape.size(); d-- > 0;) {
      index[d] = static_cast<int64_t>(rest % static_cast<size_t>(shape[d]));
      rest /= static_cast<size_t>(shape[d]);
    }
    throw InputError(context, std::string(std::isnan(values[i]) ? "NaN" : "Inf") +
                                  " at index " + formatShape(index) +
                                  "; weights must be finite");
  }
}

ConvGeometry buildConvGeometry(const LayerSpec &spec, const std::vector<int64_t> &weightShape,
                                  const ErrorContext &weightContext, const std::string &sidecar) {
  ErrorContext layerContext{sidecar, spec.name, ""};
  auto fail = [&layerContext](const std::string &field, const std::string &problem) {
    ErrorContext context = layerContext;
    context.field = field;
    return InputError(context, problem);
  };

  if (weightShape.size() != 4)
    throw InputError(weightContext, "has shape " + formatShape(weightShape) +
                                        "; a Conv2d weight is 4-D [O, C/groups, kh, kw]");
  for (int64_t dim : weightShape)
    if (dim < 1 || dim > MaxGeometryValue)
      throw InputError(weightContext, "has shape " + formatShape(weightShape) +
                                          "; every dimension must be positive");

  ConvGeometry geometry;
  geometry.batch = spec.input[0];
  geometry.inChannels = spec.input[1];
  geometry.inSize = {spec.input[2], spec.input[3]};
  geometry.outChannels = weightShape[0];
  geometry.kernel = {weightShape[2], weightShape[3]};
  geometry.stride = spec.stride;
  geometry.padding = spec.padding;
  geometry.dilation = spec.dilation;
  geometry.groups = spec.groups;
  geometry.activation = spec.activation;

  if (geometry.inChannels % geometry.groups != 0)
    throw fail("groups", std::to_string(geometry.groups) + " does not divide the input's " +
                             std::to_string(geometry.inChannels) + " channels");
  if (geometry.outChannels % geometry.groups != 0)
    throw fail("groups", std::to_string(geometry.groups) + " does not divide the weight's " +
                             std::to_string(geometry.outChannels) + " output channels");
  if (weightShape[1] != geometry.inChannelsPerGroup())
    throw fail("input", "has " + std::to_string(geometry.inChannels) + " channels and groups=" +
                            std::to_string(geometry.groups) + ", so the weight must be [" +
                            std::to_string(geometry.outChannels) + ", " +
                            std::to_string(geometry.inChannelsPerGroup()) + ", kh, kw], but '" +
                            weightContext.field + "' has shape " + formatShape(weightShape));

  // Kernels index with 32-bit integers: the padded input and the dilated
  // kernel must stay in range per axis (inputs and values are < 2^31 each,
  // so these sums and products cannot overflow 64 bits).
  for (int64_t extent : {geometry.inSize.h + 2 * geometry.padding.h,
                         geometry.inSize.w + 2 * geometry.padding.w})
    if (extent > MaxGeometryValue)
      throw fail("padding", "the padded input exceeds 2^31-1 elements per axis");
  for (int64_t extent : {geometry.dilation.h * (geometry.kernel.h - 1) + 1,
                         geometry.dilation.w * (geometry.kernel.w - 1) + 1})
    if (extent > MaxGeometryValue)
      throw fail("dilation", "the dilated kernel exceeds 2^31-1 elements per axis");

  HW out = geometry.outSize();
  if (out.h < 1 || out.w < 1)
    throw fail("input", "the " + std::to_string(geometry.kernel.h) + "x" +
                            std::to_string(geometry.kernel.w) + " kernel (dilation " +
                            std::to_string(geometry.dilation.h) + "x" +
                            std::to_string(geometry.dilation.w) + ") does not fit the padded " +
                            std::to_string(geometry.inSize.h + 2 * geometry.padding.h) + "x" +
                            std::to_string(geometry.inSize.w + 2 * geometry.padding.w) +
                            " input: output would be " + std::to_string(out.h) + "x" +
                            std::to_string(out.w));
  if (spec.declaredOutput && *spec.declaredOutput != geometry.outputShape())
    throw fail("output", formatShape4(*spec.declaredOutput) +
                             " disagrees with the shape the geometry implies, " +
                             formatShape4(geometry.outputShape()));

  Shape4 input = geometry.inputShape(), output = geometry.outputShape();
  // The factor 2 keeps FLOP counts (2 per multiply-add) in range too.
  std::vector<int64_t> macFactors = {2, geometry.batch, geometry.outChannels, out.h, out.w,
                                     geometry.inChannelsPerGroup(), geometry.kernel.h,
                                     geometry.kernel.w};
  if (!checkedProduct(input) || !checkedProduct(output) || !checkedProduct(macFactors))
    throw fail("input", "tensor sizes overflow 64-bit arithmetic");
  return geometry;
}

ConvLayer ModelFile::loadLayer(const LayerSpec &spec) const {
  ConvLayer layer;
  layer.name = spec.name;
  ModelTensor weight = Tensors->weight(spec);
  ErrorContext weightContext{Tensors->fileName(), spec.name, weight.source};
  layer.geometry = buildConvGeometry(spec, weight.shape, weightContext, Geometry.path);
  checkFinite(weight.values, weight.shape, weightContext);
  layer.weightSource = weight.source;
  layer.weights = std::move(weight.values);

  if (spec.biasKey) {
    ModelTensor bias = Tensors->bias(spec);
    ErrorContext biasContext{Tensors->fileName(), spec.name, bias.source};
    if (bias.shape != std::vector<int64_t>{layer.geometry.outChannels})
      throw InputError(biasContext, "has shape " + formatShape(bias.shape) + "; expected (" +
                                        std::to_string(layer.geometry.outChannels) +
                                        ",) for the layer's output channels");
    checkFinite(bias.values, bias.shape, biasContext);
    layer.bias = std::move(bias.values);
    layer.geometry.hasBias = true;
  }
  if (!spec.channels.empty())
    applyChannelFacts(layer, spec.channels);
  return layer;
}

} // namespace convgen
