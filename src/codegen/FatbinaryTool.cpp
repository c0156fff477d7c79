#include "codegen/FatbinaryTool.h"

#include "support/AtomicFile.h"
#include "support/Error.h"
#include "support/Subprocess.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

namespace convgen {

namespace fs = std::filesystem;

std::optional<FatbinaryTool> findFatbinaryTool(const Ptxas &ptxas) {
  const fs::path candidate = fs::path(ptxas.path).parent_path() / "fatbinary";
  if (::access(candidate.c_str(), X_OK) != 0)
    return std::nullopt;
  return FatbinaryTool{candidate.string()};
}

int smVersion(const std::string &arch) {
  if (arch.size() < 5 || arch.compare(0, 3, "sm_") != 0 ||
      arch.find_first_not_of("0123456789", 3) != std::string::npos)
    throw UnsupportedError("'" + arch + "' is not an sm_NN architecture");
  return std::stoi(arch.substr(3));
}

std::string makeFatbinary(const FatbinaryTool &tool, const std::vector<ArchCubin> &cubins,
                          const std::string &ptx, const std::string &ptxArch,
                          const std::string &what) {
  const ScratchDirectory scratch("convgen-fatbin");
  const fs::path &directory = scratch.path();
  auto write = [](const fs::path &path, const std::string &bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    if (!out)
      throw SystemError("write", path.string(), errno);
  };
  std::vector<std::string> argv = {tool.path, "--create=" + (directory / "layer.fatbin").string(),
                                   "-64", "--compress=false"};
  for (const ArchCubin &cubin : cubins) {
    const fs::path file = directory / (cubin.arch + ".cubin");
    write(file, cubin.bytes);
    argv.push_back("--image3=kind=elf,sm=" + std::to_string(smVersion(cubin.arch)) +
                   ",file=" + file.string());
  }
  const fs::path ptxFile = directory / "layer.ptx";
  write(ptxFile, ptx);
  argv.push_back("--image3=kind=ptx,sm=" + std::to_string(smVersion(ptxArch)) +
                 ",file=" + ptxFile.string());
  std::string output;
  if (int status = runCapturing(argv, output); status != 0)
    throw CheckFailure(what + ": fatbinary failed (exit " + std::to_string(status) +
                       "): " + output.substr(0, output.find('\n')));
  return readWholeFile(directory / "layer.fatbin");
}

} // namespace convgen
