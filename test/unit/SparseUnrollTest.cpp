// SparseUnroll on IR parsed from strings: rolled loops over weight
// positions, as the specialised template leaves them. Given the weights, the
// unrolled code holds the nonzeros' multiply-adds and the loads they need,
// and nothing of the zero ones, not even their input loads; without weights
// it is a plain full unroll.
#include "codegen/PassPipeline.h"
#include "support/IrText.h"

#include <gtest/gtest.h>
#include <llvm/Analysis/LoopInfo.h>
#include <llvm/Analysis/ValueTracking.h>
#include <llvm/IR/Dominators.h>
#include <llvm/IR/InstIterator.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/IntrinsicInst.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/raw_ostream.h>

using namespace convgen;

namespace {

// Two filters over four input channels (OIHW [2, 4, 1, 1]): one loop over
// the channels, an input load shared by both filters' multiply-adds.
const char *ChannelLoop = R"IR(
define void @kernel(ptr noalias %x, ptr noalias %w, ptr noalias %out) !convgen.weights !0 {
entry:
  br label %loop
loop:
  %c = phi i64 [ 0, %entry ], [ %c.next, %loop ]
  %acc0 = phi float [ 0.0, %entry ], [ %sum0, %loop ]
  %acc1 = phi float [ 0.0, %entry ], [ %sum1, %loop ]
  %xp = getelementptr float, ptr %x, i64 %c
  %xv = load float, ptr %xp, align 4
  %w0p = getelementptr float, ptr %w, i64 %c
  %w0 = load float, ptr %w0p, align 4
  %sum0 = call float @llvm.fma.f32(float %xv, float %w0, float %acc0)
  %i1 = add nuw nsw i64 %c, 4
  %w1p = getelementptr float, ptr %w, i64 %i1
  %w1 = load float, ptr %w1p, align 4
  %sum1 = call float @llvm.fma.f32(float %xv, float %w1, float %acc1)
  %c.next = add nuw nsw i64 %c, 1
  %done = icmp eq i64 %c.next, 4
  br i1 %done, label %exit, label %loop, !llvm.loop !1
exit:
  store float %sum0, ptr %out, align 4
  %out1 = getelementptr float, ptr %out, i64 1
  store float %sum1, ptr %out1, align 4
  ret void
}
declare float @llvm.fma.f32(float, float, float)
!0 = !{i32 1, i64 2, i64 4, i64 1, i64 1}
!1 = distinct !{!1, !2}
!2 = !{!"llvm.loop.unroll.enable"}
)IR";

// Two channel blocks (one filter each) over four input channels: an outer
// loop over the blocks, an inner one over the channels that skips those the
// channel table marks unused (block-major, as the template's table).
const char *BlocksAndChannelTable = R"IR(
@table = internal constant [8 x i8] c"\01\00\01\01\00\00\01\01"
define void @kernel(ptr noalias %x, ptr noalias %w, ptr noalias %out) !convgen.weights !0 {
entry:
  br label %blocks
blocks:
  %b = phi i64 [ 0, %entry ], [ %b.next, %blocks.latch ]
  %row = mul nuw nsw i64 %b, 4
  br label %channels
channels:
  %c = phi i64 [ 0, %blocks ], [ %c.next, %channels.latch ]
  %acc = phi float [ 0.0, %blocks ], [ %acc.next, %channels.latch ]
  %t = add nuw nsw i64 %row, %c
  %tp = getelementptr i8, ptr @table, i64 %t
  %used = load i8, ptr %tp, align 1
  %unused = icmp eq i8 %used, 0
  br i1 %unused, label %channels.latch, label %body
body:
  %xp = getelementptr float, ptr %x, i64 %c
  %xv = load float, ptr %xp, align 4
  %wp = getelementptr float, ptr %w, i64 %t
  %wv = load float, ptr %wp, align 4
  %sum = call float @llvm.fma.f32(float %xv, float %wv, float %acc)
  br label %channels.latch
channels.latch:
  %acc.next = phi float [ %acc, %channels ], [ %sum, %body ]
  %c.next = add nuw nsw i64 %c, 1
  %cdone = icmp eq i64 %c.next, 4
  br i1 %cdone, label %blocks.latch, label %channels, !llvm.loop !1
blocks.latch:
  %op = getelementptr float, ptr %out, i64 %b
  store float %acc.next, ptr %op, align 4
  %b.next = add nuw nsw i64 %b, 1
  %bdone = icmp eq i64 %b.next, 2
  br i1 %bdone, label %exit, label %blocks, !llvm.loop !3
exit:
  ret void
}
declare float @llvm.fma.f32(float, float, float)
!0 = !{i32 1, i64 2, i64 4, i64 1, i64 1}
!1 = distinct !{!1, !2}
!2 = !{!"llvm.loop.unroll.enable"}
!3 = distinct !{!3, !2}
)IR";

struct Counts {
  int multiplyAdds = 0;
  int inputLoads = 0;  ///< loads from %x
  int weightLoads = 0; ///< loads from %w
  int loops = 0;
};

/// Unrolls \p ir's kernel (with \p weights, or none) and counts what is left.
Counts unroll(const std::string &ir, std::shared_ptr<const std::vector<float>> weights) {
  llvm::LLVMContext context;
  auto module = test::parseIr(context, ir);
  if (!module)
    return {};
  PipelineContext pipeline;
  pipeline.weights = std::move(weights);
  pipeline.verifyEach = true;
  runPipeline(*module, "function(loop-simplify,lcssa,convgen-sparse-unroll)", pipeline);
  std::string errors;
  llvm::raw_string_ostream errorStream(errors);
  EXPECT_FALSE(llvm::verifyModule(*module, &errorStream)) << errors;
  llvm::Function &kernel = *module->getFunction("kernel");
  Counts counts;
  for (llvm::Instruction &inst : llvm::instructions(kernel)) {
    if (auto *call = llvm::dyn_cast<llvm::IntrinsicInst>(&inst))
      counts.multiplyAdds += call->getIntrinsicID() == llvm::Intrinsic::fma;
    if (auto *load = llvm::dyn_cast<llvm::LoadInst>(&inst)) {
      const llvm::Value *base = llvm::getUnderlyingObject(load->getPointerOperand());
      counts.inputLoads += base == kernel.getArg(0);
      counts.weightLoads += base == kernel.getArg(1);
    }
  }
  llvm::DominatorTree dominators(kernel);
  llvm::LoopInfo loops(dominators);
  counts.loops = int(loops.getLoopsInPreorder().size());
  return counts;
}

std::shared_ptr<const std::vector<float>> weights(std::vector<float> values) {
  return std::make_shared<const std::vector<float>>(std::move(values));
}

} // namespace

TEST(SparseUnroll, WithoutWeightsEveryIterationIsCopied) {
  Counts counts = unroll(ChannelLoop, nullptr);
  EXPECT_EQ(counts.loops, 0);
  EXPECT_EQ(counts.multiplyAdds, 8);
  EXPECT_EQ(counts.inputLoads, 4);
  EXPECT_EQ(counts.weightLoads, 8);
}

// Filter 0: 1 0 0 2, filter 1: 0 0 3 0. Channel 1 has no nonzero, so not
// even its input is loaded.
TEST(SparseUnroll, ZeroWeightsWorkIsNeverCopied) {
  Counts counts = unroll(ChannelLoop, weights({1, 0, 0, 2, 0, 0, 3, 0}));
  EXPECT_EQ(counts.loops, 0);
  EXPECT_EQ(counts.multiplyAdds, 3);
  EXPECT_EQ(counts.weightLoads, 3);
  EXPECT_EQ(counts.inputLoads, 3);
}

TEST(SparseUnroll, AllZeroWeightsLeaveNoMultiplyAdd) {
  Counts counts = unroll(ChannelLoop, weights(std::vector<float>(8, 0.0f)));
  EXPECT_EQ(counts.loops, 0);
  EXPECT_EQ(counts.multiplyAdds, 0);
  EXPECT_EQ(counts.inputLoads, 0);
  EXPECT_EQ(counts.weightLoads, 0);
}

// Outer loops are unrolled first, so each copy's inner loop sees its block
// as a constant: the table read folds and the channels it skips are gone;
// then, of the channels read, the zero weights' work is left out.
TEST(SparseUnroll, NestedLoopsConsultTheChannelTableThenTheWeights) {
  Counts tableOnly = unroll(BlocksAndChannelTable, nullptr);
  EXPECT_EQ(tableOnly.loops, 0);
  EXPECT_EQ(tableOnly.multiplyAdds, 5) << "the five channels the table marks used";
  // Block 0 reads channels 0, 2, 3 (weights 1, 0, 2); block 1 reads 2, 3 (5, 0).
  Counts sparse = unroll(BlocksAndChannelTable, weights({1, 0, 0, 2, 0, 0, 5, 0}));
  EXPECT_EQ(sparse.loops, 0);
  EXPECT_EQ(sparse.multiplyAdds, 3);
  EXPECT_EQ(sparse.weightLoads, 3);
  EXPECT_EQ(sparse.inputLoads, 3);
}

// Weights of the wrong size (or a kernel without the annotation) leave out
// nothing: the pass never guesses positions.
TEST(SparseUnroll, WeightsOfAnotherShapeLeaveOutNothing) {
  Counts counts = unroll(ChannelLoop, weights({0, 0, 0, 0}));
  EXPECT_EQ(counts.loops, 0);
  EXPECT_EQ(counts.multiplyAdds, 8);
}

// The template writes `row | c` for `row + c`. An `or` is an add to scalar
// evolution only when marked disjoint, and only the loop's range proves
// that here (c < 4), so the pass marks it: filter 1's offsets (c | 4) are
// affine and its zeros are left out as an add's would be. Before, a 1x1
// layer's channel loop was copied densely this way.
TEST(SparseUnroll, DisjointOrOffsetsAreAffine) {
  std::string ir = ChannelLoop;
  const std::string add = "%i1 = add nuw nsw i64 %c, 4";
  ir.replace(ir.find(add), add.size(), "%i1 = or i64 %c, 4");
  Counts counts = unroll(ir, weights({1, 0, 0, 2, 0, 0, 3, 0}));
  EXPECT_EQ(counts.loops, 0);
  EXPECT_EQ(counts.multiplyAdds, 3);
  EXPECT_EQ(counts.weightLoads, 3);
}

// An `or` whose operands may share a bit is not an add: c | 1 reads
// positions 1, 1, 3, 3, not 1, 2, 3, 4. It stays opaque, and filter 1's four
// multiply-adds are all copied, for ZeroWeightElimination to judge.
TEST(SparseUnroll, OverlappingOrIsNotReadAsAnAdd) {
  std::string ir = ChannelLoop;
  const std::string add = "%i1 = add nuw nsw i64 %c, 4";
  ir.replace(ir.find(add), add.size(), "%i1 = or i64 %c, 1");
  // Read as c + 1, iteration 1 would read position 2 (nonzero) and keep one
  // multiply-add; positions 1 and 3 are zero.
  Counts counts = unroll(ir, weights({1, 0, 5, 0, 0, 0, 0, 0}));
  EXPECT_EQ(counts.multiplyAdds, 2 + 4) << "filter 0: positions 0 and 2; filter 1: all four";
}
