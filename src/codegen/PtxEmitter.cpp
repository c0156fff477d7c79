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

#include <memory>

namespace convgen {

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

  llvm::SmallString<0> ptx;
  llvm::raw_svector_ostream stream(ptx);
  llvm::legacy::PassManager passes;
  if (machine->addPassesToEmitFile(passes, stream, nullptr, llvm::CodeGenFileType::AssemblyFile))
    throw UnsupportedError(what + ": LLVM: the NVPTX target cannot emit PTX");
  passes.run(module);
  return std::string(ptx.str()); // std::string keeps the terminating NUL for cuModuleLoadData
}

} // namespace convgen
