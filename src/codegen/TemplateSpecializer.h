// Specialises an operator template to one layer: clone the template module,
// give its spec global the layer's constants, simplify, then fully unroll
// (ir_passes/SparseUnroll) so that every weight read has a constant position.
// Given the layer's weights, the unroll never copies a zero weight's work:
// the cost follows the nonzeros, not the dense layer.
//
// The template IR is parsed once per specialiser and cloned for each layer:
// one template serves every layer shape and every pruning round.
#pragma once

#include "codegen/OperatorTemplate.h"
#include "codegen/TemplateSpec.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace llvm {
class LLVMContext;
class Module;
} // namespace llvm

namespace convgen {

class TemplateSpecializer {
public:
  /// Parses \p source's IR into \p context. Throws CheckFailure if the
  /// embedded IR does not parse (a build problem, not user input).
  TemplateSpecializer(llvm::LLVMContext &context, const OperatorTemplate &source);
  ~TemplateSpecializer();

  struct SparseOptions {
    /// The layer's OIHW weights: the unroll leaves out the multiply-adds of
    /// the zero ones. Null: the dense template, fully unrolled.
    std::shared_ptr<const std::vector<float>> weights;
    /// Called with the specialised module before the unroll, the reduction
    /// loops still rolled (`--emit ll` prints it: the dense template, with
    /// the layer's constants, before anything is left out).
    std::function<void(const llvm::Module &)> beforeUnroll;
  };

  /// A specialised, fully unrolled copy of the template, with the kernel
  /// named \p kernelName and annotated for WeightMapAnalysis (weights are
  /// argument WeightsArgument). \p channelsUsed is the kernel's
  /// convgen_input_channel_used table (inputChannelsUsed). Not yet cleaned
  /// up: run cleanupPipeline() after packing. \p what names the layer in
  /// errors.
  std::unique_ptr<llvm::Module> specialize(const TemplateSpec &spec,
                                           const std::vector<uint8_t> &channelsUsed,
                                           const std::string &kernelName, const std::string &what,
                                           const SparseOptions &sparse = {}) const;

  /// specialize() with every input channel read (an all-ones table) and
  /// nothing left out.
  std::unique_ptr<llvm::Module> specialize(const TemplateSpec &spec, const std::string &kernelName,
                                           const std::string &what) const;

  /// The dense fallback: the same template with the layer's constants in,
  /// but the reduction kept as loops (weights read from the full OIHW array
  /// by index), for layers whose sparse code would exceed the code-size
  /// budget. Cleaned up and ready for PTX.
  std::unique_ptr<llvm::Module> specializeDense(const TemplateSpec &spec,
                                                const std::string &kernelName,
                                                const std::string &what) const;

  /// Shrinks the template's shared staging array (sized for the largest
  /// staging, 48 KiB) to \p floats, what the kernel's tiling stages: the
  /// shared memory a block holds bounds how many blocks share an SM.
  static void fitSharedMemory(llvm::Module &module, int64_t floats, const std::string &what);

  const OperatorTemplate &source() const { return Source; }
  /// The parsed template, shared by every specialisation.
  const llvm::Module &templateModule() const { return *Template; }
  /// How many times a template was parsed by any specialiser (for tests
  /// that show one parse serves many layers).
  static unsigned parseCount();

  /// The pass pipeline run after the constants are in, in LLVM's textual
  /// syntax: the reduction loops stay rolled.
  static const char *pipeline();
  /// The unroll of the reduction loops (`convgen-sparse-unroll` is
  /// ir_passes/SparseUnroll) and the section exits.
  static const char *unrollPipeline();
  /// The general cleanup run once the code has been specialised and thinned.
  static const char *cleanupPipeline();
  /// The dense fallback's pipeline: constants folded, the small tile loops
  /// unrolled (the accumulators must become registers), the reduction kept.
  static const char *densePipeline();

  /// The kernel's arguments: input, weights, bias, output, batch.
  static constexpr unsigned WeightsArgument = 1;

private:
  const OperatorTemplate &Source;
  std::unique_ptr<llvm::Module> Template;
};

} // namespace convgen
