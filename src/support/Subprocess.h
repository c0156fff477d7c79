// Running the CUDA toolkit's command-line tools (ptxas, fatbinary): a child
// process with its standard output and error captured together.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace convgen {

/// A private directory under the system's temporary one, removed with
/// everything in it when this goes out of scope: the toolkit's tools read
/// and write files, and parallel runs must not share them.
class ScratchDirectory {
public:
  /// Throws SystemError if it cannot be made. \p prefix names its use.
  explicit ScratchDirectory(const std::string &prefix);
  ~ScratchDirectory();
  ScratchDirectory(const ScratchDirectory &) = delete;
  ScratchDirectory &operator=(const ScratchDirectory &) = delete;
  const std::filesystem::path &path() const { return Path; }
  std::filesystem::path operator/(const std::string &name) const { return Path / name; }

private:
  std::filesystem::path Path;
};

/// Runs \p argv (argv[0] a path, not looked up on PATH) with stdout and
/// stderr captured into \p output. Returns its exit status, 127 if it could
/// not be executed, 128 if it did not exit normally. Throws SystemError if
/// no process could be made.
int runCapturing(const std::vector<std::string> &argv, std::string &output);

} // namespace convgen
