// The complete geometry of one PyTorch Conv2d application: input shape,
// weight shape and the stride/padding/dilation/groups/activation between them.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace convgen {

enum class Activation { None, Relu, Relu6 };

/// "none", "relu", "relu6".
const char *activationName(Activation activation);

/// The activation applied to \p value, in double precision.
double applyActivation(double value, Activation activation);

/// A (height, width) pair, as torch.nn.Conv2d's stride/padding/dilation.
struct HW {
  int64_t h = 0;
  int64_t w = 0;
  bool operator==(const HW &) const = default;
};

/// N, C, H, W.
using Shape4 = std::array<int64_t, 4>;

std::string formatShape4(const Shape4 &shape); ///< "[1, 64, 56, 56]"

struct ConvGeometry {
  int64_t batch = 1;
  int64_t inChannels = 0;
  HW inSize;
  int64_t outChannels = 0;
  HW kernel;
  HW stride{1, 1};
  HW padding{0, 0}; ///< symmetric per axis
  HW dilation{1, 1};
  int64_t groups = 1;
  Activation activation = Activation::None;
  bool hasBias = false;

  int64_t inChannelsPerGroup() const { return inChannels / groups; }
  int64_t outChannelsPerGroup() const { return outChannels / groups; }
  /// Output size by torch.nn.Conv2d's formula; may be <= 0 for an invalid
  /// geometry (validateGeometry rejects those).
  HW outSize() const;
  Shape4 inputShape() const { return {batch, inChannels, inSize.h, inSize.w}; }
  Shape4 outputShape() const;
  /// The OIHW weight shape: [O, C/groups, kh, kw].
  Shape4 weightShape() const { return {outChannels, inChannelsPerGroup(), kernel.h, kernel.w}; }
  /// Multiply-adds of the dense convolution: N*O*Ho*Wo*(C/groups)*kh*kw.
  int64_t denseMultiplyAdds() const;
  /// "3x3 s1 p1 d1 g1" style one-line summary.
  std::string summary() const;
};

} // namespace convgen
