#include "model/LayerStats.h"

#include <algorithm>

namespace convgen {

LayerStats computeLayerStats(const ConvLayer &layer) {
  LayerStats stats;
  const std::vector<float> &weights = layer.referenceWeights();
  stats.weightCount = static_cast<int64_t>(weights.size());
  stats.nonzeroCount = std::count_if(weights.begin(), weights.end(), [](float w) { return w != 0.0f; });
  stats.removedNonzeros = layer.removedNonzeros;
  const ConvGeometry &g = layer.geometry;
  HW out = g.outSize();
  stats.denseMultiplyAdds = g.denseMultiplyAdds();
  stats.sparseMultiplyAdds = g.batch * out.h * out.w * stats.nonzeroCount;
  stats.codeMultiplyAdds = g.batch * out.h * out.w * (stats.nonzeroCount - stats.removedNonzeros);
  return stats;
}

} // namespace convgen
