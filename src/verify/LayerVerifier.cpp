#include "verify/LayerVerifier.h"

#include "exec/GridRunner.h"
#include "exec/HostKernel.h"
#include "io/Half.h"
#include "reference/ReferenceConv.h"
#include "support/Error.h"
#include "verify/BlockSample.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

namespace convgen {

/// A NaN no kernel computes: outputs still holding it were never written.
static constexpr uint32_t UnwrittenBits = 0x7fc0dead;

static bool isUnwritten(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  return bits == UnwrittenBits;
}

static double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Uniform in [-1, 1]; for an fp16 kernel, already rounded to half, so the
/// reference sees exactly the kernel's inputs.
static std::vector<float> randomInput(const ConvGeometry &g, int64_t batch, uint64_t seed,
                                      DType dtype) {
  std::vector<float> input(size_t(batch * g.inChannels * g.inSize.h * g.inSize.w));
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  for (float &x : input) {
    x = value(random);
    if (dtype == DType::F16)
      x = halfToFloat(floatToHalf(x));
  }
  return input;
}

/// Sets channels \p zero of every image of the NCHW \p input to zero: the
/// layer's inputs in its graph, where the graph knows them zero.
static void zeroChannels(std::vector<float> &input, const ConvGeometry &g, int64_t batch,
                         const std::vector<int64_t> &zero) {
  const size_t plane = size_t(g.inSize.h * g.inSize.w);
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t c : zero) {
      auto first = input.begin() + std::ptrdiff_t((size_t(n * g.inChannels + c)) * plane);
      std::fill(first, first + std::ptrdiff_t(plane), 0.0f);
    }
}

/// A half NaN no kernel computes (the fp16 counterpart of UnwrittenBits).
static constexpr uint16_t UnwrittenHalf = 0x7e5d;

/// The kernel's activation buffers in its element type.
struct ActivationBuffers {
  DType dtype;
  std::vector<float> input32, output32;
  std::vector<uint16_t> input16, output16;

  ActivationBuffers(DType type, const std::vector<float> &input, size_t outputs) : dtype(type) {
    if (dtype == DType::F16) {
      for (float x : input)
        input16.push_back(floatToHalf(x));
      output16.resize(outputs);
    } else {
      input32 = input;
      output32.resize(outputs);
    }
  }
  const void *input() const {
    return dtype == DType::F16 ? static_cast<const void *>(input16.data()) : input32.data();
  }
  void *output() { return dtype == DType::F16 ? static_cast<void *>(output16.data()) : output32.data(); }
  void markUnwritten() {
    float unwritten;
    std::memcpy(&unwritten, &UnwrittenBits, 4);
    std::fill(output32.begin(), output32.end(), unwritten);
    std::fill(output16.begin(), output16.end(), UnwrittenHalf);
  }
  bool unwritten(size_t i) const {
    return dtype == DType::F16 ? output16[i] == UnwrittenHalf : isUnwritten(output32[i]);
  }
  float value(size_t i) const {
    return dtype == DType::F16 ? halfToFloat(output16[i]) : output32[i];
  }
};

/// Constant-bank kernels read their weights from a module global the
/// runtime fills (one per kernel); the other paths take them as the weights
/// argument.
static void loadConstantBank(const HostKernel &host, const BuiltKernel &built,
                             const LayerKernel &kernel, const std::string &what) {
  if (built.info.weightPath != "constant" || kernel.weightsSymbol.empty())
    return; // (a kernel with no nonzero weight has no array at all)
  std::span<std::byte> bank = host.global(kernel.weightsSymbol);
  if (bank.size() != size_t(kernel.weightsCount) * 4 ||
      size_t(kernel.weightsOffset + kernel.weightsCount) > built.arrayValues.size())
    throw CheckFailure(what + ": the constant bank " + kernel.weightsSymbol + " holds " +
                       std::to_string(bank.size()) + " bytes for " +
                       std::to_string(kernel.weightsCount) + " weights");
  std::memcpy(bank.data(), built.arrayValues.data() + kernel.weightsOffset, bank.size());
}

/// Marks the outputs the run blocks compute.
static void markCoveredOutputs(const ConvGeometry &g, const Tiling &tiling, int64_t batch,
                               const BlockSample &sample, std::vector<bool> &covered) {
  HW out = g.outSize();
  for (const Dim3 &block : sample.blocks)
    for (int64_t t = 0; t < tiling.threadsX; ++t) {
      auto tile = threadTile(g, tiling, batch, int64_t(block.x) * tiling.threadsX + t);
      if (!tile)
        continue;
      for (int64_t y = 0; y < tiling.channelBlocksPerCta; ++y) {
        const int64_t local = int64_t(block.y) * tiling.channelBlocksPerCta + y;
        if (local >= sample.channelBlocks.count)
          continue; // a thread row past the kernel's channel blocks computes nothing
        for (int64_t kk = 0; kk < tiling.channelsPerThread; ++kk) {
          const int64_t k = (sample.channelBlocks.first + local) * tiling.channelsPerThread + kk;
          for (int64_t n = tile->n0; n < std::min(tile->n0 + tiling.imagesPerThread, batch); ++n)
            for (int64_t p = tile->p0; p < tile->p0 + tiling.rowsPerThread; ++p)
              for (int64_t q = tile->q0; q < tile->q0 + tiling.outputsPerThread; ++q)
                covered[size_t(((n * g.outChannels + k) * out.h + p) * out.w + q)] = true;
        }
      }
    }
}

/// "output[n,k,p,q]" for the NCHW index \p index.
static std::string outputName(const ConvGeometry &g, const HW &out, size_t index) {
  const int64_t i = int64_t(index);
  const int64_t q = i % out.w, p = i / out.w % out.h, k = i / (out.w * out.h) % g.outChannels,
                n = i / (out.w * out.h * g.outChannels);
  return "output[" + std::to_string(n) + "," + std::to_string(k) + "," + std::to_string(p) + "," +
         std::to_string(q) + "]";
}

VerifyReport verifyKernel(const ConvLayer &layer, const BuiltKernel &kernel,
                          const VerifyOptions &options) {
  const std::string what = "layer '" + layer.name + "'";
  const ConvGeometry &g = layer.geometry;
  const Tiling &tiling = kernel.info.tiling;
  VerifyReport report;
  report.layer = layer.name;
  report.mode = kernel.info.mode;
  report.weightPath = kernel.info.weightPath;
  if (!layer.channels.empty())
    report.context = "in context: " + std::to_string(layer.channels.zeroInputChannels.size()) +
                     " input channel(s) zero, " +
                     std::to_string(layer.channels.unreadOutputChannels.size()) +
                     " output channel(s) unread, " +
                     std::to_string(layer.channels.zeroOutputChannels.size()) + " claimed zero";

  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> symbols;
  for (const LayerKernel &part : kernel.info.kernels)
    symbols.push_back(part.symbol);
  auto host = HostKernel::compile(*kernel.module, symbols, what);
  for (const LayerKernel &part : kernel.info.kernels)
    loadConstantBank(*host, kernel, part, what);
  report.compileSeconds = secondsSince(start);

  const int64_t batch = options.batch;
  bool sample = !options.allBlocks &&
                batch * g.denseMultiplyAdds() / std::max<int64_t>(g.batch, 1) >
                    options.sampleAboveMultiplyAdds;
  const DType dtype = kernel.info.dtype;
  auto checkChannels = [&](const std::vector<int64_t> &channels, int64_t count, const char *what) {
    for (int64_t c : channels)
      if (c < 0 || c >= count)
        throw CheckFailure(layer.name + ": channel " + std::to_string(c) + " of its " + what +
                           " is outside 0.." + std::to_string(count - 1));
  };
  checkChannels(layer.channels.zeroInputChannels, g.inChannels, "zero inputs");
  checkChannels(layer.channels.zeroOutputChannels, g.outChannels, "zero outputs");
  checkChannels(layer.channels.unreadOutputChannels, g.outChannels, "unread outputs");
  std::vector<float> input = randomInput(g, batch, options.seed, dtype);
  zeroChannels(input, g, batch, layer.channels.zeroInputChannels);
  HW out = g.outSize();
  const size_t outputCount = size_t(batch * g.outChannels * out.h * out.w);
  float unwritten;
  std::memcpy(&unwritten, &UnwrittenBits, 4);
  // Each kernel runs on a buffer of its own, so a write outside the outputs
  // it computes cannot hide under another kernel's; then its outputs are
  // merged into the layer's.
  std::vector<float> output(outputCount, unwritten);
  ActivationBuffers buffers(dtype, input, outputCount);
  std::vector<bool> covered(outputCount, false);
  auto fail = [&report](const std::string &problem) {
    if (report.failures++ == 0)
      report.firstFailure = problem;
  };
  uint64_t blocksRun = 0, blocksTotal = 0;
  std::string sampleNote;
  for (const LayerKernel &part : kernel.info.kernels) {
    BlockSample blocks = chooseBlocks(g, tiling, batch, part.channelBlocks, sample,
                                      options.interiorBlocks, options.seed);
    buffers.markUnwritten();
    ConvKernelArguments arguments;
    arguments.input = buffers.input();
    // The global path reads the kernel's slice of the packed array; the
    // dense fallback the whole tensor; baked kernels nothing.
    arguments.weights = kernel.arrayValues.empty() ? nullptr
                                                   : kernel.arrayValues.data() + part.weightsOffset;
    arguments.bias = layer.bias.empty() ? nullptr : layer.bias.data();
    arguments.output = buffers.output();
    arguments.batch = int32_t(batch);
    auto runStart = std::chrono::steady_clock::now();
    runBlocks(*host, blocks.grid, {uint32_t(tiling.threadsX), uint32_t(tiling.blockY()), 1},
              blocks.blocks,
              arguments, options.hostThreads, part.symbol);
    report.runSeconds += secondsSince(runStart);

    std::vector<bool> mine(outputCount, false);
    markCoveredOutputs(g, tiling, batch, blocks, mine);
    for (size_t i = 0; i < outputCount; ++i) {
      if (mine[i]) {
        output[i] = buffers.unwritten(i) ? unwritten : buffers.value(i);
        covered[i] = true;
      } else if (!buffers.unwritten(i)) {
        fail(outputName(g, out, i) + " was written by " + part.symbol +
             ", but none of its blocks that ran computes it");
      }
    }
    blocksRun += blocks.blocks.size();
    blocksTotal += blocks.grid.count();
    report.sampled = report.sampled || blocks.sampled;
    if (kernel.info.kernels.size() == 1)
      sampleNote = blocks.description;
  }
  report.blocks = kernel.info.kernels.size() == 1
                      ? sampleNote
                      : std::to_string(kernel.info.kernels.size()) + " kernels, " +
                            std::to_string(blocksRun) + " of " + std::to_string(blocksTotal) +
                            " blocks";

  start = std::chrono::steady_clock::now();
  // The model's own weights: the kernel's drop what the graph makes
  // useless, which the inputs (zero where the graph says) and the outputs
  // compared (those someone reads) must make invisible.
  ConvOperands operands{g, input, layer.referenceWeights(), layer.bias, batch};
  std::vector<bool> unread(size_t(g.outChannels), false), claimedZero(size_t(g.outChannels), false);
  for (int64_t k : layer.channels.unreadOutputChannels)
    unread[size_t(k)] = true;
  for (int64_t k : layer.channels.zeroOutputChannels)
    claimedZero[size_t(k)] = true;
  const int64_t terms = reductionLength(g);
  size_t index = 0;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t k = 0; k < g.outChannels; ++k)
      for (int64_t p = 0; p < out.h; ++p)
        for (int64_t q = 0; q < out.w; ++q, ++index) {
          const float got = output[index];
          if (!covered[index])
            continue; // not computed by the blocks that ran (a sample)
          if (isUnwritten(got)) {
            fail(outputName(g, out, index) + " was never written");
            continue;
          }
          ReferenceValue expected = referenceOutput(operands, n, k, p, q);
          // Consumers were generated trusting this: check it on the model.
          if (claimedZero[size_t(k)] && expected.value != 0.0) {
            char text[160];
            std::snprintf(text, sizeof(text), " is %.9g in the reference, but the graph claims "
                          "channel %lld zero", expected.value, static_cast<long long>(k));
            fail(outputName(g, out, index) + text);
          }
          if (unread[size_t(k)])
            continue; // not computed: nobody reads it
          ++report.outputsChecked;
          const double error = std::abs(double(got) - expected.value);
          const double bound =
              dtype == DType::F16
                  ? float16OutputErrorBound(terms, expected.magnitude, expected.value)
                  : float32ErrorBound(terms, expected.magnitude);
          if (!(error <= bound)) { // also catches NaN
            char text[256];
            std::snprintf(text, sizeof(text), " is %.9g, the reference %.9g: error %.3g > bound %.3g",
                          double(got), expected.value, error, bound);
            fail(outputName(g, out, index) + text);
          }
          if (std::isfinite(error)) {
            report.maxAbsError = std::max(report.maxAbsError, error);
            if (bound > 0)
              report.boundUse = std::max(report.boundUse, error / bound);
            if (std::abs(expected.value) >= 1e-3 * expected.magnitude && expected.value != 0)
              report.maxRelError =
                  std::max(report.maxRelError, error / std::abs(expected.value));
          }
        }
  report.checkSeconds = secondsSince(start);
  return report;
}

} // namespace convgen
