#include "codegen/PtxEmitter.h"

#include "support/Error.h"

#include <llvm/ADT/SmallString.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Support/CodeGen.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>

#include <llvm/Support/CommandLine.h>

#include <memory>
#include <mutex>

namespace convgen {

/// NVPTX's codegen pipeline runs LLVM's load/store vectorizer, which pairs
/// adjacent accesses it can prove aligned. In convgen's kernels it finds
/// none (weights are scalar operands, outputs and inputs have no alignment
/// contract, the split's hand-over is already vector), but its search is
/// quadratic in the loads of a basic block, and a code section is one
/// block: it took 54 % of NVPTX's time on a 118k-fma layer (11.4 of 21.3
/// s), with byte-identical PTX without it. It is an LLVM option, not a
/// TargetMachine setting, so it is set once for the process.
static void skipLoadStoreVectorizer() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char *arguments[] = {"convgen", "-disable-nvptx-load-store-vectorizer"};
    llvm::cl::ParseCommandLineOptions(2, arguments, "", &llvm::errs());
  });
}

std::string emitPtx(llvm::Module &module, const NvptxArch &arch, const std::string &what) {
  std::string verifierMessage;
  llvm::raw_string_ostream verifierStream(verifierMessage);
  if (llvm::verifyModule(module, &verifierStream))
    throw CheckFailure(what + ": LLVM IR verifier: " + verifierStream.str());

  // No PTX ISA feature: LLVM then picks the lowest PTX version the SM
  // needs, which the widest range of drivers can JIT. -O2, not -O3: the
  // same PTX for these straight-line kernels in less than half the time
  // (64->64 3x3 at 90 %: 2.0 s instead of 4.7 s), and ptxas optimises again.
  std::unique_ptr<llvm::TargetMachine> machine(nvptxTarget().createTargetMachine(
      NvptxTriple, arch.name, "", llvm::TargetOptions(), std::nullopt, std::nullopt,
      llvm::CodeGenOptLevel::Default));
  if (!machine)
    throw UnsupportedError(what + ": LLVM: cannot create an NVPTX target machine for " + arch.name);
  module.setTargetTriple(NvptxTriple);
  module.setDataLayout(machine->createDataLayout());

  skipLoadStoreVectorizer();
  llvm::SmallString<0> ptx;
  llvm::raw_svector_ostream stream(ptx);
  llvm::legacy::PassManager passes;
  if (machine->addPassesToEmitFile(passes, stream, nullptr, llvm::CodeGenFileType::AssemblyFile))
    throw UnsupportedError(what + ": LLVM: the NVPTX target cannot emit PTX");
  passes.run(module);
  return std::string(ptx.str()); // std::string keeps the terminating NUL for cuModuleLoadData
}

} // namespace convgen
