// `convgen verify`: runs a generated kernel on the host executor with a
// seeded random input and checks every output it computes against the
// double-precision reference convolution, within the fp32 error bound of
// its reduction (reference/ReferenceConv.h). Also checks that no output is
// left unwritten and none outside the run blocks' tiles is touched.
//
// A layer with channel facts from its graph (ConvLayer::channels) is
// checked in context: its input is zero on the channels known zero, the
// reference uses the model's own weights, only the channels someone reads
// are compared, and the output channels the graph claims zero (which its
// consumers were generated trusting) must be exactly zero in the reference.
#pragma once

#include "codegen/LayerGenerator.h"
#include "model/ModelFile.h"

#include <cstdint>
#include <string>

namespace convgen {

struct VerifyOptions {
  int64_t batch = 2; ///< images per run: more than one exercises the image index
  uint64_t seed = 1; ///< input values and sampled blocks
  bool allBlocks = false; ///< never sample, whatever the size
  /// Layers whose dense work (batch x multiply-adds) exceeds this run a
  /// sample of their blocks (verify/BlockSample.h).
  int64_t sampleAboveMultiplyAdds = int64_t{1} << 30;
  int interiorBlocks = 16; ///< random interior x blocks in a sample
  unsigned hostThreads = 0; ///< 0: one per core
};

struct VerifyReport {
  std::string layer, mode, weightPath;
  std::string blocks;          ///< which blocks ran (BlockSample's description)
  std::string context;         ///< the channel facts it ran under; empty: none
  bool sampled = false;
  int64_t outputsChecked = 0;
  double maxAbsError = 0;
  /// Max |error| / |reference| over outputs with |reference| >= 1e-3 x the
  /// sum of |products| (below that, cancellation makes it meaningless).
  double maxRelError = 0;
  double boundUse = 0;         ///< max |error| / bound: PASS needs <= 1
  int64_t failures = 0;        ///< outputs off by more than the bound, unwritten or stray
  std::string firstFailure;    ///< the first of them, with its index
  double compileSeconds = 0, runSeconds = 0, checkSeconds = 0;
  bool passed() const { return failures == 0; }
};

/// Verifies \p kernel, built from \p layer by KernelGenerator::build.
VerifyReport verifyKernel(const ConvLayer &layer, const BuiltKernel &kernel,
                          const VerifyOptions &options);

} // namespace convgen
