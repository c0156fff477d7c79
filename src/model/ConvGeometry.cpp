#include "model/ConvGeometry.h"

#include <algorithm>

namespace convgen {

const char *activationName(Activation activation) {
  switch (activation) {
  case Activation::None: return "none";
  case Activation::Relu: return "relu";
  case Activation::Relu6: return "relu6";
  }
  return "?";
}

double applyActivation(double value, Activation activation) {
  switch (activation) {
  case Activation::None:
    return value;
  case Activation::Relu:
    return std::max(value, 0.0);
  case Activation::Relu6:
    return std::min(std::max(value, 0.0), 6.0);
  }
  return value;
}

std::string formatShape4(const Shape4 &shape) {
  return "[" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + ", " +
         std::to_string(shape[2]) + ", " + std::to_string(shape[3]) + "]";
}

/// floor((in + 2p - d(k-1) - 1) / s) + 1, with floor (not truncation) so that
/// a kernel larger than the padded input gives a non-positive size.
static int64_t outputExtent(int64_t in, int64_t pad, int64_t dilation, int64_t kernel,
                            int64_t stride) {
  int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  if (span < 0)
    return 0;
  return span / stride + 1;
}

HW ConvGeometry::outSize() const {
  return {outputExtent(inSize.h, padding.h, dilation.h, kernel.h, stride.h),
          outputExtent(inSize.w, padding.w, dilation.w, kernel.w, stride.w)};
}

Shape4 ConvGeometry::outputShape() const {
  HW out = outSize();
  return {batch, outChannels, out.h, out.w};
}

int64_t ConvGeometry::denseMultiplyAdds() const {
  HW out = outSize();
  return batch * outChannels * out.h * out.w * inChannelsPerGroup() * kernel.h * kernel.w;
}

std::string ConvGeometry::summary() const {
  auto pair = [](const HW &hw) {
    return hw.h == hw.w ? std::to_string(hw.h) : std::to_string(hw.h) + "," + std::to_string(hw.w);
  };
  return std::to_string(kernel.h) + "x" + std::to_string(kernel.w) + " s" + pair(stride) + " p" +
         pair(padding) + " d" + pair(dilation) + " g" + std::to_string(groups);
}

} // namespace convgen
