// Reader for NumPy .npz archives (np.savez and np.savez_compressed output),
// built on libzip. numpy writes every member with zip64 extra fields; libzip
// reads those, verifies each member's CRC-32 on read, and with ZIP_CHECKCONS
// rejects archives whose central directory disagrees with the local headers.
#pragma once

#include "io/Npy.h"

#include <memory>
#include <string>
#include <vector>

struct zip;

namespace convgen {

class NpzArchive {
public:
  /// Opens the archive at \p path. Throws InputError for a missing file or
  /// anything that is not a readable zip archive.
  static NpzArchive open(const std::string &path);
  /// Opens an archive held in memory; \p name is used in error messages.
  static NpzArchive fromBytes(std::vector<uint8_t> bytes, const std::string &name);

  NpzArchive(NpzArchive &&) noexcept;
  NpzArchive &operator=(NpzArchive &&) noexcept;
  ~NpzArchive();

  const std::string &name() const { return Name; }
  /// Array keys, i.e. member names without ".npy", in archive order.
  const std::vector<std::string> &keys() const { return Keys; }
  bool contains(const std::string &key) const;
  /// Reads and parses one array. Throws InputError if the key is missing, the
  /// member is corrupt (bad CRC, truncated data) or its npy content is invalid.
  NpyArray read(const std::string &key) const;

  /// Decompressed size limit for one member: far above any conv layer, low
  /// enough that a hostile archive cannot exhaust memory.
  /// (The largest conv weights in common CNNs are a few hundred MB.)
  static constexpr uint64_t MaxMemberBytes = uint64_t{1} << 30;

private:
  struct ZipCloser {
    void operator()(zip *archive) const;
  };
  NpzArchive(std::unique_ptr<zip, ZipCloser> archive, std::shared_ptr<std::vector<uint8_t>> buffer,
             std::string name);

  // Buffer is declared first so it is destroyed last: the archive reads it
  // until zip_discard.
  std::shared_ptr<std::vector<uint8_t>> Buffer; ///< backing store of fromBytes archives
  std::unique_ptr<zip, ZipCloser> Archive;
  std::string Name;
  std::vector<std::string> Keys;
};

} // namespace convgen
