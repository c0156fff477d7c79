// Whole models through the cache, round after round: a cold round misses,
// an unchanged round hits and writes nothing, a values-only round rewrites
// only weights and manifests (byte for byte what a fresh generation
// writes), a changed mask regenerates only its layer, a corrupt entry is
// regenerated, and concurrent runs share one cache.
#include "pipeline/ModelGenerator.h"
#include "cache/OutputStamps.h"
#include "codegen/Ptxas.h"
#include "support/AtomicFile.h"
#include "support/ConvCases.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <thread>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

class ModelGeneratorTest : public ::testing::Test {
protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i)
      Layers.push_back(smallPrunedLayer("conv" + std::to_string(i), 0.7 + 0.1 * i, 10 + i, 8));
  }

  ModelGenerateOptions options(const fs::path &output, bool cache = true) {
    ModelGenerateOptions o;
    o.generate.outputDir = output;
    o.generate.runPtxas = false;
    o.jobs = 2;
    if (cache)
      o.cacheDir = Dir / "cache";
    o.modelManifest = output / "convgen-model.json";
    o.weightsFile = "model.npz";
    return o;
  }

  std::vector<LayerOutcome> run(const std::vector<ConvLayer> &layers, const fs::path &output,
                                bool cache = true) {
    std::vector<LayerOutcome> outcomes = generateModel(layers, options(output, cache));
    for (const LayerOutcome &o : outcomes)
      EXPECT_EQ(o.error, "") << o.info.name;
    return outcomes;
  }

  static std::vector<CacheOutcome> cacheOutcomes(const std::vector<LayerOutcome> &outcomes) {
    std::vector<CacheOutcome> result;
    for (const LayerOutcome &o : outcomes)
      result.push_back(o.cache);
    return result;
  }

  /// Every file the layers have in \p a is byte for byte the one in \p b.
  void expectSameFiles(const fs::path &a, const fs::path &b) {
    for (const ConvLayer &layer : Layers)
      for (const char *suffix : {".ptx", ".weights.bin", ".json"}) {
        const std::string name = layer.name + suffix;
        EXPECT_EQ(readWholeFile(a / name), readWholeFile(b / name)) << name;
      }
  }

  std::vector<ConvLayer> Layers;
  TempDir Dir;
};

using C = CacheOutcome;

TEST_F(ModelGeneratorTest, ColdRoundMissesThenAnUnchangedRoundWritesNothing) {
  std::vector<LayerOutcome> cold = run(Layers, Dir / "out");
  EXPECT_EQ(cacheOutcomes(cold), (std::vector<C>{C::Miss, C::Miss, C::Miss}));
  for (const LayerOutcome &o : cold)
    EXPECT_TRUE(o.written.ptx && o.written.weights && o.written.manifest);
  auto stamp = fs::last_write_time(Dir / "out" / "conv1.ptx");
  auto modelStamp = fs::last_write_time(Dir / "out" / "convgen-model.json");

  std::vector<LayerOutcome> warm = run(Layers, Dir / "out");
  EXPECT_EQ(cacheOutcomes(warm), (std::vector<C>{C::Hit, C::Hit, C::Hit}));
  for (const LayerOutcome &o : warm)
    EXPECT_FALSE(o.written.any()) << o.info.name;
  EXPECT_EQ(fs::last_write_time(Dir / "out" / "conv1.ptx"), stamp);
  EXPECT_EQ(fs::last_write_time(Dir / "out" / "convgen-model.json"), modelStamp);
  // A hit reports what the miss generated.
  EXPECT_EQ(warm[1].info.multiplyAdds, cold[1].info.multiplyAdds);
  EXPECT_EQ(warm[1].info.kernels.size(), cold[1].info.kernels.size());

  // The cache's outputs are what a run without it writes.
  run(Layers, Dir / "fresh", /*cache=*/false);
  expectSameFiles(Dir / "out", Dir / "fresh");
}

TEST_F(ModelGeneratorTest, ValuesOnlyRoundRewritesOnlyWeightsAndManifests) {
  run(Layers, Dir / "out");
  std::mt19937_64 random(5);
  std::vector<ConvLayer> next = Layers;
  for (ConvLayer &layer : next)
    layer.weights = revalued(layer.weights, random);
  std::vector<LayerOutcome> round = run(next, Dir / "out");
  EXPECT_EQ(cacheOutcomes(round), (std::vector<C>{C::Hit, C::Hit, C::Hit}));
  for (const LayerOutcome &o : round) {
    EXPECT_FALSE(o.written.ptx) << o.info.name;
    EXPECT_TRUE(o.written.weights) << o.info.name;
    EXPECT_TRUE(o.written.manifest) << o.info.name; // its values hash changed
  }
  Layers = next;
  run(Layers, Dir / "fresh", /*cache=*/false);
  expectSameFiles(Dir / "out", Dir / "fresh");
}

TEST_F(ModelGeneratorTest, ChangedMaskRegeneratesOnlyItsLayer) {
  run(Layers, Dir / "out");
  std::vector<ConvLayer> next = Layers;
  auto &weights = next[1].weights;
  *std::find_if(weights.begin(), weights.end(), [](float w) { return w != 0; }) = 0;
  std::vector<LayerOutcome> round = run(next, Dir / "out");
  EXPECT_EQ(cacheOutcomes(round), (std::vector<C>{C::Hit, C::Miss, C::Hit}));
  EXPECT_FALSE(round[0].written.any());
  EXPECT_TRUE(round[1].written.ptx);
  EXPECT_EQ(round[1].info.nonzeros + 1,
            std::count_if(Layers[1].weights.begin(), Layers[1].weights.end(),
                          [](float w) { return w != 0; }));
}

TEST_F(ModelGeneratorTest, CorruptEntryIsRegeneratedAndReplaced) {
  run(Layers, Dir / "out");
  // Damage every entry's PTX in the cache.
  for (const auto &file : fs::recursive_directory_iterator(Dir / "cache"))
    if (file.path().filename() == "layer.ptx")
      writeFileAtomically(file.path(), "garbage");
  fs::remove_all(Dir / "out");
  std::vector<LayerOutcome> round = run(Layers, Dir / "out");
  EXPECT_EQ(cacheOutcomes(round), (std::vector<C>{C::Corrupt, C::Corrupt, C::Corrupt}));
  EXPECT_THAT(round[0].note, HasSubstr("is corrupt"));
  EXPECT_EQ(cacheOutcomes(run(Layers, Dir / "out")), (std::vector<C>{C::Hit, C::Hit, C::Hit}));
  run(Layers, Dir / "fresh", /*cache=*/false);
  expectSameFiles(Dir / "out", Dir / "fresh");
}

TEST_F(ModelGeneratorTest, ConcurrentRunsShareOneCache) {
  // Two runs at once (the CLI test does it with two processes) each store
  // every layer; both succeed, and the cache ends with one entry per layer.
  std::thread other([this] { run(Layers, Dir / "a"); });
  run(Layers, Dir / "b");
  other.join();
  expectSameFiles(Dir / "a", Dir / "b");
  size_t entries = 0;
  for (const auto &file : fs::recursive_directory_iterator(Dir / "cache"))
    entries += file.path().filename() == "entry.json";
  EXPECT_EQ(entries, Layers.size());
  EXPECT_TRUE(fs::is_empty(Dir / "cache" / "v1" / "tmp"));
}

TEST_F(ModelGeneratorTest, ModelManifestListsEveryLayerWithItsManifestHash) {
  run(Layers, Dir / "out");
  nlohmann::json model = nlohmann::json::parse(readWholeFile(Dir / "out" / "convgen-model.json"));
  EXPECT_EQ(model["format"], "convgen-model-manifest/1");
  ASSERT_EQ(model["layers"].size(), Layers.size());
  EXPECT_EQ(model["layers"][2]["name"], "conv2");
  EXPECT_EQ(model["layers"][2]["manifest"], "conv2.json");
  EXPECT_EQ(model["layers"][2]["manifest_sha256"].get<std::string>().size(), 64u);
}

TEST_F(ModelGeneratorTest, TinyMemoryBudgetStillRunsEveryLayer) {
  ModelGenerateOptions o = options(Dir / "out", /*cache=*/false);
  o.memoryBudgetBytes = 1; // every layer is over it: each runs alone, none is refused
  for (const LayerOutcome &outcome : generateModel(Layers, o))
    EXPECT_EQ(outcome.error, "");
}

} // namespace

namespace {

// Found in review: the tiling's source and reasons came from the run that
// stored the entry. A tiling measured with --tiling (source "user") and then
// recorded as tuned hit the same entry, and its manifest still said "user".
TEST_F(ModelGeneratorTest, AHitDescribesTheTilingAsThisRunChoseIt) {
  ModelGenerateOptions user = options(Dir / "out");
  user.generate.tilingOverride = "bk=2,bw=2";
  std::vector<LayerOutcome> first = generateModel({Layers[0]}, user);
  ASSERT_EQ(first[0].cache, CacheOutcome::Miss);
  EXPECT_EQ(first[0].info.tilingSource, "user");

  ModelGenerateOptions tuned = options(Dir / "out");
  tuned.generate.tunedTilings[Layers[0].name] = parseTiling("bk=2,bw=2");
  std::vector<LayerOutcome> second = generateModel({Layers[0]}, tuned);
  ASSERT_EQ(second[0].cache, CacheOutcome::Hit);
  EXPECT_EQ(second[0].info.tilingSource, "tuned");
  auto manifest = nlohmann::json::parse(readWholeFile(Dir / "out" / "conv0.json"));
  EXPECT_EQ(manifest["tiling"]["source"], "tuned");
  EXPECT_THAT(manifest["tiling"]["reasons"][0].get<std::string>(), HasSubstr("tuned"));
}

} // namespace

// A hit proves the output holds the entry's PTX by its stamp (size and
// modification time as written), without reading it back; an output
// changed since (another time) is hashed, found different and rewritten.
TEST_F(ModelGeneratorTest, UnchangedRoundTrustsTheStampsAndHashesWhatChanged) {
  run(Layers, Dir / "out");
  ASSERT_TRUE(fs::exists(Dir / "out" / OutputStamps::FileName));
  const fs::path ptx = Dir / "out" / "conv1.ptx";
  const std::string original = readWholeFile(ptx);
  // Age the outputs so that none is in the stamps' clock tick, and stamp
  // them again as they are now.
  for (const ConvLayer &layer : Layers)
    fs::last_write_time(Dir / "out" / (layer.name + ".ptx"),
                        fs::last_write_time(Dir / "out" / (layer.name + ".ptx")) - std::chrono::seconds(10));
  run(Layers, Dir / "out");

  // Same size, same time: the stamp vouches for it, so it is not read (a
  // tamper this careful goes unseen, as with git's index).
  const auto time = fs::last_write_time(ptx);
  std::string tampered = original;
  tampered[tampered.size() / 2] ^= 1;
  writeFileAtomically(ptx, tampered);
  fs::last_write_time(ptx, time);
  std::vector<LayerOutcome> trusted = run(Layers, Dir / "out");
  EXPECT_FALSE(trusted[1].written.ptx);
  EXPECT_EQ(readWholeFile(ptx), tampered);

  // A new modification time: hashed, and the cached PTX written back.
  writeFileAtomically(ptx, tampered);
  std::vector<LayerOutcome> checked = run(Layers, Dir / "out");
  EXPECT_EQ(cacheOutcomes(checked), (std::vector<C>{C::Hit, C::Hit, C::Hit}));
  EXPECT_TRUE(checked[1].written.ptx);
  EXPECT_EQ(readWholeFile(ptx), original);
}

// The cache keeps the fatbinary with the PTX: a hit writes back the cubins
// ptxas made in the cold round, byte for byte, without running it again.
TEST_F(ModelGeneratorTest, AHitReturnsTheFatbinary) {
  if (!findPtxas())
    GTEST_SKIP() << "ptxas not found (CUDA toolkit not at /usr/local/cuda or $CUDA_HOME)";
  ModelGenerateOptions o = options(Dir / "out");
  o.generate.runPtxas = true;
  std::vector<LayerOutcome> cold = generateModel(Layers, o);
  ASSERT_EQ(cold[0].error, "");
  EXPECT_EQ(cold[0].cache, CacheOutcome::Miss);
  const fs::path fatbin = Dir / "out" / "conv0.fatbin";
  const std::string bytes = readWholeFile(fatbin);
  ASSERT_GT(bytes.size(), 0u);
  fs::remove(fatbin);
  std::vector<LayerOutcome> warm = generateModel(Layers, o);
  ASSERT_EQ(warm[0].error, "");
  EXPECT_EQ(warm[0].cache, CacheOutcome::Hit);
  EXPECT_TRUE(warm[0].written.fatbin);
  EXPECT_FALSE(warm[0].written.ptx);
  EXPECT_EQ(readWholeFile(fatbin), bytes);
  EXPECT_EQ(warm[0].info.cubins.size(), 1u);

  // --ptx-only is another entry, and leaves no fatbinary behind.
  o.generate.runPtxas = false;
  std::vector<LayerOutcome> draft = generateModel(Layers, o);
  ASSERT_EQ(draft[0].error, "");
  EXPECT_EQ(draft[0].cache, CacheOutcome::Miss);
  EXPECT_FALSE(fs::exists(fatbin));
}

// A layer of several modules (a constant bank per kernel) goes through the
// cache whole: a hit writes back the module file that went missing.
TEST_F(ModelGeneratorTest, AHitRestoresEveryModuleOfALayer) {
  ModelGenerateOptions o = options(Dir / "out");
  o.generate.tilingOverride = "bk=1";
  o.generate.constantBankLimitBytes = 40 * 4;
  const std::vector<ConvLayer> layers = {smallPrunedLayer("banks", 0.7, 40, 16)};
  std::vector<LayerOutcome> cold = generateModel(layers, o);
  ASSERT_EQ(cold[0].error, "");
  const size_t modules = cold[0].info.modules.size();
  ASSERT_GT(modules, 1u);
  const fs::path last = Dir / "out" / ("banks.m" + std::to_string(modules - 1) + ".ptx");
  const std::string bytes = readWholeFile(last);
  fs::remove(last);
  std::vector<LayerOutcome> warm = generateModel(layers, o);
  ASSERT_EQ(warm[0].error, "");
  EXPECT_EQ(warm[0].cache, CacheOutcome::Hit);
  EXPECT_TRUE(warm[0].written.ptx);
  EXPECT_EQ(readWholeFile(last), bytes);
  EXPECT_EQ(warm[0].info.modules.size(), modules);
  std::vector<LayerOutcome> unchanged = generateModel(layers, o);
  EXPECT_EQ(unchanged[0].cache, CacheOutcome::Hit);
  EXPECT_FALSE(unchanged[0].written.any());
}

TEST_F(ModelGeneratorTest, NoCacheWritesNoStamps) {
  run(Layers, Dir / "out", /*cache=*/false);
  EXPECT_FALSE(fs::exists(Dir / "out" / OutputStamps::FileName));
}
