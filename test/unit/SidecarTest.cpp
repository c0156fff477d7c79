#include "model/Sidecar.h"
#include "support/Error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace convgen;
using ::testing::HasSubstr;

namespace {

const char *ValidLayer = R"({"name": "layer1.0.conv2", "weight": "layer1.0.conv2.weight",
  "bias": "layer1.0.conv2.bias", "input": [2, 64, 56, 55], "stride": [1, 2],
  "padding": [1, 0], "dilation": [2, 1], "groups": 4, "activation": "relu6",
  "output": [2, 64, 54, 28]})";

std::string withLayer(const std::string &layer) {
  return std::string(R"({"model": "resnet", "layers": [)") + layer + "]}";
}

/// ValidLayer with one field's value replaced by the JSON text \p value, or
/// the field removed when \p value is empty.
std::string layerWith(const std::string &field, const std::string &value) {
  nlohmann::ordered_json layer = nlohmann::ordered_json::parse(ValidLayer);
  if (value.empty())
    layer.erase(field);
  else
    layer[field] = nlohmann::ordered_json::parse(value);
  return withLayer(layer.dump());
}

std::string parseError(const std::string &text) {
  try {
    parseSidecar(text, "geo.json");
  } catch (const InputError &error) {
    return error.what();
  }
  return "<no error>";
}

} // namespace

TEST(Sidecar, ParsesEveryField) {
  Sidecar sidecar = parseSidecar(withLayer(ValidLayer), "geo.json");
  EXPECT_EQ(sidecar.model, "resnet");
  ASSERT_EQ(sidecar.layers.size(), 1u);
  const LayerSpec &layer = sidecar.layers[0];
  EXPECT_EQ(layer.name, "layer1.0.conv2");
  EXPECT_EQ(layer.weightKey, "layer1.0.conv2.weight");
  EXPECT_EQ(layer.biasKey, "layer1.0.conv2.bias");
  EXPECT_EQ(layer.input, (Shape4{2, 64, 56, 55}));
  EXPECT_EQ(layer.stride, (HW{1, 2}));
  EXPECT_EQ(layer.padding, (HW{1, 0}));
  EXPECT_EQ(layer.dilation, (HW{2, 1}));
  EXPECT_EQ(layer.groups, 4);
  EXPECT_EQ(layer.activation, Activation::Relu6);
  EXPECT_EQ(layer.declaredOutput, (Shape4{2, 64, 54, 28}));
  EXPECT_NE(sidecar.find("layer1.0.conv2"), nullptr);
  EXPECT_EQ(sidecar.find("conv2"), nullptr);
}

TEST(Sidecar, OptionalFields) {
  Sidecar sidecar = parseSidecar(layerWith("bias", ""), "g");
  EXPECT_FALSE(sidecar.layers[0].biasKey);
  EXPECT_FALSE(parseSidecar(layerWith("bias", "null"), "g").layers[0].biasKey);
  EXPECT_FALSE(parseSidecar(layerWith("output", ""), "g").layers[0].declaredOutput);
  EXPECT_EQ(parseSidecar(layerWith("activation", "null"), "g").layers[0].activation,
            Activation::None);
  EXPECT_EQ(parseSidecar(layerWith("activation", "\"relu\""), "g").layers[0].activation,
            Activation::Relu);
  EXPECT_EQ(parseSidecar(R"({"layers": [)" + std::string(ValidLayer) + "]}", "g").model, "");
}

TEST(Sidecar, MalformedJsonGivesThePosition) {
  EXPECT_THAT(parseError("{\"layers\": [\n{\"name\": }]}"),
              HasSubstr("geo.json: malformed JSON: parse error at line 2, column"));
  EXPECT_THAT(parseError(""), HasSubstr("malformed JSON"));
}

// Found in review: nlohmann throws out_of_range, not parse_error, for a number
// beyond a double; it escaped as an internal error (exit 3).
TEST(Sidecar, NumberBeyondDoubleIsMalformedJson) {
  EXPECT_THAT(parseError(R"({"layers": [{"name": "a", "groups": 1e400}]})"),
              HasSubstr("geo.json: malformed JSON: number overflow"));
}

// Found in review: nlohmann keeps the last of duplicate keys, so a second
// "padding" silently replaced the first.
TEST(Sidecar, DuplicateKeysAreRejected) {
  std::string layer = ValidLayer;
  layer.insert(1, "\"padding\": [0, 0], ");
  EXPECT_THAT(parseError(withLayer(layer)), HasSubstr("geo.json: 'padding': malformed JSON: duplicate key"));
  EXPECT_THAT(parseError(R"({"layers": [], "layers": []})"), HasSubstr("'layers': malformed JSON: duplicate key"));
}

// Found in review: error messages dump()ed the offending value, which
// recurses: a deeply nested value overflowed the stack.
TEST(Sidecar, ErrorMessagesDoNotDumpLargeOrDeepValues) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_THAT(parseError(withLayer("{\"name\": " + deep + "}")),
              HasSubstr("must be a non-empty string, got an array of 1 elements"));
  std::string longString = "\"" + std::string(5000, 'x') + "\"";
  std::string error = parseError(layerWith("groups", longString));
  EXPECT_THAT(error, HasSubstr("'groups': must be an integer, got \"xxxx"));
  EXPECT_LT(error.size(), 200u);
}

TEST(Sidecar, StructureErrors) {
  EXPECT_THAT(parseError("[]"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(parseError("{}"), HasSubstr("'layers': missing required field"));
  EXPECT_THAT(parseError(R"({"layers": {}})"), HasSubstr("must be an array"));
  EXPECT_THAT(parseError(R"({"layers": []})"), HasSubstr("is empty"));
  EXPECT_THAT(parseError(R"({"layers": [3]})"), HasSubstr("'layers[0]': must be an object"));
  EXPECT_THAT(parseError(R"({"layers": [{"weight": "w"}]})"),
              HasSubstr("'layers[0].name': missing required field"));
  EXPECT_THAT(parseError(R"({"version": 2, "layers": []})"), HasSubstr("'version': unknown field"));
  EXPECT_THAT(parseError(withLayer(std::string(ValidLayer) + ", " + ValidLayer)),
              HasSubstr("layer 'layer1.0.conv2': 'name': duplicate layer name"));
}

TEST(Sidecar, FieldErrorsNameLayerAndField) {
  struct Case {
    std::string field, value, message;
  } cases[] = {
      {"weight", "", "'weight': missing required field"},
      {"weight", "3", "'weight': must be a non-empty string"},
      {"input", "[1, 64, 56]", "'input': must be an array of 4 integers [N, C, H, W]"},
      {"input", "[1, 0, 56, 56]", "'input': must be in [1, 2147483647], got 0"},
      {"input", "[1, 64, 56.5, 56]", "'input': must be an integer, got 56.5"},
      {"stride", "[0, 1]", "'stride': must be in [1,"},
      {"stride", "2", "'stride': must be an array of 2 integers [h, w]"},
      {"padding", "[-1, 0]", "'padding': must be in [0,"},
      {"padding", "[1, 99999999999999999999]", "'padding': must be"},
      {"dilation", "[1, 1, 1]", "'dilation': must be an array of 2"},
      {"groups", "0", "'groups': must be in [1,"},
      {"groups", "\"1\"", "'groups': must be an integer"},
      {"activation", "\"gelu\"", "'activation': must be null, \"relu\" or \"relu6\""},
      {"activation", "", "'activation': missing required field"},
      {"output", "[1, 2]", "'output': must be an array of 4"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.field + " = " + c.value);
    std::string error = parseError(layerWith(c.field, c.value));
    EXPECT_THAT(error, HasSubstr("geo.json: layer 'layer1.0.conv2': " + c.message));
  }
}

TEST(Sidecar, RejectsUnknownLayerFields) {
  std::string layer = std::string(ValidLayer);
  layer.insert(1, "\"paddings\": [1, 1], ");
  EXPECT_THAT(parseError(withLayer(layer)), HasSubstr("'paddings': unknown field"));
}

TEST(Sidecar, DefaultPathIsTheNpzStem) {
  EXPECT_EQ(defaultSidecarPath("models/resnet50-s90.npz"), "models/resnet50-s90.json");
  EXPECT_EQ(defaultSidecarPath("m.v2.npz"), "m.v2.json");
}

TEST(Sidecar, DirectoryIsNotASidecar) {
  try {
    loadSidecar("/tmp");
    FAIL();
  } catch (const InputError &error) {
    EXPECT_THAT(error.what(), HasSubstr("/tmp: geometry sidecar is not a regular file"));
  }
}

TEST(Sidecar, MissingFile) {
  try {
    loadSidecar("/nonexistent/geo.json");
    FAIL();
  } catch (const InputError &error) {
    EXPECT_THAT(error.what(), HasSubstr("/nonexistent/geo.json: cannot open geometry sidecar"));
  }
}
