// Runs LLVM pass pipelines written in LLVM's textual syntax, with convgen's
// passes registered next to LLVM's:
//   convgen-sparse-unroll             ir_passes/SparseUnroll (weights optional:
//                                     without them, a plain full unroll)
//   convgen-zero-weight-elimination   ir_passes/ZeroWeightElimination (needs weights)
//   print<convgen-weight-map>         ir_passes/WeightMap's printer (needs an output)
//   convgen-pack-weights<constant|global|baked>
//                                     ir_passes/WeightPacking (needs weights and
//                                     a PackedWeights to fill)
// One entry point for the generator and for tests of single passes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class Function;
class Module;
class raw_ostream;
} // namespace llvm

namespace convgen {

struct PackedWeights; // ir_passes/WeightPacking.h

/// True when CONVGEN_VERIFY_EACH_PASS=1: the test suite sets it, so every
/// pass of every pipeline in the tests is followed by the IR verifier.
bool verifyEachPassRequested();

struct PipelineContext {
  /// OIHW weights for convgen-sparse-unroll and convgen-zero-weight-elimination.
  std::shared_ptr<const std::vector<float>> weights;
  /// Receives the packed values and their indices from convgen-pack-weights.
  std::shared_ptr<PackedWeights> packedWeights;
  /// The constant-bank array's symbol, for convgen-pack-weights<constant>.
  std::string packedWeightsSymbol = "convgen_weights";
  /// Where print<convgen-weight-map> writes.
  llvm::raw_ostream *weightMapOut = nullptr;
  /// Run the IR verifier after every pass.
  bool verifyEach = verifyEachPassRequested();
};

/// The WeightMap of \p kernel in numbers: positions found, multiply-adds
/// linked to them, and the loads that would make elimination unsound.
struct WeightMapSummary {
  bool annotated = false;
  int64_t positions = 0;
  int64_t multiplyAdds = 0;
  int64_t nonConstantLoads = 0;
  int64_t loadsWithOtherUses = 0;
};
WeightMapSummary summarizeWeightMap(llvm::Function &kernel);

/// Runs \p pipelineText over \p module. Throws CheckFailure if the text does
/// not parse or names a convgen pass whose input the context lacks.
void runPipeline(llvm::Module &module, const std::string &pipelineText,
                 const PipelineContext &context = {});

} // namespace convgen
