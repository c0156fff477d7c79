// Dense direct conv2d operator template (NCHW; fp32 or fp16 activations,
// fp32 weights and accumulation), the reference method's template: it
// ignores sparsity, and convgen specialises it per layer.
//
// Compiled once, at build time, by clang-19 device-only to LLVM IR with no
// LLVM passes run (templates/CMakeLists.txt); no CUDA headers are needed:
// thread ids, barriers and fma are clang builtins. Inputs are plain loads
// through `const __restrict__` pointers: the specialiser marks them
// readonly, and NVPTX then selects the read-only path (ld.global.nc) itself.
// (The __nvvm_ldg_f builtin would do the same, but in LLVM 19 its intrinsic
// is not `willreturn`, so an unused one is never deleted as dead.)
//
// Geometry and tiling are not macros but fields of `convgen_spec`, a device
// global the specialiser (src/codegen/TemplateSpecializer) gives a constant
// initializer per layer, so one template IR serves every layer shape and
// every tiling. Once it is constant, every loop below marked `#pragma
// unroll` has a constant trip count and is fully unrolled: each weight load
// then reads a constant offset, which the WeightMap analysis maps to its
// (k, c, r, s) position.
//
// Work split (codegen/TemplateSpec.h restates it for the host):
//   - a thread computes BK (channelsPerThread) output channels x BN images x
//     BH output rows x BW neighbouring output columns; each weight it loads
//     feeds BN x BH x BW multiply-adds, each input value BK;
//   - threadIdx.x and blockIdx.x walk the spatial tiles, column tile
//     fastest, then row tile, then image tile;
//   - the channel block (of BK output channels) is firstChannelBlock +
//     blockIdx.y x channelBlocksPerCta + threadIdx.y. A kernel covers the
//     channel blocks [firstChannelBlock, firstChannelBlock + channelBlocks):
//     all of them, or, when a layer is split across several kernels, one
//     range each. The code for each of its channel blocks is present
//     (unrolled) and selected by the channel block, so the output channel
//     of every multiply-add is a constant in the code. Consecutive blocks
//     of the grid (x fastest) share one channel block, so a wave of blocks
//     runs the same code section.
//   - with stageInput, the threads of a block first copy the input rows
//     their tiles read, one input channel at a time, into shared memory.
//   - with skipUnusedInputs, a channel block skips the input channels none
//     of its filters touch (convgen_input_channel_used): it neither stages
//     nor loads them.
//   - with S = reductionSplits > 1, S threads of a block (threadIdx.y % S)
//     compute the same outputs, each over its slice of ceil(C/groups / S)
//     input channels (its own code section, selected like the channel
//     block). Part 0's sums start from the bias; the parts' sums meet in
//     part 0 by a fixed tree through shared memory, so the result does not
//     depend on timing.
//     That keeps the GPU fed where wide channel blocks leave too few
//     threads (batch 1), without a second kernel or a workspace.

#define CONVGEN_GLOBAL __attribute__((global))
#define CONVGEN_DEVICE __attribute__((device))
#define CONVGEN_SHARED __attribute__((shared))

// Upper bounds of the per-thread tile; the register arrays are sized by them
// and the specialised code uses only BK x (BN x BH x BW). The loops over the
// tile run to the spec's own bounds (constants once the spec is folded in),
// not to these maxima: a loop to the maximum that skips the unused part
// unrolls into a block per skipped iteration, and at 64 of them SROA's
// promotion over that CFG took most of a layer's generation time.
#define CONVGEN_MAX_OUTPUTS_PER_THREAD 8 // BN x BH x BW
// Accumulators per thread: BK x BN x BH x BW at most (registers).
#define CONVGEN_MAX_ACCUMULATORS 64
// Shared memory for a staged input channel: 48 KiB, the static limit.
#define CONVGEN_MAX_STAGED_FLOATS 12288

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
  int channelsPerThread;   // BK: divides outChannels / groups
  int outputsPerThread;    // BW: output columns per thread
  int rowsPerThread;       // BH
  int imagesPerThread;     // BN
  int threadsX;            // blockDim.x
  int channelBlocksPerCta; // blockDim.y
  int stageInput;          // 1: inputs staged in shared memory
  int skipUnusedInputs;    // 1: consult convgen_input_channel_used
  int halfPrecision;       // 1: input and output are fp16
  int firstChannelBlock;   // this kernel's channel blocks: blockIdx.y counts from here
  int channelBlocks;
  int reductionSplits;     // S: threads sharing an output, each a slice of the input channels
};

extern "C" CONVGEN_DEVICE ConvSpec convgen_spec;
// [channelBlocks][inChannels / groups]: 1 where some filter of the channel
// block has a nonzero weight on the input channel. The specialiser gives it
// the layer's constants (it depends on the mask, not the values).
extern "C" CONVGEN_DEVICE unsigned char convgen_input_channel_used[];
// Padding without a select per load: an input position outside the image
// reads from this zero page instead, at the same constant channel offset as
// an inside one. The specialiser sizes it to one image (C x H x W
// elements); a layer without padding never reads it, and it is dropped.
extern "C" CONVGEN_DEVICE const char convgen_zero_page[];

// Four floats moved as one 128-bit shared-memory access.
typedef float QuadFloat __attribute__((ext_vector_type(4)));

static CONVGEN_DEVICE inline __attribute__((always_inline)) float applyActivation(float value, int activation) {
  if (activation == 1)
    return value > 0.0f ? value : 0.0f;
  if (activation == 2)
    return value > 0.0f ? (value < 6.0f ? value : 6.0f) : 0.0f;
  return value;
}

// Activations are fp32 or fp16 (fp16 widened on load, rounded once on
// store); the specialised code keeps one of the two paths.
static CONVGEN_DEVICE inline __attribute__((always_inline)) float
loadActivation(const void *__restrict__ data, long long index, int halfPrecision) {
  if (halfPrecision)
    return (float)static_cast<const _Float16 *>(data)[index];
  return static_cast<const float *>(data)[index];
}

static CONVGEN_DEVICE inline __attribute__((always_inline)) void
storeActivation(void *__restrict__ data, long long index, float value, int halfPrecision) {
  if (halfPrecision)
    static_cast<_Float16 *>(data)[index] = (_Float16)value;
  else
    static_cast<float *>(data)[index] = value;
}

static CONVGEN_DEVICE inline __attribute__((always_inline)) long long minimum(long long a, long long b) {
  return a < b ? a : b;
}

extern "C" CONVGEN_GLOBAL void convgen_conv2d(const void *__restrict__ input,
                                              const float *__restrict__ weights,
                                              const float *__restrict__ bias,
                                              void *__restrict__ output, int batch) {
  CONVGEN_SHARED __attribute__((aligned(16))) float staged[CONVGEN_MAX_STAGED_FLOATS];
  const ConvSpec &g = convgen_spec;
  const int inChannelsPerGroup = g.inChannels / g.groups;
  const int outChannelsPerGroup = g.outChannels / g.groups;
  const int spatialPerThread = g.imagesPerThread * g.rowsPerThread * g.outputsPerThread;
  const int columnTiles = (g.outWidth + g.outputsPerThread - 1) / g.outputsPerThread;
  const int rowTiles = (g.outHeight + g.rowsPerThread - 1) / g.rowsPerThread;
  const long long imageTiles = (batch + g.imagesPerThread - 1) / g.imagesPerThread;
  const long long tiles = imageTiles * rowTiles * columnTiles;

  // This thread's spatial tile. Past the last tile a thread has nothing to
  // do; with staging it must still reach every barrier, so it recomputes
  // the last tile instead (writing the same values).
  const long long firstTileOfBlock = (long long)__nvvm_read_ptx_sreg_ctaid_x() * g.threadsX;
  long long tile = firstTileOfBlock + __nvvm_read_ptx_sreg_tid_x();
  if (tile >= tiles) {
    if (!g.stageInput && g.reductionSplits == 1)
      return;
    tile = tiles - 1;
  }
  const int columnTile = (int)(tile % columnTiles);
  const long long imageRowTile = tile / columnTiles;
  const int rowTile = (int)(imageRowTile % rowTiles);
  const long long n0 = imageRowTile / rowTiles * g.imagesPerThread;
  // Where BW (BH) does not divide the output width (height), the last tile
  // is moved left (up) to end at the edge: it recomputes (bit for bit) a few
  // outputs of its neighbour instead of computing outputs past the edge;
  // images past the batch recompute the last image. So every store is
  // unconditional: a guarded store would let InstCombine sink each output's
  // whole multiply-add chain into the guard's block, keeping every weight
  // live to the end of the kernel (255 registers and spills on ResNet-50's
  // 14-wide layers). checkTiling keeps BW <= the width and BH <= the height.
  const int q0 = columnTile * g.outputsPerThread > g.outWidth - g.outputsPerThread
                     ? g.outWidth - g.outputsPerThread
                     : columnTile * g.outputsPerThread;
  const int p0 = rowTile * g.rowsPerThread > g.outHeight - g.rowsPerThread
                     ? g.outHeight - g.rowsPerThread
                     : rowTile * g.rowsPerThread;
  const int channelBlock = g.firstChannelBlock +
                           (int)__nvvm_read_ptx_sreg_ctaid_y() * g.channelBlocksPerCta +
                           (int)__nvvm_read_ptx_sreg_tid_y() / g.reductionSplits;
  const int reductionPart = (int)__nvvm_read_ptx_sreg_tid_y() % g.reductionSplits;
  const int channelsPerPart = (inChannelsPerGroup + g.reductionSplits - 1) / g.reductionSplits;

  // Staging geometry: the block's tiles span at most stagedRowTiles
  // consecutive (image, row tile) pairs; for each, the input rows its BH
  // output rows read (stagedRows of them), at full input width. Stage row
  // i of row tile t holds input row (p0(t) x strideH - padH + i), zero
  // outside the input, so the compute reads no row guard.
  const int stagedRows = (g.rowsPerThread - 1) * g.strideH + (g.kernelH - 1) * g.dilationH + 1;
  const int stagedRowTiles = (g.threadsX + columnTiles - 2) / columnTiles + 1;
  const int stagedFloats = stagedRowTiles * stagedRows * g.inWidth;
  const long long firstStagedRowTile = firstTileOfBlock / columnTiles;
  const long long localRowTile = imageRowTile - firstStagedRowTile;

  // One output base address per output of the tile (image, row, column),
  // computed once, before the channel blocks: every store is that base plus
  // a constant channel offset, which NVPTX folds into the instruction. (A
  // layer of many small channel blocks, like a depthwise one, otherwise
  // recomputes the whole 64-bit address in every block.)
  const long long outputElementBytes = g.halfPrecision ? 2 : 4;
  char *outputBase[CONVGEN_MAX_OUTPUTS_PER_THREAD];
#pragma unroll
  for (int o = 0; o < spatialPerThread; ++o) {
    const int j = o % g.outputsPerThread;
    const int i = o / g.outputsPerThread % g.rowsPerThread;
    const int b = o / g.outputsPerThread / g.rowsPerThread;
    const long long n = minimum(n0 + b, (long long)batch - 1);
    const long long position = ((n * g.outChannels) * g.outHeight + p0 + i) * g.outWidth + q0 + j;
    outputBase[o] = static_cast<char *>(output) + position * outputElementBytes;
  }

#pragma unroll
  for (int block = g.firstChannelBlock; block < g.firstChannelBlock + g.channelBlocks; ++block) {
    if (block != channelBlock)
      continue;
    const int k0 = block * g.channelsPerThread;
    const int group = k0 / outChannelsPerGroup;

    // acc[kk x spatialPerThread + o]: checkTiling keeps BK x BN x BH x BW
    // within the array. Each part's section sets the sums' start (below);
    // this is for the compiler, which does not know that a thread always
    // runs one part.
    float acc[CONVGEN_MAX_ACCUMULATORS];
#pragma unroll
    for (int a = 0; a < g.channelsPerThread * spatialPerThread; ++a)
      acc[a] = 0.0f;

#pragma unroll
    for (int part = 0; part < g.reductionSplits; ++part) {
      if (part != reductionPart)
        continue;
      // The sums start from the bias, in part 0 (the only part without a
      // split): the first multiply-add adds it, where an add per output in
      // the epilogue would be one more instruction per output (a layer with
      // few nonzeros per output, like a 3-channel first layer, pays for it
      // in its instruction count). The other parts start from zero.
#pragma unroll
      for (int a = 0; a < g.channelsPerThread * spatialPerThread; ++a)
        acc[a] = g.hasBias && part == 0 ? bias[k0 + a / spatialPerThread] : 0.0f;
#pragma unroll
      for (int partChannel = 0; partChannel < channelsPerPart; ++partChannel) {
        const int c = part * channelsPerPart + partChannel;
        if (c >= inChannelsPerGroup)
          continue;
        if (g.skipUnusedInputs &&
            !convgen_input_channel_used[(block - g.firstChannelBlock) * inChannelsPerGroup + c])
          continue;
        const int inputChannel = group * inChannelsPerGroup + c;

        if (g.stageInput) {
          // Every thread of the block runs the same channel block here
          // (channelBlocksPerCta is 1 with staging), so the barriers are
          // reached by all of them.
          __nvvm_bar_sync(0); // the previous channel's reads are done
#pragma unroll
          for (int round = 0; round < (stagedFloats + g.threadsX - 1) / g.threadsX; ++round) {
            const int e = round * g.threadsX + (int)__nvvm_read_ptx_sreg_tid_x();
            if (e < stagedFloats) {
              const int w = e % g.inWidth;
              const int stageRow = e / g.inWidth % stagedRows;
              const long long stagedImageRowTile = firstStagedRowTile + e / g.inWidth / stagedRows;
              const long long stagedImage = stagedImageRowTile / rowTiles;
              const int stagedRowTile = (int)(stagedImageRowTile % rowTiles);
              const int stagedP0 = stagedRowTile * g.rowsPerThread > g.outHeight - g.rowsPerThread
                                       ? g.outHeight - g.rowsPerThread
                                       : stagedRowTile * g.rowsPerThread;
              const int h = stagedP0 * g.strideH - g.padH + stageRow;
              const bool inside = ((unsigned)h < (unsigned)g.inHeight) & (stagedImage < batch);
              const long long offset =
                  ((stagedImage * g.inChannels + inputChannel) * g.inHeight + h) * (long long)g.inWidth + w;
              const float value = loadActivation(input, inside ? offset : 0LL, g.halfPrecision);
              staged[e] = inside ? value : 0.0f;
            }
          }
          __nvvm_bar_sync(0); // the channel is staged
        }

#pragma unroll
        for (int r = 0; r < g.kernelH; ++r) {
#pragma unroll
          for (int s = 0; s < g.kernelW; ++s) {
            // Branch-free padding: staged, a select of zero outside the row;
            // otherwise the zero page as the base (below). Written with `&`
            // and plain values so clang emits selects, not branches: the
            // unrolled code stays one basic block per code section.
            float x[CONVGEN_MAX_OUTPUTS_PER_THREAD];
#pragma unroll
            for (int o = 0; o < spatialPerThread; ++o) {
              const int j = o % g.outputsPerThread;
              const int i = o / g.outputsPerThread % g.rowsPerThread;
              const int b = o / g.outputsPerThread / g.rowsPerThread;
              const int w = (q0 + j) * g.strideW - g.padW + s * g.dilationW;
              if (g.stageInput) {
                const int stageRow = i * g.strideH + r * g.dilationH;
                const bool inside = (unsigned)w < (unsigned)g.inWidth;
                const long long offset = (localRowTile * stagedRows + stageRow) * g.inWidth + w;
                const float value = staged[inside ? offset : 0LL];
                x[o] = inside ? value : 0.0f;
              } else {
                // One base address per input position (image, row, column) of
                // the thread's window, computed once: it does not depend on
                // the input channel, so the copies of it for every channel and
                // every (r, s, o) that reads the same position are one value
                // after CSE, and every load is that base plus a constant
                // channel offset, which NVPTX folds into the instruction.
                // Outside the image the base is the zero page, so padding
                // costs no instruction per load. Loads of one position are
                // one load after CSE, shared by the nonzeros of its column.
                const long long n = minimum(n0 + b, (long long)batch - 1);
                const int h = (p0 + i) * g.strideH - g.padH + r * g.dilationH;
                // (unsigned)h < H is 0 <= h < H in one compare.
                const bool inside =
                    (g.padH == 0 && g.padW == 0) ||
                    (((unsigned)h < (unsigned)g.inHeight) & ((unsigned)w < (unsigned)g.inWidth));
                const long long elementBytes = g.halfPrecision ? 2 : 4;
                const long long position =
                    ((n * g.inChannels) * g.inHeight + h) * (long long)g.inWidth + w;
                const char *base =
                    inside ? static_cast<const char *>(input) + position * elementBytes : convgen_zero_page;
                x[o] = loadActivation(base, (long long)inputChannel * g.inHeight * g.inWidth,
                                      g.halfPrecision);
              }
            }
#pragma unroll
            for (int kk = 0; kk < g.channelsPerThread; ++kk) {
              const float weight =
                  weights[(((long long)(k0 + kk) * inChannelsPerGroup + c) * g.kernelH + r) *
                              g.kernelW +
                          s];
#pragma unroll
              for (int o = 0; o < spatialPerThread; ++o) {
                float &sum = acc[kk * spatialPerThread + o];
                sum = __builtin_fmaf(x[o], weight, sum);
              }
            }
          }
        }
      }
    }

    // Split reduction: the parts' sums meet in part 0 by a tree, through
    // shared memory (the staging array; a split kernel stages nothing). In
    // round k (stride 2^k), each part p with p % 2^(k+1) == 2^k leaves its
    // sums in row p / 2, and part p - 2^k adds them: a fixed order, so the
    // result does not depend on timing. Rows are reused: the writer of row
    // p / 2 in round k >= 1 is the part that read it in round k - 1, so
    // program order, not another barrier, keeps the read before the write;
    // ceil(S / 2) rows, not S - 1, which halves the shared memory a split
    // takes (so a block of 8 parts of 64 sums fits 48 KiB). Each round
    // costs a store, a load and an add per sum in the code, log2(S) rounds
    // where adding the other parts one by one took S - 1 (the example's
    // LFF_1 at split=4: 1.79 -> 1.71 SASS per fma). Each thread's sums are contiguous, four at a time
    // (one 128-bit access), and rows are padded by four floats so the eight
    // threads of a quarter warp hit distinct banks.
    if (g.reductionSplits > 1) {
      const int accumulators = g.channelsPerThread * spatialPerThread;
      const int rowFloats = (accumulators + 3) / 4 * 4 + 4;
      const int lane = (int)__nvvm_read_ptx_sreg_tid_x();
#pragma unroll
      for (int stride = 1; stride < g.reductionSplits; stride *= 2) {
        if (reductionPart % (2 * stride) == stride) {
          float *row = &staged[((reductionPart / 2) * g.threadsX + lane) * rowFloats];
#pragma unroll
          for (int a = 0; a < accumulators; a += 4) {
            QuadFloat quad = {acc[a], a + 1 < accumulators ? acc[a + 1] : 0.0f,
                              a + 2 < accumulators ? acc[a + 2] : 0.0f,
                              a + 3 < accumulators ? acc[a + 3] : 0.0f};
            *reinterpret_cast<QuadFloat *>(row + a) = quad;
          }
        }
        __nvvm_bar_sync(0);
        if (reductionPart % (2 * stride) == 0 && reductionPart + stride < g.reductionSplits) {
          const float *row =
              &staged[(((reductionPart + stride) / 2) * g.threadsX + lane) * rowFloats];
#pragma unroll
          for (int a = 0; a < accumulators; a += 4) {
            const QuadFloat quad = *reinterpret_cast<const QuadFloat *>(row + a);
#pragma unroll
            for (int e = 0; e < 4; ++e)
              if (a + e < accumulators)
                acc[a + e] += quad[e];
          }
        }
        // Each part writes once (in the round of its lowest set bit), into
        // the row it last read itself, if any (see above).
      }
    }

    // Epilogue: activation and store; with a split, part 0 alone. (No
    // `return` for the other parts: a second exit would leave the channel
    // block loop without a trip count, and it would not unroll.)
    if (reductionPart == 0) {
#pragma unroll
      for (int kk = 0; kk < g.channelsPerThread; ++kk) {
        const int k = k0 + kk;
#pragma unroll
        for (int o = 0; o < spatialPerThread; ++o)
          storeActivation(outputBase[o], (long long)k * g.outHeight * g.outWidth,
                          applyActivation(acc[kk * spatialPerThread + o], g.activation),
                          g.halfPrecision);
      }
    }
  }
}
