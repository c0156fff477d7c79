#include "codegen/Ptxas.h"

#include "codegen/CubinText.h"
#include "support/Error.h"
#include "support/Subprocess.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <unistd.h>

namespace convgen {

namespace fs = std::filesystem;

std::optional<Ptxas> findPtxas() {
  std::vector<fs::path> candidates;
  if (const char *cudaHome = std::getenv("CUDA_HOME"))
    candidates.push_back(fs::path(cudaHome) / "bin" / "ptxas");
  candidates.push_back("/usr/local/cuda/bin/ptxas");
  if (const char *path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    for (std::string dir; std::getline(dirs, dir, ':');)
      if (!dir.empty())
        candidates.push_back(fs::path(dir) / "ptxas");
  }
  for (const fs::path &candidate : candidates) {
    if (::access(candidate.c_str(), X_OK) != 0)
      continue;
    Ptxas ptxas{candidate.string(), ""};
    std::string versionOutput;
    runCapturing({ptxas.path, "--version"}, versionOutput);
    std::smatch match;
    if (std::regex_search(versionOutput, match, std::regex("release ([0-9.]+)")))
      ptxas.version = match[1].str();
    return ptxas;
  }
  return std::nullopt;
}

static int firstNumber(const std::string &text, const std::string &pattern) {
  std::smatch match;
  if (std::regex_search(text, match, std::regex(pattern)))
    return std::stoi(match[1].str());
  return 0;
}

PtxasReport runPtxas(const Ptxas &ptxas, const std::string &ptx, const std::string &arch,
                     const std::string &what, std::string *cubinOut) {
  // ptxas reads files; a private temporary directory keeps parallel runs apart.
  const ScratchDirectory scratch("convgen-ptxas");
  const fs::path &directory = scratch.path();
  fs::path ptxFile = directory / "kernel.ptx";
  std::ofstream(ptxFile, std::ios::binary) << ptx;

  PtxasReport report;
  report.version = ptxas.version;

  auto start = std::chrono::steady_clock::now();
  std::string output;
  int status = runCapturing({ptxas.path, "-arch=" + arch, "-v", "-o",
                             (directory / "kernel.cubin").string(), ptxFile.string()},
                            output);
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (status != 0) {
    std::string firstLine = output.substr(0, output.find('\n'));
    throw CheckFailure(what + ": ptxas rejected the PTX (exit " + std::to_string(status) +
                       "): " + firstLine);
  }
  // ptxas -v reports each entry function after "Compiling entry function
  // 'NAME'"; the user constant bank (cmem[3]) is the module's.
  const std::string marker = "Compiling entry function '";
  for (size_t at = output.find(marker); at != std::string::npos;) {
    size_t nameStart = at + marker.size();
    size_t next = output.find(marker, nameStart);
    std::string name = output.substr(nameStart, output.find('\'', nameStart) - nameStart);
    std::string section = output.substr(nameStart, next == std::string::npos ? std::string::npos
                                                                             : next - nameStart);
    PtxasKernelReport kernel;
    kernel.registers = firstNumber(section, "Used ([0-9]+) registers");
    kernel.spillStoreBytes = firstNumber(section, "([0-9]+) bytes spill stores");
    kernel.spillLoadBytes = firstNumber(section, "([0-9]+) bytes spill loads");
    kernel.stackFrameBytes = firstNumber(section, "([0-9]+) bytes stack frame");
    kernel.sharedBytes = firstNumber(section, "([0-9]+) bytes smem");
    report.registers = std::max(report.registers, kernel.registers);
    report.spillStoreBytes = std::max(report.spillStoreBytes, kernel.spillStoreBytes);
    report.spillLoadBytes = std::max(report.spillLoadBytes, kernel.spillLoadBytes);
    report.stackFrameBytes = std::max(report.stackFrameBytes, kernel.stackFrameBytes);
    report.sharedBytes = std::max(report.sharedBytes, kernel.sharedBytes);
    report.kernels[name] = kernel;
    at = next;
  }
  if (report.kernels.empty()) // an older ptxas without the per-entry lines
    throw CheckFailure(what + ": ptxas -v reported no entry function; its output began: " +
                       output.substr(0, output.find('\n')));
  report.constantBytes = firstNumber(output, "([0-9]+) bytes cmem\\[3\\]");
  // The machine code itself: each kernel's instruction count.
  std::ifstream cubinFile(directory / "kernel.cubin", std::ios::binary);
  const std::string cubin((std::istreambuf_iterator<char>(cubinFile)), std::istreambuf_iterator<char>());
  if (!cubinFile && !cubinFile.eof())
    throw SystemError("read", (directory / "kernel.cubin").string(), errno);
  for (const auto &[name, bytes] : kernelTextBytes(cubin, what))
    if (auto kernel = report.kernels.find(name); kernel != report.kernels.end()) {
      kernel->second.instructions = bytes / SassInstructionBytes;
      report.instructions += kernel->second.instructions;
    }
  if (cubinOut)
    *cubinOut = cubin;
  return report;
}

} // namespace convgen
