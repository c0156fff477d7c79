// LLVM IR from a string, for tests of single passes and analyses.
#pragma once

#include <gtest/gtest.h>
#include <llvm/AsmParser/Parser.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/SourceMgr.h>

#include <memory>
#include <string>

namespace convgen::test {

/// \p ir parsed into \p context; null, with a test failure naming the
/// parser's message, if it does not parse.
inline std::unique_ptr<llvm::Module> parseIr(llvm::LLVMContext &context, const std::string &ir) {
  llvm::SMDiagnostic diagnostic;
  auto module = llvm::parseAssemblyString(ir, diagnostic, context);
  EXPECT_TRUE(module) << diagnostic.getMessage().str();
  return module;
}

} // namespace convgen::test
