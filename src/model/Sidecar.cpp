#include "model/Sidecar.h"

#include "support/Error.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace convgen {

using nlohmann::json;

std::vector<std::string> Sidecar::layerNames() const {
  std::vector<std::string> names;
  for (const LayerSpec &layer : layers)
    names.push_back(layer.name);
  return names;
}

const LayerSpec *Sidecar::find(std::string_view name) const {
  for (const LayerSpec &layer : layers)
    if (layer.name == name)
      return &layer;
  return nullptr;
}

namespace {

/// A JSON value for an error message: scalars and short flat arrays as
/// written, anything else by its type. Never dump() an arbitrary value: it
/// recurses (a deeply nested value would overflow the stack) and can be huge.
std::string describeValue(const json &value) {
  auto shortDump = [](const json &scalar) {
    std::string text = scalar.dump(-1, ' ', false, json::error_handler_t::replace);
    return text.size() <= 40 ? text : text.substr(0, 37) + "...";
  };
  if (value.is_primitive())
    return shortDump(value);
  if (value.is_array() && value.size() <= 8) {
    std::string text = "[";
    for (const json &element : value) {
      if (!element.is_primitive())
        return "an array of " + std::to_string(value.size()) + " elements";
      text += (text.size() > 1 ? ", " : "") + shortDump(element);
    }
    return text + "]";
  }
  return std::string("a JSON ") + value.type_name();
}

/// Reads the fields of one JSON object, each with a precise error.
class FieldReader {
public:
  FieldReader(const json &object, ErrorContext context)
      : Object(object), Context(std::move(context)) {}

  [[noreturn]] void fail(const std::string &field, const std::string &problem) const {
    ErrorContext context = Context;
    context.field = Context.field.empty() ? field : Context.field + "." + field;
    throw InputError(context, problem);
  }

  bool has(const std::string &field) const { return Object.contains(field); }

  const json &required(const std::string &field) const {
    auto it = Object.find(field);
    if (it == Object.end())
      fail(field, "missing required field");
    return *it;
  }

  std::string string(const std::string &field) const {
    const json &value = required(field);
    if (!value.is_string() || value.get_ref<const std::string &>().empty())
      fail(field, "must be a non-empty string, got " + describeValue(value));
    return value.get<std::string>();
  }

  int64_t integer(const std::string &field, int64_t min, const json &value) const {
    if (!value.is_number_integer())
      fail(field, "must be an integer, got " + describeValue(value));
    int64_t v = value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(MaxGeometryValue)
                    ? MaxGeometryValue + 1
                    : value.get<int64_t>();
    if (v < min || v > MaxGeometryValue)
      fail(field, "must be in [" + std::to_string(min) + ", " + std::to_string(MaxGeometryValue) +
                      "], got " + describeValue(value));
    return v;
  }

  int64_t integer(const std::string &field, int64_t min) const {
    return integer(field, min, required(field));
  }

  std::vector<int64_t> integers(const std::string &field, size_t count, int64_t min,
                                const char *meaning) const {
    const json &value = required(field);
    if (!value.is_array() || value.size() != count)
      fail(field, std::string("must be an array of ") + std::to_string(count) + " integers " +
                      meaning + ", got " + describeValue(value));
    std::vector<int64_t> out;
    for (const json &element : value)
      out.push_back(integer(field, min, element));
    return out;
  }

  HW pair(const std::string &field, int64_t min) const {
    auto values = integers(field, 2, min, "[h, w]");
    return {values[0], values[1]};
  }

  Shape4 shape(const std::string &field) const {
    auto values = integers(field, 4, 1, "[N, C, H, W]");
    return {values[0], values[1], values[2], values[3]};
  }

  void rejectUnknown(const std::set<std::string> &known) const {
    for (auto it = Object.begin(); it != Object.end(); ++it)
      if (!known.count(it.key()))
        fail(it.key(), "unknown field");
  }

private:
  const json &Object;
  ErrorContext Context;
};

Activation parseActivation(const FieldReader &reader) {
  const json &value = reader.required("activation");
  if (value.is_null())
    return Activation::None;
  if (value.is_string()) {
    const auto &name = value.get_ref<const std::string &>();
    if (name == "relu")
      return Activation::Relu;
    if (name == "relu6")
      return Activation::Relu6;
  }
  reader.fail("activation", "must be null, \"relu\" or \"relu6\", got " + describeValue(value));
}

LayerSpec parseLayer(const json &object, const std::string &path, size_t index) {
  std::string where = "layers[" + std::to_string(index) + "]";
  if (!object.is_object())
    throw InputError({path, "", where}, "must be an object");
  FieldReader named(object, {path, "", where});
  LayerSpec layer;
  layer.name = named.string("name");

  FieldReader reader(object, {path, layer.name, ""});
  reader.rejectUnknown({"name", "weight", "bias", "input", "stride", "padding", "dilation",
                        "groups", "activation", "output"});
  layer.weightKey = reader.string("weight");
  if (reader.has("bias") && !object["bias"].is_null())
    layer.biasKey = reader.string("bias");
  layer.input = reader.shape("input");
  layer.stride = reader.pair("stride", 1);
  layer.padding = reader.pair("padding", 0);
  layer.dilation = reader.pair("dilation", 1);
  layer.groups = reader.integer("groups", 1);
  layer.activation = parseActivation(reader);
  if (reader.has("output"))
    layer.declaredOutput = reader.shape("output");
  return layer;
}

/// Parses JSON, rejecting duplicate keys: nlohmann would keep the last one,
/// so {"padding": [1, 1], "padding": [0, 0]} would silently mean [0, 0].
json parseStrictJson(std::string_view text, const std::string &path) {
  std::vector<std::set<std::string>> keysPerObject;
  auto rejectDuplicateKeys = [&](int, json::parse_event_t event, json &parsed) {
    switch (event) {
    case json::parse_event_t::object_start: keysPerObject.emplace_back(); break;
    case json::parse_event_t::object_end: keysPerObject.pop_back(); break;
    case json::parse_event_t::key: {
      const auto &key = parsed.get_ref<const std::string &>();
      if (!keysPerObject.back().insert(key).second)
        throw InputError({path, "", key}, "malformed JSON: duplicate key");
      break;
    }
    default: break;
    }
    return true;
  };
  try {
    return json::parse(text, rejectDuplicateKeys);
  } catch (const json::exception &error) {
    // parse_error, and out_of_range for numbers beyond a double (1e400).
    // nlohmann's message reads "[json.exception.parse_error.101] parse error
    // at line 3, column 5: ..."; keep the part after the bracketed id.
    std::string message = error.what();
    auto bracket = message.find("] ");
    if (bracket != std::string::npos)
      message = message.substr(bracket + 2);
    throw InputError({path, "", ""}, "malformed JSON: " + message);
  }
}

} // namespace

Sidecar parseSidecar(std::string_view text, const std::string &path) {
  json document = parseStrictJson(text, path);
  if (!document.is_object())
    throw InputError({path, "", ""}, "geometry sidecar must be a JSON object with a \"layers\" array");

  FieldReader top(document, {path, "", ""});
  top.rejectUnknown({"model", "layers"});
  Sidecar sidecar;
  sidecar.path = path;
  if (top.has("model") && !document["model"].is_null())
    sidecar.model = top.string("model");
  const json &layers = top.required("layers");
  if (!layers.is_array())
    top.fail("layers", "must be an array of layer objects");
  if (layers.empty())
    top.fail("layers", "is empty: the sidecar describes no convolution layer");

  std::set<std::string> seen;
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerSpec layer = parseLayer(layers[i], path, i);
    if (!seen.insert(layer.name).second)
      throw InputError({path, layer.name, "name"}, "duplicate layer name");
    sidecar.layers.push_back(std::move(layer));
  }
  return sidecar;
}

Sidecar loadSidecar(const std::string &path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    throw InputError({path, "", ""}, "geometry sidecar is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError({path, "", ""}, "cannot open geometry sidecar (pass --geometry FILE, or put "
                                     "it next to the .npz with the same stem and .json)");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw InputError({path, "", ""}, "cannot read geometry sidecar");
  return parseSidecar(text.str(), path);
}

std::string defaultSidecarPath(const std::string &npzPath) {
  return std::filesystem::path(npzPath).replace_extension(".json").string();
}

} // namespace convgen
