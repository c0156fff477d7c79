// Sparsity and work counts of a layer, as `convgen --list` reports them.
#pragma once

#include "model/ModelFile.h"

#include <cstdint>

namespace convgen {

struct LayerStats {
  int64_t weightCount = 0;
  int64_t nonzeroCount = 0; ///< the model's weights != 0 (-0.0 counts as zero)
  int64_t denseMultiplyAdds = 0;  ///< N*O*Ho*Wo*(C/groups)*kh*kw
  int64_t sparseMultiplyAdds = 0; ///< N*Ho*Wo*nnz: only the nonzero weights' work
  /// Of those nonzeros, the ones the graph makes useless (ConvLayer::channels),
  /// and the work left for the code.
  int64_t removedNonzeros = 0;
  int64_t codeMultiplyAdds = 0; ///< N*Ho*Wo*(nnz - removed)

  double sparsity() const {
    return weightCount ? 1.0 - double(nonzeroCount) / double(weightCount) : 0.0;
  }
  /// FLOPs count a multiply-add as 2, as the reference paper and cuDNN do.
  int64_t denseFlops() const { return 2 * denseMultiplyAdds; }
  int64_t sparseFlops() const { return 2 * sparseMultiplyAdds; }
};

LayerStats computeLayerStats(const ConvLayer &layer);

} // namespace convgen
