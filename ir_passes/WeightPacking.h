//===- WeightPacking.h - read surviving weights through a read-only path --===//
//
// After ZeroWeightElimination, packs the weights that are still loaded into
// an array of only the nonzero values, in code order (the order of their
// loads in the kernel), and rewrites each load to read its packed slot:
//
//   constant  a module global `convgen_weights` in the constant bank
//             (addrspace 4, externally initialised: the runtime copies the
//             values in), read with ld.const and broadcast to the warp;
//   global    the weights argument, now pointing at the packed array, read
//             with ld.global.nc (the argument is readonly noalias);
//   baked     no array: each load becomes the value itself, an FMA immediate.
//
// Either array path is separate from the inputs' path. Since code order is
// fixed by the mask, a round that changes only values (same mask) changes
// only the packed array, not the code.
//
// Run: constructed with the mode, the OIHW weights and a PackedWeights to
// receive the packed values and, slot by slot, the OIHW index each holds
// (both left empty when baked). The indices let a values-only round build
// its packed array without the code (the generator's cache);
// `convgen-pack-weights<constant|global|baked>`.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace convgen {

enum class WeightPath { ConstantBank, GlobalReadOnly, Baked };

/// The module global that holds the packed weights in constant-bank mode
/// (a layer split across kernels names one array per kernel instead).
inline constexpr const char *PackedWeightsSymbol = "convgen_weights";

/// The packed array: slot i holds values[i], the weight at OIHW index
/// indices[i].
struct PackedWeights {
  std::vector<float> values;
  std::vector<int64_t> indices;
};

class WeightPackingPass : public llvm::PassInfoMixin<WeightPackingPass> {
public:
  WeightPackingPass(WeightPath path, std::shared_ptr<const std::vector<float>> weights,
                    std::shared_ptr<PackedWeights> packed,
                    std::string symbol = PackedWeightsSymbol)
      : Path(path), Weights(std::move(weights)), Packed(std::move(packed)),
        Symbol(std::move(symbol)) {}
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);

private:
  WeightPath Path;
  std::shared_ptr<const std::vector<float>> Weights;
  std::shared_ptr<PackedWeights> Packed;
  std::string Symbol; ///< the constant-bank array's name
};

} // namespace convgen
