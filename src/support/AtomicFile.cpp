#include "support/AtomicFile.h"

#include "support/Error.h"

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <random>
#include <unistd.h>

namespace convgen {

namespace fs = std::filesystem;

/// Removes the temporary file unless released, so that every failure path
/// (including exceptions) cleans up.
class TemporaryFileGuard {
public:
  explicit TemporaryFileGuard(std::string path) : Path(std::move(path)) {}
  ~TemporaryFileGuard() {
    if (!Path.empty())
      ::unlink(Path.c_str());
  }
  void release() { Path.clear(); }

private:
  std::string Path;
};

static void writeAll(int fd, std::string_view bytes, const std::string &path) {
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw SystemError("write", path, errno);
    }
    written += static_cast<size_t>(n);
  }
}

void writeFileAtomically(const fs::path &path, std::string_view bytes) {
  fs::path directory = path.parent_path();
  if (!directory.empty()) {
    std::error_code ec;
    fs::create_directories(directory, ec);
    if (ec)
      throw SystemError("create directory", directory.string(), ec.value());
  }

  // Not mkstemp: it creates mode 0600, and outputs should get the usual
  // 0666 & ~umask. O_EXCL with a unique name gives the same safety.
  static std::atomic<uint64_t> counter{std::random_device{}()};
  std::string tempPath;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    tempPath = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
               std::to_string(counter.fetch_add(1));
    fd = ::open(tempPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt == 100))
      throw SystemError("create temporary file", tempPath, errno);
  }
  TemporaryFileGuard guard(tempPath);

  try {
    writeAll(fd, bytes, tempPath);
    if (::fsync(fd) != 0)
      throw SystemError("fsync", tempPath, errno);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0)
    throw SystemError("close", tempPath, errno);
  if (::rename(tempPath.c_str(), path.c_str()) != 0)
    throw SystemError("rename to " + path.string(), tempPath, errno);
  guard.release();
}

bool writeFileIfChanged(const fs::path &path, std::string_view bytes) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec) && fs::file_size(path, ec) == bytes.size() && !ec) {
    std::ifstream in(path, std::ios::binary);
    std::string existing(bytes.size(), '\0');
    if (in.read(existing.data(), std::streamsize(existing.size())) && existing == bytes)
      return false;
  }
  writeFileAtomically(path, bytes);
  return true;
}

std::string readWholeFile(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw SystemError("open", path.string(), errno);
  // One read into a string of the file's size: streaming it through a
  // stringstream regrows and copies the buffer again and again, which made
  // hashing convgen's own 48 MB executable for the cache key (every run,
  // hits included) and reading back a model's cached PTX take seconds.
  std::streamoff size = -1;
  if (in.seekg(0, std::ios::end))
    size = in.tellg();
  if (size > 0 && in.seekg(0)) {
    std::string bytes(size_t(size), '\0');
    in.read(bytes.data(), size);
    if (in.bad() || in.gcount() != size)
      throw SystemError("read", path.string(), errno);
    return bytes;
  }
  // No size to go by (a pipe; a /proc file reports 0): stream it.
  in.clear();
  in.seekg(0);
  in.clear();
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw SystemError("read", path.string(), errno);
  return text.str();
}

} // namespace convgen
