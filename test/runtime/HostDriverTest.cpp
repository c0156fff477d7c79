// What only the host CUDA driver can show about the runtime without a GPU:
// which driver calls a reload makes, that a failed reload leaves the loaded
// layer running, that the JIT's error log reaches the user, that nothing
// leaks, and that destructors survive a driver that has shut down. The last
// test is the double's own negative control: a launch that disagrees with
// the generator must be caught. These skip outside ctest's hostcuda.* run.
#include "codegen/Ptxas.h"
#include "model/LayerChannels.h"
#include "pipeline/ModelGenerator.h"
#include "runtime/LayerRuntime.h"
#include "runtime/ModelRuntime.h"
#include "runtime/convgen.h"
#include "support/ConvCases.h"
#include "support/DeviceLayers.h"
#include "support/GpuCompare.h"
#include "support/TestFiles.h"

#include <fstream>
#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;

namespace {

constexpr int InvalidPtx = 218, OutOfMemory = 2;

class HostDriverTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (!DeviceLayers::onHostDriver())
      GTEST_SKIP() << "runs on the host CUDA driver only (ctest's hostcuda.* tests)";
    std::string whyNot;
    Context = openGpu(whyNot);
    ASSERT_TRUE(Context) << whyNot;
  }

  ConvLayer layer(const std::string &name, double sparsity, uint64_t seed, int64_t outChannels = 8) {
    return smallPrunedLayer(name, sparsity, seed, outChannels);
  }

  GeneratedLayer generate(const ConvLayer &convLayer, GenerateOptions options = {}) {
    options.outputDir = Dir.path();
    options.runPtxas = false; // the double runs the IR, not the PTX
    KernelGenerator generator(options);
    return Layers.generate(generator, convLayer);
  }

  int64_t runAndCompare(const LayerRuntime &runtime, const ConvLayer &convLayer) {
    std::string firstBad;
    int64_t bad = runOnGpuAndCompare(*Context, runtime, convLayer, 2, 17, firstBad);
    EXPECT_EQ(bad, 0) << firstBad;
    return bad;
  }

  std::unique_ptr<CudaContext> Context;
  TempDir Dir;
  DeviceLayers Layers;
};

TEST_F(HostDriverTest, ValuesOnlyReloadLoadsNoModuleAndUploadsOnlyTheWeights) {
  ConvLayer convLayer = layer("values", 0.8, 1);
  GeneratedLayer generated = generate(convLayer);
  ASSERT_EQ(generated.weightPath, "constant");
  LayerRuntime runtime(*Context, generated.manifestPath);

  std::mt19937_64 random(2);
  convLayer.weights = revalued(convLayer.weights, random);
  generate(convLayer);
  ConvgenHostCudaCounters before = hostDriverCounters();
  EXPECT_EQ(runtime.reload(), LayerRuntime::Reload::ValuesOnly);
  ConvgenHostCudaCounters after = hostDriverCounters();
  EXPECT_EQ(after.modulesLoaded, before.modulesLoaded);
  EXPECT_EQ(after.allocationsLive, before.allocationsLive);
  // The weights file once, then each kernel's slice into its constant array.
  const size_t fileBytes = std::filesystem::file_size(Dir / "values.weights.bin");
  size_t constantBytes = 0;
  for (const LayerKernel &kernel : generated.kernels)
    constantBytes += size_t(kernel.weightsCount) * 4;
  EXPECT_EQ(after.bytesToDevice - before.bytesToDevice, fileBytes + constantBytes);
  runAndCompare(runtime, convLayer);
}

// A layer whose kernels each have a module (and a constant bank) of their
// own: every module loaded, each kernel found in its own, each slice copied
// to its own module's array, and a values-only round uploads only weights.
TEST_F(HostDriverTest, ALayerOfSeveralModulesRunsAndReloadsItsValues) {
  ConvLayer convLayer = layer("banks", 0.7, 40, 16);
  GenerateOptions options;
  options.tilingOverride = "bk=1";
  options.constantBankLimitBytes = 40 * 4;
  GeneratedLayer generated = generate(convLayer, options);
  ASSERT_EQ(generated.weightPath, "constant");
  ASSERT_GT(generated.modules.size(), 1u);
  const ConvgenHostCudaCounters before = hostDriverCounters();
  LayerRuntime runtime(*Context, generated.manifestPath);
  EXPECT_EQ(hostDriverCounters().modulesLoaded - before.modulesLoaded, long(generated.modules.size()));
  // One launch forks the kernels onto side streams and joins them back.
  const ConvgenHostCudaCounters beforeRun = hostDriverCounters();
  runAndCompare(runtime, convLayer);
  const ConvgenHostCudaCounters afterRun = hostDriverCounters();
  const long kernels = long(generated.kernels.size());
  EXPECT_EQ(afterRun.streamsLive - before.streamsLive, kernels - 1);
  EXPECT_EQ(afterRun.eventsRecorded - beforeRun.eventsRecorded, kernels);
  EXPECT_EQ(afterRun.streamWaits - beforeRun.streamWaits, 2 * (kernels - 1));
  EXPECT_EQ(afterRun.waitsOnUnrecordedEvents, beforeRun.waitsOnUnrecordedEvents);
  EXPECT_EQ(afterRun.launches - beforeRun.launches, kernels);

  // A failing call says which layer and step, made only then.
  failNextHostDriverCall("cuEventRecord", InvalidPtx);
  try {
    runtime.launch(0, 0, 1);
    ADD_FAILURE() << "expected CudaError";
  } catch (const CudaError &e) {
    EXPECT_THAT(e.what(), HasSubstr("cuEventRecord"));
    EXPECT_THAT(e.what(), HasSubstr("forking layer 'banks'"));
  }
  failNextHostDriverCall("cuLaunchKernel", InvalidPtx);
  try {
    runtime.launch(0, 0, 1);
    ADD_FAILURE() << "expected CudaError";
  } catch (const CudaError &e) {
    EXPECT_THAT(e.what(), HasSubstr("launching " + generated.kernels[1].symbol + " for 1 images"));
  }

  std::mt19937_64 random(41);
  convLayer.weights = revalued(convLayer.weights, random);
  generate(convLayer, options);
  const ConvgenHostCudaCounters reloadBefore = hostDriverCounters();
  EXPECT_EQ(runtime.reload(), LayerRuntime::Reload::ValuesOnly);
  const ConvgenHostCudaCounters reloadAfter = hostDriverCounters();
  EXPECT_EQ(reloadAfter.modulesLoaded, reloadBefore.modulesLoaded);
  const size_t fileBytes = std::filesystem::file_size(Dir / "banks.weights.bin");
  EXPECT_EQ(reloadAfter.bytesToDevice - reloadBefore.bytesToDevice,
            fileBytes + size_t(convLayer.weights.size() - std::count(convLayer.weights.begin(),
                                                                     convLayer.weights.end(), 0.0f)) *
                            4);
  runAndCompare(runtime, convLayer);
}

TEST_F(HostDriverTest, FailedReloadKeepsTheLoadedLayerRunning) {
  ConvLayer first = layer("kept", 0.8, 3);
  LayerRuntime runtime(*Context, generate(first).manifestPath);
  ConvLayer repruned = layer("kept", 0.95, 4);
  generate(repruned);

  failNextHostDriverCall("cuModuleLoadDataEx", InvalidPtx);
  EXPECT_THROW(runtime.reload(), CudaError);
  runAndCompare(runtime, first);

  failNextHostDriverCall("cuMemAlloc_v2", OutOfMemory);
  try {
    runtime.reload();
    ADD_FAILURE() << "expected CudaError";
  } catch (const CudaError &e) {
    EXPECT_THAT(e.what(), HasSubstr("cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY"));
    EXPECT_THAT(e.what(), HasSubstr("layer 'kept'"));
  }
  runAndCompare(runtime, first);

  EXPECT_EQ(runtime.reload(), LayerRuntime::Reload::Module);
  runAndCompare(runtime, repruned);
}

TEST_F(HostDriverTest, JitErrorLogReachesTheUser) {
  // Generated without registering: the double refuses the PTX as a JIT would.
  GenerateOptions options;
  options.outputDir = Dir.path();
  options.runPtxas = false;
  KernelGenerator generator(options);
  GeneratedLayer generated = generator.generate(layer("unregistered", 0.9, 5));
  try {
    LayerRuntime runtime(*Context, generated.manifestPath);
    FAIL() << "expected CudaError";
  } catch (const CudaError &e) {
    EXPECT_THAT(e.what(), HasSubstr("cuModuleLoadDataEx: CUDA_ERROR_INVALID_PTX"));
    EXPECT_THAT(e.what(), HasSubstr("loading the PTX of layer 'unregistered'"));
    EXPECT_THAT(e.what(), HasSubstr("no host code is registered for this PTX"));
    EXPECT_EQ(e.exitCode(), ExitCheckFailed);
  }
}

TEST_F(HostDriverTest, NothingLeaks) {
  ConvgenHostCudaCounters before = hostDriverCounters();
  {
    ConvLayer convLayer = layer("leaks", 0.7, 6, 32);
    GenerateOptions split; // several kernels in one module
    split.tilingOverride = "bk=4"; // several channel blocks to split by
    split.maxMultiplyAdds = largestChannelBlockCode(convLayer, split);
    split.maxKernelsPerLayer = 1024;
    LayerRuntime runtime(*Context, generate(convLayer, split).manifestPath);
    EXPECT_GT(runtime.manifest().kernels.size(), 1u);
    runAndCompare(runtime, convLayer);
    convLayer = layer("leaks", 0.9, 7, 32);
    split.maxMultiplyAdds = largestChannelBlockCode(convLayer, split);
    generate(convLayer, split);
    EXPECT_EQ(runtime.reload(), LayerRuntime::Reload::Module);
  }
  ConvgenHostCudaCounters after = hostDriverCounters();
  EXPECT_EQ(after.modulesLive, before.modulesLive);
  EXPECT_EQ(after.allocationsLive, before.allocationsLive);
  EXPECT_EQ(after.streamsLive, before.streamsLive);
  EXPECT_EQ(after.eventsLive, before.eventsLive);
  EXPECT_EQ(after.modulesLoaded, before.modulesLoaded + 2);
}

TEST_F(HostDriverTest, DestructorsTolerateADriverThatHasShutDown) {
  GeneratedLayer generated = generate(layer("shutdown", 0.9, 8));
  EXPECT_NO_THROW({
    LayerRuntime runtime(*Context, generated.manifestPath);
    failNextHostDriverCall("cuModuleUnload", cuda::CUDA_ERROR_DEINITIALIZED);
    failNextHostDriverCall("cuMemFree_v2", cuda::CUDA_ERROR_DEINITIALIZED);
  });
}

// A layer generated in its graph's context: its unread output channels are
// listed by the C API (they hold no data), and the channels it computes
// match the reference.
TEST_F(HostDriverTest, CApiListsTheChannelsALayerDoesNotCompute) {
  ConvLayer convLayer = layer("unread", 0.5, 10, 16);
  applyChannelFacts(convLayer, {{}, {}, {1, 3}});
  GeneratedLayer generated = generate(convLayer);
  convgen_layer *loaded = nullptr;
  ASSERT_EQ(convgen_layer_load(generated.manifestPath.c_str(), 0, &loaded), 0)
      << convgen_last_error();
  int64_t channels[4] = {-1, -1, -1, -1}, count = 0;
  ASSERT_EQ(convgen_layer_unread_channels(loaded, channels, 4, &count), 0) << convgen_last_error();
  EXPECT_EQ(count, 2);
  EXPECT_EQ(channels[0], 1);
  EXPECT_EQ(channels[1], 3);
  channels[0] = -1;
  ASSERT_EQ(convgen_layer_unread_channels(loaded, channels, 0, &count), 0);
  EXPECT_EQ(count, 2) << "a capacity of 0 asks for the count";
  EXPECT_EQ(convgen_layer_unread_channels(loaded, nullptr, 2, &count), 2);
  LayerLaunch launch = [&loaded](cuda::CUdeviceptr input, cuda::CUdeviceptr output, int batch) {
    ASSERT_EQ(convgen_layer_launch(loaded, input, output, batch, 0), 0) << convgen_last_error();
  };
  std::string firstBad;
  EXPECT_EQ(runOnGpuAndCompare(*Context, launch, convLayer, 2, 5, firstBad), 0) << firstBad;
  convgen_layer_free(loaded);
}

TEST_F(HostDriverTest, CApiRunsAndReloadsALayer) {
  // libconvgen.so has its own copy of the runtime; it loads the same driver.
  ConvLayer convLayer = layer("capi", 0.9, 10, 16);
  GeneratedLayer generated = generate(convLayer);
  convgen_layer *loaded = nullptr;
  ASSERT_EQ(convgen_layer_load(generated.manifestPath.c_str(), 0, &loaded), 0)
      << convgen_last_error();
  int64_t inputShape[3], outputShape[3];
  ASSERT_EQ(convgen_layer_shape(loaded, inputShape, outputShape), 0);
  HW out = convLayer.geometry.outSize();
  EXPECT_EQ(inputShape[0], convLayer.geometry.inChannels);
  EXPECT_EQ(outputShape[0], convLayer.geometry.outChannels);
  EXPECT_EQ(outputShape[1], out.h);
  EXPECT_EQ(outputShape[2], out.w);
  LayerLaunch launch = [&loaded](cuda::CUdeviceptr input, cuda::CUdeviceptr output, int batch) {
    ASSERT_EQ(convgen_layer_launch(loaded, input, output, batch, 0), 0) << convgen_last_error();
  };
  std::string firstBad;
  EXPECT_EQ(runOnGpuAndCompare(*Context, launch, convLayer, 3, 11, firstBad), 0) << firstBad;

  std::mt19937_64 random(12);
  convLayer.weights = revalued(convLayer.weights, random);
  generate(convLayer);
  int valuesOnly = -1;
  ASSERT_EQ(convgen_layer_reload(loaded, &valuesOnly), 0) << convgen_last_error();
  EXPECT_EQ(valuesOnly, 1);
  EXPECT_EQ(runOnGpuAndCompare(*Context, launch, convLayer, 2, 13, firstBad), 0) << firstBad;

  EXPECT_EQ(convgen_layer_launch(loaded, 0, 0, 0, 0), 2);
  EXPECT_THAT(convgen_last_error(), HasSubstr("batch"));
  convgen_layer_free(loaded);
}

TEST_F(HostDriverTest, ModelReloadTouchesOnlyTheLayersThatChanged) {
  std::vector<ConvLayer> layers = {layer("a", 0.8, 20), layer("b", 0.8, 21), layer("c", 0.8, 22)};
  ModelGenerateOptions options;
  options.generate.outputDir = Dir.path();
  options.generate.runPtxas = false;
  options.cacheDir = Dir / "cache";
  options.modelManifest = Dir / "convgen-model.json";
  auto generateRound = [&] {
    // DeviceLayers registers each layer's PTX with the host driver; the
    // model generator then writes the same files and the model manifest.
    KernelGenerator generator(options.generate);
    for (const ConvLayer &convLayer : layers)
      Layers.generate(generator, convLayer);
    for (const LayerOutcome &outcome : generateModel(layers, options))
      ASSERT_EQ(outcome.error, "");
  };
  generateRound();
  ModelRuntime model(*Context, options.modelManifest);
  EXPECT_EQ(model.layerNames(), (std::vector<std::string>{"a", "b", "c"}));

  // Next round: b's values change, c is pruned further, a stays.
  std::mt19937_64 random(23);
  layers[1].weights = revalued(layers[1].weights, random);
  layers[2] = layer("c", 0.9, 24);
  generateRound();
  ConvgenHostCudaCounters before = hostDriverCounters();
  ModelRuntime::ReloadReport report = model.reload();
  EXPECT_EQ(hostDriverCounters().modulesLoaded, before.modulesLoaded + 1);
  EXPECT_EQ(report.unchanged, std::vector<std::string>{"a"});
  EXPECT_EQ(report.valuesOnly, std::vector<std::string>{"b"});
  EXPECT_EQ(report.newModule, std::vector<std::string>{"c"});
  for (const ConvLayer &convLayer : layers)
    runAndCompare(model.layer(convLayer.name), convLayer);

  // An unchanged round reloads nothing.
  report = model.reload();
  EXPECT_EQ(report.unchanged.size(), 3u);
  EXPECT_THROW(model.layer("d"), InputError);

  // The same through the C API.
  convgen_model *loaded = nullptr;
  ASSERT_EQ(convgen_model_load(options.modelManifest.c_str(), 0, &loaded), 0) << convgen_last_error();
  int64_t inputShape[3], outputShape[3];
  ASSERT_EQ(convgen_model_shape(loaded, "b", inputShape, outputShape), 0);
  EXPECT_EQ(outputShape[0], layers[1].geometry.outChannels);
  LayerLaunch launchB = [&loaded](cuda::CUdeviceptr input, cuda::CUdeviceptr output, int batch) {
    ASSERT_EQ(convgen_model_launch(loaded, "b", input, output, batch, 0), 0) << convgen_last_error();
  };
  std::string firstBad;
  EXPECT_EQ(runOnGpuAndCompare(*Context, launchB, layers[1], 2, 25, firstBad), 0) << firstBad;
  layers[1].weights = revalued(layers[1].weights, random);
  generateRound();
  int reloaded = -1;
  ASSERT_EQ(convgen_model_reload(loaded, &reloaded), 0) << convgen_last_error();
  EXPECT_EQ(reloaded, 1);
  EXPECT_EQ(runOnGpuAndCompare(*Context, launchB, layers[1], 2, 26, firstBad), 0) << firstBad;
  EXPECT_EQ(convgen_model_launch(loaded, "nope", 0, 0, 1, 0), 2);
  EXPECT_THAT(convgen_last_error(), HasSubstr("the model has no such layer"));
  convgen_model_free(loaded);
}

// Compile once: a model generated for the device's arch (the double is an
// sm_90) loads every layer from its cubin, with no JIT compile; one for
// another major arch, or a --ptx-only draft, is JIT-compiled from its PTX,
// and the load says so once for the whole model.
TEST_F(HostDriverTest, ModelForTheDeviceArchLoadsWithZeroJitCompiles) {
  if (!findPtxas())
    GTEST_SKIP() << "needs ptxas (the CUDA toolkit) to make cubins";
  const std::vector<ConvLayer> layers = {layer("p", 0.8, 30), layer("q", 0.9, 31, 16),
                                         layer("r", 0.7, 32)};
  struct Case {
    std::string name;
    std::vector<std::string> arch;
    bool ptxOnly;
    long jitCompiles;
    std::string notice;
  };
  const std::vector<Case> cases = {
      {"sm90", {"sm_90"}, false, 0, ""},
      {"sm80and90", {"sm_80", "sm_90"}, false, 0, ""},
      {"sm80", {"sm_80"}, false, 3, "no cubin for sm_90 (it has sm_80)"},
      {"draft", {"sm_90"}, true, 3, "--ptx-only"},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    ModelGenerateOptions options;
    options.generate.outputDir = Dir / c.name;
    const ArchList archs = parseArchList(c.arch);
    options.generate.arch = archs.ptxArch;
    options.generate.binaryArchs = archs.cubinArchs;
    options.generate.runPtxas = !c.ptxOnly;
    options.modelManifest = Dir / c.name / "convgen-model.json";
    KernelGenerator generator(options.generate);
    for (const ConvLayer &convLayer : layers)
      Layers.generate(generator, convLayer); // registers the host code of each
    for (const LayerOutcome &outcome : generateModel(layers, options))
      ASSERT_EQ(outcome.error, "");

    const ConvgenHostCudaCounters before = hostDriverCounters();
    ModelRuntime model(*Context, options.modelManifest);
    const ConvgenHostCudaCounters after = hostDriverCounters();
    EXPECT_EQ(after.jitCompiles - before.jitCompiles, c.jitCompiles);
    EXPECT_EQ(after.cubinLoads - before.cubinLoads, 3 - c.jitCompiles);
    const ModelLoadReport &report = model.loadReport();
    EXPECT_EQ(long(report.jitCompiled.size()), c.jitCompiles);
    EXPECT_EQ(report.layers, 3u);
    EXPECT_GT(report.threads, 0u);
    if (c.notice.empty()) {
      EXPECT_EQ(report.notice(), "");
    } else {
      EXPECT_THAT(report.notice(), HasSubstr("3 of 3 layers were JIT-compiled"));
      EXPECT_THAT(report.notice(), HasSubstr(c.notice));
    }
    for (const ConvLayer &convLayer : layers)
      runAndCompare(model.layer(convLayer.name), convLayer);

    // Through the C API: the figures, and the notice once per model.
    ::testing::internal::CaptureStderr();
    convgen_model *loaded = nullptr;
    ASSERT_EQ(convgen_model_load(options.modelManifest.c_str(), 0, &loaded), 0) << convgen_last_error();
    const std::string said = ::testing::internal::GetCapturedStderr();
    double seconds = -1;
    int jitLayers = -1;
    ASSERT_EQ(convgen_model_load_info(loaded, &seconds, &jitLayers), 0);
    EXPECT_EQ(jitLayers, c.jitCompiles);
    EXPECT_GE(seconds, 0);
    size_t lines = 0;
    for (char ch : said)
      lines += ch == '\n';
    EXPECT_EQ(lines, c.notice.empty() ? 0u : 1u) << said;
    convgen_model_free(loaded);
  }
}

TEST_F(HostDriverTest, LaunchThatDisagreesWithTheGeneratorIsCaught) {
  ConvLayer convLayer = layer("disagrees", 0.8, 9);
  GeneratedLayer generated = generate(convLayer);
  // A manifest whose grid covers more threads per image than the kernel has.
  nlohmann::json manifest;
  std::ifstream(generated.manifestPath) >> manifest;
  manifest["launch"]["grid"]["x_threads_per_image_group"] =
      manifest["launch"]["grid"]["x_threads_per_image_group"].get<int64_t>() + 1000;
  std::ofstream(generated.manifestPath) << manifest.dump(2);
  LayerRuntime runtime(*Context, generated.manifestPath);
  std::string firstBad;
  EXPECT_NONFATAL_FAILURE(
      EXPECT_THROW(runOnGpuAndCompare(*Context, runtime, convLayer, 2, 17, firstBad), CudaError),
      "the generator says");
}

} // namespace
