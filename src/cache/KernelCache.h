// The generator's content-addressed cache: a layer's PTX, kernels, ptxas
// figures and packing order (the OIHW index of each packed slot), stored
// under its CacheKey. A hit stands in for generation: this round's packed
// values are gathered from its weights at the cached indices.
//
// Layout: ROOT/v1/<2 hex>/<key>/ holds layer.ptx, indices.bin and
// entry.json, which records every other file's SHA-256. An entry is written
// into ROOT/v1/tmp/ and renamed into place whole, so readers see all of it
// or nothing, and two processes storing one key at once both succeed (the
// second rename fails on the existing entry, and its copy is dropped). A
// corrupt entry (unreadable, a hash that does not match) is moved aside and
// deleted, and reported as a miss: it is never used.
#pragma once

#include "codegen/LayerGenerator.h"

#include <filesystem>
#include <optional>
#include <string>

namespace convgen {

class KernelCache {
public:
  explicit KernelCache(std::filesystem::path root);

  /// $XDG_CACHE_HOME/convgen, else $HOME/.cache/convgen, else
  /// ./.convgen-cache.
  static std::filesystem::path defaultRoot();

  /// The entry of \p key: its info (no times, no manifest path), PTX and
  /// packed indices, without values. nullopt on a miss; when the entry was
  /// there but corrupt, \p problem says why (and the entry is gone).
  std::optional<CompiledLayer> find(const std::string &key, std::string &problem) const;

  /// Stores \p compiled under \p key. Throws SystemError if the cache
  /// cannot be written.
  void store(const std::string &key, const CompiledLayer &compiled) const;

  const std::filesystem::path &root() const { return Root; }

private:
  std::filesystem::path entryPath(const std::string &key) const;
  std::filesystem::path scratchPath(const std::string &what) const;
  std::filesystem::path Root;
};

} // namespace convgen
