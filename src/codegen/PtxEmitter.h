// PTX emission in-process through LLVM's NVPTX backend (no llc subprocess).
//
// Follows Halide's CodeGen_PTX_Dev and MLIR's ModuleToObject: register only
// the NVPTX target, look it up by triple with an error string, give the module
// the target's triple and data layout, then addPassesToEmitFile (which
// returns true on failure). The result is NUL-terminated, as
// cuModuleLoadData expects for PTX text.
#pragma once

#include "codegen/NvptxTarget.h"

#include <string>

namespace llvm {
class Module;
}

namespace convgen {

/// Compiles \p module (nvptx64 IR) to PTX for \p arch. Sets the module's
/// triple and data layout. Throws CheckFailure if the module fails the IR
/// verifier and UnsupportedError if the backend cannot emit it; \p what names
/// the layer in those messages.
std::string emitPtx(llvm::Module &module, const NvptxArch &arch, const std::string &what);

} // namespace convgen
