#include "reference/ReferenceConv.h"

#include "support/Error.h"

#include <algorithm>
#include <cmath>

namespace convgen {

int64_t reductionLength(const ConvGeometry &g) {
  return g.inChannelsPerGroup() * g.kernel.h * g.kernel.w;
}

static void checkOperands(const ConvOperands &o) {
  const ConvGeometry &g = o.geometry;
  auto sizeOf = [](const Shape4 &shape) { return size_t(shape[0] * shape[1] * shape[2] * shape[3]); };
  Shape4 input = g.inputShape();
  input[0] = o.batch;
  if (o.batch < 1 || o.input.size() != sizeOf(input) || o.weights.size() != sizeOf(g.weightShape()) ||
      !(o.bias.empty() || o.bias.size() == size_t(g.outChannels)))
    throw UnsupportedError("reference convolution: operand sizes do not match the geometry " +
                           g.summary());
}

/// Without the operand checks, for the loops of referenceConv2d.
static ReferenceValue outputAt(const ConvOperands &o, int64_t n, int64_t k, int64_t p, int64_t q) {
  const ConvGeometry &g = o.geometry;
  const int64_t channels = g.inChannelsPerGroup();
  const int64_t group = k / g.outChannelsPerGroup();
  double sum = 0, magnitude = 0;
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t inChannel = group * channels + c;
    for (int64_t r = 0; r < g.kernel.h; ++r) {
      const int64_t h = p * g.stride.h - g.padding.h + r * g.dilation.h;
      if (h < 0 || h >= g.inSize.h)
        continue; // zero padding
      for (int64_t s = 0; s < g.kernel.w; ++s) {
        const int64_t w = q * g.stride.w - g.padding.w + s * g.dilation.w;
        if (w < 0 || w >= g.inSize.w)
          continue;
        const double x = o.input[size_t(((n * g.inChannels + inChannel) * g.inSize.h + h) * g.inSize.w + w)];
        const double weight = o.weights[size_t(((k * channels + c) * g.kernel.h + r) * g.kernel.w + s)];
        sum += x * weight; // exact product of two floats; the sum rounds in double
        magnitude += std::abs(x * weight);
      }
    }
  }
  if (!o.bias.empty()) {
    sum += o.bias[size_t(k)];
    magnitude += std::abs(double(o.bias[size_t(k)]));
  }
  return {applyActivation(sum, g.activation), magnitude};
}

ReferenceValue referenceOutput(const ConvOperands &operands, int64_t n, int64_t k, int64_t p,
                               int64_t q) {
  checkOperands(operands);
  HW out = operands.geometry.outSize();
  if (n < 0 || n >= operands.batch || k < 0 || k >= operands.geometry.outChannels || p < 0 ||
      p >= out.h || q < 0 || q >= out.w)
    throw UnsupportedError("reference convolution: output index out of range");
  return outputAt(operands, n, k, p, q);
}

std::vector<double> referenceConv2d(const ConvOperands &operands) {
  checkOperands(operands);
  const ConvGeometry &g = operands.geometry;
  HW out = g.outSize();
  std::vector<double> output;
  output.reserve(size_t(operands.batch * g.outChannels * out.h * out.w));
  for (int64_t n = 0; n < operands.batch; ++n)
    for (int64_t k = 0; k < g.outChannels; ++k)
      for (int64_t p = 0; p < out.h; ++p)
        for (int64_t q = 0; q < out.w; ++q)
          output.push_back(outputAt(operands, n, k, p, q).value);
  return output;
}

double float32ErrorBound(int64_t terms, double magnitude) {
  const double u = std::ldexp(1.0, -24);
  const double n = double(terms + 1);
  const double gamma = n * u / (1 - n * u);
  const double referenceRounding = n * std::ldexp(1.0, -52) * magnitude;
  const double underflow = n * std::ldexp(1.0, -149);
  return gamma * magnitude + referenceRounding + underflow;
}

double float16OutputErrorBound(int64_t terms, double magnitude, double reference) {
  const double fp32 = float32ErrorBound(terms, magnitude);
  return fp32 + std::max((std::abs(reference) + fp32) * std::ldexp(1.0, -11), std::ldexp(1.0, -25));
}

} // namespace convgen
