// Per-layer code generation: specialise the operator template, eliminate
// the zero weights, pack the survivors onto the read-only path, emit PTX,
// check it with ptxas, and write NAME.ptx, NAME.weights.bin and the NAME.json
// manifest (plus --emit extras), all atomically and only once the whole
// layer has succeeded.
#pragma once

#include "codegen/NvptxTarget.h"
#include "codegen/LayerPlan.h"
#include "codegen/FatbinaryTool.h"
#include "codegen/Ptxas.h"
#include "codegen/TemplateSpec.h"
#include "codegen/TilingChoice.h"
#include "model/ModelFile.h"

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace llvm {
class LLVMContext;
class Module;
} // namespace llvm

namespace convgen {

class TemplateSpecializer;

/// Extra artefacts --emit can ask for, beside the PTX, manifest and weights.
inline const std::set<std::string> EmittableArtefacts = {"ll", "weightmap"};

struct GenerateOptions {
  std::filesystem::path outputDir = "generated";
  /// The arch the PTX and its tiling are made for: the lowest of --arch.
  NvptxArch arch;
  /// The archs that get a cubin in the layer's fatbinary (`--arch
  /// sm_80,sm_90`), in increasing order, arch among them. Empty: arch
  /// alone. See cubinArchs().
  std::vector<std::string> binaryArchs;
  std::set<std::string> emit; ///< subset of EmittableArtefacts
  bool bakeValues = false;    ///< weights as FMA immediates instead of a packed array
  /// Run ptxas (when installed): it checks the PTX, measures the code and
  /// makes the cubins of the fatbinary the runtime loads. Off (--ptx-only):
  /// the PTX alone, which the driver JIT-compiles at load.
  bool runPtxas = true;
  /// Packed weights up to this size go to the constant bank, larger ones
  /// are read with ld.global.nc. The bank holds 64 KiB per module.
  size_t constantBankLimitBytes = 64 * 1024;
  /// Code-size budget per kernel: a layer whose sparse code (nnz x BW
  /// multiply-adds) exceeds it is split by channel blocks across several
  /// kernels (codegen/KernelSplit). ptxas's time grows faster than a
  /// function's size (docs/benchmarks/generation-2026-12-01.md), so a
  /// split also compiles faster; benchmarks on a GPU are to settle where
  /// speed says.
  int64_t maxMultiplyAdds = 65536;
  /// Kernels per layer, the code-size bound kept for the GPU's sake: each
  /// kernel is one more launch, and 16 x 65536 multiply-adds is about 27 MB
  /// of machine code for one layer to load. A layer needing more gets the
  /// dense fallback. At 90 % every layer of ResNet-50 and InceptionV3 fits.
  int64_t maxKernelsPerLayer = 16;
  /// Activations in fp32 or fp16 (weights and accumulation stay fp32).
  DType dtype = DType::F32;
  /// The batch the tiling heuristic plans for; unset: each layer's own.
  std::optional<int64_t> batch;
  /// `--tiling`: applied over every layer's heuristic or tuned choice.
  std::string tilingOverride;
  /// Tuned tilings by layer name (from the cache's tuning records).
  std::map<std::string, Tiling> tunedTilings;
};

/// One kernel of a layer: a layer is one kernel, or, past the per-kernel
/// budget, several, each computing a range of channel blocks.
struct LayerKernel {
  std::string symbol;
  ChannelBlockRange channelBlocks;
  int64_t gridY = 0; ///< blocks of grid y (the plan's)
  int64_t multiplyAdds = 0;
  /// Its packed weights: the constant-bank array's symbol (constant path),
  /// and where its values start in NAME.weights.bin, in floats, and how many.
  std::string weightsSymbol;
  int64_t weightsOffset = 0;
  int64_t weightsCount = 0;
  /// The module it is in: 0, unless the layer gives each kernel a module of
  /// its own, and so a 64 KiB constant bank of its own.
  size_t module = 0;
};

/// One module of a layer: its files' sizes. A layer is one module, or, on
/// the constant path past one bank's 64 KiB, one module per kernel.
struct LayerModule {
  size_t ptxBytes = 0;
  size_t fatbinBytes = 0; ///< 0: no fatbinary (ptxas did not run)
};

/// The file suffix of module \p module of \p modules: \p suffix (".ptx") for
/// a layer of one module, ".m<module>" + suffix otherwise.
std::string moduleFileSuffix(size_t module, size_t modules, const std::string &suffix);

/// The cubins ptxas made for \p options: binaryArchs, or arch alone;
/// none without runPtxas. The first is arch, whose report the manifest shows.
std::vector<std::string> cubinArchs(const GenerateOptions &options);

/// One cubin of a layer's fatbinary: ptxas's figures for that arch.
struct CubinInfo {
  std::string arch; ///< "sm_80"
  int64_t bytes = 0;
  int64_t instructions = 0; ///< SASS, every kernel together
  int registers = 0;        ///< the most of any kernel
  int spillBytes = 0;       ///< stores and loads, the most of any kernel
};

/// What generating one layer produced.
struct GeneratedLayer {
  std::string name;
  /// One, or several for a split layer: they write disjoint output channels,
  /// so they can be launched in any order. One when dense.
  std::vector<LayerKernel> kernels;
  Tiling tiling;
  /// Threads of grid x per group of BN images (the plan's launch shape).
  int64_t tilesPerImageGroup = 0;
  std::string tilingSource; ///< "heuristic", "tuned" or "user"
  std::vector<std::string> tilingReasons;
  DType dtype = DType::F32;
  std::string mode;          ///< "sparse", or "dense" past the code-size budget
  std::string denseReason;   ///< why the layer went dense, empty when sparse
  std::string weightPath;    ///< "constant", "global" or "baked"
  /// Its modules, in order; kernels say which they are in.
  std::vector<LayerModule> modules;
  int64_t nonzeros = 0;
  int64_t multiplyAdds = 0;  ///< fma instructions in the generated code
  int64_t denseMultiplyAdds = 0; ///< the unrolled dense template's: positions x BW
  size_t ptxBytes = 0; ///< every module's together
  /// ptxas's report for arch (the first cubin), over every module; nullopt
  /// when ptxas did not run.
  std::optional<PtxasReport> ptxas;
  /// The fatbinary's cubins, one per cubinArchs(), over every module; empty
  /// when ptxas did not run.
  std::vector<CubinInfo> cubins;
  size_t fatbinBytes = 0; ///< every module's together; 0: no fatbinary
  double seconds = 0;
  /// Wall time per phase: specialise, eliminate, cleanup, ptx, ptxas, write.
  std::vector<std::pair<std::string, double>> phaseSeconds;
  std::filesystem::path manifestPath;
};

/// A layer's kernel built in memory, before PTX: the final IR, which is
/// exactly what goes to the NVPTX backend (and what the host executor runs),
/// and the values the runtime loads beside it. The module lives in its
/// generator's LLVMContext and must not outlive the generator.
struct BuiltKernel {
  BuiltKernel();
  BuiltKernel(BuiltKernel &&) noexcept;
  BuiltKernel &operator=(BuiltKernel &&) noexcept;
  ~BuiltKernel();

  GeneratedLayer info;
  /// Every kernel in one module: what the host executor runs, and what
  /// becomes PTX when the layer is one module.
  std::unique_ptr<llvm::Module> module;
  /// Where each kernel has a module of its own (info.modules.size() > 1):
  /// those modules, each emitted as PTX on its own.
  std::vector<std::unique_ptr<llvm::Module>> kernelModules;
  /// NAME.weights.bin before the bias: the packed nonzeros in code order
  /// (constant or global path), the whole OIHW tensor (dense), or nothing
  /// (baked: the values are in the code).
  std::vector<float> arrayValues;
  /// The OIHW index of each arrayValues entry. It depends on the mask alone,
  /// so a round with new values and the same mask rebuilds arrayValues from it.
  std::vector<int64_t> arrayIndices;
  /// With --emit ll: the IR before elimination, one module per kernel.
  std::vector<std::string> specialisedIr;
  std::string weightMapText; ///< with --emit weightmap
};

/// A layer compiled through PTX, not yet written: everything its files are
/// made of (codegen/LayerFiles), whether fresh or from the cache.
/// One module's code: its PTX, and its fatbinary (a cubin per
/// GeneratedLayer::cubins, then the PTX; empty without ptxas).
struct ModuleCode {
  std::string ptx, fatbin;
};

struct CompiledLayer {
  GeneratedLayer info;
  /// Per module (info.modules); a cache hit may leave their bytes empty
  /// where the output already holds them.
  std::vector<ModuleCode> modules;
  std::vector<float> arrayValues;   ///< as BuiltKernel's
  std::vector<int64_t> arrayIndices;
  /// --emit extras: the IR per kernel before elimination, the final IR, the weight map.
  std::vector<std::string> specialisedIr;
  std::string finalIr, weightMapText;
};

/// Generates kernels layer after layer from one parsed template.
class KernelGenerator {
public:
  explicit KernelGenerator(GenerateOptions options);
  /// With the ptxas already found (options.runPtxas): a caller that makes a
  /// generator per layer asks for ptxas's version once, not per layer.
  KernelGenerator(GenerateOptions options, std::optional<Ptxas> ptxas);
  ~KernelGenerator();

  /// Specialise, eliminate, pack and clean up: the kernel in memory. Writes
  /// nothing; options().outputDir, emit and runPtxas do not matter here.
  BuiltKernel build(const ConvLayer &layer);
  /// build(), then PTX, ptxas, the manifest and every file, written only
  /// once the whole layer has succeeded.
  GeneratedLayer generate(const ConvLayer &layer);
  /// generate(), also handing back the built kernel in \p built: its module
  /// as it was before PTX emission (a copy: emission may change it), and
  /// the result's info.
  GeneratedLayer generate(const ConvLayer &layer, BuiltKernel &built);
  /// build(), then PTX and ptxas: the layer ready to write, in memory. With
  /// \p kept, also the built kernel as generate(layer, built) hands it back.
  CompiledLayer compile(const ConvLayer &layer, BuiltKernel *kept = nullptr);
  const GenerateOptions &options() const { return Options; }
  /// The operator template's name and content hash.
  const std::string &templateId() const;

private:
  GeneratedLayer generateKeeping(const ConvLayer &layer, BuiltKernel *kept);
  std::unique_ptr<llvm::Module>
  buildSparseKernel(const ConvLayer &layer, const LayerPlan &layerPlan, const KernelPlan &plan,
                    const std::shared_ptr<const std::vector<float>> &weights, LayerKernel &kernel,
                    BuiltKernel &built);

  GenerateOptions Options;
  std::optional<Ptxas> PtxasTool; ///< found (and its version asked) once
  std::optional<FatbinaryTool> FatbinaryPacker; ///< beside ptxas
  std::unique_ptr<llvm::LLVMContext> Context;
  std::unique_ptr<TemplateSpecializer> Specializer;
};

/// What the tiling heuristic is told about \p layer under \p options: its
/// nonzeros, the batch planned for, the code budget, the activation type.
TilingInputs tilingInputs(const ConvLayer &layer, const GenerateOptions &options);

/// The tiling \p layer gets under \p options: the heuristic's, replaced by
/// a tuned one where options has it, then the --tiling override applied;
/// the weight path resolved. Throws UnsupportedError naming the layer if
/// the result does not fit the layer.
TilingDecision decideTiling(const ConvLayer &layer, const GenerateOptions &options,
                            std::string *source = nullptr);

/// Sets \p info's tiling source and reasons as \p options decide them for
/// \p layer now (a cached entry carries those of the run that stored it:
/// the same tiling may come from --tiling then, and from a tuning record
/// now). A dense layer's reasons end with the fallback's own line.
void describeTilingChoice(GeneratedLayer &info, const ConvLayer &layer,
                          const GenerateOptions &options);

/// The file name stem for a layer's outputs: the name, with path separators
/// replaced and a leading '.' guarded, so no name writes outside -o.
std::string outputStemFor(const std::string &layerName);


} // namespace convgen
