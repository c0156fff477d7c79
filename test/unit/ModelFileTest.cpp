#include "model/ModelFile.h"
#include "support/Error.h"
#include "support/TestFiles.h"

#include <cmath>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <limits>
#include <nlohmann/json.hpp>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

class ModelFileTest : public ::testing::Test {
protected:
  /// Writes the model, opens it and loads its only layer.
  ConvLayer load() {
    writeNpz(Dir / "m.npz", Model.arrays);
    writeText(Dir / "m.json", Model.sidecarJson());
    ModelFile file = ModelFile::open((Dir / "m.npz").string());
    return file.loadLayer(file.sidecar().layers.at(0));
  }
  std::string loadError() {
    try {
      load();
    } catch (const InputError &error) {
      return error.what();
    }
    return "<no error>";
  }
  void setField(const std::string &field, const std::string &json) {
    auto layer = nlohmann::ordered_json::parse(Model.sidecarLayerJson);
    if (json.empty())
      layer.erase(field);
    else
      layer[field] = nlohmann::ordered_json::parse(json);
    Model.sidecarLayerJson = layer.dump();
  }

  TempDir Dir;
  TinyModel Model = makeTinyModel();
};

} // namespace

TEST_F(ModelFileTest, LoadsAndDerivesTheGeometry) {
  ConvLayer layer = load();
  EXPECT_EQ(layer.name, "conv");
  EXPECT_EQ(layer.weightSource, "conv.weight");
  EXPECT_EQ(layer.geometry.weightShape(), (Shape4{4, 2, 3, 3}));
  EXPECT_EQ(layer.geometry.outputShape(), (Shape4{1, 4, 5, 5}));
  EXPECT_EQ(layer.geometry.activation, Activation::Relu);
  EXPECT_TRUE(layer.geometry.hasBias);
  EXPECT_EQ(layer.bias, (std::vector<float>{0.5f, -0.5f, 1.0f, 2.0f}));
  ASSERT_EQ(layer.weights.size(), 72u);
  EXPECT_EQ(layer.weights[1], 2.0f);
  EXPECT_EQ(layer.weights[3], 0.0f);
}

TEST_F(ModelFileTest, SidecarGivenExplicitly) {
  writeNpz(Dir / "weights.npz", Model.arrays);
  writeText(Dir / "other-name.json", Model.sidecarJson());
  ModelFile file = ModelFile::open((Dir / "weights.npz").string(), (Dir / "other-name.json").string());
  EXPECT_EQ(file.sidecar().model, "tiny");
  // Without it, the default (weights.json) does not exist.
  try {
    ModelFile::open((Dir / "weights.npz").string());
    FAIL();
  } catch (const InputError &error) {
    EXPECT_THAT(error.what(), HasSubstr("weights.json: cannot open geometry sidecar"));
  }
}

TEST_F(ModelFileTest, TorchPruneOrigTimesMask) {
  // torch.nn.utils.prune without prune.remove: weight_orig keeps the pruned
  // values, weight_mask zeroes them. Masks may be float (torch), bool or uint8.
  std::vector<float> orig(72, 3.0f), mask(72, 1.0f);
  for (int i = 0; i < 72; i += 2)
    mask[i] = 0.0f;
  orig[0] = std::numeric_limits<float>::quiet_NaN(); // masked: must not matter
  for (std::string maskDType : {"<f4", "|b1", "|u1"}) {
    SCOPED_TRACE(maskDType);
    Model.arrays.erase("conv.weight");
    Model.arrays["conv.weight_orig"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(orig));
    Bytes maskBytes;
    if (maskDType == "<f4")
      maskBytes = floatBytes(mask);
    else
      for (float m : mask)
        maskBytes.push_back(static_cast<uint8_t>(m));
    Model.arrays["conv.weight_mask"] = makeNpy(maskDType, {4, 2, 3, 3}, maskBytes);
    ConvLayer layer = load();
    EXPECT_EQ(layer.weightSource, "conv.weight_orig * conv.weight_mask");
    EXPECT_EQ(layer.weights[0], 0.0f);
    EXPECT_EQ(layer.weights[1], 3.0f);
    EXPECT_EQ(std::count(layer.weights.begin(), layer.weights.end(), 0.0f), 36);
  }
}

TEST_F(ModelFileTest, MaskMustBeBinaryAndShaped) {
  Model.arrays.erase("conv.weight");
  Model.arrays["conv.weight_orig"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(std::vector<float>(72, 1)));
  std::vector<float> mask(72, 1.0f);
  mask[5] = 0.5f;
  Model.arrays["conv.weight_mask"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(mask));
  EXPECT_THAT(loadError(), HasSubstr("'conv.weight_mask': element 5 is 0.5"));
  Model.arrays["conv.weight_mask"] = makeNpy("<f4", {72}, floatBytes(std::vector<float>(72, 1)));
  EXPECT_THAT(loadError(), HasSubstr("shape (72,) differs from 'conv.weight_orig' shape"));
}

TEST_F(ModelFileTest, MissingWeightKeySuggestsTheClosest) {
  Model.arrays["conv.weights"] = Model.arrays["conv.weight"];
  Model.arrays.erase("conv.weight");
  std::string error = loadError();
  EXPECT_THAT(error, HasSubstr("layer 'conv': 'conv.weight': array not found"));
  EXPECT_THAT(error, HasSubstr("weight_orig"));
  EXPECT_THAT(error, HasSubstr("did you mean 'conv.weights'?"));
}

TEST_F(ModelFileTest, MissingBiasKey) {
  Model.arrays.erase("conv.bias");
  EXPECT_THAT(loadError(), HasSubstr("'conv.bias': array not found"));
  setField("bias", "");
  EXPECT_FALSE(load().geometry.hasBias);
}

TEST_F(ModelFileTest, WrongDType) {
  Model.arrays["conv.weight"] = makeNpy("|u1", {4, 2, 3, 3}, Bytes(72, 1));
  EXPECT_THAT(loadError(), HasSubstr("'conv.weight': has dtype |u1"));
  Model.arrays["conv.weight"] = makeNpy("<f8", {4, 2, 3, 3}, Bytes(72 * 8));
  EXPECT_THAT(loadError(), HasSubstr("m.npz[conv.weight]: unsupported dtype '<f8'"));
}

TEST_F(ModelFileTest, HalfWeightsAreWidened) {
  Model.arrays["conv.weight"] = makeNpy("<f2", {4, 2, 3, 3}, Bytes(72 * 2, 0));
  Bytes half = Model.arrays["conv.weight"];
  half[half.size() - 1] = 0x3C; // last element = 1.0
  Model.arrays["conv.weight"] = half;
  ConvLayer layer = load();
  EXPECT_EQ(layer.weights.back(), 1.0f);
  EXPECT_EQ(layer.weights.front(), 0.0f);
}

TEST_F(ModelFileTest, WeightShapeMustMatchTheGeometry) {
  setField("input", "[1, 3, 5, 5]");
  EXPECT_THAT(loadError(),
              HasSubstr("layer 'conv': 'input': has 3 channels and groups=1, so the weight must be "
                        "[4, 3, kh, kw], but 'conv.weight' has shape (4, 2, 3, 3)"));
  setField("input", "[1, 4, 5, 5]");
  setField("groups", "2"); // [4, 2, 3, 3] is right for C=4, groups=2
  setField("output", "");
  EXPECT_EQ(load().geometry.groups, 2);
  setField("groups", "3");
  EXPECT_THAT(loadError(), HasSubstr("'groups': 3 does not divide the input's 4 channels"));
  Model.arrays["conv.weight"] = makeNpy("<f4", {72}, floatBytes(std::vector<float>(72, 1)));
  EXPECT_THAT(loadError(), HasSubstr("a Conv2d weight is 4-D"));
}

TEST_F(ModelFileTest, OutputMustAgree) {
  setField("output", "[1, 4, 4, 4]");
  EXPECT_THAT(loadError(), HasSubstr("'output': [1, 4, 4, 4] disagrees with the shape the "
                                     "geometry implies, [1, 4, 5, 5]"));
}

TEST_F(ModelFileTest, OutputMustBePositive) {
  setField("input", "[1, 2, 1, 1]");
  setField("padding", "[0, 0]");
  setField("output", "");
  EXPECT_THAT(loadError(), HasSubstr("does not fit the padded 1x1 input: output would be 0x0"));
}

TEST_F(ModelFileTest, BiasShape) {
  Model.arrays["conv.bias"] = makeNpy("<f4", {3}, floatBytes({1, 2, 3}));
  EXPECT_THAT(loadError(), HasSubstr("'conv.bias': has shape (3,); expected (4,)"));
}

TEST_F(ModelFileTest, NonFiniteWeightsNameTheIndex) {
  std::vector<float> weights(72, 1.0f);
  weights[1 * 18 + 1 * 9 + 2 * 3 + 0] = std::numeric_limits<float>::quiet_NaN();
  Model.arrays["conv.weight"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(weights));
  EXPECT_THAT(loadError(), HasSubstr("'conv.weight': NaN at index (1, 1, 2, 0)"));
  weights.assign(72, 1.0f);
  weights[71] = -std::numeric_limits<float>::infinity();
  Model.arrays["conv.weight"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(weights));
  EXPECT_THAT(loadError(), HasSubstr("Inf at index (3, 1, 2, 2)"));
  Model.arrays["conv.weight"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(std::vector<float>(72, 1)));
  Model.arrays["conv.bias"] =
      makeNpy("<f4", {4}, floatBytes({1, std::numeric_limits<float>::infinity(), 0, 0}));
  EXPECT_THAT(loadError(), HasSubstr("'conv.bias': Inf at index (1,)"));
}

TEST_F(ModelFileTest, HugeGeometryOverflowIsAnError) {
  setField("input", "[2147483647, 2, 65536, 65536]");
  setField("output", "");
  EXPECT_THAT(loadError(), HasSubstr("overflow"));
  setField("input", "[1, 2, 2147483647, 5]"); // padding 1 takes H past 32 bits
  EXPECT_THAT(loadError(), HasSubstr("'padding': the padded input exceeds 2^31-1"));
}

TEST_F(ModelFileTest, FindLayerListsNamesAndClosest) {
  writeNpz(Dir / "m.npz", Model.arrays);
  writeText(Dir / "m.json", Model.sidecarJson());
  ModelFile file = ModelFile::open((Dir / "m.npz").string());
  EXPECT_EQ(file.findLayer("conv").name, "conv");
  try {
    file.findLayer("cnv");
    FAIL();
  } catch (const InputError &error) {
    EXPECT_THAT(error.what(), HasSubstr("no layer named 'cnv'; did you mean 'conv'? Layers: conv"));
  }
}
