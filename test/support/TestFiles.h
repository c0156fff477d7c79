// Helpers that build .npy/.npz/.json inputs byte by byte, so tests control
// every header field and can corrupt exactly one thing at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace convgen::test {

using Bytes = std::vector<uint8_t>;

/// An .npy file the way numpy writes it: magic, version, little-endian header
/// length, the dict header padded with spaces to a 64-byte boundary, '\n'.
Bytes makeNpy(const std::string &descr, const std::vector<int64_t> &shape, const Bytes &data,
              int major = 1, bool fortranOrder = false);
/// An .npy file with the given raw header dict text (padding and '\n' added).
Bytes makeNpyWithHeader(const std::string &header, const Bytes &data, int major = 1);

Bytes floatBytes(const std::vector<float> &values);
Bytes readFile(const std::filesystem::path &path);
void writeFile(const std::filesystem::path &path, const Bytes &bytes);
void writeText(const std::filesystem::path &path, const std::string &text);

/// Writes an .npz with one "KEY.npy" member per entry, deflated or stored.
void writeNpz(const std::filesystem::path &path, const std::map<std::string, Bytes> &arrays,
              bool compress = true);

/// A fresh empty directory under the system temp dir, removed on destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  const std::filesystem::path &path() const { return Path; }
  std::filesystem::path operator/(const std::string &name) const { return Path / name; }

private:
  std::filesystem::path Path;
};

/// One-layer model fixtures: weights [O, C/groups, kh, kw] filled with
/// 1, 2, 3, ... and a sidecar whose fields can be overridden.
struct TinyModel {
  std::map<std::string, Bytes> arrays;
  std::string sidecarLayerJson; ///< the single layer object
  std::string sidecarJson() const;
};
TinyModel makeTinyModel();

} // namespace convgen::test
