// The reference convolution that generated kernels are checked against:
// plain direct loops in double precision with exactly torch.nn.Conv2d's
// semantics (zero padding, stride, dilation, groups), then the bias, then
// the fused activation (none, ReLU, ReLU6). Deliberately naive: it shares
// nothing with the templates or the generator.
#pragma once

#include "model/ConvGeometry.h"

#include <cstdint>
#include <span>
#include <vector>

namespace convgen {

/// The tensors of one convolution: NCHW input of \p batch images, OIHW
/// weights, and the bias (empty for none).
struct ConvOperands {
  const ConvGeometry &geometry;
  std::span<const float> input;
  std::span<const float> weights;
  std::span<const float> bias;
  int64_t batch = 1;
};

/// One output value and the scale of its sum.
struct ReferenceValue {
  double value = 0;     ///< after bias and activation
  double magnitude = 0; ///< sum of |weight x input| over the reduction, plus |bias|
};

/// Output (n, k, p, q). Throws UnsupportedError for an out-of-range index or
/// operands whose sizes do not match the geometry.
ReferenceValue referenceOutput(const ConvOperands &operands, int64_t n, int64_t k, int64_t p,
                               int64_t q);

/// The whole NCHW output.
std::vector<double> referenceConv2d(const ConvOperands &operands);

/// The reduction length of one output: C/groups x kh x kw.
int64_t reductionLength(const ConvGeometry &geometry);

/// A bound on |fp32 result - exact result| for one output whose reduction
/// has \p terms products, computed as any order of fp32 fused multiply-adds
/// and one fp32 bias add: gamma(terms + 1) x magnitude (Higham's
/// gamma(n) = n u / (1 - n u), u = 2^-24), plus the double reference's own
/// rounding and the underflow of subnormal products. The activation
/// (clamping) cannot increase the error.
double float32ErrorBound(int64_t terms, double magnitude);

/// float32ErrorBound for an output stored as fp16: the fp32 result is then
/// rounded once to half, which adds up to half an ulp of it (2^-11 of
/// |result| <= |reference| + the fp32 bound), and at least half the
/// smallest subnormal (2^-25).
double float16OutputErrorBound(int64_t terms, double magnitude, double reference);

} // namespace convgen
