// The convgen tool end to end: for each kind of bad input, exit code 2 and
// one line that names the file, layer or field and what is wrong; for good
// input, the listing; and never a partial output.
#include "support/TestFiles.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

using namespace convgen::test;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::StartsWith;
namespace fs = std::filesystem;

namespace {

struct Result {
  int exitCode = -1;
  std::string out, err;
};

std::string quote(const std::string &arg) {
  std::string quoted = "'";
  for (char c : arg)
    quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string slurp(const fs::path &path) {
  Bytes bytes = readFile(path);
  return std::string(bytes.begin(), bytes.end());
}

Result runConvgen(const std::vector<std::string> &args, const TempDir &dir) {
  std::string command = quote(CONVGEN_TOOL);
  for (const std::string &arg : args)
    command += " " + quote(arg);
  command += " >" + quote((dir / "stdout").string()) + " 2>" + quote((dir / "stderr").string());
  int status = std::system(command.c_str());
  Result result;
  result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = slurp(dir / "stdout");
  result.err = slurp(dir / "stderr");
  fs::remove(dir / "stdout");
  fs::remove(dir / "stderr");
  return result;
}

const std::string ExampleNpz =
    std::string(CONVGEN_EXAMPLES_DIR) + "/esrgan_medium_x4/esrgan_medium_x4-s90.npz";

class ConvgenCli : public ::testing::Test {
protected:
  /// Writes the tiny model as m.npz + m.json into the temp dir.
  std::string writeModel() {
    writeNpz(Dir / "m.npz", Model.arrays);
    writeText(Dir / "m.json", Model.sidecarJson());
    return (Dir / "m.npz").string();
  }
  Result run(std::vector<std::string> args) { return runConvgen(args, Dir); }

  /// Exit code 2, exactly one line on stderr containing every fragment, and
  /// nothing in the output directory.
  void expectBadInput(const Result &result, const std::vector<std::string> &fragments) {
    EXPECT_EQ(result.exitCode, 2) << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
    EXPECT_THAT(result.err, HasSubstr("convgen: error: "));
    for (const std::string &fragment : fragments)
      EXPECT_THAT(result.err, HasSubstr(fragment));
    EXPECT_FALSE(fs::exists(Dir / "out")) << "a failed run wrote output";
  }
  void setLayerField(const std::string &field, const std::string &json) {
    auto layer = nlohmann::ordered_json::parse(Model.sidecarLayerJson);
    layer[field] = nlohmann::ordered_json::parse(json);
    Model.sidecarLayerJson = layer.dump();
  }
  std::string out() const { return (Dir / "out").string(); }

  TempDir Dir;
  TinyModel Model = makeTinyModel();
};

} // namespace

TEST_F(ConvgenCli, ListsTheExampleModel) {
  Result result = run({"--weights", ExampleNpz, "--list"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("esrgan_medium_x4: 28 convolution layers"));
  EXPECT_THAT(result.out, HasSubstr("UPN1"));
  EXPECT_THAT(result.out, HasSubstr("10240/102400"));
  EXPECT_THAT(result.out, HasSubstr("total (28 layers)"));
  EXPECT_EQ(result.err, "");
}

TEST_F(ConvgenCli, ListJson) {
  Result result = run({"--weights", writeModel(), "--list", "--json"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  auto document = nlohmann::json::parse(result.out);
  EXPECT_EQ(document["model"], "tiny");
  EXPECT_EQ(document["weights_file"], (Dir / "m.npz").string());
  EXPECT_EQ(document["geometry_file"], (Dir / "m.json").string());
  const auto &layer = document["layers"].at(0);
  EXPECT_EQ(layer["name"], "conv");
  EXPECT_EQ(layer["weights"], 72);
  EXPECT_EQ(layer["nonzeros"], 48); // every third weight of the tiny model is zero
  EXPECT_EQ(layer["dense_flops"], 2 * 4 * 5 * 5 * 18);
  EXPECT_EQ(layer["sparse_flops"], 2 * 5 * 5 * 48);
  EXPECT_EQ(layer["activation"], "relu");
  EXPECT_EQ(layer["output"], nlohmann::json({1, 4, 5, 5}));
}

// Found in review: a path that is not UTF-8 made nlohmann's dump() throw and
// convgen exit 3 ("internal error").
TEST_F(ConvgenCli, ListJsonWithANonUtf8Path) {
  std::string npz = writeModel();
  std::string latin1 = (Dir / "caf\xe9.npz").string();
  fs::rename(npz, latin1);
  fs::rename(Dir / "m.json", Dir / "caf\xe9.json");
  Result result = run({"--weights", latin1, "--list", "--json"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  auto document = nlohmann::json::parse(result.out);
  EXPECT_THAT(document["weights_file"].get<std::string>(), HasSubstr("caf\xef\xbf\xbd.npz"));
}

TEST_F(ConvgenCli, GeometryOption) {
  std::string npz = writeModel();
  fs::rename(Dir / "m.json", Dir / "geometry.json");
  expectBadInput(run({"--weights", npz, "--list"}), {"m.json: cannot open geometry sidecar"});
  Result result = run({"--weights", npz, "--geometry", (Dir / "geometry.json").string(), "--list"});
  EXPECT_EQ(result.exitCode, 0) << result.err;
}

TEST_F(ConvgenCli, TruncatedNpz) {
  Bytes bytes = readFile(ExampleNpz);
  bytes.resize(bytes.size() / 2);
  writeFile(Dir / "m.npz", bytes);
  writeText(Dir / "m.json", Model.sidecarJson());
  expectBadInput(run({"--weights", (Dir / "m.npz").string(), "--all", "-o", out()}),
                 {"m.npz: ", "truncated"});
}

TEST_F(ConvgenCli, NotAZipFile) {
  writeText(Dir / "m.npz", "{\"oops\": \"this is JSON\"}\n");
  writeText(Dir / "m.json", Model.sidecarJson());
  expectBadInput(run({"--weights", (Dir / "m.npz").string(), "--layer", "conv", "-o", out()}),
                 {"m.npz: not an .npz file: not a zip archive"});
}

TEST_F(ConvgenCli, CorruptNpyHeader) {
  Model.arrays["conv.weight"] =
      makeNpyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2, 3 3), }",
                        Bytes(72 * 4));
  expectBadInput(run({"--weights", writeModel(), "--layer", "conv", "-o", out()}),
                 {"m.npz[conv.weight]: corrupt npy header", "expected ',' or ')' in shape"});
}

TEST_F(ConvgenCli, WrongDType) {
  Model.arrays["conv.weight"] = makeNpy("<f8", {4, 2, 3, 3}, Bytes(72 * 8));
  expectBadInput(run({"--weights", writeModel(), "--all", "-o", out()}),
                 {"m.npz[conv.weight]: unsupported dtype '<f8'"});
}

TEST_F(ConvgenCli, MissingKey) {
  Model.arrays.erase("conv.bias");
  expectBadInput(run({"--weights", writeModel(), "--list"}),
                 {"m.npz: layer 'conv': 'conv.bias': array not found"});
}

TEST_F(ConvgenCli, ShapeDisagreesWithGeometry) {
  setLayerField("input", "[1, 3, 5, 5]");
  expectBadInput(run({"--weights", writeModel(), "--layer", "conv", "-o", out()}),
                 {"m.json: layer 'conv': 'input': has 3 channels",
                  "'conv.weight' has shape (4, 2, 3, 3)"});
  setLayerField("input", "[1, 2, 5, 5]");
  setLayerField("output", "[1, 4, 3, 3]");
  expectBadInput(run({"--weights", writeModel(), "--list"}),
                 {"layer 'conv': 'output': [1, 4, 3, 3] disagrees"});
}

TEST_F(ConvgenCli, NaNAndInfWeights) {
  std::vector<float> weights(72, 1.0f);
  weights[10] = std::numeric_limits<float>::quiet_NaN();
  Model.arrays["conv.weight"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(weights));
  expectBadInput(run({"--weights", writeModel(), "--all", "-o", out()}),
                 {"m.npz: layer 'conv': 'conv.weight': NaN at index (0, 1, 0, 1)"});
  weights[10] = std::numeric_limits<float>::infinity();
  Model.arrays["conv.weight"] = makeNpy("<f4", {4, 2, 3, 3}, floatBytes(weights));
  expectBadInput(run({"--weights", writeModel(), "--list"}), {"Inf at index (0, 1, 0, 1)"});
}

TEST_F(ConvgenCli, MalformedJson) {
  writeModel();
  writeText(Dir / "m.json", "{\"layers\": [\n  {\"name\": \"conv\",, }\n]}\n");
  expectBadInput(run({"--weights", (Dir / "m.npz").string(), "--list"}),
                 {"m.json: malformed JSON: parse error at line 2"});
}

TEST_F(ConvgenCli, MissingLayerSuggestsTheClosest) {
  Result result = run({"--weights", ExampleNpz, "--layer", "UPN4", "-o", out()});
  expectBadInput(result, {"no layer named 'UPN4'; did you mean 'UPN1'?", "Layers: F_m1, F_0,"});
}

TEST_F(ConvgenCli, UsageErrors) {
  expectBadInput(run({"--list"}), {"--weights is required"});
  expectBadInput(run({"--weights", ExampleNpz}), {"nothing to do"});
  expectBadInput(run({"--weights", ExampleNpz, "--all", "--list"}), {"excludes"});
  expectBadInput(run({"--weights", ExampleNpz, "--all", "--emit", "sass"}), {"--emit"});
  expectBadInput(run({"--weights", ExampleNpz, "--all", "--arch", "sm_61"}),
                 {"--arch: unsupported target 'sm_61'; supported: sm_70"});
  expectBadInput(run({"--weights", ExampleNpz, "--all", "--arch", "sm_80,sm_61"}),
                 {"--arch: unsupported target 'sm_61'"});
  expectBadInput(run({"--weights", (Dir / "absent.npz").string(), "--list"}),
                 {"absent.npz", "does not exist"});
  expectBadInput(run({"--weights", ExampleNpz, "--list", "--frobnicate"}), {"--frobnicate"});
}

TEST_F(ConvgenCli, HelpExitsZero) {
  Result result = run({"--help"});
  EXPECT_EQ(result.exitCode, 0);
  EXPECT_THAT(result.out, HasSubstr("--weights"));
  EXPECT_THAT(result.out, HasSubstr("sm_80"));
}

TEST_F(ConvgenCli, GeneratesALayerWithItsManifest) {
  Result result = run({"--weights", ExampleNpz, "--layer", "F_m1", "-o", out(), "--emit",
                       "ll,weightmap"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  // The summary row: shape, sparsity, nnz, dense and sparse MACs, fma in
  // code (two outputs per thread, so each nonzero's fma is in the code twice;
  // three input channels are too short a reduction to split).
  EXPECT_THAT(result.out, ContainsRegex("F_m1 +3->64 64x64 3x3 s1 +90.0% +173 +7077888 +708608 +346 "));
  EXPECT_THAT(result.out, HasSubstr("total: 1 layer(s)"));
  EXPECT_FALSE(fs::exists(Dir / "out" / "convgen-model.json")) << "only --all writes it";
  for (const char *file : {"F_m1.ptx", "F_m1.weights.bin", "F_m1.json", "F_m1.ll",
                           "F_m1.specialised.ll", "F_m1.weightmap.txt"})
    EXPECT_TRUE(fs::exists(Dir / "out" / file)) << file;
  auto manifest = nlohmann::json::parse(slurp(Dir / "out" / "F_m1.json"));
  EXPECT_EQ(manifest["format"], "convgen-kernel-manifest/3");
  EXPECT_EQ(manifest["dtype"], "f32");
  EXPECT_EQ(manifest["tiling"]["source"], "heuristic");
  EXPECT_EQ(manifest["tiling"]["spec"],
            "bk=32,bw=2,bh=1,bn=1,threads=128,cta-blocks=1,split=1,stage=0,skip=1,weights=auto,dense=0");
  EXPECT_FALSE(manifest["tiling"]["reasons"].empty());
  ASSERT_EQ(manifest["kernels"].size(), 1u);
  EXPECT_EQ(manifest["kernels"][0]["symbol"], "convgen_F_m1");
  EXPECT_EQ(manifest["kernels"][0]["grid_y"], 2) << "64 output channels in blocks of 32";
  EXPECT_EQ(manifest["nonzeros"], 173);
  EXPECT_EQ(manifest["multiply_adds_in_code"], 346);
  EXPECT_EQ(manifest["weights"]["count"], 173);
  EXPECT_EQ(fs::file_size(Dir / "out" / "F_m1.weights.bin"), (173u + 64u) * 4);
  EXPECT_THAT(slurp(Dir / "out" / "F_m1.ptx"), HasSubstr(".visible .entry convgen_F_m1("));
  EXPECT_THAT(slurp(Dir / "out" / "F_m1.weightmap.txt"),
              HasSubstr("WeightMap for 'convgen_F_m1': weights [64, 3, 3, 3], 173 positions, "
                        "346 multiply-adds, 0 non-constant loads, 0 loads with other uses"))
      << "the unrolled code's map: the 173 nonzeros, each with its BW = 2 multiply-adds";
}

// The default keeps ptxas's cubin in a fatbinary per layer; --ptx-only
// skips ptxas, and the table and manifest say so rather than hide it.
TEST_F(ConvgenCli, PtxOnlySaysPtxasDidNotRunAndWritesNoFatbinary) {
  const bool haveToolkit = fs::exists("/usr/local/cuda/bin/ptxas") &&
                           fs::exists("/usr/local/cuda/bin/fatbinary");
  Result result = run({"--weights", ExampleNpz, "--layer", "F_m1", "-o", out(), "--no-cache",
                       "--arch", "sm_90,sm_80"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  auto manifest = nlohmann::json::parse(slurp(Dir / "out" / "F_m1.json"));
  EXPECT_EQ(manifest["arch"], "sm_80") << "the lowest listed makes the PTX";
  if (haveToolkit) {
    EXPECT_TRUE(fs::exists(Dir / "out" / "F_m1.fatbin"));
    EXPECT_EQ(manifest["fatbin"], "F_m1.fatbin");
    EXPECT_THAT(result.out, HasSubstr("cubins: sm_80 (1), sm_90 (1)"));
  }

  result = run({"--weights", ExampleNpz, "--layer", "F_m1", "-o", out(), "--no-cache",
                "--ptx-only"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  EXPECT_FALSE(fs::exists(Dir / "out" / "F_m1.fatbin")) << "the earlier round's is removed";
  manifest = nlohmann::json::parse(slurp(Dir / "out" / "F_m1.json"));
  EXPECT_EQ(manifest["ptxas"], "not run");
  EXPECT_TRUE(manifest["fatbin"].is_null());
  // SASS/fma, registers and spills are '-' in the row, and a line says why.
  EXPECT_THAT(result.out, ContainsRegex("F_m1 .* - +- +- +1 off "));
  EXPECT_THAT(result.out, HasSubstr("ptxas not run on 1 layer(s)"));
  EXPECT_THAT(result.out, HasSubstr("JIT-compiles them at load"));
}

TEST_F(ConvgenCli, SecondRunHitsTheCacheAndWritesNothing) {
  const std::string cache = (Dir / "cache").string();
  Result first = run({"--weights", ExampleNpz, "--layer", "F_m1", "-o", out(), "--cache-dir", cache});
  ASSERT_EQ(first.exitCode, 0) << first.err;
  EXPECT_THAT(first.err, HasSubstr("[1/1] F_m1: miss"));
  auto stamp = fs::last_write_time(Dir / "out" / "F_m1.ptx");
  Result second = run({"--weights", ExampleNpz, "--layer", "F_m1", "-o", out(), "--cache-dir", cache});
  ASSERT_EQ(second.exitCode, 0) << second.err;
  EXPECT_THAT(second.err, ContainsRegex("\\[1/1\\] F_m1: hit, [0-9.]+ s, up to date"));
  EXPECT_THAT(second.out, HasSubstr("1 cache hit(s)"));
  EXPECT_EQ(fs::last_write_time(Dir / "out" / "F_m1.ptx"), stamp);
}

TEST_F(ConvgenCli, TwoProcessesShareOneCache) {
  // Both miss, compile the same layer and store it at the same time.
  const std::string cache = (Dir / "cache").string();
  auto command = [&](const std::string &name) {
    std::string c = quote(CONVGEN_TOOL);
    for (const std::string &arg : {std::string("--weights"), ExampleNpz, std::string("--layer"),
                                   std::string("F_0"), std::string("--cache-dir"), cache,
                                   std::string("-o"), (Dir / name).string()})
      c += " " + quote(arg);
    return "(" + c + " >/dev/null 2>" + quote((Dir / (name + ".err")).string()) + "; echo $? >" +
           quote((Dir / (name + ".rc")).string()) + ")";
  };
  const std::string both = command("a") + " & " + command("b") + " & wait";
  ASSERT_EQ(std::system(both.c_str()), 0);
  for (const char *name : {"a", "b"}) {
    EXPECT_EQ(slurp(Dir / (std::string(name) + ".rc")), "0\n") << slurp(Dir / (std::string(name) + ".err"));
    EXPECT_EQ(slurp(Dir / name / "F_0.ptx"), slurp(Dir / "a" / "F_0.ptx"));
  }
  EXPECT_TRUE(fs::is_empty(Dir / "cache" / "v1" / "tmp"));
  Result third = run({"--weights", ExampleNpz, "--layer", "F_0", "-o", out(), "--cache-dir", cache});
  EXPECT_THAT(third.err, HasSubstr("F_0: hit"));
}

TEST_F(ConvgenCli, AllWritesTheModelManifest) {
  std::string npz = writeModel();
  Result result = run({"--weights", npz, "--all", "-o", out(), "--no-cache", "--jobs", "1"});
  ASSERT_EQ(result.exitCode, 0) << result.err;
  auto model = nlohmann::json::parse(slurp(Dir / "out" / "convgen-model.json"));
  EXPECT_EQ(model["format"], "convgen-model-manifest/1");
  EXPECT_EQ(model["layers"].size(), 1u);
  EXPECT_THAT(result.out, HasSubstr("cache"));
  EXPECT_THAT(result.out, HasSubstr(" off "));
}

TEST_F(ConvgenCli, CacheOptionUsageErrors) {
  expectBadInput(run({"--weights", ExampleNpz, "--layer", "F_m1", "--no-cache", "--cache-dir", "x"}),
                 {"--no-cache"});
  expectBadInput(run({"--weights", ExampleNpz, "--layer", "F_m1", "--jobs", "0"}), {"--jobs"});
  expectBadInput(run({"--weights", ExampleNpz, "--layer", "F_m1", "--max-memory", "-1"}),
                 {"--max-memory"});
}

TEST_F(ConvgenCli, VerifyRunsTheKernelAgainstTheReference) {
  Result result = run({"verify", "--weights", ExampleNpz, "--layer", "F_m1", "--layer", "SR",
                       "--batch", "1"});
  ASSERT_EQ(result.exitCode, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("F_m1"));
  EXPECT_THAT(result.out, HasSubstr("PASS"));
  EXPECT_THAT(result.out, HasSubstr("max abs err"));
  EXPECT_THAT(result.out, HasSubstr("convgen verify: 2 layer(s), 2 PASS, 0 FAIL"));
  EXPECT_FALSE(fs::exists(Dir / "generated")) << "verify writes nothing";
}

TEST_F(ConvgenCli, VerifyUsageErrors) {
  expectBadInput(run({"verify", "--weights", ExampleNpz}), {"nothing to verify"});
  expectBadInput(run({"verify", "--layer", "F_m1"}), {"--weights is required"});
  expectBadInput(run({"verify", "--weights", ExampleNpz, "--layer", "F_mm1"}), {"F_m1"});
  expectBadInput(run({"verify", "--weights", ExampleNpz, "--all", "--batch", "0"}), {"batch"});
  // Options of the main command before the word verify are refused, not merged.
  expectBadInput(run({"--list", "verify", "--weights", ExampleNpz, "--all"}),
                 {"--list", "comes before 'verify'"});
  expectBadInput(run({"-o", out(), "verify", "--weights", ExampleNpz, "--layer", "F_m1"}),
                 {"comes before 'verify'"});
}

TEST_F(ConvgenCli, TuningIsRecordedPerBatchAndUsedByLaterRuns) {
  const std::string cache = (Dir / "cache").string();
  Result listed = run({"--weights", ExampleNpz, "--layer", "F_m1", "--for-batch", "8",
                       "--list-tilings", "--cache-dir", cache});
  ASSERT_EQ(listed.exitCode, 0) << listed.err;
  EXPECT_THAT(listed.out, StartsWith("# F_m1: heuristic bk=32,"));
  EXPECT_GE(std::count(listed.out.begin(), listed.out.end(), '\t'), 5) << listed.out;
  EXPECT_FALSE(fs::exists(Dir / "generated")) << "--list-tilings generates nothing";

  Result recorded = run({"--weights", ExampleNpz, "--layer", "F_m1", "--for-batch", "8",
                         "--tiling", "bk=2,bw=2", "--record-tuning", R"({"best_ms": 0.01})",
                         "--cache-dir", cache});
  ASSERT_EQ(recorded.exitCode, 0) << recorded.err;
  EXPECT_THAT(recorded.out, HasSubstr("F_m1: recorded tuned tiling bk=2,bw=2,"));
  EXPECT_THAT(recorded.out, HasSubstr("for batch 8"));

  auto tilingOf = [&](const std::string &batch) {
    Result generated = run({"--weights", ExampleNpz, "--layer", "F_m1", "--for-batch", batch,
                            "-o", out(), "--cache-dir", cache});
    EXPECT_EQ(generated.exitCode, 0) << generated.err;
    return nlohmann::json::parse(slurp(Dir / "out" / "F_m1.json"))["tiling"];
  };
  nlohmann::json tuned = tilingOf("8");
  EXPECT_EQ(tuned["source"], "tuned");
  EXPECT_THAT(tuned["spec"].get<std::string>(), StartsWith("bk=2,bw=2,"));
  EXPECT_EQ(tilingOf("1")["source"], "heuristic") << "the record is for batch 8 only";
  Result relisted = run({"--weights", ExampleNpz, "--layer", "F_m1", "--for-batch", "8",
                         "--list-tilings", "--cache-dir", cache});
  EXPECT_THAT(relisted.out, StartsWith("# F_m1: tuned bk=2,bw=2,"));
}

TEST_F(ConvgenCli, TilingUsageErrors) {
  expectBadInput(run({"--weights", ExampleNpz, "--layer", "F_m1", "--tiling", "bq=1", "-o", out()}),
                 {"unknown key 'bq'"});
  expectBadInput(run({"--weights", ExampleNpz, "--layer", "F_m1", "--record-tuning", "{}"}),
                 {"--record-tuning", "--tiling"});
  expectBadInput(run({"--weights", ExampleNpz, "--layer", "F_m1", "--record-tuning", "{}",
                      "--tiling", "bk=2", "--no-cache"}),
                 {"drop --no-cache"});
  expectBadInput(run({"--weights", ExampleNpz, "--layer", "F_m1", "--dtype", "bf16"}), {"--dtype"});
  // A tiling the layer cannot take names the layer (F_m1 has 64 channels).
  Result bad = run({"--weights", ExampleNpz, "--layer", "F_m1", "--tiling", "bk=3", "-o", out(),
                    "--no-cache"});
  EXPECT_EQ(bad.exitCode, 2);
  EXPECT_THAT(bad.out + bad.err, HasSubstr("layer 'F_m1'"));
  EXPECT_FALSE(fs::exists(Dir / "out" / "F_m1.ptx"));
}

TEST_F(ConvgenCli, HalfPrecisionGeneratesAndVerifies) {
  Result verified = run({"verify", "--weights", ExampleNpz, "--layer", "F_m1", "--layer", "UPN3",
                         "--dtype", "f16", "--batch", "1"});
  ASSERT_EQ(verified.exitCode, 0) << verified.out << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("convgen verify: 2 layer(s), 2 PASS, 0 FAIL"));
  Result generated = run({"--weights", ExampleNpz, "--layer", "F_m1", "--dtype", "f16", "-o",
                          out(), "--no-cache"});
  ASSERT_EQ(generated.exitCode, 0) << generated.err;
  auto manifest = nlohmann::json::parse(slurp(Dir / "out" / "F_m1.json"));
  EXPECT_EQ(manifest["dtype"], "f16");
  EXPECT_EQ(manifest["launch"]["element_bytes"], 2);
}
