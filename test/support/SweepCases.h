// The property sweep's cases, shared by the CPU sweep (test/exec) and the
// GPU sweep (test/runtime): every (sparsity x pattern x path) combination,
// walking a list of geometries that together cover kernels 1-7 (1x7, 7x1,
// even sizes), strides 1-3, padding 0-3, dilation 1-2, groups 1, 2, 3 and
// depthwise, odd spatial sizes, outputs narrower than a tile, and channel
// counts that are not multiples of the tiles; batch cycles 1-3. Everything
// is drawn from one seed (CONVGEN_SWEEP_SEED overrides it).
#pragma once

#include "codegen/LayerGenerator.h"
#include "support/ConvCases.h"

#include <ostream>
#include <string>
#include <vector>

namespace convgen::test {

enum class Path { Constant, Global, Baked, ValuesOnlyUpdate, DenseFallback, Split };
const char *pathName(Path path);

struct SweepCase {
  int index;
  double sparsity;
  SparsityPattern pattern;
  Path path;
};

/// The crossed cases, then values-only updates, dense fallbacks and layers
/// split across kernels for every pattern at 50 and 90 %.
std::vector<SweepCase> sweepCases();
uint64_t sweepSeed();
std::string caseName(const SweepCase &c);
/// Names the case in test listings instead of dumping its bytes.
void PrintTo(const SweepCase &c, std::ostream *out);

/// A case made concrete: its layer, the generation options of its path, and
/// what the generated kernel must look like.
struct SweepLayer {
  uint64_t seed = 0;
  ConvLayer layer;
  GenerateOptions options;
  std::string trace;            ///< seed, case and geometry, for failure messages
  int64_t largestBlockCode = 0; ///< the split budget (Split cases)
  /// For ValuesOnlyUpdate: the next round's layer, same mask, new values.
  ConvLayer updated;
};
SweepLayer makeSweepLayer(const SweepCase &c);

} // namespace convgen::test
