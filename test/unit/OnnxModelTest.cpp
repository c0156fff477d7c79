// ONNX models as input, built in code (support/OnnxBuilder): each Conv is a
// layer with the geometry the graph gives it; BatchNormalization is folded,
// Relu and Clip(0, 6) become the activation; float16 and typed data are
// read; external data stays in the model's directory; what convgen cannot
// take is listed with why; a broken or hostile file is an InputError.
#include "model/OnnxModel.h"
#include "support/OnnxBuilder.h"
#include "support/TestFiles.h"

#include <cmath>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

/// OIHW [4, 2, 3, 3] with every other weight zero, and a bias.
std::vector<float> sampleWeights() {
  std::vector<float> weights(4 * 2 * 3 * 3);
  for (size_t i = 0; i < weights.size(); ++i)
    weights[i] = i % 2 ? 0.0f : 0.25f * float(i % 7) - 0.5f;
  return weights;
}
const std::vector<float> SampleBias = {0.5f, -1.0f, 0.25f, 2.0f};

/// x [1, 2, 8, 8] -> Conv (3x3, stride 2, pad 1) -> y.
OnnxBuilder convModel(const std::string &name = "conv1") {
  OnnxBuilder b;
  b.input("x", {1, 2, 8, 8});
  b.initializer("w", {4, 2, 3, 3}, sampleWeights());
  b.initializer("b", {4}, SampleBias);
  onnx::NodeProto &conv = b.node("Conv", name, {"x", "w", "b"}, {"y"});
  setInts(conv, "strides", {2, 2});
  setInts(conv, "pads", {1, 1, 1, 1});
  setInts(conv, "kernel_shape", {3, 3});
  return b;
}

class OnnxModelTest : public ::testing::Test {
protected:
  ModelFile open(OnnxBuilder &builder, const OnnxOptions &options = {}) {
    builder.save(Dir / "m.onnx");
    return openOnnxModel((Dir / "m.onnx").string(), options);
  }
  /// The problem of the InputError that opening \p builder's model throws.
  std::string openError(OnnxBuilder &builder) {
    try {
      open(builder);
    } catch (const InputError &e) {
      return e.what();
    }
    return "(no error)";
  }
  TempDir Dir;
};

} // namespace

TEST_F(OnnxModelTest, ConvWithReluIsOneLayerWithItsGeometry) {
  OnnxBuilder b = convModel();
  b.node("Relu", "relu1", {"y"}, {"z"});
  b.output("z");
  ModelFile model = open(b);
  ASSERT_EQ(model.sidecar().layers.size(), 1u);
  EXPECT_TRUE(model.sidecar().skipped.empty());
  const LayerSpec &spec = model.sidecar().layers[0];
  EXPECT_EQ(spec.name, "conv1");
  EXPECT_EQ(spec.graphOutput, "z");
  ConvLayer layer = model.loadLayer(spec);
  const ConvGeometry &g = layer.geometry;
  EXPECT_EQ(g.inputShape(), (Shape4{1, 2, 8, 8}));
  EXPECT_EQ(g.outputShape(), (Shape4{1, 4, 4, 4}));
  EXPECT_EQ(g.stride, (HW{2, 2}));
  EXPECT_EQ(g.padding, (HW{1, 1}));
  EXPECT_EQ(g.activation, Activation::Relu);
  EXPECT_TRUE(g.hasBias);
  EXPECT_EQ(layer.weights, sampleWeights());
  EXPECT_EQ(layer.bias, SampleBias);
  EXPECT_EQ(layer.weightSource, "w");
}

TEST_F(OnnxModelTest, UnnamedConvIsNamedByItsOutput) {
  OnnxBuilder b = convModel("");
  b.output("y");
  ModelFile model = open(b);
  ASSERT_EQ(model.sidecar().layers.size(), 1u);
  EXPECT_EQ(model.sidecar().layers[0].name, "y");
  EXPECT_EQ(model.sidecar().layers[0].graphOutput, "y");
  EXPECT_EQ(model.loadLayer(model.sidecar().layers[0]).geometry.activation, Activation::None);
}

// As PyTorch folds it: w * gamma / sqrt(var + eps), (b - mean) * gamma /
// sqrt(var + eps) + beta. A zero weight stays zero.
TEST_F(OnnxModelTest, BatchNormalizationIsFoldedIntoWeightsAndBias) {
  OnnxBuilder b = convModel();
  const std::vector<float> gamma = {1.0f, 2.0f, 0.5f, -1.0f}, beta = {0.0f, 1.0f, -1.0f, 0.5f},
                           mean = {0.1f, 0.2f, 0.3f, 0.4f}, var = {1.0f, 4.0f, 0.25f, 9.0f};
  b.initializer("gamma", {4}, gamma);
  b.initializer("beta", {4}, beta);
  b.initializer("mean", {4}, mean);
  b.initializer("var", {4}, var);
  onnx::NodeProto &bn = b.node("BatchNormalization", "bn1", {"y", "gamma", "beta", "mean", "var"}, {"n"});
  setFloat(bn, "epsilon", 1e-3f);
  b.node("Clip", "relu6", {"n", "lo", "hi"}, {"z"});
  b.initializer("lo", {}, {0.0f});
  b.initializer("hi", {}, {6.0f});
  b.output("z");
  ModelFile model = open(b);
  ASSERT_EQ(model.sidecar().layers.size(), 1u);
  EXPECT_EQ(model.sidecar().layers[0].graphOutput, "z");
  ConvLayer layer = model.loadLayer(model.sidecar().layers[0]);
  EXPECT_EQ(layer.geometry.activation, Activation::Relu6);
  EXPECT_THAT(layer.weightSource, HasSubstr("folded with BatchNormalization 'bn1'"));
  const std::vector<float> weights = sampleWeights();
  for (size_t i = 0; i < weights.size(); ++i) {
    const size_t o = i / 18;
    const double scale = gamma[o] / std::sqrt(double(var[o]) + double(1e-3f));
    EXPECT_NEAR(layer.weights[i], weights[i] * scale, 1e-6) << i;
    if (weights[i] == 0.0f) {
      EXPECT_EQ(layer.weights[i], 0.0f) << "a pruned weight stays pruned";
    }
  }
  for (size_t o = 0; o < 4; ++o) {
    const double scale = gamma[o] / std::sqrt(double(var[o]) + double(1e-3f));
    EXPECT_NEAR(layer.bias[o], (SampleBias[o] - mean[o]) * scale + beta[o], 1e-6) << o;
  }
}

TEST_F(OnnxModelTest, ClipWithOtherBoundsAndSharedOutputsAreNotFused) {
  OnnxBuilder b = convModel();
  b.node("Clip", "clip", {"y", "lo", "hi"}, {"z"});
  b.initializer("lo", {}, {0.0f});
  b.initializer("hi", {}, {1.0f});
  b.output("z");
  EXPECT_EQ(open(b).loadLayer(open(b).sidecar().layers[0]).geometry.activation, Activation::None);

  // The Conv's output is also a graph output: a Relu after it is not fused.
  OnnxBuilder shared = convModel();
  shared.node("Relu", "relu", {"y"}, {"z"});
  shared.output("y");
  shared.output("z");
  ModelFile model = open(shared);
  EXPECT_EQ(model.loadLayer(model.sidecar().layers[0]).geometry.activation, Activation::None);
  EXPECT_EQ(model.sidecar().layers[0].graphOutput, "y");
}

TEST_F(OnnxModelTest, OldOpsetClipTakesItsBoundsFromAttributes) {
  OnnxBuilder b(9);
  b.input("x", {1, 2, 8, 8});
  b.initializer("w", {4, 2, 3, 3}, sampleWeights());
  b.node("Conv", "conv1", {"x", "w"}, {"y"});
  onnx::NodeProto &clip = b.node("Clip", "clip", {"y"}, {"z"});
  setFloat(clip, "min", 0.0f);
  setFloat(clip, "max", 6.0f);
  b.output("z");
  ModelFile model = open(b);
  ConvLayer layer = model.loadLayer(model.sidecar().layers[0]);
  EXPECT_EQ(layer.geometry.activation, Activation::Relu6);
  EXPECT_FALSE(layer.geometry.hasBias);
  EXPECT_EQ(layer.geometry.outputShape(), (Shape4{1, 4, 6, 6}));
}

TEST_F(OnnxModelTest, SymbolicBatchBecomesTheBatchAskedFor) {
  OnnxBuilder b;
  b.input("x", {0, 2, 8, 8}, {"N"});
  b.initializer("w", {4, 2, 3, 3}, sampleWeights());
  b.node("Conv", "conv1", {"x", "w"}, {"y"});
  b.output("y");
  EXPECT_EQ(open(b).sidecar().layers[0].input, (Shape4{1, 2, 8, 8}));
  EXPECT_EQ(open(b, {8}).sidecar().layers[0].input, (Shape4{8, 2, 8, 8}));
}

TEST_F(OnnxModelTest, Float16WeightsAreWidenedFromRawAndTypedData) {
  for (bool typed : {false, true}) {
    OnnxBuilder b;
    b.input("x", {1, 2, 8, 8});
    b.halfInitializer("w", {4, 2, 3, 3}, sampleWeights(), typed);
    b.node("Conv", "conv1", {"x", "w"}, {"y"});
    b.output("y");
    ModelFile model = open(b);
    EXPECT_EQ(model.loadLayer(model.sidecar().layers[0]).weights, sampleWeights())
        << (typed ? "int32_data" : "raw_data"); // quarters are exact in float16
  }
}

TEST_F(OnnxModelTest, TypedFloatDataIsRead) {
  OnnxBuilder b;
  b.input("x", {1, 2, 8, 8});
  onnx::TensorProto &w = b.initializer("w", {4, 2, 3, 3}, {});
  w.clear_raw_data();
  for (float value : sampleWeights())
    w.add_float_data(value);
  b.node("Conv", "conv1", {"x", "w"}, {"y"});
  b.output("y");
  ModelFile model = open(b);
  EXPECT_EQ(model.loadLayer(model.sidecar().layers[0]).weights, sampleWeights());
}

namespace {

/// convModel with its weights in the external file \p location.
OnnxBuilder externalWeights(const std::string &location, const fs::path &dataFile) {
  OnnxBuilder b = convModel();
  b.output("y");
  for (onnx::TensorProto &tensor : *b.model().mutable_graph()->mutable_initializer())
    if (tensor.name() == "w") {
      writeText(dataFile, std::string(8, 'x') + tensor.raw_data());
      tensor.clear_raw_data();
      tensor.set_data_location(onnx::TensorProto::EXTERNAL);
      for (auto [key, value] : {std::pair{"location", location}, {"offset", std::string("8")}}) {
        onnx::StringStringEntryProto &entry = *tensor.add_external_data();
        entry.set_key(key);
        entry.set_value(value);
      }
    }
  return b;
}

} // namespace

TEST_F(OnnxModelTest, ExternalDataBesideTheModelIsRead) {
  OnnxBuilder b = externalWeights("weights.bin", Dir / "weights.bin");
  ModelFile model = open(b);
  EXPECT_EQ(model.loadLayer(model.sidecar().layers[0]).weights, sampleWeights());
}

TEST_F(OnnxModelTest, ExternalDataOutsideTheModelsDirectoryIsRefused) {
  fs::create_directories(Dir / "model");
  for (const std::string &location : {std::string("../outside.bin"), (Dir / "outside.bin").string()}) {
    OnnxBuilder b = externalWeights(location, Dir / "outside.bin");
    b.save(Dir / "model" / "m.onnx");
    try {
      ModelFile model = openOnnxModel((Dir / "model" / "m.onnx").string());
      model.loadLayer(model.sidecar().layers.at(0));
      ADD_FAILURE() << location << " was read";
    } catch (const InputError &e) {
      // The checker may refuse it first; either way it is never read.
      EXPECT_THAT(e.what(), ::testing::AnyOf(HasSubstr("outside the model's directory"),
                                             HasSubstr("fails the ONNX checker")))
          << location;
    }
  }
  // A symbolic link beside the model that leads out of its directory.
  fs::create_symlink(Dir / "outside.bin", Dir / "model" / "link.bin");
  OnnxBuilder b = externalWeights("link.bin", Dir / "outside.bin");
  b.save(Dir / "model" / "m.onnx");
  try {
    ModelFile model = openOnnxModel((Dir / "model" / "m.onnx").string());
    model.loadLayer(model.sidecar().layers.at(0));
    ADD_FAILURE() << "a link out of the model's directory was followed";
  } catch (const InputError &e) {
    EXPECT_THAT(e.what(), ::testing::AnyOf(HasSubstr("outside the model's directory"),
                                           HasSubstr("fails the ONNX checker")));
  }
}

TEST_F(OnnxModelTest, SymmetricAutoPadIsComputedAndAsymmetricIsSkipped) {
  OnnxBuilder same;
  same.input("x", {1, 2, 8, 8});
  same.initializer("w", {4, 2, 3, 3}, sampleWeights());
  setString(same.node("Conv", "same", {"x", "w"}, {"y"}), "auto_pad", "SAME_UPPER");
  same.output("y");
  ModelFile model = open(same);
  ASSERT_EQ(model.sidecar().layers.size(), 1u);
  EXPECT_EQ(model.sidecar().layers[0].padding, (HW{1, 1}));

  // Stride 2 on an even input: SAME_UPPER pads 0 on top and 1 below.
  OnnxBuilder strided;
  strided.input("x", {1, 2, 8, 8});
  strided.initializer("w", {4, 2, 3, 3}, sampleWeights());
  onnx::NodeProto &conv = strided.node("Conv", "strided", {"x", "w"}, {"y"});
  setString(conv, "auto_pad", "SAME_UPPER");
  setInts(conv, "strides", {2, 2});
  strided.output("y");
  ModelFile skipped = open(strided);
  EXPECT_TRUE(skipped.sidecar().layers.empty());
  ASSERT_EQ(skipped.sidecar().skipped.size(), 1u);
  EXPECT_THAT(skipped.sidecar().skipped[0].reason, HasSubstr("asymmetric"));
}

// Each Conv convgen cannot take is listed with why, the others are layers,
// and asking for a skipped one by name is an InputError with the reason.
TEST_F(OnnxModelTest, ConvsConvgenCannotTakeAreListedWithWhy) {
  OnnxBuilder b;
  b.input("x", {1, 2, 8, 8});
  b.input("computed", {4, 2, 3, 3});
  b.input("x1d", {1, 2, 8});
  b.initializer("w", {4, 2, 3, 3}, sampleWeights());
  b.initializer("w1d", {4, 2, 3}, std::vector<float>(24, 1.0f));
  b.node("Conv", "good", {"x", "w"}, {"y0"});
  b.node("Conv", "computed_weights", {"x", "computed"}, {"y1"});
  b.node("Conv", "one_d", {"x1d", "w1d"}, {"y2"});
  setInts(b.node("Conv", "lopsided", {"x", "w"}, {"y3"}), "pads", {1, 0, 0, 1});
  b.initializer("wt", {2, 4, 3, 3}, std::vector<float>(72, 1.0f));
  b.node("ConvTranspose", "transposed", {"x", "wt"}, {"y4"});
  for (const char *output : {"y0", "y1", "y3", "y4"})
    b.output(output);
  b.output("y2", 3);
  ModelFile model = open(b);
  ASSERT_EQ(model.sidecar().layers.size(), 1u);
  EXPECT_EQ(model.sidecar().layers[0].name, "good");
  std::map<std::string, std::string> reasons;
  for (const SkippedLayer &skipped : model.sidecar().skipped)
    reasons[skipped.name] = skipped.reason;
  EXPECT_THAT(reasons["computed_weights"], HasSubstr("computed in the graph"));
  EXPECT_THAT(reasons["one_d"], HasSubstr("1-D"));
  EXPECT_THAT(reasons["lopsided"], HasSubstr("asymmetric pads"));
  EXPECT_THAT(reasons["transposed"], HasSubstr("ConvTranspose"));
  try {
    model.findLayer("lopsided");
    ADD_FAILURE() << "a skipped Conv was found";
  } catch (const InputError &e) {
    EXPECT_THAT(e.what(), HasSubstr("asymmetric pads"));
  }
}

TEST_F(OnnxModelTest, NonFiniteWeightsAreAnErrorNamingTheLayer) {
  OnnxBuilder b;
  b.input("x", {1, 2, 8, 8});
  std::vector<float> weights = sampleWeights();
  weights[5] = std::nanf("");
  b.initializer("w", {4, 2, 3, 3}, weights);
  b.node("Conv", "conv1", {"x", "w"}, {"y"});
  b.output("y");
  ModelFile model = open(b);
  try {
    model.loadLayer(model.sidecar().layers[0]);
    ADD_FAILURE() << "NaN accepted";
  } catch (const InputError &e) {
    EXPECT_THAT(e.what(), HasSubstr("conv1"));
    EXPECT_THAT(e.what(), HasSubstr("NaN"));
  }
}

TEST_F(OnnxModelTest, WeightDataThatDoesNotMatchItsDimsIsAnError) {
  OnnxBuilder b;
  b.input("x", {1, 2, 8, 8});
  b.initializer("w", {4, 2, 3, 3}, std::vector<float>(10, 1.0f));
  b.node("Conv", "conv1", {"x", "w"}, {"y"});
  b.output("y");
  std::string problem;
  try {
    ModelFile model = open(b);
    if (!model.sidecar().skipped.empty())
      problem = model.sidecar().skipped[0].reason;
    else
      model.loadLayer(model.sidecar().layers[0]);
  } catch (const InputError &e) {
    problem = e.what();
  }
  EXPECT_THAT(problem, ::testing::AnyOf(HasSubstr("need 72"), HasSubstr("fails the ONNX checker"),
                                        HasSubstr("shape inference")));
}

TEST_F(OnnxModelTest, BrokenFilesAreInputErrors) {
  writeText(Dir / "empty.onnx", "");
  writeText(Dir / "text.onnx", "this is not a protobuf \xff\xff\xff");
  OnnxBuilder b = convModel();
  b.output("y");
  std::string bytes;
  b.model().SerializeToString(&bytes);
  writeText(Dir / "truncated.onnx", bytes.substr(0, bytes.size() / 2));
  for (const char *name : {"empty.onnx", "text.onnx", "truncated.onnx"}) {
    try {
      openOnnxModel((Dir / name).string());
      ADD_FAILURE() << name << " opened";
    } catch (const InputError &e) {
      EXPECT_THAT(e.what(), HasSubstr(name));
    }
  }
}

TEST_F(OnnxModelTest, AnOpsetNewerThanTheLibraryIsRefused) {
  OnnxBuilder b(99);
  b.input("x", {1, 2, 8, 8});
  b.initializer("w", {4, 2, 3, 3}, sampleWeights());
  b.node("Conv", "conv1", {"x", "w"}, {"y"});
  b.output("y");
  EXPECT_THAT(openError(b), HasSubstr("opset 99"));
}

TEST(OnnxPath, IsKnownByItsExtension) {
  EXPECT_TRUE(isOnnxPath("model.onnx"));
  EXPECT_TRUE(isOnnxPath("dir/MODEL.ONNX"));
  EXPECT_FALSE(isOnnxPath("model.npz"));
  EXPECT_FALSE(isOnnxPath("onnx"));
}
