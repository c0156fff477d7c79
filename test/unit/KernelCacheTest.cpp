// The cache key and the cache's entries: what changes the key and what does
// not, entries that round-trip, and corrupt entries that are detected,
// removed and never used.
#include "cache/CacheKey.h"
#include "cache/KernelCache.h"
#include "support/ConvCases.h"
#include "support/TestFiles.h"

#include <fstream>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

std::string keyOf(const ConvLayer &layer, const GenerateOptions &options = {}) {
  return layerCacheKey(layer, options, "conv2d_direct@0123", "13.0");
}

CompiledLayer someCompiledLayer() {
  CompiledLayer compiled;
  compiled.info.name = "conv";
  compiled.info.mode = "sparse";
  compiled.info.weightPath = "constant";
  compiled.info.tiling = parseTiling("bk=4,bw=2,bh=2,threads=64,cta-blocks=2");
  compiled.info.tilingSource = "tuned";
  compiled.info.tilingReasons = {"a reason"};
  compiled.info.dtype = DType::F16;
  compiled.info.kernels.push_back({"convgen_conv", {0, 2}, 1, 40, "convgen_weights", 0, 3});
  compiled.info.tilesPerImageGroup = 12;
  compiled.info.nonzeros = 3;
  compiled.info.multiplyAdds = 40;
  compiled.modules = {{".version 8.0\n.visible .entry convgen_conv()\n{\n}\n", ""}};
  compiled.info.ptxBytes = compiled.modules[0].ptx.size();
  compiled.info.modules = {{compiled.info.ptxBytes, 0}};
  PtxasReport ptxas;
  ptxas.version = "13.0";
  ptxas.registers = 40;
  ptxas.kernels["convgen_conv"].registers = 40;
  compiled.info.ptxas = ptxas;
  compiled.arrayIndices = {7, 2, 11};
  return compiled;
}

TEST(CacheKey, CoversTheMaskNotTheValues) {
  ConvLayer layer = smallPrunedLayer("conv", 0.8, 1);
  const std::string key = keyOf(layer);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(keyOf(layer), key) << "stable";

  std::mt19937_64 random(2);
  ConvLayer revaluedLayer = layer;
  revaluedLayer.weights = revalued(layer.weights, random);
  EXPECT_EQ(keyOf(revaluedLayer), key) << "same mask, new values: same code";

  ConvLayer repruned = layer;
  *std::find_if(repruned.weights.begin(), repruned.weights.end(), [](float w) { return w != 0; }) = 0;
  EXPECT_NE(keyOf(repruned), key);
}

TEST(CacheKey, CoversWhatTheCodeDependsOn) {
  ConvLayer layer = smallPrunedLayer("conv", 0.8, 1);
  const std::string key = keyOf(layer);
  ConvLayer renamed = layer;
  renamed.name = "conv2"; // kernel symbols carry the name
  EXPECT_NE(keyOf(renamed), key);
  ConvLayer strided = layer;
  strided.geometry.stride = {2, 2};
  EXPECT_NE(keyOf(strided), key);
  ConvLayer noActivation = layer;
  noActivation.geometry.activation = Activation::None;
  EXPECT_NE(keyOf(noActivation), key);

  GenerateOptions sm90;
  sm90.arch = parseArch("sm_90");
  EXPECT_NE(keyOf(layer, sm90), key);
  GenerateOptions smallBudget;
  smallBudget.maxMultiplyAdds = 100;
  EXPECT_NE(keyOf(layer, smallBudget), key);
  GenerateOptions global;
  global.constantBankLimitBytes = 0;
  EXPECT_NE(keyOf(layer, global), key);
  EXPECT_NE(layerCacheKey(layer, {}, "conv2d_direct@4567", "13.0"), key) << "template";
  EXPECT_NE(layerCacheKey(layer, {}, "conv2d_direct@0123", "12.4"), key) << "ptxas";
}

TEST(CacheKey, CoversTheTilingTheDtypeAndTheirSources) {
  ConvLayer layer = smallPrunedLayer("conv", 0.8, 3);
  const std::string key = keyOf(layer);
  GenerateOptions half;
  half.dtype = DType::F16;
  EXPECT_NE(keyOf(layer, half), key) << "dtype";
  GenerateOptions user;
  user.tilingOverride = "bk=2";
  EXPECT_NE(keyOf(layer, user), key) << "--tiling";
  GenerateOptions tuned;
  tuned.tunedTilings["conv"] = decideTiling(layer, user).tiling; // what --tiling bk=2 gives
  EXPECT_EQ(keyOf(layer, tuned), keyOf(layer, user)) << "the same code, however it was chosen";
  GenerateOptions otherBatch;
  otherBatch.batch = 64; // the heuristic's choice for this small layer does not change
  EXPECT_EQ(decideTiling(layer, otherBatch).tiling, decideTiling(layer, {}).tiling);
  EXPECT_EQ(keyOf(layer, otherBatch), key) << "the batch matters only through the tiling";
}

TEST(CacheKey, TuningKeyIsPerBatchAndDtypeNotPerValues) {
  ConvLayer layer = smallPrunedLayer("conv", 0.8, 3);
  auto tuningKey = [](const ConvLayer &l, const GenerateOptions &o) {
    return layerTuningKey(l, o, "conv2d_direct@0123");
  };
  const std::string key = tuningKey(layer, {});
  GenerateOptions batch32;
  batch32.batch = 32;
  EXPECT_NE(tuningKey(layer, batch32), key);
  GenerateOptions half;
  half.dtype = DType::F16;
  EXPECT_NE(tuningKey(layer, half), key);
  ConvLayer revalued = layer;
  for (float &w : revalued.weights)
    w *= 2;
  EXPECT_EQ(tuningKey(revalued, {}), key) << "new values, same mask: the tuning stands";
}

TEST(CacheKey, BakedValuesAreInTheKey) {
  ConvLayer layer = smallPrunedLayer("conv", 0.8, 1);
  GenerateOptions baked;
  baked.bakeValues = true;
  std::mt19937_64 random(2);
  ConvLayer revaluedLayer = layer;
  revaluedLayer.weights = revalued(layer.weights, random);
  EXPECT_NE(keyOf(revaluedLayer, baked), keyOf(layer, baked));
}

class KernelCacheTest : public ::testing::Test {
protected:
  std::filesystem::path entryDirectory(const std::string &key) {
    return Dir / "v1" / key.substr(0, 2) / key;
  }
  TempDir Dir;
  const std::string Key = std::string(64, 'a');
};

TEST_F(KernelCacheTest, EntryRoundTrips) {
  KernelCache cache(Dir.path());
  std::string problem;
  EXPECT_FALSE(cache.find(Key, problem));
  EXPECT_EQ(problem, "");
  CompiledLayer stored = someCompiledLayer();
  cache.store(Key, stored);
  std::optional<KernelCache::Entry> entry = cache.find(Key, problem);
  ASSERT_TRUE(entry) << problem;
  ASSERT_EQ(entry->ptxDigests.size(), 1u);
  EXPECT_EQ(entry->ptxDigests[0], KernelCache::digest(stored.modules[0].ptx));
  EXPECT_TRUE(entry->layer.modules.empty()) << "read only when asked";
  ASSERT_TRUE(cache.loadPtx(*entry, problem)) << problem;
  const CompiledLayer *found = &entry->layer;
  ASSERT_EQ(found->modules.size(), 1u);
  EXPECT_EQ(found->modules[0].ptx, stored.modules[0].ptx);
  EXPECT_EQ(found->arrayIndices, stored.arrayIndices);
  EXPECT_EQ(found->info.kernels.size(), 1u);
  EXPECT_EQ(found->info.kernels[0].symbol, "convgen_conv");
  EXPECT_EQ(found->info.kernels[0].channelBlocks, (ChannelBlockRange{0, 2}));
  EXPECT_EQ(found->info.kernels[0].weightsCount, 3);
  EXPECT_EQ(found->info.kernels[0].gridY, 1);
  EXPECT_EQ(found->info.tilesPerImageGroup, 12) << "the plan's launch shape survives the cache";
  EXPECT_EQ(found->info.tiling, stored.info.tiling);
  EXPECT_EQ(found->info.tilingSource, "tuned");
  EXPECT_EQ(found->info.tilingReasons, stored.info.tilingReasons);
  EXPECT_EQ(found->info.dtype, DType::F16);
  ASSERT_TRUE(found->info.ptxas);
  EXPECT_EQ(found->info.ptxas->kernels.at("convgen_conv").registers, 40);
  // Nothing is left in the scratch area.
  EXPECT_TRUE(std::filesystem::is_empty(Dir / "v1" / "tmp"));
}

TEST_F(KernelCacheTest, TuningRecordsRoundTripAndBadOnesAreIgnored) {
  KernelCache cache(Dir.path());
  EXPECT_FALSE(cache.findTuning("abc"));
  Tiling tiling = parseTiling("bk=2,bw=4,stage=1,threads=64");
  cache.storeTuning("abc", "conv", tiling, R"({"best_ms": 0.25})");
  ASSERT_TRUE(cache.findTuning("abc"));
  EXPECT_EQ(*cache.findTuning("abc"), tiling);
  EXPECT_FALSE(cache.findTuning("abd"));
  EXPECT_THROW(cache.storeTuning("abd", "conv", tiling, "{not json"), InputError);
  EXPECT_FALSE(cache.findTuning("abd")) << "nothing written";
  // A record that does not parse, or names another key, is not trusted.
  const std::filesystem::path record = Dir / "v1" / "tuning" / "abc.json";
  writeText(record, R"({"format": "convgen-tuning/1", "key": "abc", "tiling": "bk=zero"})");
  EXPECT_FALSE(cache.findTuning("abc"));
  writeText(record, R"({"format": "convgen-tuning/1", "key": "xyz", "tiling": "bk=2"})");
  EXPECT_FALSE(cache.findTuning("abc"));
  writeText(record, "{ truncated");
  EXPECT_FALSE(cache.findTuning("abc"));
}

TEST_F(KernelCacheTest, StoringAKeyTwiceKeepsOneEntry) {
  KernelCache cache(Dir.path());
  cache.store(Key, someCompiledLayer());
  EXPECT_NO_THROW(cache.store(Key, someCompiledLayer())); // as a second process would
  std::string problem;
  EXPECT_TRUE(cache.find(Key, problem)) << problem;
  EXPECT_TRUE(std::filesystem::is_empty(Dir / "v1" / "tmp"));
}

TEST_F(KernelCacheTest, StaleScratchOfKilledRunsIsRemoved) {
  KernelCache cache(Dir.path());
  std::filesystem::create_directories(Dir / "v1" / "tmp" / "old.123.4");
  std::filesystem::create_directories(Dir / "v1" / "tmp" / "live.123.5");
  std::filesystem::last_write_time(Dir / "v1" / "tmp" / "old.123.4",
                                   std::filesystem::file_time_type::clock::now() - std::chrono::hours(48));
  cache.removeStaleScratch();
  EXPECT_FALSE(std::filesystem::exists(Dir / "v1" / "tmp" / "old.123.4"));
  EXPECT_TRUE(std::filesystem::exists(Dir / "v1" / "tmp" / "live.123.5"));
}

TEST_F(KernelCacheTest, CorruptEntriesAreRemovedNeverUsed) {
  struct Damage {
    const char *name;
    void (*apply)(const std::filesystem::path &entry);
    const char *why;
  };
  const Damage damages[] = {
      {"a changed byte of the PTX",
       [](const std::filesystem::path &entry) {
         std::fstream f(entry / "layer.ptx", std::ios::in | std::ios::out | std::ios::binary);
         f.seekp(3);
         f.put('X');
       },
       "layer.ptx does not match its recorded digest"},
      {"truncated indices",
       [](const std::filesystem::path &entry) { std::filesystem::resize_file(entry / "indices.bin", 5); },
       "indices.bin does not match"},
      {"a missing file",
       [](const std::filesystem::path &entry) { std::filesystem::remove(entry / "layer.ptx"); },
       "layer.ptx"},
      {"entry.json cut short",
       [](const std::filesystem::path &entry) { std::filesystem::resize_file(entry / "entry.json", 20); },
       "entry.json"},
  };
  KernelCache cache(Dir.path());
  for (const Damage &damage : damages) {
    SCOPED_TRACE(damage.name);
    cache.store(Key, someCompiledLayer());
    damage.apply(entryDirectory(Key));
    // Found corrupt by find(), or by loadPtx() for damage inside the PTX.
    std::string problem;
    std::optional<KernelCache::Entry> entry = cache.find(Key, problem);
    if (entry) {
      EXPECT_FALSE(cache.loadPtx(*entry, problem));
    }
    EXPECT_THAT(problem, HasSubstr("is corrupt"));
    EXPECT_THAT(problem, HasSubstr(damage.why));
    EXPECT_FALSE(std::filesystem::exists(entryDirectory(Key))) << "removed";
    EXPECT_FALSE(cache.find(Key, problem)) << "now a plain miss";
    EXPECT_EQ(problem, "");
  }
}

} // namespace
