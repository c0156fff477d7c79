#include "model/LayerStats.h"

#include <algorithm>

namespace convgen {

LayerStats computeLayerStats(const ConvLayer &layer) {
  LayerStats stats;
  stats.weightCount = static_cast<int64_t>(layer.weights.size());
  stats.nonzeroCount = std::count_if(layer.weights.begin(), layer.weights.end(),
                                     [](float w) { return w != 0.0f; });
  const ConvGeometry &g = layer.geometry;
  HW out = g.outSize();
  stats.denseMultiplyAdds = g.denseMultiplyAdds();
  stats.sparseMultiplyAdds = g.batch * out.h * out.w * stats.nonzeroCount;
  return stats;
}

} // namespace convgen
