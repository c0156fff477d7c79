// Reading generated-layer manifests: a valid one, and each way a manifest
// can be wrong, reported with the file and field.
#include "runtime/LayerManifest.h"
#include "support/Error.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

/// A split layer's manifest: two kernels, 10 + 6 packed values, 8 biases.
nlohmann::json validManifest() {
  return nlohmann::json::parse(R"({
    "format": "convgen-kernel-manifest/3", "layer": "conv", "mode": "sparse",
    "ptx": "conv.ptx", "dtype": "f32",
    "geometry": {"input": [1, 4, 9, 9], "output": [1, 8, 9, 9]},
    "launch": {"block": [64, 2, 1], "element_bytes": 4,
               "grid": {"x_threads_per_image_group": 27, "images_per_thread": 2}},
    "kernels": [
      {"symbol": "convgen_conv_k0", "grid_y": 1,
       "weights": {"symbol": "convgen_weights_k0", "offset_bytes": 0, "count": 10}},
      {"symbol": "convgen_conv_k1", "grid_y": 1,
       "weights": {"symbol": "convgen_weights_k1", "offset_bytes": 40, "count": 6}}],
    "weights": {"file": "conv.weights.bin", "path": "constant", "count": 16,
                "bias_offset_bytes": 64, "bias_count": 8},
    "mask_hash": "m", "values_hash": "v"})");
}

class LayerManifestTest : public ::testing::Test {
protected:
  LayerManifest read(const nlohmann::json &manifest) {
    writeText(Dir / "conv.json", manifest.dump());
    return readLayerManifest(Dir / "conv.json");
  }
  void expectRefused(const nlohmann::json &manifest, const std::string &fragment) {
    try {
      read(manifest);
      ADD_FAILURE() << "accepted; expected: " << fragment;
    } catch (const InputError &e) {
      EXPECT_THAT(e.what(), HasSubstr("conv.json"));
      EXPECT_THAT(e.what(), HasSubstr(fragment));
    }
  }
  TempDir Dir;
};

TEST_F(LayerManifestTest, ReadsASplitLayer) {
  LayerManifest m = read(validManifest());
  EXPECT_EQ(m.layer, "conv");
  ASSERT_EQ(m.modules.size(), 1u);
  EXPECT_EQ(m.modules[0].ptxFile, Dir / "conv.ptx");
  EXPECT_EQ(m.weightsFile, Dir / "conv.weights.bin");
  EXPECT_EQ(m.weightPath, "constant");
  ASSERT_EQ(m.kernels.size(), 2u);
  EXPECT_EQ(m.kernels[1].symbol, "convgen_conv_k1");
  EXPECT_EQ(m.kernels[1].weightsOffsetBytes, 40);
  EXPECT_EQ(m.outChannels, 8);
  EXPECT_EQ(m.blockX, 64);
  EXPECT_EQ(m.blockY, 2);
  EXPECT_EQ(m.threadsPerBlock, 128);
  EXPECT_EQ(m.elementBytes, 4);
  EXPECT_EQ(m.gridX(1), 1);
  EXPECT_EQ(m.gridX(20), 5); // 10 image pairs x 27 threads in blocks of 64
  EXPECT_EQ(m.gridX(19), 5); // the last pair is half full
}

TEST_F(LayerManifestTest, EveryProblemNamesItsField) {
  auto with = [](auto change) {
    nlohmann::json m = validManifest();
    change(m);
    return m;
  };
  expectRefused(with([](auto &m) { m["format"] = "convgen-kernel-manifest/1"; }), "regenerate");
  expectRefused(with([](auto &m) { m.erase("ptx"); }), "'ptx': missing");
  expectRefused(with([](auto &m) { m["ptx"] = "../elsewhere.ptx"; }), "beside the manifest");
  expectRefused(with([](auto &m) { m["weights"]["path"] = "texture"; }), "weights.path");
  expectRefused(with([](auto &m) { m["weights"]["bias_offset_bytes"] = 60; }), "4 x weights.count");
  expectRefused(with([](auto &m) { m["kernels"][1]["weights"]["offset_bytes"] = 36; }),
                "slices must follow one another");
  expectRefused(with([](auto &m) { m["kernels"][1]["weights"]["count"] = 5; }), "cover 15 values");
  expectRefused(with([](auto &m) { m["kernels"][0]["grid_y"] = 0; }), "1..65535");
  expectRefused(with([](auto &m) { m["kernels"] = nlohmann::json::array(); }), "non-empty");
  expectRefused(with([](auto &m) { m["launch"]["block"] = {2048, 1, 1}; }), "1..1024");
  expectRefused(with([](auto &m) { m["launch"]["block"] = {512, 4, 1}; }), "1..1024");
  expectRefused(with([](auto &m) { m["dtype"] = "bf16"; }), "f32 or f16");
  expectRefused(with([](auto &m) { m["dtype"] = "f16"; }), "2 for f16");
  expectRefused(with([](auto &m) { m["launch"]["grid"]["images_per_thread"] = 0; }),
                "images_per_thread");
  expectRefused(with([](auto &m) { m["kernels"][0]["weights"]["symbol"] = ""; }),
                "missing on the constant path");
  expectRefused(with([](auto &m) { m["weights"]["bias_count"] = 3; }), "output channels");
}

TEST_F(LayerManifestTest, ReadsTheFatbinaryAndEachModulesFiles) {
  nlohmann::json manifest = validManifest();
  LayerManifest m = read(manifest);
  ASSERT_EQ(m.modules.size(), 1u); // a manifest from before modules: its files at the top
  EXPECT_TRUE(m.modules[0].fatbinFile.empty()); // a --ptx-only layer, or one from before fatbinaries
  manifest["fatbin"] = "conv.fatbin";
  EXPECT_EQ(read(manifest).modules[0].fatbinFile, Dir / "conv.fatbin");

  // A module per kernel, each with its own files.
  manifest["ptx"] = nullptr;
  manifest["fatbin"] = nullptr;
  manifest["modules"] = nlohmann::json::parse(
      R"([{"ptx": "conv.m0.ptx", "fatbin": "conv.m0.fatbin", "kernels": ["convgen_conv_k0"]},
          {"ptx": "conv.m1.ptx", "fatbin": null, "kernels": ["convgen_conv_k1"]}])");
  m = read(manifest);
  ASSERT_EQ(m.modules.size(), 2u);
  EXPECT_EQ(m.modules[0].fatbinFile, Dir / "conv.m0.fatbin");
  EXPECT_EQ(m.modules[1].ptxFile, Dir / "conv.m1.ptx");
  EXPECT_TRUE(m.modules[1].fatbinFile.empty());
  EXPECT_EQ(m.kernels[0].module, 0u);
  EXPECT_EQ(m.kernels[1].module, 1u);

  auto with = [&](auto change) {
    nlohmann::json changed = manifest;
    change(changed);
    return changed;
  };
  expectRefused(with([](auto &j) { j["modules"][0]["fatbin"] = "/tmp/conv.fatbin"; }),
                "modules[0].fatbin");
  expectRefused(with([](auto &j) { j["modules"][1]["kernels"] = {"convgen_other"}; }),
                "names 'convgen_other', which is not a kernel");
  expectRefused(with([](auto &j) { j["modules"][1]["kernels"] = {"convgen_conv_k0"}; }),
                "must hold kernel 'convgen_conv_k0' once, not 2 times");
  expectRefused(with([](auto &j) { j["modules"] = nlohmann::json::array(); }), "non-empty list");
}

TEST_F(LayerManifestTest, NotJsonOrMissing) {
  writeText(Dir / "conv.json", "{ not json");
  EXPECT_THROW(readLayerManifest(Dir / "conv.json"), InputError);
  EXPECT_THROW(readLayerManifest(Dir / "absent.json"), InputError);
}

} // namespace

// Sparsity that crosses layers: the output channels nobody in the graph
// reads are not computed, and the runtime says so.
TEST_F(LayerManifestTest, ReadsTheUnreadOutputChannels) {
  EXPECT_TRUE(read(validManifest()).unreadOutputChannels.empty());
  nlohmann::json manifest = validManifest();
  manifest["channels"] = {{"zero_inputs", {1}}, {"unread_outputs", {2, 7}}};
  EXPECT_EQ(read(manifest).unreadOutputChannels, (std::vector<int64_t>{2, 7}));
  manifest["channels"]["unread_outputs"] = {8};
  expectRefused(manifest, "channels.unread_outputs");
  manifest["channels"]["unread_outputs"] = "2";
  expectRefused(manifest, "channels.unread_outputs");
  manifest["channels"] = nlohmann::json::object();
  expectRefused(manifest, "channels.unread_outputs");
}
