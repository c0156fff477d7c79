// The code generator end to end on small layers: the multiply-adds in the
// code are exactly what the mask implies, the weight map is complete for every
// geometry, one template serves many layers, and a values-only change needs
// only new packed weights.
#include "codegen/LayerFiles.h"
#include "codegen/LayerGenerator.h"
#include "codegen/OperatorTemplate.h"
#include "codegen/PassPipeline.h"
#include "codegen/Ptxas.h"
#include "codegen/TemplateSpecializer.h"
#include "runtime/FatbinaryImage.h"
#include "support/TestFiles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <cctype>
#include <random>
#include <sstream>

using namespace convgen;
using namespace convgen::test;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

ConvLayer makeLayer(const std::string &name, ConvGeometry g, double sparsity, unsigned seed) {
  ConvLayer layer;
  layer.name = name;
  layer.geometry = g;
  layer.geometry.hasBias = true;
  layer.weights.resize(size_t(g.outChannels * g.inChannelsPerGroup() * g.kernel.h * g.kernel.w));
  std::mt19937 random(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f), coin(0.0f, 1.0f);
  for (float &w : layer.weights)
    w = coin(random) < sparsity ? 0.0f : value(random);
  layer.bias.assign(size_t(g.outChannels), 0.25f);
  return layer;
}

ConvGeometry geometry(int64_t c, int64_t k, int64_t h, int64_t w, HW kernel, HW stride = {1, 1},
                      HW padding = {1, 1}, HW dilation = {1, 1}, int64_t groups = 1) {
  ConvGeometry g;
  g.batch = 2;
  g.inChannels = c;
  g.outChannels = k;
  g.inSize = {h, w};
  g.kernel = kernel;
  g.stride = stride;
  g.padding = padding;
  g.dilation = dilation;
  g.groups = groups;
  g.activation = Activation::Relu6;
  return g;
}

/// Conditional branches in an IR text: the channel-block dispatch has one
/// per block; anything more is control flow the kernel should not have.
size_t conditionalBranches(const std::string &ir) {
  size_t branches = 0;
  for (size_t at = 0; (at = ir.find("br i1", at)) != std::string::npos; ++at)
    ++branches;
  return branches;
}

size_t countOf(const std::string &text, const std::string &what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++count;
  return count;
}

int64_t nonzeros(const ConvLayer &layer) {
  return std::count_if(layer.weights.begin(), layer.weights.end(), [](float w) { return w != 0; });
}

class LayerGeneratorTest : public ::testing::Test {
protected:
  GenerateOptions options(bool bake = false) {
    GenerateOptions o;
    o.outputDir = Dir.path();
    o.arch = parseArch("sm_80");
    o.bakeValues = bake;
    o.runPtxas = false; // the ptxas tests below turn it on
    return o;
  }
  std::string read(const std::string &name) {
    Bytes bytes = readFile(Dir / name);
    return std::string(bytes.begin(), bytes.end());
  }
  TempDir Dir;
};

} // namespace

TEST_F(LayerGeneratorTest, MultiplyAddsAreNonzerosTimesColumnsPerThread) {
  GenerateOptions o = options();
  o.tilingOverride = "bw=4"; // the heuristic picks bw=1 for so small a grid
  KernelGenerator generator(o);
  ConvGeometry g = geometry(6, 8, 9, 12, {3, 3});
  for (double sparsity : {0.0, 0.5, 0.9, 0.99}) {
    SCOPED_TRACE(sparsity);
    ConvLayer layer = makeLayer("conv", g, sparsity, 7);
    GeneratedLayer generated = generator.generate(layer);
    EXPECT_EQ(generated.tiling.outputsPerThread, 4);
    EXPECT_EQ(generated.multiplyAdds, nonzeros(layer) * 4);
    EXPECT_EQ(generated.denseMultiplyAdds, 8 * 6 * 3 * 3 * 4);
    auto manifest = nlohmann::json::parse(read("conv.json"));
    EXPECT_EQ(manifest["multiply_adds_in_code"], nonzeros(layer) * 4);
    EXPECT_EQ(manifest["nonzeros"], nonzeros(layer));
  }
}

TEST_F(LayerGeneratorTest, DenseLayerKeepsTheDenseCount) {
  KernelGenerator generator(options());
  ConvLayer layer = makeLayer("dense", geometry(4, 4, 8, 8, {3, 3}), 0.0, 1);
  ASSERT_EQ(nonzeros(layer), 4 * 4 * 9);
  GeneratedLayer generated = generator.generate(layer);
  EXPECT_EQ(generated.multiplyAdds, generated.denseMultiplyAdds);
}

TEST_F(LayerGeneratorTest, ZeroFilterAndAllZeroLayerLeaveOnlyTheEpilogue) {
  GenerateOptions o = options();
  o.tilingOverride = "bw=4"; // the case is about four columns per thread
  o.emit = {"ll"};
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("onezero", geometry(3, 4, 6, 6, {3, 3}), 0.0, 3);
  std::fill(layer.weights.begin() + 27, layer.weights.begin() + 54, 0.0f); // filter 1
  EXPECT_EQ(generator.generate(layer).multiplyAdds, (4 - 1) * 27 * 4);

  ConvLayer zero = makeLayer("allzero", geometry(3, 4, 6, 6, {3, 3}), 1.0, 3);
  GeneratedLayer generated = generator.generate(zero);
  EXPECT_EQ(generated.multiplyAdds, 0);
  std::string ir = read("allzero.ll");
  EXPECT_THAT(ir, Not(HasSubstr("call float @llvm.fma")));
  EXPECT_THAT(ir, Not(HasSubstr("ptr %0,")));        // no input address is formed
  EXPECT_THAT(ir, Not(HasSubstr("load float, ptr %0"))); // nor any input read
  EXPECT_THAT(ir, HasSubstr("store float")); // the epilogue: relu6(bias)
  EXPECT_EQ(readFile(Dir / "allzero.weights.bin").size(), 4u * 4); // bias only
}

TEST_F(LayerGeneratorTest, WeightMapIsCompleteForEveryGeometry) {
  llvm::LLVMContext context;
  TemplateSpecializer specializer(context, directConvTemplate());
  struct Case {
    const char *name;
    ConvGeometry g;
  } cases[] = {
      {"1x1", geometry(5, 3, 7, 5, {1, 1}, {1, 1}, {0, 0})},
      {"5x5 stride 2", geometry(3, 4, 11, 9, {5, 5}, {2, 2}, {2, 2})},
      {"3x3 dilation 2", geometry(2, 2, 9, 9, {3, 3}, {1, 1}, {2, 2}, {2, 2})},
      {"1x7", geometry(2, 4, 5, 13, {1, 7}, {1, 1}, {0, 3})},
      {"7x1 stride 3", geometry(2, 2, 13, 5, {7, 1}, {3, 1}, {3, 0})},
      {"groups 2", geometry(4, 6, 6, 6, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 2)},
      {"depthwise", geometry(5, 5, 7, 7, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 5)},
      {"odd sizes", geometry(3, 7, 5, 3, {3, 3})},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    Tiling tiling = chooseTiling(c.g);
    auto module = specializer.specialize(makeTemplateSpec(c.g, tiling), "k", c.name);
    WeightMapSummary summary = summarizeWeightMap(*module->getFunction("k"));
    int64_t positions = c.g.outChannels * c.g.inChannelsPerGroup() * c.g.kernel.h * c.g.kernel.w;
    EXPECT_EQ(summary.positions, positions);
    EXPECT_EQ(summary.multiplyAdds, positions * tiling.spatialPerThread());
    EXPECT_EQ(summary.nonConstantLoads, 0);
    EXPECT_EQ(summary.loadsWithOtherUses, 0);
  }
}

TEST_F(LayerGeneratorTest, OneTemplateServesShapesAndMasks) {
  unsigned parsesBefore = TemplateSpecializer::parseCount();
  KernelGenerator generator(options());
  ConvLayer a = makeLayer("a", geometry(4, 4, 8, 8, {3, 3}), 0.8, 1);
  ConvLayer b = makeLayer("b", geometry(4, 4, 8, 8, {3, 3}), 0.8, 2); // other mask
  ConvLayer c = makeLayer("c", geometry(3, 8, 5, 6, {1, 1}, {1, 1}, {0, 0}), 0.5, 3);
  ConvLayer d = makeLayer("d", geometry(3, 8, 5, 6, {1, 1}, {1, 1}, {0, 0}), 0.5, 4);
  for (const ConvLayer *layer : {&a, &b, &c, &d})
    generator.generate(*layer);
  EXPECT_EQ(TemplateSpecializer::parseCount(), parsesBefore + 1);
  auto ptxWithoutNames = [this](const std::string &name) {
    std::string ptx = read(name + ".ptx");
    for (size_t at; (at = ptx.find("convgen_" + name)) != std::string::npos;)
      ptx.replace(at, 8 + name.size(), "KERNEL");
    return ptx;
  };
  EXPECT_NE(ptxWithoutNames("a"), ptxWithoutNames("b")); // the code follows the mask
  EXPECT_NE(ptxWithoutNames("c"), ptxWithoutNames("d"));
}

TEST_F(LayerGeneratorTest, ValuesOnlyChangeNeedsOnlyNewPackedWeights) {
  KernelGenerator generator(options());
  ConvLayer before = makeLayer("round", geometry(4, 4, 8, 8, {3, 3}), 0.7, 5);
  generator.generate(before);
  std::string ptx = read("round.ptx");
  Bytes weights = readFile(Dir / "round.weights.bin");
  auto manifest = nlohmann::json::parse(read("round.json"));

  ConvLayer after = before; // same mask, fine-tuned values
  for (float &w : after.weights)
    w = w != 0.0f ? w * 1.5f + 0.125f : 0.0f;
  generator.generate(after);
  EXPECT_EQ(read("round.ptx"), ptx);
  EXPECT_NE(readFile(Dir / "round.weights.bin"), weights);
  auto updated = nlohmann::json::parse(read("round.json"));
  EXPECT_EQ(updated["mask_hash"], manifest["mask_hash"]);
  EXPECT_NE(updated["values_hash"], manifest["values_hash"]);
}

TEST_F(LayerGeneratorTest, PackedWeightsAreTheNonzerosInCodeOrderThenTheBias) {
  KernelGenerator generator(options());
  ConvLayer layer = makeLayer("packed", geometry(2, 4, 6, 6, {3, 3}), 0.6, 9);
  generator.generate(layer);
  Bytes bytes = readFile(Dir / "packed.weights.bin");
  ASSERT_EQ(bytes.size(), size_t(nonzeros(layer) + 4) * 4);
  std::vector<float> packed(bytes.size() / 4);
  std::memcpy(packed.data(), bytes.data(), bytes.size());
  std::vector<float> expected, got(packed.begin(), packed.end() - 4);
  for (float w : layer.weights)
    if (w != 0.0f)
      expected.push_back(w);
  // Code order may differ from OIHW order, but the multiset is the nonzeros.
  std::sort(expected.begin(), expected.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);
  EXPECT_EQ(std::vector<float>(packed.end() - 4, packed.end()), layer.bias);
  auto manifest = nlohmann::json::parse(read("packed.json"));
  EXPECT_EQ(manifest["weights"]["path"], "constant");
  EXPECT_EQ(manifest["kernels"][0]["weights"]["symbol"], "convgen_weights");
  EXPECT_THAT(read("packed.ptx"), HasSubstr(".const .align 4 .b8 convgen_weights["));
  EXPECT_THAT(read("packed.ptx"), HasSubstr("ld.const.f32"));
}

TEST_F(LayerGeneratorTest, BakedValuesAreImmediates) {
  KernelGenerator generator(options(/*bake=*/true));
  ConvLayer layer = makeLayer("baked", geometry(2, 4, 6, 6, {3, 3}), 0.6, 9);
  GeneratedLayer generated = generator.generate(layer);
  EXPECT_EQ(generated.weightPath, "baked");
  std::string ptx = read("baked.ptx");
  EXPECT_THAT(ptx, Not(HasSubstr("convgen_weights")));
  EXPECT_THAT(ptx, Not(HasSubstr("ld.const")));
  EXPECT_THAT(ptx, HasSubstr("fma.rn.f32"));
  EXPECT_THAT(ptx, HasSubstr("0f")); // hex float immediates
  EXPECT_EQ(readFile(Dir / "baked.weights.bin").size(), 4u * 4); // bias only
  EXPECT_EQ(generated.multiplyAdds, nonzeros(layer) * generated.tiling.outputsPerThread);
}

TEST_F(LayerGeneratorTest, WeightsOverTheBankLimitUseTheGlobalReadOnlyPath) {
  GenerateOptions o = options();
  o.constantBankLimitBytes = 64; // 16 floats, so this layer's weights do not fit
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("wide", geometry(4, 4, 4, 4, {3, 3}), 0.5, 1);
  ASSERT_GT(nonzeros(layer) * 4, 64);
  GeneratedLayer generated = generator.generate(layer);
  EXPECT_EQ(generated.weightPath, "global");
  std::string ptx = read("wide.ptx");
  EXPECT_THAT(ptx, HasSubstr("ld.global.nc.f32"));
  EXPECT_THAT(ptx, Not(HasSubstr("convgen_weights")));
}

TEST_F(LayerGeneratorTest, DefaultOptionsTargetTheDefaultArch) {
  // Default-constructed options once named no arch at all, and ptxas then
  // refused every layer ("Value '' is not defined for option 'gpu-name'").
  GenerateOptions o;
  o.outputDir = Dir.path();
  o.runPtxas = false;
  KernelGenerator generator(o);
  generator.generate(makeLayer("plain", geometry(4, 4, 6, 6, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1), 0.5, 3));
  EXPECT_EQ(o.arch.name, std::string(DefaultArch));
  EXPECT_THAT(read("plain.ptx"), HasSubstr(".target " + std::string(DefaultArch)));
  EXPECT_EQ(nlohmann::json::parse(read("plain.json"))["arch"], DefaultArch);
}

TEST_F(LayerGeneratorTest, PackedIndicesRebuildTheNextRoundsArray) {
  // What the cache relies on: a round with new values on the same mask has
  // the same code, and its packed array is the new weights at the old indices.
  ConvLayer first = makeLayer("round", geometry(6, 8, 7, 7, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1), 0.8, 5);
  for (bool global : {false, true}) {
    GenerateOptions o = options();
    if (global)
      o.constantBankLimitBytes = 0;
    KernelGenerator generator(o);
    CompiledLayer before = generator.compile(first);
    ConvLayer next = first;
    for (float &w : next.weights)
      if (w != 0)
        w = w * 1.5f + 0.25f;
    CompiledLayer after = generator.compile(next);
    ASSERT_EQ(after.modules.size(), 1u);
    EXPECT_EQ(after.modules[0].ptx, before.modules[0].ptx);
    EXPECT_EQ(after.arrayIndices, before.arrayIndices);
    EXPECT_EQ(gatherPackedValues(next.weights, before.arrayIndices, false, "round"), after.arrayValues);
    ConvLayer repruned = next;
    *std::find_if(repruned.weights.begin(), repruned.weights.end(), [](float w) { return w != 0; }) = 0;
    EXPECT_THROW(gatherPackedValues(repruned.weights, before.arrayIndices, false, "round"), CheckFailure);
  }
}

TEST_F(LayerGeneratorTest, FoldedSpecialisationConstantsLeaveNoGlobal) {
  // The geometry is folded into the code; its global once stayed in the PTX.
  ConvLayer convLayer = makeLayer("folded", geometry(4, 4, 6, 6, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1), 0.5, 4);
  for (int64_t budget : {int64_t{65536}, int64_t{0}}) { // sparse, then the dense fallback
    GenerateOptions o = options();
    o.maxMultiplyAdds = budget;
    KernelGenerator generator(o);
    EXPECT_EQ(generator.generate(convLayer).mode, budget ? "sparse" : "dense");
    EXPECT_THAT(read("folded.ptx"), Not(HasSubstr("convgen_spec")));
  }
}

// The code shape is measured, not estimated: ptxas's cubin gives each
// kernel's machine instructions, and the manifest their ratio to the fma.
TEST_F(LayerGeneratorTest, MachineInstructionsPerFmaComeFromTheCubin) {
  if (!findPtxas())
    GTEST_SKIP() << "ptxas not found (CUDA toolkit not at /usr/local/cuda or $CUDA_HOME)";
  GenerateOptions o = options();
  o.runPtxas = true;
  o.maxMultiplyAdds = 400; // two kernels, each measured
  o.tilingOverride = "bk=4";
  KernelGenerator generator(o);
  GeneratedLayer generated = generator.generate(makeLayer("sass", geometry(8, 8, 8, 8, {3, 3}), 0.5, 3));
  ASSERT_TRUE(generated.ptxas);
  ASSERT_GT(generated.kernels.size(), 1u);
  auto manifest = nlohmann::json::parse(read("sass.json"));
  int64_t sum = 0;
  for (const auto &kernel : manifest["kernels"]) {
    const int64_t instructions = kernel["ptxas"]["sass_instructions"];
    EXPECT_GT(instructions, kernel["multiply_adds"].get<int64_t>()) << "every fma is one";
    EXPECT_NEAR(kernel["ptxas"]["sass_per_fma"].get<double>(),
                double(instructions) / kernel["multiply_adds"].get<double>(), 1e-3);
    sum += instructions;
  }
  EXPECT_EQ(manifest["ptxas"]["sass_instructions"], sum);
  EXPECT_EQ(generated.ptxas->instructions, sum);
  EXPECT_NEAR(manifest["ptxas"]["sass_per_fma"].get<double>(),
              double(sum) / double(generated.multiplyAdds), 1e-3);
}

TEST_F(LayerGeneratorTest, PtxasAcceptsEveryPathAndArch) {
  if (!findPtxas())
    GTEST_SKIP() << "ptxas not found (CUDA toolkit not at /usr/local/cuda or $CUDA_HOME)";
  for (const char *arch : {"sm_80", "sm_90"})
    for (bool bake : {false, true}) {
      SCOPED_TRACE(std::string(arch) + (bake ? " baked" : " packed"));
      GenerateOptions o = options(bake);
      o.arch = parseArch(arch);
      o.runPtxas = true;
      KernelGenerator generator(o);
      GeneratedLayer generated =
          generator.generate(makeLayer("dw", geometry(6, 6, 9, 9, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 6), 0.5, 2));
      ASSERT_TRUE(generated.ptxas);
      EXPECT_GT(generated.ptxas->registers, 0);
      EXPECT_EQ(nlohmann::json::parse(read("dw.json"))["ptxas"]["registers"],
                generated.ptxas->registers);
    }
}

// ptxas's cubins are kept, not thrown away: NAME.fatbin holds one per
// --arch, built from the PTX of the lowest, and the PTX itself.
TEST_F(LayerGeneratorTest, TheFatbinaryKeepsACubinPerArchAndThePtx) {
  if (!findPtxas())
    GTEST_SKIP() << "ptxas not found (CUDA toolkit not at /usr/local/cuda or $CUDA_HOME)";
  GenerateOptions o = options();
  const ArchList archs = parseArchList({"sm_90", "sm_80", "sm_90"});
  o.arch = archs.ptxArch;
  o.binaryArchs = archs.cubinArchs;
  o.runPtxas = true;
  KernelGenerator generator(o);
  GeneratedLayer generated = generator.generate(makeLayer("fat", geometry(8, 8, 8, 8, {3, 3}), 0.7, 5));
  ASSERT_EQ(generated.cubins.size(), 2u);
  EXPECT_EQ(generated.cubins[0].arch, "sm_80"); // the PTX's own arch first: the manifest's ptxas figures
  EXPECT_EQ(generated.cubins[1].arch, "sm_90");
  EXPECT_EQ(generated.ptxas->instructions, generated.cubins[0].instructions);

  const std::string fatbin = read("fat.fatbin");
  EXPECT_EQ(fatbin.size(), generated.fatbinBytes);
  std::vector<FatbinaryImage> images = readFatbinary(fatbin, "fat.fatbin");
  ASSERT_EQ(images.size(), 3u);
  EXPECT_EQ(cubinForDevice(images, 80)->sm, 80);
  EXPECT_EQ(cubinForDevice(images, 90)->sm, 90);
  ASSERT_NE(ptxImage(images), nullptr);
  EXPECT_EQ(ptxImage(images)->sm, 80);
  EXPECT_THAT(std::string(ptxImage(images)->payload), HasSubstr(".entry convgen_fat"));

  auto manifest = nlohmann::json::parse(read("fat.json"));
  EXPECT_EQ(manifest["fatbin"], "fat.fatbin");
  ASSERT_EQ(manifest["images"].size(), 3u);
  EXPECT_EQ(manifest["images"][1]["arch"], "sm_90");
  EXPECT_EQ(manifest["images"][1]["sass_instructions"], generated.cubins[1].instructions);
  EXPECT_EQ(manifest["images"][2]["kind"], "ptx");

  // --ptx-only: no ptxas, no fatbinary (the earlier one is removed), and
  // the manifest says so.
  o.runPtxas = false;
  KernelGenerator draft(o);
  generated = draft.generate(makeLayer("fat", geometry(8, 8, 8, 8, {3, 3}), 0.7, 5));
  EXPECT_TRUE(generated.cubins.empty());
  EXPECT_FALSE(std::filesystem::exists(Dir / "fat.fatbin"));
  manifest = nlohmann::json::parse(read("fat.json"));
  EXPECT_EQ(manifest["ptxas"], "not run");
  EXPECT_TRUE(manifest["fatbin"].is_null());
  ASSERT_EQ(manifest["images"].size(), 1u);
  EXPECT_EQ(manifest["images"][0]["kind"], "ptx");
}

// Past one module's constant bank, each kernel is a module of its own, with
// a bank of its own, so its weights stay fma operands (not ld.global.nc).
TEST_F(LayerGeneratorTest, PastOneBankEachKernelIsAModuleWithABankOfItsOwn) {
  GenerateOptions o = options();
  o.tilingOverride = "bk=1";           // 16 channel blocks of 36 nonzeros
  o.constantBankLimitBytes = 100 * 4; // a 100-float bank: 2 blocks per kernel
  ConvLayer convLayer = makeLayer("banks", geometry(8, 16, 6, 6, {3, 3}), 0.5, 7);
  ASSERT_GT(nonzeros(convLayer), 100);
  GeneratedLayer generated = KernelGenerator(o).generate(convLayer);
  EXPECT_EQ(generated.weightPath, "constant");
  ASSERT_GT(generated.kernels.size(), 1u);
  ASSERT_EQ(generated.modules.size(), generated.kernels.size());
  EXPECT_FALSE(std::filesystem::exists(Dir / "banks.ptx"));
  auto manifest = nlohmann::json::parse(read("banks.json"));
  EXPECT_TRUE(manifest["ptx"].is_null());
  ASSERT_EQ(manifest["modules"].size(), generated.kernels.size());
  EXPECT_THAT(manifest["tiling"]["reasons"].back().get<std::string>(),
              HasSubstr("a module per kernel"));
  for (size_t i = 0; i < generated.kernels.size(); ++i) {
    const LayerKernel &kernel = generated.kernels[i];
    SCOPED_TRACE(kernel.symbol);
    EXPECT_EQ(kernel.module, i);
    EXPECT_LE(kernel.weightsCount, 100);
    const std::string ptx = read("banks.m" + std::to_string(i) + ".ptx");
    EXPECT_EQ(countOf(ptx, ".entry "), 1u);
    EXPECT_THAT(ptx, HasSubstr(".entry " + kernel.symbol + "("));
    EXPECT_THAT(ptx, HasSubstr(".const .align 4 .b8 " + kernel.weightsSymbol + "[" +
                                   std::to_string(kernel.weightsCount * 4) + "]"));
    EXPECT_EQ(countOf(ptx, ".const .align"), 1u) << "only its own bank";
    EXPECT_EQ(manifest["modules"][i]["ptx"], "banks.m" + std::to_string(i) + ".ptx");
    EXPECT_EQ(manifest["modules"][i]["kernels"], nlohmann::json::array({kernel.symbol}));
    EXPECT_EQ(manifest["kernels"][i]["module"], i);
  }
  if (findPtxas()) {
    o.runPtxas = true;
    generated = KernelGenerator(o).generate(convLayer);
    ASSERT_TRUE(generated.ptxas);
    EXPECT_LE(generated.ptxas->constantBytes, 400) << "each module's bank within the limit";
    EXPECT_TRUE(std::filesystem::exists(Dir / "banks.m1.fatbin"));
  }
  // A round whose nonzeros fit one bank is one module again; the module
  // files of the earlier round go.
  o.constantBankLimitBytes = 64 * 1024;
  generated = KernelGenerator(o).generate(convLayer);
  EXPECT_EQ(generated.modules.size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(Dir / "banks.ptx"));
  EXPECT_FALSE(std::filesystem::exists(Dir / "banks.m0.ptx"));
  EXPECT_FALSE(std::filesystem::exists(Dir / "banks.m1.ptx"));
  EXPECT_FALSE(std::filesystem::exists(Dir / "banks.m1.fatbin"));
}

// A 1x1 layer past one bank takes the 1x1 tile (one output, a wide channel
// block: a second output would share no weight load) where a bank per
// kernel makes its weights operands; where it cannot, the general tile.
TEST_F(LayerGeneratorTest, APointwiseLayerPastOneBankKeepsThePointwiseTileWithABankPerKernel) {
  GenerateOptions o = options();
  o.constantBankLimitBytes = 400 * 4; // 4 channel blocks of 64 filters, about 300 nonzeros each
  ConvLayer convLayer = makeLayer("pw", geometry(16, 256, 8, 8, {1, 1}), 0.7, 9);
  ASSERT_GT(nonzeros(convLayer), 400);
  TilingDecision decision = decideTiling(convLayer, o);
  EXPECT_EQ(decision.tiling.outputsPerThread, 1);
  GeneratedLayer generated = KernelGenerator(o).generate(convLayer);
  EXPECT_EQ(generated.weightPath, "constant");
  EXPECT_GT(generated.modules.size(), 1u);

  o.maxKernelsPerLayer = 1; // no bank per kernel: the weights are loads
  decision = decideTiling(convLayer, o);
  EXPECT_EQ(decision.tiling.outputsPerThread, 2);
  generated = KernelGenerator(o).generate(convLayer);
  EXPECT_EQ(generated.weightPath, "global");
  EXPECT_EQ(generated.modules.size(), 1u);
}

TEST_F(LayerGeneratorTest, PastTheKernelLimitTheLayerFallsBackToDense) {
  GenerateOptions o = options();
  o.tilingOverride = "bk=4,bw=4"; // four channel blocks of four columns per thread
  o.maxMultiplyAdds = 400; // one channel block: about 4 x 4 x 9 / 2 nonzeros x BW 4 = 288
  o.maxKernelsPerLayer = 1;
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("big", geometry(4, 8, 8, 8, {3, 3}), 0.5, 4);
  ASSERT_GT(nonzeros(layer) * 4, 400);
  GeneratedLayer generated = generator.generate(layer);
  EXPECT_EQ(generated.mode, "dense");
  EXPECT_EQ(generated.weightPath, "global");
  auto manifest = nlohmann::json::parse(read("big.json"));
  EXPECT_EQ(manifest["mode"], "dense");
  EXPECT_EQ(manifest["code_budget"]["multiply_adds_per_kernel"], 400);
  EXPECT_EQ(manifest["kernels"].size(), 1u);
  EXPECT_EQ(manifest["weights"]["count"], layer.weights.size());
  // The whole OIHW tensor, then the bias.
  EXPECT_EQ(readFile(Dir / "big.weights.bin").size(), (layer.weights.size() + 8) * 4);
  // Dense code computes every position, zeros included (LLVM may still unroll
  // a reduction this small).
  EXPECT_EQ(generated.multiplyAdds, 8 * 4 * 9 * 4);

  EXPECT_THAT(manifest["dense_reason"].get<std::string>(),
              HasSubstr("need 2 kernels of at most 400 each, over the limit of 1 per layer"));

  GeneratedLayer small = generator.generate(makeLayer("small", geometry(1, 4, 4, 4, {1, 1}, {1, 1}, {0, 0}), 0.0, 1));
  EXPECT_EQ(small.mode, "sparse"); // 4 x 4 = 16 multiply-adds fit
  EXPECT_EQ(small.denseReason, "");
}

// Past the per-kernel budget a layer is split by channel blocks: every
// kernel within the budget, together exactly the layer's multiply-adds, the
// channel blocks covered once, in order, and one PTX module holding them all.
TEST_F(LayerGeneratorTest, PastTheCodeBudgetTheLayerIsSplitAcrossKernels) {
  GenerateOptions o = options();
  o.tilingOverride = "bk=4,bw=4"; // four channel blocks of four columns per thread
  o.maxMultiplyAdds = 400;
  o.maxKernelsPerLayer = 16;
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("split", geometry(4, 16, 8, 8, {3, 3}), 0.5, 4);
  GeneratedLayer generated = generator.generate(layer);
  ASSERT_EQ(generated.mode, "sparse");
  ASSERT_GT(generated.kernels.size(), 1u);
  EXPECT_EQ(generated.multiplyAdds, nonzeros(layer) * 4);
  int64_t nextBlock = 0, sum = 0, nextWeight = 0;
  for (size_t i = 0; i < generated.kernels.size(); ++i) {
    const LayerKernel &kernel = generated.kernels[i];
    EXPECT_EQ(kernel.symbol, "convgen_split_k" + std::to_string(i));
    EXPECT_EQ(kernel.channelBlocks.first, nextBlock);
    EXPECT_LE(kernel.multiplyAdds, 400);
    EXPECT_EQ(kernel.weightsOffset, nextWeight);
    EXPECT_EQ(kernel.weightsSymbol, "convgen_weights_k" + std::to_string(i));
    nextBlock += kernel.channelBlocks.count;
    nextWeight += kernel.weightsCount;
    sum += kernel.multiplyAdds;
    EXPECT_THAT(read("split.ptx"), HasSubstr(".visible .entry " + kernel.symbol + "("));
  }
  EXPECT_EQ(nextBlock, 16 / 4);
  EXPECT_EQ(sum, generated.multiplyAdds);
  EXPECT_EQ(nextWeight, nonzeros(layer));
  auto manifest = nlohmann::json::parse(read("split.json"));
  ASSERT_EQ(manifest["kernels"].size(), generated.kernels.size());
  EXPECT_EQ(manifest["kernels"][1]["grid_y"], generated.kernels[1].channelBlocks.count);
  EXPECT_EQ(manifest["kernels"][1]["weights"]["offset_bytes"], generated.kernels[1].weightsOffset * 4);
}

// Few nonzeros but a huge dense template: specialisation copies only the
// nonzeros' work, so the layer is one sparse kernel, and its code holds the
// nonzeros' multiply-adds alone.
TEST_F(LayerGeneratorTest, HugeTemplateWithFewNonzerosIsOneSparseKernel) {
  GenerateOptions o = options();
  o.tilingOverride = "bk=4,bw=4,skip=0"; // the whole template, four columns per thread
  KernelGenerator generator(o);
  const ConvLayer layer = makeLayer("sparse", geometry(64, 64, 8, 8, {3, 3}), 0.99, 6);
  GeneratedLayer generated = generator.generate(layer);
  EXPECT_EQ(generated.mode, "sparse");
  EXPECT_EQ(generated.kernels.size(), 1u);
  EXPECT_EQ(generated.multiplyAdds, nonzeros(layer) * 4);
}

// The yardstick: a 512->512 3x3 layer at 50 % must still produce a
// working kernel (1.2 M nonzeros would be ~4.7 M multiply-adds of sparse code).
TEST_F(LayerGeneratorTest, Large512x512LayerAtHalfSparsityProducesAKernel) {
  GenerateOptions o = options();
  o.runPtxas = true;
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("wide", geometry(512, 512, 14, 14, {3, 3}), 0.5, 8);
  GeneratedLayer generated = generator.generate(layer);
  EXPECT_EQ(generated.mode, "dense");
  EXPECT_LT(generated.ptxBytes, 1u << 20);
  if (findPtxas()) {
    EXPECT_TRUE(generated.ptxas.has_value()); // ptxas accepted it (a rejection throws)
  }
}

TEST(LayerGeneratorNames, OutputsStayInsideTheOutputDirectory) {
  EXPECT_EQ(outputStemFor("layer1.0.conv1"), "layer1.0.conv1");
  EXPECT_EQ(outputStemFor("../../etc/x"), "_.._.._etc_x");
  EXPECT_EQ(outputStemFor(".hidden"), "_.hidden");
  EXPECT_EQ(kernelSymbolFor("layer1.0.conv1"), "convgen_layer1_0_conv1");
}

// Found while generating the example: clang emits ?: as branches, and when
// instcombine ran before simplifycfg it sank each padded input load into its
// branch, leaving ~1900 branches in a 3x3 kernel (and minutes of known-bits
// queries in the cleanup). This fails with that pass order. The specialised
// code must branch only to pick the channel block and to skip threads past
// the end.
TEST_F(LayerGeneratorTest, PaddedKernelIsBranchFreeApartFromDispatch) {
  GenerateOptions o = options();
  o.emit = {"ll"};
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("padded", geometry(4, 8, 8, 8, {3, 3}), 0.5, 11);
  GeneratedLayer generated = generator.generate(layer);
  ASSERT_EQ(generated.tiling.channelsPerThread, 8);
  EXPECT_LE(conditionalBranches(read("padded.ll")), 1u + 2)
      << "conditional branches in the specialised kernel";
}

// Padding costs no instruction per load: out of the image a window
// position's base is the zero page, so no load is followed by a select of
// its value, and the pointer selects are one per window position (3 rows x
// (2 + 2) columns at bw=2), whatever the channels and channel blocks.
TEST_F(LayerGeneratorTest, PaddingReadsTheZeroPageWithoutASelectPerLoad) {
  GenerateOptions o = options();
  o.tilingOverride = "bk=4,bw=2"; // two channel blocks, each with the same bases
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("zp", geometry(6, 8, 9, 9, {3, 3}), 0.3, 13);
  layer.geometry.activation = Activation::None; // ReLU6 would bring selp.f32 of its own
  generator.generate(layer);
  const std::string ptx = read("zp.ptx");
  EXPECT_THAT(ptx, HasSubstr(".global .align 16 .b8 convgen_zero_page[" +
                             std::to_string(6 * 9 * 9 * 4) + "]"));
  EXPECT_EQ(countOf(ptx, "selp.f32"), 0u) << "a select per padded load";
  EXPECT_LE(countOf(ptx, "selp.b64"), 2u * 12u) << "one base per window position and section";
  EXPECT_GT(countOf(ptx, "ld.global.nc.f32"), 0u);
  // Without padding there is nothing to select and no zero page.
  ConvLayer pointwise = makeLayer("pw", geometry(6, 8, 9, 9, {1, 1}, {1, 1}, {0, 0}), 0.3, 14);
  generator.generate(pointwise);
  EXPECT_THAT(read("pw.ptx"), Not(HasSubstr("convgen_zero_page")));
  EXPECT_EQ(countOf(read("pw.ptx"), "selp.b64"), 0u);
}

// One load per input position a channel block's nonzeros read: the input
// value at (c, row r, column v) is loaded once and feeds every nonzero of
// the block's filters that reads it, from either output column.
TEST_F(LayerGeneratorTest, InputLoadsAreSharedByTheirColumnsNonzeros) {
  GenerateOptions o = options();
  o.tilingOverride = "bk=4,bw=2,weights=constant";
  KernelGenerator generator(o);
  const ConvGeometry g = geometry(5, 8, 7, 8, {3, 3});
  ConvLayer layer = makeLayer("shared", g, 0.7, 15);
  generator.generate(layer);
  size_t expected = 0;
  for (int64_t block = 0; block < 2; ++block)
    for (int64_t c = 0; c < 5; ++c)
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t v = 0; v < 4; ++v) { // window column: s + j for s < 3, j < 2
          bool read = false;
          for (int64_t kk = 0; kk < 4; ++kk)
            for (int64_t j = 0; j < 2; ++j) {
              const int64_t s = v - j;
              if (s >= 0 && s < 3)
                read = read || layer.weights[size_t((((block * 4 + kk) * 5 + c) * 3 + r) * 3 + s)] != 0;
            }
          expected += read;
        }
  expected += layer.bias.size(); // the bias, read once per channel
  EXPECT_EQ(countOf(read("shared.ptx"), "ld.global.nc.f32"), expected);
}

// Where BW does not divide the output width the last tile of each row moves
// left instead of guarding its stores: guarded stores let InstCombine sink
// whole multiply-add chains into the guards, which kept every weight live
// (255 registers and 600 KB of spills on ResNet-50's 14-wide layers).
TEST_F(LayerGeneratorTest, OverhangingWidthIsBranchFreeToo) {
  GenerateOptions o = options();
  o.tilingOverride = "bw=4"; // the case is about four columns per thread
  o.emit = {"ll"};
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("overhang", geometry(4, 8, 8, 10, {3, 3}), 0.5, 12);
  GeneratedLayer generated = generator.generate(layer);
  ASSERT_EQ(generated.tiling.outputsPerThread, 4);
  ASSERT_NE(10 % 4, 0);
  EXPECT_LE(conditionalBranches(read("overhang.ll")), 8u / 4 + 2)
      << "conditional branches in the specialised kernel";
}

// fp16 activations: the input is read as 16-bit halves and widened, the
// output rounded once to half and stored as 16 bits; the weights stay fp32.
// ptxas must accept it.
TEST_F(LayerGeneratorTest, HalfPrecisionReadsAndWritesHalves) {
  GenerateOptions o = options();
  o.dtype = DType::F16;
  o.runPtxas = true;
  o.tilingOverride = "bk=4,bw=1";
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("half", geometry(4, 8, 8, 8, {3, 3}), 0.5, 13);
  GeneratedLayer generated = generator.generate(layer);
  EXPECT_EQ(generated.dtype, DType::F16);
  // (The PTX is long: count, rather than print it on a failure.)
  const std::string ptx = read("half.ptx");
  auto count = [&ptx](const std::string &what) {
    size_t n = 0;
    for (size_t at = 0; (at = ptx.find(what, at)) != std::string::npos; ++at)
      ++n;
    return n;
  };
  EXPECT_GT(count("ld.global.nc.u16"), 0u) << "inputs read as 16 bits";
  EXPECT_EQ(count("ld.global.nc.u16"), count("cvt.f32.f16")) << "each widened";
  EXPECT_EQ(count("st.global.b16"), 8u) << "BK=4 channels x 2 channel blocks, one output each";
  EXPECT_EQ(count("cvt.rn.f16.f32"), count("st.global.b16")) << "each rounded once";
  EXPECT_EQ(count("st.global.f32"), 0u) << "no output written as fp32";
  EXPECT_EQ(count("ld.global.nc.f32"), 8u) << "the fp32 bias, and nothing else";
  auto manifest = nlohmann::json::parse(read("half.json"));
  EXPECT_EQ(manifest["dtype"], "f16");
  EXPECT_EQ(manifest["launch"]["element_bytes"], 2);
  if (findPtxas()) {
    EXPECT_TRUE(generated.ptxas.has_value());
  }
}

/// Calls to the barrier intrinsic in an IR text.
static size_t barriers(const std::string &ir) {
  size_t count = 0;
  for (size_t at = 0; (at = ir.find("call void @llvm.nvvm.bar.sync(i32 0)", at)) != std::string::npos;
       ++at)
    ++count;
  return count;
}

// Staging: each input channel a channel block reads is copied to shared
// memory between two barriers; the channels none of its filters touch are
// neither staged nor loaded. Here every filter of the one channel block
// reads input channels 0 and 2 only.
TEST_F(LayerGeneratorTest, StagedInputsSkipTheChannelsNoFilterReads) {
  GenerateOptions o = options();
  o.emit = {"ll"};
  o.runPtxas = true;
  o.tilingOverride = "bk=4,bw=2,stage=1,threads=64";
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("staged", geometry(4, 4, 8, 8, {3, 3}), 0.0, 14);
  for (int64_t k = 0; k < 4; ++k)
    for (int64_t c : {1, 3})
      std::fill_n(layer.weights.begin() + (k * 4 + c) * 9, 9, 0.0f);
  GeneratedLayer generated = generator.generate(layer);
  ASSERT_TRUE(generated.tiling.stageInput);
  std::string ir = read("staged.ll");
  EXPECT_EQ(barriers(ir), 2u * 2) << "two barriers per staged channel, two channels";
  EXPECT_THAT(ir, HasSubstr("addrspace(3)"));
  // The shared array is fitted to what this tiling stages: 17 staged row
  // tiles (64 threads over 4 column tiles a row, at most) x 3 rows x 8
  // floats, not the template's 48 KiB.
  EXPECT_EQ(stagedFloats(layer.geometry, generated.tiling), 17 * 3 * 8);
  EXPECT_THAT(read("staged.ptx"), HasSubstr("[1632];"));
  EXPECT_EQ(generated.ptxas->sharedBytes, 1632);
  EXPECT_THAT(read("staged.ptx"), HasSubstr("bar.sync"));

  // Without the skip, all four channels are staged (and their stores to
  // shared memory survive: only the compute of the zero weights is gone).
  o.tilingOverride += ",skip=0";
  KernelGenerator unskipped(o);
  unskipped.generate(layer);
  EXPECT_EQ(barriers(read("staged.ll")), 2u * 4);
}

// The unroll leaves out every zero weight's work as it copies, with or
// without the channel table (skip=1 also leaves unread input channels out of
// the dispatch): the weight map of the unrolled code holds the nonzeros and
// nothing else, and the code exactly their multiply-adds.
TEST_F(LayerGeneratorTest, UnrollCopiesOnlyTheNonzeros) {
  ConvLayer layer = makeLayer("skip", geometry(8, 8, 6, 6, {1, 1}, {1, 1}, {0, 0}), 0.9, 15);
  auto positionsIn = [&](const std::string &tiling) {
    GenerateOptions o = options();
    o.emit = {"weightmap"};
    o.tilingOverride = tiling;
    KernelGenerator generator(o);
    GeneratedLayer generated = generator.generate(layer);
    std::string map = read("skip.weightmap.txt");
    size_t at = map.find("], ") + 3;
    return std::make_pair(std::stoll(map.substr(at)), generated.multiplyAdds);
  };
  auto [skipped, skippedCode] = positionsIn("bk=4,bw=1,skip=1");
  auto [all, allCode] = positionsIn("bk=4,bw=1,skip=0");
  EXPECT_EQ(skipped, nonzeros(layer));
  EXPECT_EQ(all, nonzeros(layer));
  EXPECT_EQ(skippedCode, allCode);
  EXPECT_EQ(skippedCode, nonzeros(layer));
}

// The heuristic's choice and its reasons are in the manifest; --tiling
// overrides it, and a tiling the layer cannot take names the layer.
TEST_F(LayerGeneratorTest, ManifestRecordsTheTilingAndWhy) {
  GenerateOptions o = options();
  o.batch = 64;
  KernelGenerator generator(o);
  ConvLayer layer = makeLayer("tiled", geometry(8, 16, 14, 14, {3, 3}), 0.9, 16);
  generator.generate(layer);
  auto manifest = nlohmann::json::parse(read("tiled.json"));
  EXPECT_EQ(manifest["tiling"]["source"], "heuristic");
  EXPECT_EQ(manifest["tiling"]["spec"].get<std::string>(),
            decideTiling(layer, o).tiling.describe());
  EXPECT_GE(manifest["tiling"]["reasons"].size(), 3u);
  EXPECT_EQ(manifest["launch"]["block"][0], manifest["tiling"]["threads_x"]);

  o.tilingOverride = "bk=2,bw=1,bh=2,bn=2,threads=32,cta-blocks=4";
  KernelGenerator user(o);
  GeneratedLayer generated = user.generate(layer);
  manifest = nlohmann::json::parse(read("tiled.json"));
  EXPECT_EQ(manifest["tiling"]["source"], "user");
  EXPECT_EQ(manifest["launch"]["block"], nlohmann::json({32, 4, 1}));
  EXPECT_EQ(manifest["launch"]["grid"]["images_per_thread"], 2);
  EXPECT_EQ(manifest["kernels"][0]["grid_y"], 2) << "8 channel blocks, 4 per block";
  EXPECT_EQ(generated.multiplyAdds, nonzeros(layer) * 4);

  o.tilingOverride = "dense=1"; // what a tuner picks where the sparse code loses
  KernelGenerator dense(o);
  GeneratedLayer denseLayer = dense.generate(layer);
  EXPECT_EQ(denseLayer.mode, "dense");
  EXPECT_EQ(denseLayer.denseReason, "the tiling asks for the dense kernel (dense=1)");

  o.tilingOverride = "bk=3";
  KernelGenerator bad(o);
  try {
    bad.generate(layer);
    ADD_FAILURE() << "bk=3 accepted for 16 channels";
  } catch (const UnsupportedError &e) {
    EXPECT_THAT(e.what(), HasSubstr("layer 'tiled'"));
  }
}

// The channel-block dispatch of a layer of many small blocks (depthwise)
// is one compare per block: after its code, a block goes straight to the
// exit (convgen-section-exits). Without that, the code after every block
// compared against all later blocks again, which simplifycfg turned into a
// search tree per block (about 30 setp per block for 7 fma).
TEST_F(LayerGeneratorTest, DepthwiseDispatchIsOneCompareAndBranchPerChannelBlock) {
  KernelGenerator generator(options());
  const int64_t channels = 48;
  ConvLayer layer = makeLayer("dw", geometry(channels, channels, 8, 8, {3, 3}, {1, 1}, {1, 1},
                                             {1, 1}, channels),
                              0.8, 5);
  GeneratedLayer generated = generator.generate(layer);
  ASSERT_EQ(generated.mode, "sparse");
  ASSERT_EQ(generated.tiling.channelsPerThread, 1);
  const std::string ptx = read("dw.ptx");
  // One integer compare and one branch per block, plus the tile's own (the
  // tile guard and the padding's inside tests): far fewer than two per
  // block. (Float compares are the relu6 epilogue's.)
  const size_t integerCompares = countOf(ptx, "setp.") - countOf(ptx, "setp.gt.f32") -
                                 countOf(ptx, "setp.lt.f32");
  EXPECT_LE(integerCompares, size_t(channels) + 24) << generated.tiling.describe();
  // Each block's code ends in a jump to the exit; the switch adds about one
  // more per block.
  EXPECT_LE(countOf(ptx, "bra"), 2 * size_t(channels) + 32);
}

// The heuristic is told whether the weights will be fma operands: on sm_80
// only while the nonzeros fit the 64 KiB constant bank; on sm_90 (baked)
// and with --bake-values always.
TEST_F(LayerGeneratorTest, TilingInputsSayWhetherWeightsAreOperands) {
  ConvLayer small = makeLayer("small", geometry(16, 16, 8, 8, {1, 1}, {1, 1}, {0, 0}), 0.5, 3);
  ConvLayer large = makeLayer("large", geometry(256, 128, 8, 8, {1, 1}, {1, 1}, {0, 0}), 0.0, 3);
  GenerateOptions o = options();
  EXPECT_TRUE(tilingInputs(small, o).weightsAreOperands);
  EXPECT_FALSE(tilingInputs(large, o).weightsAreOperands) << "32768 nonzeros: 128 KiB";
  o.arch = parseArch("sm_90");
  EXPECT_TRUE(tilingInputs(large, o).weightsAreOperands);
  o = options(/*bake=*/true);
  EXPECT_TRUE(tilingInputs(large, o).weightsAreOperands);
}

namespace {

/// For each `ld.global.nc` in \p ptx, the PTX instructions from it to the
/// first instruction that reads its destination register.
std::vector<size_t> loadUseDistances(const std::string &ptx) {
  std::vector<std::string> instructions;
  std::istringstream lines(ptx);
  for (std::string line; std::getline(lines, line);) {
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line.back() != ';' || line[first] == '.' ||
        line.compare(first, 2, "//") == 0)
      continue;
    instructions.push_back(line.substr(first));
  }
  auto readsRegister = [](const std::string &inst, const std::string &reg) {
    for (size_t at = inst.find(reg); at != std::string::npos; at = inst.find(reg, at + 1)) {
      const size_t end = at + reg.size();
      if (end == inst.size() || !std::isalnum(static_cast<unsigned char>(inst[end])))
        return true;
    }
    return false;
  };
  std::vector<size_t> distances;
  for (size_t i = 0; i < instructions.size(); ++i) {
    const std::string &inst = instructions[i];
    if (inst.rfind("ld.global.nc", 0) != 0)
      continue;
    const size_t reg = inst.find('%'), comma = inst.find(',');
    if (reg == std::string::npos || comma == std::string::npos || comma < reg)
      continue;
    const std::string destination = inst.substr(reg, comma - reg);
    for (size_t j = i + 1; j < instructions.size(); ++j)
      if (readsRegister(instructions[j], destination)) {
        distances.push_back(j - i);
        break;
      }
  }
  return distances;
}

} // namespace

// Input loads are issued ahead of their first multiply-add in the PTX
// (convgen-schedule-loads survives NVPTX): a warp alone at batch 1 then
// has other work while a load comes back from L2. Without the pass each
// load sat about two instructions before its use (median 2 on LFF_1).
TEST_F(LayerGeneratorTest, InputLoadsAreIssuedAheadOfTheirFirstUse) {
  KernelGenerator generator(options());
  for (const auto &[name, g] :
       {std::pair<std::string, ConvGeometry>{"pointwise", geometry(128, 64, 16, 16, {1, 1}, {1, 1}, {0, 0})},
        std::pair<std::string, ConvGeometry>{"padded", geometry(32, 32, 16, 16, {3, 3})}}) {
    ConvLayer layer = makeLayer(name, g, 0.9, 11);
    GeneratedLayer generated = generator.generate(layer);
    ASSERT_EQ(generated.mode, "sparse") << name;
    std::vector<size_t> distances = loadUseDistances(read(name + ".ptx"));
    ASSERT_GT(distances.size(), 32u) << name;
    std::sort(distances.begin(), distances.end());
    const size_t near = size_t(std::count_if(distances.begin(), distances.end(),
                                             [](size_t d) { return d < 8; }));
    EXPECT_GE(distances[distances.size() / 2], 32u) << name << ": median load-to-use distance";
    EXPECT_LE(near * 20, distances.size()) << name << ": " << near << " of " << distances.size()
                                           << " loads within 8 instructions of their use";
  }
}
