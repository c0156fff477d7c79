// What convgen last wrote to an output directory: for each PTX file, its
// size, modification time and BLAKE3 digest, in DIR/.convgen-stamps.
// A cache hit must prove that the output already holds the entry's PTX;
// reading and hashing it back cost most of a no-change round once a model's
// PTX grew to hundreds of MB. A file whose size and modification time still
// match its stamp is taken to hold the stamped digest, as git's index does.
//
// A stamp is trusted only if the file was modified strictly before the
// stamps file was written: a file rewritten in the same clock tick as its
// stamp (git's "racily clean" case) is hashed again. Anything else (a stamp
// missing, unreadable stamps, another size or time) means "hash it": stamps
// can only save work, never skip a check they cannot vouch for.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace convgen {

class OutputStamps {
public:
  /// The stamps of \p directory; none if it has no stamps file or one that
  /// cannot be read.
  explicit OutputStamps(std::filesystem::path directory);

  /// True if \p file (in the directory) still holds content with \p digest
  /// by its stamp, without reading it.
  bool vouchesFor(const std::filesystem::path &file, const std::string &digest) const;
  /// Stamps \p file, as it is now on disk, with \p digest (which the caller
  /// knows, having just written or checked the content).
  void stamp(const std::filesystem::path &file, const std::string &digest);
  /// Writes the stamps file (atomically). Throws SystemError if it cannot.
  void save() const;

  static constexpr const char *FileName = ".convgen-stamps";

private:
  struct Stamp {
    uint64_t bytes = 0;
    int64_t modifiedNs = 0;
    std::string digest;
  };
  std::filesystem::path Directory;
  std::map<std::string, Stamp> Stamps; ///< by file name
  int64_t WrittenNs = 0;               ///< the stamps file's own modification time
};

} // namespace convgen
