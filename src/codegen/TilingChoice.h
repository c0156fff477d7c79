// Which tiling a layer gets: the heuristic (from the geometry, the nonzeros
// and the batch the layer will run at), the candidates a tuner tries, and
// the `--tiling` text syntax. See docs/codegen.md, "Tiling".
#pragma once

#include "codegen/TemplateSpec.h"

#include <cstdint>
#include <string>
#include <vector>

namespace convgen {

/// The heuristic's default for TilingInputs::warpsPerScheduler.
inline constexpr int TargetWarpsPerScheduler = 1;

/// The SM count of the reference GPU of an arch, which the heuristic fills:
/// V100 (sm_70, 80), T4 (sm_75, 40), A100 (sm_80, 108), A10 (sm_86, 72),
/// L4 (sm_89, 58), H100 SXM (sm_90, 132); the nearest lower one otherwise.
int referenceMultiprocessors(int computeVersion);

/// What the heuristic knows about the layer beyond its geometry.
struct TilingInputs {
  int64_t nonzeros = 0;  ///< nonzero weights (all of them for a dense layer)
  int64_t batch = 1;     ///< the batch the kernel is generated for
  /// Sparse code the layer may hold before it goes dense: the per-kernel
  /// budget x kernels per layer (GenerateOptions).
  int64_t codeBudgetMultiplyAdds = int64_t{65536} * 4;
  /// Streaming multiprocessors of the GPU the code is for
  /// (referenceMultiprocessors of the arch).
  int multiprocessors = 132;
  /// Resident warps per warp scheduler (4 per SM) the grid should give at
  /// least: a warp waiting on a load is covered only by another warp of its
  /// scheduler. A grid under it splits the reduction (where that is cheap).
  int warpsPerScheduler = TargetWarpsPerScheduler;
  int64_t targetThreads() const { return int64_t(multiprocessors) * 4 * warpsPerScheduler * 32; }
  /// fp16 activations: ptxas takes far longer on fp16 code of the same
  /// size, so the tile is kept smaller (see FP16TileMultiplyAdds).
  bool halfPrecision = false;
  /// The nonzeros will be fma operands (the constant bank, or immediates),
  /// not loads: false where they go through ld.global.nc (past the constant
  /// bank on sm_70 and sm_80). A loaded weight is shared by the outputs of a
  /// thread's tile, so the tile then keeps several.
  bool weightsAreOperands = true;
};

/// With fp16 activations, the most multiply-adds (nnz x outputs per thread)
/// the heuristic gives a layer while it can still shrink the tile. Measured
/// with ptxas 13.0 on a 128->128 3x3 layer at 90 % (14746 nonzeros): fp16
/// code took 61 s in ptxas at 1 output per thread, 258 s at 2 and over
/// 900 s (stopped) at 4, against 20 s and 54 s for fp32 at 1 and 4.
inline constexpr int64_t FP16TileMultiplyAdds = 16384;

/// The most a split reduction may add, estimated, in machine instructions
/// per fma of code: past it, a batch-1 layer keeps fewer threads instead.
/// Simulated (GPGPU-Sim, RTX 3070 config, batch 1), feeding the GPU wins
/// over the static count: the example's LFF_1 (1x1 128->64) took 42,312
/// cycles unsplit at 1.46 SASS/fma and 21,349 at split=4 (1.97; estimated
/// cost 0.35). docs/benchmarks/lean-2026-12-01.md.
inline constexpr double MaxSplitCostPerMultiplyAdd = 0.4;

/// Layers with less sparse work (nonzeros x outputs x batch) than this are
/// not split: they finish in the time of a launch either way.
inline constexpr int64_t MinSplitMultiplyAdds = int64_t{1} << 20;

/// A tiling and why: one line per decision, recorded in the manifest.
struct TilingDecision {
  Tiling tiling;
  std::vector<std::string> reasons;
};

/// The heuristic, whose measure is machine instructions per fma: each
/// thread gets a wide channel block (BK up to 32) and two neighbouring
/// outputs, fewer where the code budget says; a grid under targetThreads
/// splits the reduction where that is cheap; narrow maps put several
/// channel blocks in a block instead of idle threads.
TilingDecision chooseTiling(const ConvGeometry &geometry, const TilingInputs &inputs);
/// The heuristic for a dense layer at batch 1 (nonzeros = every weight).
Tiling chooseTiling(const ConvGeometry &geometry);

/// The tilings a tuner tries for the layer (each passes checkTiling), the
/// heuristic's first and the dense kernel last.
std::vector<Tiling> candidateTilings(const ConvGeometry &geometry, const TilingInputs &inputs);

/// Parses `describe()`'s syntax: comma-separated key=value pairs, any
/// subset of bk, bw, bh, bn, threads, cta-blocks, split, stage (0/1), skip (0/1),
/// weights (auto/constant/global/baked) and dense (0/1), over \p base. A text
/// asking for cta-blocks > 1 or stage=1 without naming split drops the
/// base's split (they cannot go together). Throws InputError naming the
/// text for an unknown key or a bad value.
Tiling parseTiling(const std::string &text, Tiling base = {});

} // namespace convgen
