// Dense direct conv2d operator template (NCHW, fp32), the reference method's
// template: it ignores sparsity, and convgen specialises it per layer.
//
// Compiled once, at build time, by clang-19 device-only to LLVM IR with no
// LLVM passes run (templates/CMakeLists.txt); no CUDA headers are needed:
// thread ids and fma are clang builtins. Inputs are plain loads through
// `const __restrict__` pointers: the specialiser marks them readonly, and
// NVPTX then selects the read-only path (ld.global.nc) itself. (The
// __nvvm_ldg_f builtin would do the same, but in LLVM 19 its intrinsic is
// not `willreturn`, so an unused one is never deleted as dead.)
//
// Geometry and tiling are not macros but fields of `convgen_spec`, a device
// global the specialiser (src/codegen/TemplateSpecializer) gives a constant
// initializer per layer, so one template IR serves every layer shape. Once it
// is constant, every loop below marked `#pragma unroll` has a constant trip
// count and is fully unrolled: each weight load then reads a constant offset,
// which the WeightMap analysis maps to its (k, c, r, s) position.
//
// Work split: a thread computes ChannelsPerThread (BK) output channels x
// OutputsPerThread (BW) neighbouring output columns of one output row of one
// image; blockIdx.y selects the block of BK output channels. A kernel covers
// the channel blocks [firstChannelBlock, firstChannelBlock + channelBlocks):
// all of them, or, when a layer is split across several kernels, one range
// each. The code for each of its channel blocks is present (unrolled) and
// selected by blockIdx.y, so the output channel of every multiply-add is a
// constant in the code. Each input value loaded is reused across the BK
// output channels.

#define CONVGEN_GLOBAL __attribute__((global))
#define CONVGEN_DEVICE __attribute__((device))

// Upper bounds of the per-thread tile; the register arrays are sized by them
// and the specialised code uses only channelsPerThread x outputsPerThread.
// Loops over them `continue` past the used part rather than `break`, so each
// loop has a single exit and a trip count SCEV can compute.
#define CONVGEN_MAX_CHANNELS_PER_THREAD 8
#define CONVGEN_MAX_OUTPUTS_PER_THREAD 8

// Mirrors convgen::TemplateSpec (src/codegen/TemplateSpec.h): same fields,
// same order, all 32-bit.
struct ConvSpec {
  int inChannels, inHeight, inWidth;    // C, H, W
  int outChannels, outHeight, outWidth; // K, P, Q
  int kernelH, kernelW;                 // R, S
  int strideH, strideW;
  int padH, padW;
  int dilationH, dilationW;
  int groups;
  int activation; // 0 none, 1 relu, 2 relu6
  int hasBias;
  int channelsPerThread; // BK: divides outChannels / groups
  int outputsPerThread;  // BW
  int firstChannelBlock; // this kernel's channel blocks: blockIdx.y counts from here
  int channelBlocks;
};

extern "C" CONVGEN_DEVICE ConvSpec convgen_spec;

static CONVGEN_DEVICE inline __attribute__((always_inline)) float applyActivation(float value, int activation) {
  if (activation == 1)
    return value > 0.0f ? value : 0.0f;
  if (activation == 2)
    return value > 0.0f ? (value < 6.0f ? value : 6.0f) : 0.0f;
  return value;
}

extern "C" CONVGEN_GLOBAL void convgen_conv2d(const float *__restrict__ input,
                                              const float *__restrict__ weights,
                                              const float *__restrict__ bias,
                                              float *__restrict__ output, int batch) {
  const ConvSpec &g = convgen_spec;
  const int inChannelsPerGroup = g.inChannels / g.groups;
  const int outChannelsPerGroup = g.outChannels / g.groups;
  const int columnTiles = (g.outWidth + g.outputsPerThread - 1) / g.outputsPerThread;

  // This thread's (image, output row, first output column).
  const long long tile = (long long)__nvvm_read_ptx_sreg_ctaid_x() * __nvvm_read_ptx_sreg_ntid_x() +
                         __nvvm_read_ptx_sreg_tid_x();
  if (tile >= (long long)batch * g.outHeight * columnTiles)
    return;
  const int columnTile = (int)(tile % columnTiles);
  const long long imageRow = tile / columnTiles;
  const int p = (int)(imageRow % g.outHeight);
  const long long n = imageRow / g.outHeight;
  // Where BW does not divide the output width, the last tile of a row is
  // moved left to end at the edge: it recomputes (bit for bit) a few columns
  // of its neighbour instead of computing columns past the edge. So every
  // store is unconditional: a guarded store would let InstCombine sink each
  // column's whole multiply-add chain into the guard's block, keeping every
  // weight live to the end of the kernel (255 registers and spills on
  // ResNet-50's 14-wide layers). chooseTiling keeps BW <= the width.
  const int q0 = columnTile * g.outputsPerThread > g.outWidth - g.outputsPerThread
                     ? g.outWidth - g.outputsPerThread
                     : columnTile * g.outputsPerThread;
  const int channelBlock = g.firstChannelBlock + (int)__nvvm_read_ptx_sreg_ctaid_y();

#pragma unroll
  for (int block = g.firstChannelBlock; block < g.firstChannelBlock + g.channelBlocks; ++block) {
    if (block != channelBlock)
      continue;
    const int k0 = block * g.channelsPerThread;
    const int group = k0 / outChannelsPerGroup;

    float acc[CONVGEN_MAX_CHANNELS_PER_THREAD][CONVGEN_MAX_OUTPUTS_PER_THREAD];
#pragma unroll
    for (int kk = 0; kk < CONVGEN_MAX_CHANNELS_PER_THREAD; ++kk)
#pragma unroll
      for (int j = 0; j < CONVGEN_MAX_OUTPUTS_PER_THREAD; ++j)
        acc[kk][j] = 0.0f;

#pragma unroll
    for (int c = 0; c < inChannelsPerGroup; ++c) {
      const float *plane = input + (n * g.inChannels + group * inChannelsPerGroup + c) *
                                       g.inHeight * (long long)g.inWidth;
#pragma unroll
      for (int r = 0; r < g.kernelH; ++r) {
        const int h = p * g.strideH - g.padH + r * g.dilationH;
        // (unsigned)h < H is 0 <= h < H in one compare.
        const bool rowInside = (unsigned)h < (unsigned)g.inHeight;
#pragma unroll
        for (int s = 0; s < g.kernelW; ++s) {
          // Branch-free padding: load from a clamped, always valid address
          // and select zero outside the input. Written with `&` and plain
          // values so clang emits selects, not branches: the unrolled code
          // stays one basic block per channel block.
          float x[CONVGEN_MAX_OUTPUTS_PER_THREAD];
#pragma unroll
          for (int j = 0; j < CONVGEN_MAX_OUTPUTS_PER_THREAD; ++j) {
            if (j >= g.outputsPerThread)
              continue;
            const int w = (q0 + j) * g.strideW - g.padW + s * g.dilationW;
            const bool inside = rowInside & ((unsigned)w < (unsigned)g.inWidth);
            const long long offset = (long long)h * g.inWidth + w;
            const long long clamped = inside ? offset : 0LL;
            const float value = plane[clamped];
            x[j] = inside ? value : 0.0f;
          }
#pragma unroll
          for (int kk = 0; kk < CONVGEN_MAX_CHANNELS_PER_THREAD; ++kk) {
            if (kk >= g.channelsPerThread)
              continue;
            const float weight =
                weights[(((long long)(k0 + kk) * inChannelsPerGroup + c) * g.kernelH + r) *
                            g.kernelW +
                        s];
#pragma unroll
            for (int j = 0; j < CONVGEN_MAX_OUTPUTS_PER_THREAD; ++j) {
              if (j >= g.outputsPerThread)
                continue;
              acc[kk][j] = __builtin_fmaf(x[j], weight, acc[kk][j]);
            }
          }
        }
      }
    }

    // Epilogue: bias, activation, store.
#pragma unroll
    for (int kk = 0; kk < CONVGEN_MAX_CHANNELS_PER_THREAD; ++kk) {
      if (kk >= g.channelsPerThread)
        continue;
      const int k = k0 + kk;
      const float biasValue = g.hasBias ? bias[k] : 0.0f;
      float *row = output + ((n * g.outChannels + k) * g.outHeight + p) * g.outWidth;
#pragma unroll
      for (int j = 0; j < CONVGEN_MAX_OUTPUTS_PER_THREAD; ++j) {
        if (j >= g.outputsPerThread)
          continue;
        row[q0 + j] = applyActivation(acc[kk][j] + biasValue, g.activation);
      }
    }
  }
}
