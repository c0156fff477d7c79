#include "exec/HostKernel.h"

#include "exec/NvvmEmulation.h"
#include "support/Error.h"

#include <llvm/Bitcode/BitcodeReader.h>
#include <llvm/Bitcode/BitcodeWriter.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/Instructions.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>

#include <cstring>
#include <mutex>

namespace convgen {

namespace orc = llvm::orc;

HostKernel::HostKernel() = default;
HostKernel::~HostKernel() = default;

static void initializeHostTarget() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
  });
}

static std::string describe(llvm::Error error) { return llvm::toString(std::move(error)); }

/// The module, copied into \p context through bitcode: ORC compiles on its
/// own context, and the generator's module must stay as it is for PTX.
static std::unique_ptr<llvm::Module> copyInto(llvm::LLVMContext &context,
                                              const llvm::Module &module,
                                              const std::string &what) {
  llvm::SmallVector<char, 0> bitcode;
  llvm::raw_svector_ostream stream(bitcode);
  llvm::WriteBitcodeToFile(module, stream);
  auto buffer = llvm::MemoryBuffer::getMemBuffer(llvm::StringRef(bitcode.data(), bitcode.size()),
                                                 "kernel", /*RequiresNullTerminator=*/false);
  auto copy = llvm::parseBitcodeFile(buffer->getMemBufferRef(), context);
  if (!copy)
    throw CheckFailure(what + ": host executor: bitcode copy failed: " +
                       describe(copy.takeError()));
  return std::move(*copy);
}

/// Name of the host stand-in's symbol for an NVVM intrinsic.
static std::string hostSymbolFor(llvm::StringRef intrinsic) {
  return "convgen_host." + intrinsic.drop_front(std::strlen("llvm.nvvm.")).str();
}

struct RetargetResult {
  std::vector<std::pair<std::string, void *>> hostSymbols;
  bool usesBarriers = false;
  bool usesSharedMemory = false;
};

/// Points each NVVM intrinsic's calls at a plain declaration of its host
/// stand-in, and returns the stand-ins the JIT must resolve.
static void redirectNvvmIntrinsics(llvm::Module &module, RetargetResult &result,
                                   const std::string &what) {
  std::vector<llvm::Function *> intrinsics;
  for (llvm::Function &function : module)
    if (function.getName().starts_with("llvm.nvvm."))
      intrinsics.push_back(&function);
  for (llvm::Function *intrinsic : intrinsics) {
    std::string name = intrinsic->getName().str();
    void *host = nvvmHostFunction(name);
    if (!host)
      throw UnsupportedError(what + ": host executor: NVVM intrinsic '" + name +
                             "' has no host emulation");
    if (isBarrierIntrinsic(name) && !intrinsic->use_empty())
      result.usesBarriers = true;
    if (name == "llvm.nvvm.bar.sync")
      for (llvm::User *user : intrinsic->users()) {
        auto *call = llvm::dyn_cast<llvm::CallInst>(user);
        auto *id = call ? llvm::dyn_cast<llvm::ConstantInt>(call->getArgOperand(0)) : nullptr;
        if (!id || !id->isZero())
          throw UnsupportedError(what + ": host executor: named barriers (bar.sync with an id "
                                        "other than 0) are not emulated");
      }
    std::string symbol = hostSymbolFor(name);
    llvm::Function *standIn = llvm::Function::Create(
        intrinsic->getFunctionType(), llvm::GlobalValue::ExternalLinkage, symbol, module);
    intrinsic->replaceAllUsesWith(standIn);
    intrinsic->eraseFromParent();
    result.hostSymbols.emplace_back(symbol, host);
  }
}

static RetargetResult retargetToHost(llvm::Module &module, const llvm::DataLayout &layout,
                                     const std::string &triple, const std::string &what) {
  RetargetResult result;
  module.setTargetTriple(triple);
  module.setDataLayout(layout);
  for (llvm::Function &function : module) {
    function.removeFnAttr("target-cpu");
    function.removeFnAttr("target-features");
    if (function.getCallingConv() == llvm::CallingConv::PTX_Kernel ||
        function.getCallingConv() == llvm::CallingConv::PTX_Device)
      function.setCallingConv(llvm::CallingConv::C);
  }
  for (llvm::GlobalVariable &global : module.globals())
    if (global.getAddressSpace() == 3)
      result.usesSharedMemory = true;
  redirectNvvmIntrinsics(module, result, what);
  std::string problems;
  llvm::raw_string_ostream stream(problems);
  if (llvm::verifyModule(module, &stream))
    throw CheckFailure(what + ": host executor: retargeted IR does not verify: " + problems);
  return result;
}

/// void (ptr input, ptr weights, ptr bias, ptr output, i32 batch)
static bool hasConvKernelSignature(const llvm::Function &kernel) {
  llvm::FunctionType *type = kernel.getFunctionType();
  if (!type->getReturnType()->isVoidTy() || type->getNumParams() != 5 || type->isVarArg())
    return false;
  for (unsigned i = 0; i < 4; ++i)
    if (!type->getParamType(i)->isPointerTy())
      return false;
  return type->getParamType(4)->isIntegerTy(32);
}

std::unique_ptr<HostKernel> HostKernel::compile(const llvm::Module &module,
                                                const std::vector<std::string> &kernelNames,
                                                const std::string &what) {
  initializeHostTarget();
  auto machineBuilder = orc::JITTargetMachineBuilder::detectHost();
  if (!machineBuilder)
    throw CheckFailure(what + ": host executor: " + describe(machineBuilder.takeError()));
  // No codegen optimisation: the same semantics (the IR is already
  // optimised, and no level reassociates floating point), and the big
  // straight-line kernels compile about 6x faster than at Less (UPN1 at 50 %:
  // 11 s instead of 66 s) while still running in a fraction of a second.
  machineBuilder->setCodeGenOptLevel(llvm::CodeGenOptLevel::None);
  auto layout = machineBuilder->getDefaultDataLayoutForTarget();
  if (!layout)
    throw CheckFailure(what + ": host executor: " + describe(layout.takeError()));
  std::string triple = machineBuilder->getTargetTriple().str();

  auto context = std::make_unique<llvm::LLVMContext>();
  std::unique_ptr<llvm::Module> copy = copyInto(*context, module, what);
  if (kernelNames.empty())
    throw CheckFailure(what + ": host executor: no kernel named");
  for (const std::string &kernelName : kernelNames) {
    llvm::Function *kernel = copy->getFunction(kernelName);
    if (!kernel || kernel->isDeclaration())
      throw CheckFailure(what + ": host executor: no kernel '" + kernelName + "' in the module");
    if (!hasConvKernelSignature(*kernel))
      throw UnsupportedError(what + ": host executor: kernel '" + kernelName +
                             "' does not take (input, weights, bias, output, batch)");
  }
  RetargetResult retarget = retargetToHost(*copy, *layout, triple, what);

  std::unique_ptr<HostKernel> host(new HostKernel());
  host->What = what;
  host->UsesBarriers = retarget.usesBarriers;
  host->UsesSharedMemory = retarget.usesSharedMemory;
  for (const llvm::GlobalVariable &global : copy->globals())
    if (!global.isDeclaration())
      host->GlobalSizes[global.getName().str()] =
          layout->getTypeAllocSize(global.getValueType()).getFixedValue();

  auto jit = orc::LLJITBuilder().setJITTargetMachineBuilder(std::move(*machineBuilder)).create();
  if (!jit)
    throw CheckFailure(what + ": host executor: " + describe(jit.takeError()));
  host->Jit = std::move(*jit);
  orc::JITDylib &library = host->Jit->getMainJITDylib();
  orc::SymbolMap standIns;
  for (const auto &[symbol, address] : retarget.hostSymbols)
    standIns[host->Jit->mangleAndIntern(symbol)] = llvm::orc::ExecutorSymbolDef(
        orc::ExecutorAddr::fromPtr(address),
        llvm::JITSymbolFlags::Exported | llvm::JITSymbolFlags::Callable);
  if (auto error = library.define(orc::absoluteSymbols(std::move(standIns))))
    throw CheckFailure(what + ": host executor: " + describe(std::move(error)));
  // libm's fmaf and the like, should the host's instruction set lack them.
  auto process = orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
      layout->getGlobalPrefix());
  if (!process)
    throw CheckFailure(what + ": host executor: " + describe(process.takeError()));
  library.addGenerator(std::move(*process));

  if (auto error = host->Jit->addIRModule(
          orc::ThreadSafeModule(std::move(copy), std::move(context))))
    throw CheckFailure(what + ": host executor: " + describe(std::move(error)));
  for (const std::string &kernelName : kernelNames) {
    auto address = host->Jit->lookup(kernelName);
    if (!address)
      throw CheckFailure(what + ": host executor: compiling '" + kernelName +
                         "' failed: " + describe(address.takeError()));
    host->Entries[kernelName] = address->toPtr<ConvKernelEntry>();
  }
  host->FirstKernel = kernelNames.front();
  return host;
}

ConvKernelEntry HostKernel::entry(const std::string &name) const {
  const std::string &wanted = name.empty() ? FirstKernel : name;
  auto found = Entries.find(wanted);
  if (found == Entries.end())
    throw CheckFailure(What + ": host executor: kernel '" + wanted + "' was not compiled");
  return found->second;
}

std::span<std::byte> HostKernel::global(const std::string &name) const {
  auto size = GlobalSizes.find(name);
  if (size == GlobalSizes.end())
    throw CheckFailure(What + ": host executor: the kernel has no global '" + name + "'");
  auto address = Jit->lookup(name);
  if (!address)
    throw CheckFailure(What + ": host executor: global '" + name +
                       "': " + describe(address.takeError()));
  return {address->toPtr<std::byte *>(), size->second};
}

} // namespace convgen
