// Reading model manifests: a valid one, and each way one can be wrong,
// reported with the file and field.
#include "runtime/ModelManifest.h"
#include "support/Error.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

nlohmann::json validModel() {
  return nlohmann::json::parse(R"({
    "format": "convgen-model-manifest/1", "weights": "m.npz", "arch": "sm_80",
    "layers": [{"name": "conv1", "manifest": "conv1.json", "manifest_sha256": "aa"},
               {"name": "conv2", "manifest": "conv2.json", "manifest_sha256": "bb"}]})");
}

class ModelManifestTest : public ::testing::Test {
protected:
  ModelManifest read(const nlohmann::json &model) {
    writeText(Dir / "convgen-model.json", model.dump());
    return readModelManifest(Dir / "convgen-model.json");
  }
  void expectRefused(const nlohmann::json &model, const std::string &fragment) {
    try {
      read(model);
      ADD_FAILURE() << "accepted; expected: " << fragment;
    } catch (const InputError &e) {
      EXPECT_THAT(e.what(), HasSubstr("convgen-model.json"));
      EXPECT_THAT(e.what(), HasSubstr(fragment));
    }
  }
  TempDir Dir;
};

TEST_F(ModelManifestTest, ReadsEveryLayer) {
  ModelManifest model = read(validModel());
  ASSERT_EQ(model.layers.size(), 2u);
  EXPECT_EQ(model.layers[1].name, "conv2");
  EXPECT_EQ(model.layers[1].manifest, Dir / "conv2.json");
  EXPECT_EQ(model.layers[1].manifestSha256, "bb");
  EXPECT_EQ(model.arch, "sm_80");
}

TEST_F(ModelManifestTest, EveryProblemNamesItsField) {
  nlohmann::json m = validModel();
  m["format"] = "convgen-model-manifest/0";
  expectRefused(m, "format");
  m = validModel();
  m["layers"][1]["name"] = "conv1";
  expectRefused(m, "layer 'conv1' is listed twice");
  m = validModel();
  m["layers"][0]["manifest"] = "../elsewhere/conv1.json";
  expectRefused(m, "layers[0].manifest");
  m = validModel();
  m["layers"][1].erase("manifest_sha256");
  expectRefused(m, "layers[1].manifest_sha256");
  m = validModel();
  m["layers"] = "conv1";
  expectRefused(m, "layers");
  writeText(Dir / "convgen-model.json", "{not json");
  EXPECT_THROW(readModelManifest(Dir / "convgen-model.json"), InputError);
  EXPECT_THROW(readModelManifest(Dir / "missing.json"), InputError);
}

} // namespace
