//===- WeightMap.h - weight position -> the instructions tied to it -------===//
//
// For a fully unrolled convolution kernel, maps each weight position
// (k, c, r, s) of the OIHW weight tensor to:
//   - the load of that weight (a constant offset from the weights argument),
//   - the multiply-adds (llvm.fma) that use it as a multiplicand: the links
//     of the accumulation chains,
//   - the input loads that only it needs (used by no other weight's
//     multiply-adds), which die with it.
//
// The kernel names its weights argument and the OIHW shape in function
// metadata, so the analysis works on any IR, including IR parsed from text:
//   !convgen.weights = !{i32 ARG, i64 O, i64 C/groups, i64 KH, i64 KW}
//
// Weight loads whose offset is not a constant, or that have uses other than
// multiply-adds, are reported: zero-weight elimination needs neither.
//
// Print with the `print<convgen-weight-map>` pass (`--emit weightmap`).
//
//===----------------------------------------------------------------------===//
#pragma once

#include <llvm/IR/PassManager.h>

#include <array>
#include <cstdint>
#include <map>
#include <vector>

namespace llvm {
class Argument;
class CallInst;
class Instruction;
class LoadInst;
class raw_ostream;
} // namespace llvm

namespace convgen {

/// Where the weights argument and its OIHW shape are named on a kernel.
inline constexpr const char *WeightsMetadataName = "convgen.weights";

/// Annotates \p kernel for WeightMapAnalysis: argument \p argument holds the
/// weights, OIHW \p shape.
void annotateWeights(llvm::Function &kernel, unsigned argument, const std::array<int64_t, 4> &shape);

/// The weights argument and OIHW shape \p kernel is annotated with; false
/// if it is not (or the annotation is malformed).
bool readWeightsAnnotation(const llvm::Function &kernel, const llvm::Argument *&weights,
                           std::array<int64_t, 4> &shape);

/// llvm.fma or llvm.fmuladd: a link of an accumulation chain.
bool isMultiplyAdd(const llvm::Instruction *inst);

struct WeightUses {
  llvm::LoadInst *load = nullptr;
  std::vector<llvm::CallInst *> multiplyAdds;
  std::vector<llvm::Instruction *> exclusiveInputLoads;
};

class WeightMap {
public:
  /// Weight positions by flat OIHW index, in index order.
  const std::map<int64_t, WeightUses> &positions() const { return Positions; }
  const std::array<int64_t, 4> &shape() const { return Shape; }
  /// Index of the kernel argument that holds the weights.
  unsigned weightsArgument() const { return WeightsArgument; }
  bool annotated() const { return Annotated; }
  /// Weight loads whose offset is not a compile-time constant.
  const std::vector<llvm::LoadInst *> &nonConstantLoads() const { return NonConstantLoads; }
  /// Weight loads with a use other than a multiply-add multiplicand.
  const std::vector<llvm::LoadInst *> &loadsWithOtherUses() const { return LoadsWithOtherUses; }
  size_t multiplyAddCount() const;

  /// (k, c, r, s) of a flat OIHW index.
  std::array<int64_t, 4> decode(int64_t index) const;
  void print(llvm::raw_ostream &out, const llvm::Function &function) const;

  /// Analysis invalidation: recompute whenever the function changes.
  bool invalidate(llvm::Function &, const llvm::PreservedAnalyses &preserved,
                  llvm::FunctionAnalysisManager::Invalidator &);

private:
  friend class WeightMapAnalysis;
  bool Annotated = false;
  unsigned WeightsArgument = 0;
  std::array<int64_t, 4> Shape{};
  std::map<int64_t, WeightUses> Positions;
  std::vector<llvm::LoadInst *> NonConstantLoads;
  std::vector<llvm::LoadInst *> LoadsWithOtherUses;
};

class WeightMapAnalysis : public llvm::AnalysisInfoMixin<WeightMapAnalysis> {
public:
  using Result = WeightMap;
  Result run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);

private:
  friend llvm::AnalysisInfoMixin<WeightMapAnalysis>;
  static llvm::AnalysisKey Key;
};

/// Prints the WeightMap of every annotated function.
class WeightMapPrinterPass : public llvm::PassInfoMixin<WeightMapPrinterPass> {
public:
  explicit WeightMapPrinterPass(llvm::raw_ostream &out) : Out(out) {}
  llvm::PreservedAnalyses run(llvm::Function &function, llvm::FunctionAnalysisManager &analyses);
  static bool isRequired() { return true; }

private:
  llvm::raw_ostream &Out;
};

} // namespace convgen
