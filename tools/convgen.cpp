// convgen: generate sparsity-specialised convolution kernels for a pruned model.
//
//   convgen --weights pruned.npz --layer conv3     one layer -> generated/
//   convgen --weights pruned.npz --all             every layer, and the model manifest
//   convgen --weights pruned.npz --list            layers, geometry, sparsity, FLOPs
//   convgen --weights pruned.onnx --all            the same from an ONNX model (no sidecar)
//   convgen verify --weights pruned.npz --all      run on the host, check against
//                                                  the reference convolution
//
// Exit codes: 0 success, 1 a check failed, 2 bad input or usage, 3 internal error.
#include "GenerateCommand.h"
#include "ListCommand.h"
#include "VerifyCommand.h"
#include "codegen/LayerGenerator.h"
#include "cache/CacheKey.h"
#include "cache/KernelCache.h"
#include "codegen/OperatorTemplate.h"
#include "codegen/NvptxTarget.h"
#include "model/ModelFile.h"
#include "model/OnnxModel.h"
#include "support/Error.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>

using namespace convgen;
namespace fs = std::filesystem;

namespace {

struct Options {
  std::string weights;
  std::string geometry;
  std::vector<std::string> layers;
  bool all = false;
  bool noPropagate = false;
  bool list = false;
  bool json = false;
  std::string outputDir = "generated";
  std::vector<std::string> arch = {DefaultArch};
  bool ptxOnly = false;
  std::vector<std::string> emit;
  bool bakeValues = false;
  int64_t maxMultiplyAdds = 65536;
  int64_t maxKernels = 16;
  std::string dtype = "f32";
  std::string tiling;
  int64_t forBatch = 0;
  bool listTilings = false;
  bool measure = false;
  std::string recordTuning;
  unsigned jobs = 0;
  double maxMemoryGiB = 0;
  std::string cacheDir;
  bool noCache = false;
  bool verbose = false;
  // convgen verify
  CLI::App *mainCommand = nullptr;
  CLI::App *verifyCommand = nullptr;
  VerifyOptions verify;
};

/// The options that pick the model and its layers, for the main command
/// and for `verify`.
void addModelOptions(CLI::App &app, Options &options, CLI::Option *&layer, CLI::Option *&all) {
  app.add_option("--weights", options.weights,
                 "Pruned weights: a PyTorch state_dict saved as .npz (with its geometry sidecar), "
                 "or an ONNX model (.onnx)")
      ->check(CLI::ExistingFile);
  app.add_option("--geometry", options.geometry,
                 "Geometry sidecar JSON for an .npz (default: the .npz's path with .json)")
      ->check(CLI::ExistingFile);
  layer = app.add_option("--layer", options.layers,
                         "This layer (a sidecar 'name', or an ONNX Conv's node or output name); "
                         "may be repeated");
  all = app.add_flag("--all", options.all, "Every layer of the model");
  layer->excludes(all);
  app.add_flag("--no-propagate", options.noPropagate,
               "ONNX: treat each layer alone, without the channels the graph proves zero "
               "(all-zero producers) or unread (consumers with zero weights on them); "
               "an .npz has no graph, so it is always alone");
}

void addGenerationOptions(CLI::App &app, Options &options) {
  app.add_option("--arch", options.arch,
                 "Target GPUs (sm_70 .. sm_90), comma-separated: each gets a cubin in the "
                 "layer's fatbinary, which the driver loads without compiling. The lowest "
                 "decides the PTX and the tiling; its PTX also goes in, for newer GPUs to "
                 "JIT-compile")
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("--ptx-only", options.ptxOnly,
               "Skip ptxas (nvcc's --ptx): PTX only, no cubins, no SASS or register figures. "
               "Quicker, for the draft rounds of a pruning loop; the driver JIT-compiles "
               "every kernel at load");
  app.add_flag("--bake-values", options.bakeValues,
               "Put the weight values in the code as FMA immediates instead of a packed "
               "read-only array (a values-only change then needs new code)");
  app.add_option("--max-multiply-adds", options.maxMultiplyAdds,
                 "Code-size budget per kernel: a layer whose sparse code would hold more "
                 "multiply-adds (nnz x outputs per thread) is split by output-channel blocks "
                 "across several kernels")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-kernels", options.maxKernels,
                 "Kernels per layer (each is a launch): a layer that needs more gets a dense "
                 "kernel instead")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  app.add_option("--dtype", options.dtype,
                 "Input and output element type: f32, or f16 (weights and accumulation stay "
                 "fp32; one rounding to half at the store)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16"}));
  app.add_option("--tiling", options.tiling,
                 "Override the tiling: comma-separated key=value of bk (channels per thread), "
                 "bw, bh, bn (output columns, rows, images per thread), threads, cta-blocks "
                 "(channel blocks per thread block), stage (0/1: inputs in shared memory), skip "
                 "(0/1: skip unused input channels), weights (auto/constant/global/baked), dense "
                 "(0/1: the dense kernel); "
                 "unnamed keys keep the heuristic's (or tuned) value");
  app.add_option("--for-batch", options.forBatch,
                 "The batch the tiling is chosen (or looked up as tuned) for (default: the "
                 "sidecar's input batch); for ONNX, also what a symbolic batch dimension becomes "
                 "(default 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_flag("-v,--verbose", options.verbose, "Say what is read, validated and written");
}

void configureVerify(CLI::App &app, Options &options) {
  CLI::App *verify = app.add_subcommand(
      "verify", "Generate layers in memory, run them on this CPU (the same IR that becomes "
                "PTX) and check every output against a double-precision reference "
                "convolution. Writes nothing; exit 1 if any layer FAILs");
  options.mainCommand = &app;
  options.verifyCommand = verify;
  CLI::Option *layer = nullptr, *all = nullptr;
  addModelOptions(*verify, options, layer, all);
  addGenerationOptions(*verify, options);
  verify->add_option("--batch", options.verify.batch, "Images per run")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  verify->add_option("--seed", options.verify.seed, "Seed of the random input and block sample")
      ->capture_default_str();
  verify->add_flag("--full", options.verify.allBlocks,
                   "Run every block, even of layers large enough to be sampled");
}

void configure(CLI::App &app, Options &options) {
  app.description("Generate sparsity-specialised CUDA convolution kernels (PTX) for the layers "
                  "of a pruned model.");
  CLI::Option *layer = nullptr, *all = nullptr;
  addModelOptions(app, options, layer, all);
  auto *list = app.add_flag("--list", options.list,
                            "List the layers: shape, geometry, sparsity, dense and sparse FLOPs");
  layer->excludes(list);
  all->excludes(list);
  app.add_flag("--json", options.json, "With --list: print JSON instead of a table")->needs(list);
  auto *listTilings = app.add_flag(
      "--list-tilings", options.listTilings,
      "Print the layers' tiling choice with its reasons, then the candidates a tuner "
      "tries, one 'LAYER<TAB>TILING<TAB>SASS/FMA' line each; generates nothing");
  listTilings->excludes(list);
  app.add_flag("--measure", options.measure,
               "With --list-tilings: compile each candidate in memory through ptxas and show "
               "its machine instructions per fma in the code (otherwise '-')")
      ->needs(listTilings);
  app.add_option("--record-tuning", options.recordTuning,
                 "Record --tiling in the cache as the tuned tiling of each --layer at "
                 "--for-batch, with this JSON object of measurements beside it (convbench "
                 "--tune does this); later runs use it. Generates nothing")
      ->excludes(listTilings)
      ->excludes(list);

  app.add_option("-o,--output-dir", options.outputDir, "Output directory")
      ->capture_default_str();
  app.add_option("--emit", options.emit, "Extra artefacts: ll (the specialised LLVM IR), "
                                         "weightmap (the weight map as text); comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(EmittableArtefacts));
  addGenerationOptions(app, options);
  app.add_option("-j,--jobs", options.jobs,
                 "Layers generated at once (default: one per core), within --max-memory")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--max-memory", options.maxMemoryGiB,
                 "Memory budget in GiB for layers generated at once, ptxas included "
                 "(default: 3/4 of the memory available); a layer over it runs alone")
      ->check(CLI::PositiveNumber);
  auto *cacheDir = app.add_option("--cache-dir", options.cacheDir,
                                  "Kernel cache (default: $XDG_CACHE_HOME/convgen, else "
                                  "~/.cache/convgen): unchanged layers are not regenerated");
  app.add_flag("--no-cache", options.noCache, "Neither read nor write the kernel cache")
      ->excludes(cacheDir);
  configureVerify(app, options);
}

class Log {
public:
  explicit Log(bool enabled) : Enabled(enabled) {}
  void operator()(const std::string &message) const {
    if (Enabled)
      std::cerr << "convgen: " << message << "\n";
  }

private:
  bool Enabled;
};

GenerateOptions generateOptionsFrom(const Options &options) {
  GenerateOptions generateOptions;
  const ArchList archs = parseArchList(options.arch);
  generateOptions.arch = archs.ptxArch;
  generateOptions.binaryArchs = archs.cubinArchs;
  generateOptions.runPtxas = !options.ptxOnly;
  generateOptions.outputDir = options.outputDir;
  generateOptions.emit = {options.emit.begin(), options.emit.end()};
  generateOptions.bakeValues = options.bakeValues;
  generateOptions.maxMultiplyAdds = options.maxMultiplyAdds;
  generateOptions.maxKernelsPerLayer = options.maxKernels;
  generateOptions.dtype = options.dtype == "f16" ? DType::F16 : DType::F32;
  generateOptions.tilingOverride = options.tiling;
  if (options.forBatch > 0)
    generateOptions.batch = options.forBatch;
  if (!options.tiling.empty())
    parseTiling(options.tiling); // a syntax error is reported before any work
  return generateOptions;
}

std::optional<fs::path> cacheRoot(const Options &options) {
  if (options.noCache)
    return std::nullopt;
  return options.cacheDir.empty() ? KernelCache::defaultRoot() : fs::path(options.cacheDir);
}

/// The tuned tilings the cache holds for \p layers under \p generateOptions.
void addTunedTilings(const std::vector<ConvLayer> &layers, const Options &options,
                     GenerateOptions &generateOptions, const Log &log) {
  std::optional<fs::path> root = cacheRoot(options);
  if (!root)
    return;
  KernelCache cache(*root);
  for (const ConvLayer &layer : layers) {
    std::optional<Tiling> tuned =
        cache.findTuning(layerTuningKey(layer, generateOptions, directConvTemplate().id));
    if (!tuned)
      continue;
    try {
      checkTiling(layer.geometry, *tuned, layer.name);
    } catch (const Error &e) {
      // A record that parses but does not fit (edited by hand): not trusted.
      std::cerr << "convgen: warning: ignoring the tuning record: " << e.what() << "\n";
      continue;
    }
    generateOptions.tunedTilings[layer.name] = *tuned;
    log("layer '" + layer.name + "': tuned tiling " + tuned->describe());
  }
}

/// The machine instructions per fma of \p layer's code at \p tiling,
/// compiled in memory through ptxas: "1.47", or why there is no figure.
std::string measureSassPerFma(const ConvLayer &layer, const GenerateOptions &generateOptions,
                              const Tiling &tiling) {
  GenerateOptions options = generateOptions;
  options.tilingOverride = tiling.describe();
  try {
    CompiledLayer compiled = KernelGenerator(options).compile(layer);
    if (!compiled.info.ptxas)
      return "- (no ptxas)";
    if (compiled.info.multiplyAdds == 0 || compiled.info.ptxas->instructions == 0)
      return "- (no fma)";
    char ratio[32];
    std::snprintf(ratio, sizeof(ratio), "%.2f",
                  double(compiled.info.ptxas->instructions) / double(compiled.info.multiplyAdds));
    return ratio;
  } catch (const Error &error) {
    return std::string("- (") + error.what() + ")";
  }
}

/// --list-tilings: the choice and its reasons, then the tuner's candidates,
/// with their measured code shape under --measure.
int listTilings(const std::vector<ConvLayer> &layers, const GenerateOptions &generateOptions,
                bool measure) {
  for (const ConvLayer &layer : layers) {
    std::string source;
    TilingDecision decision = decideTiling(layer, generateOptions, &source);
    std::cout << "# " << layer.name << ": " << source << " " << decision.tiling.describe() << "\n";
    for (const std::string &reason : decision.reasons)
      std::cout << "#   " << reason << "\n";
    for (const Tiling &candidate :
         candidateTilings(layer.geometry, tilingInputs(layer, generateOptions)))
      std::cout << layer.name << "\t" << candidate.describe() << "\t"
                << (measure ? measureSassPerFma(layer, generateOptions, candidate) : "-")
                << std::endl;
  }
  return ExitSuccess;
}

/// --record-tuning: store --tiling as each layer's tuned tiling.
int recordTuning(const std::vector<ConvLayer> &layers, const Options &options,
                 const GenerateOptions &generateOptions) {
  if (options.tiling.empty())
    throw InputError({"", "", "--record-tuning"}, "needs the tiling to record: --tiling");
  std::optional<fs::path> root = cacheRoot(options);
  if (!root)
    throw InputError({"", "", "--record-tuning"}, "records into the cache; drop --no-cache");
  KernelCache cache(*root);
  for (const ConvLayer &layer : layers) {
    Tiling tiling = decideTiling(layer, generateOptions).tiling; // checked against the layer
    cache.storeTuning(layerTuningKey(layer, generateOptions, directConvTemplate().id), layer.name,
                      tiling, options.recordTuning);
    std::cout << layer.name << ": recorded tuned tiling " << tiling.describe() << " for batch "
              << generateOptions.batch.value_or(layer.geometry.batch) << "\n";
  }
  return ExitSuccess;
}

/// Reads and validates every requested layer before any is generated, so
/// bad input is reported before work is done or files are written.
std::vector<ConvLayer> loadRequestedLayers(const ModelFile &model, const Options &options,
                                           const Log &log) {
  std::vector<const LayerSpec *> specs;
  if (options.all) {
    for (const LayerSpec &spec : model.sidecar().layers)
      specs.push_back(&spec);
    // Said whatever the verbosity: these convolutions get no kernel.
    for (const SkippedLayer &skipped : model.sidecar().skipped)
      std::cerr << "convgen: note: skipping Conv '" << skipped.name << "': " << skipped.reason << "\n";
  }
  else
    for (const std::string &name : options.layers)
      specs.push_back(&model.findLayer(name));
  std::vector<ConvLayer> layers;
  for (const LayerSpec *spec : specs) {
    auto start = std::chrono::steady_clock::now();
    layers.push_back(model.loadLayer(*spec));
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    log("layer '" + spec->name + "': " + layers.back().geometry.summary() + ", weights from '" +
        layers.back().weightSource + "' (" + std::to_string(int(ms.count())) + " ms)");
  }
  return layers;
}

int generate(const ModelFile &model, const Options &options, const Log &log) {
  ModelGenerateOptions modelOptions;
  modelOptions.generate = generateOptionsFrom(options);
  modelOptions.jobs = options.jobs;
  modelOptions.memoryBudgetBytes = uint64_t(options.maxMemoryGiB * double(uint64_t(1) << 30));
  modelOptions.cacheDir = cacheRoot(options);
  if (options.all)
    modelOptions.modelManifest = fs::path(options.outputDir) / "convgen-model.json";
  modelOptions.weightsFile = options.weights;
  std::vector<ConvLayer> layers = loadRequestedLayers(model, options, log);
  addTunedTilings(layers, options, modelOptions.generate, log);
  if (options.listTilings)
    return listTilings(layers, modelOptions.generate, options.measure);
  if (!options.recordTuning.empty())
    return recordTuning(layers, options, modelOptions.generate);
  std::string targets;
  for (const std::string &arch : cubinArchs(modelOptions.generate))
    targets += " " + arch;
  log("PTX for " + modelOptions.generate.arch.name + ", cubins for" +
      (targets.empty() ? std::string(" none (--ptx-only)") : targets) + ", output directory " +
      options.outputDir +
      ", cache " + (modelOptions.cacheDir ? modelOptions.cacheDir->string() : "off"));
  return generateLayers(layers, modelOptions, options.verbose, std::cout);
}

/// `verify` takes its options after the word: ones given before it belong to
/// the main command (--list, -o, --emit...) and must not be silently merged.
void checkVerifyUsage(const Options &options) {
  for (const CLI::Option *option : options.mainCommand->get_options())
    if (option->count() > 0)
      throw InputError({"", "", ""}, "option " + option->get_name() +
                                         " comes before 'verify'; give verify's options after "
                                         "it: convgen verify --weights FILE --layer NAME");
}

int run(const Options &options) {
  Log log(options.verbose);
  const bool verify = options.verifyCommand->parsed();
  if (verify)
    checkVerifyUsage(options);
  if (options.weights.empty())
    throw InputError({"", "", ""}, "--weights is required");
  if (!options.list && !options.all && options.layers.empty())
    throw InputError({"", "", ""}, verify ? "nothing to verify: give --layer NAME or --all"
                                          : "nothing to do: give --layer NAME, --all or --list");
  const bool onnx = isOnnxPath(options.weights);
  if (onnx && !options.geometry.empty())
    throw InputError({"", "", "--geometry"}, "an ONNX model holds its geometry; drop --geometry");
  std::string sidecarPath =
      options.geometry.empty() ? defaultSidecarPath(options.weights) : options.geometry;
  log("weights " + options.weights + (onnx ? "" : ", geometry " + sidecarPath));
  ModelFile model = onnx ? openOnnxModel(options.weights, {options.forBatch, !options.noPropagate})
                         : ModelFile::open(options.weights, sidecarPath);
  log(std::to_string(model.sidecar().layers.size()) + " layers" +
      (onnx ? " (" + std::to_string(model.sidecar().skipped.size()) + " Conv nodes skipped)"
            : std::string(" in the sidecar")) +
      ", " + model.tensors().describeContents());

  if (options.list) {
    printLayerList(model, options.json, std::cout);
    return ExitSuccess;
  }
  if (verify) {
    std::vector<ConvLayer> layers = loadRequestedLayers(model, options, log);
    GenerateOptions generateOptions = generateOptionsFrom(options);
    addTunedTilings(layers, options, generateOptions, log);
    return verifyLayers(layers, generateOptions, options.verify, std::cout);
  }
  return generate(model, options, log);
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"convgen"};
  Options options;
  configure(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp &e) {
    return app.exit(e);
  } catch (const CLI::ParseError &e) {
    std::cerr << "convgen: error: " << e.what() << " (see convgen --help)\n";
    return ExitBadInput;
  }

  try {
    return run(options);
  } catch (const Error &e) {
    std::cerr << "convgen: error: " << e.what() << "\n";
    return e.exitCode();
  } catch (const std::bad_alloc &) {
    std::cerr << "convgen: error: out of memory\n";
    return ExitBadInput;
  } catch (const std::exception &e) {
    std::cerr << "convgen: internal error: " << e.what() << " (please report this)\n";
    return 3;
  }
}
